//! Faults aimed at DNS: garbage at every geodns instance while viewers play.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};

use super::super::checks::Run;
use super::super::{Check, World};
use super::{Fault, each_geodns};
use crate::timeline::{Timeline, What, lane};

/// Datagrams per second each sender sends.
const RATE: u64 = 1000;

/// Fuzzed queries and over-long names sent at the anycast DNS address from every city (so
/// that each geodns instance gets its share), for as long as the fault lasts.
pub struct DnsGarbage {
    /// The viewers' namespaces, one sender each.
    senders: Vec<(String, String)>,
}

impl DnsGarbage {
    pub fn new(world: &World<'_>) -> Result<Self> {
        let senders = world
            .viewers
            .iter()
            .map(|p| Ok((p.city.clone(), world.lab.namespace(&p.node)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { senders })
    }

    /// Valid queries to mutate from, and the name that once killed a worker.
    fn seeds(world: &World<'_>) -> Vec<Vec<u8>> {
        let query = |name: &str, qtype: RecordType, subnet: bool| {
            let mut m = Message::new(0x6a6a, MessageType::Query, OpCode::Query);
            m.add_query(Query::query(
                Name::from_ascii(name).unwrap_or_default(),
                qtype,
            ));
            let mut edns = Edns::new();
            if subnet {
                let ecs = ClientSubnet::new([198, 51, 100, 0].into(), 24, 0);
                edns.options_mut().insert(EdnsOption::Subnet(ecs));
            }
            m.set_edns(edns);
            m.to_vec().unwrap_or_default()
        };
        let host = &world.service.hostnames[0];
        let mut long = vec![0x13, 0x37, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for len in [63u8, 63, 63, 62, 63] {
            long.push(len);
            long.extend(std::iter::repeat_n(b'a', usize::from(len)));
        }
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        vec![
            query(host, RecordType::A, true),
            query(host, RecordType::AAAA, false),
            query(host, RecordType::SOA, false),
            long,
        ]
    }
}

impl Fault for DnsGarbage {
    fn describe(&self) -> String {
        format!(
            "fuzzed datagrams and over-long names at the DNS address, {RATE}/s from each of {}",
            self.target()
        )
    }

    fn target(&self) -> String {
        self.senders
            .iter()
            .map(|(city, _)| city.clone())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn inject(&self, world: &World<'_>, timeline: &Timeline, observe: Duration) -> Result<()> {
        let seeds = Self::seeds(world);
        let until = Instant::now() + observe.saturating_sub(Duration::from_secs(1));
        let server = world.dns_server;
        let senders: Vec<_> = self
            .senders
            .iter()
            .enumerate()
            .map(|(i, (city, ns))| {
                let (ns, seeds, city) = (ns.clone(), seeds.clone(), city.clone());
                std::thread::spawn(move || -> Result<(String, u64)> {
                    crate::netns::enter(&ns)?;
                    let socket = UdpSocket::bind("0.0.0.0:0")?;
                    let mut rng = testkit::fuzz::Rng::new(0xD15 + i as u64);
                    let mut sent = 0;
                    while Instant::now() < until {
                        let mut packet = seeds[rng.below(seeds.len())].clone();
                        for _ in 0..rng.below(4) {
                            testkit::fuzz::mutate(&mut rng, &mut packet, &seeds);
                        }
                        // Answers (FORMERR, REFUSED...) are not read: the socket's buffer
                        // drops them.
                        let _ = socket.send_to(&packet, server);
                        sent += 1;
                        std::thread::sleep(Duration::from_micros(1_000_000 / RATE));
                    }
                    Ok((city, sent))
                })
            })
            .collect();
        for sender in senders {
            let (city, sent) = sender
                .join()
                .map_err(|_| anyhow!("a garbage sender panicked"))??;
            timeline.record(
                lane::FAULT,
                What::Info(format!("{sent} garbage datagrams sent from {city}")),
            );
        }
        Ok(())
    }

    /// Each geodns instance's `/healthz` and contained panics, asked inside its node.
    fn before_repair(&self, world: &World<'_>, timeline: &Timeline) {
        each_geodns(world, |node, get| {
            match (get("/healthz"), get("/metrics")) {
                (Ok((healthz, _)), Ok((_, metrics))) => {
                    let panics = metrics
                        .lines()
                        .filter(|l| {
                            l.starts_with("geodns_worker_panics_total ")
                                || l.starts_with("geodns_panics_total ")
                        })
                        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
                        .sum::<f64>() as u64;
                    timeline.record(
                        lane::FAULT,
                        What::Served {
                            node: node.to_owned(),
                            healthz,
                            panics,
                        },
                    );
                }
                (Err(e), _) | (_, Err(e)) => {
                    timeline.record(lane::FAULT, What::Error(format!("{node}: {e:#}")));
                }
            }
        });
    }

    fn restore(&self, _: &World<'_>) -> Result<()> {
        Ok(())
    }

    fn checks(&self, run: &Run<'_>) -> Result<Vec<Check>> {
        let mut checks = run.answers_unchanged(&run.all_cities(), " while garbage arrives");
        checks.extend(run.geodns_served());
        checks.push(run.never_empty());
        checks.extend(run.viewers_unharmed(Duration::ZERO));
        Ok(checks)
    }
}
