//! The site's decision, without I/O: from the nodes' states, an operator's drain and what the
//! other sites say, each service's verdict, what to ask the speaker, and the feed document.
//!
//! Per service: the site-health rule and the degrade policy give the verdict ([`crate::verdict`]).
//! A withdraw that would leave the prefix announced nowhere becomes a fail-open announcement
//! (every other site carrying the service is known down). A withdraw goes out at once when a
//! site ranked ahead is known healthy; otherwise it may be part of several sites failing
//! together and first settles for `healthd.withdraw_settle` while their feeds arrive (the rule
//! and why it holds: [`crate::other_sites`]). An operator's drain is always obeyed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use config::Deployment;
use config::site::Site;
use feed::{NodeState, ServiceState, SiteFeed};
use speaker_control::{Op, RouteAttrs};

use crate::nodes::NodeTable;
use crate::other_sites::Elsewhere;
use crate::verdict::{Announcement, NodeHealth, Verdict, VerdictState};

/// What a decision reads besides the nodes.
pub struct Context<'a> {
    pub deployment: &'a Deployment,
    pub site: &'a Site,
    pub nodes: &'a NodeTable,
    /// An operator drained the site (API or drain file).
    pub drained: bool,
    /// What the other sites carrying a service say of it (their feeds).
    pub elsewhere: &'a dyn Fn(&str) -> Elsewhere,
}

/// One service's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDecision {
    pub service: String,
    pub verdict: Verdict,
    /// What to ask the speaker; `None` for a service without prefixes.
    pub op: Option<Op>,
}

impl ServiceDecision {
    pub fn fail_open(&self) -> bool {
        self.verdict.announcement == Announcement::FailOpen
    }
}

/// A round's decision: per service, and the feed document to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub services: Vec<ServiceDecision>,
    /// The document without instance and generation (the publisher sets them).
    pub feed: SiteFeed,
}

impl Decision {
    /// The speaker requests, in service order.
    pub fn ops(&self) -> Vec<Op> {
        self.services.iter().filter_map(|s| s.op.clone()).collect()
    }
}

/// What the decision remembers between rounds: graceful-shutdown clocks and settling withdraws.
#[derive(Debug, Default)]
pub struct Decider {
    verdicts: HashMap<String, VerdictState>,
    /// Services whose verdict turned to withdraw, and when: they settle before withdrawing.
    settling: HashMap<String, Instant>,
    /// When the last decision was made: a settle due after it still needs a round.
    decided_at: Option<Instant>,
}

/// The label of an announcement in logs, metrics and the feed.
pub fn announcement_kind(a: &Announcement) -> &'static str {
    match a {
        Announcement::Announce {
            degraded: false, ..
        } => "announced",
        Announcement::Announce { degraded: true, .. } => "degraded",
        Announcement::GracefulShutdown { .. } => "graceful-shutdown",
        Announcement::Withdraw => "withdrawn",
        Announcement::FailOpen => "fail-open",
        Announcement::Settling => "withdrawing",
    }
}

impl Decider {
    /// Decides every service the site's nodes carry, at `now`.
    pub fn decide(&mut self, now: Instant, ctx: &Context<'_>) -> Decision {
        let lease_ms = ctx.site.healthd.lease.get().as_millis() as u64;
        let settle = ctx.site.healthd.withdraw_settle.get();
        self.decided_at = Some(now);
        let mut services = Vec::new();
        for svc in &ctx.deployment.services {
            let nodes: Vec<NodeHealth> = ctx
                .nodes
                .iter()
                .filter(|e| e.node.services.contains(&svc.name))
                .map(|e| NodeHealth {
                    up: e.counts_up(),
                    load: e.report.load,
                    capacity_mbps: e.node.capacity_mbps,
                })
                .collect();
            if nodes.is_empty() {
                continue;
            }
            let mut verdict = self.verdicts.entry(svc.name.clone()).or_default().decide(
                svc,
                &nodes,
                ctx.drained,
                now,
            );
            if verdict.announcement != Announcement::Withdraw || ctx.drained {
                self.settling.remove(&svc.name);
            } else {
                match (ctx.elsewhere)(&svc.name) {
                    Elsewhere::AllDown => {
                        self.settling.remove(&svc.name);
                        verdict.announcement = Announcement::FailOpen;
                        verdict.reason = format!(
                            "{}; every other site carrying it is down too, so it stays announced (fail open)",
                            verdict.reason
                        );
                    }
                    Elsewhere::Nobody | Elsewhere::HealthyAhead => {
                        self.settling.remove(&svc.name);
                    }
                    Elsewhere::Unsure => {
                        // Give the other sites' feeds a moment to say whether they went down too.
                        let since = *self.settling.entry(svc.name.clone()).or_insert(now);
                        if now < since + settle {
                            verdict.announcement = Announcement::Settling;
                        }
                    }
                }
            }
            let op = (!svc.prefixes.is_empty()).then(|| {
                let announce = |attrs: RouteAttrs| Op::Announce {
                    prefixes: svc.prefixes.clone(),
                    attrs,
                    service: Some(svc.name.clone()),
                    lease_ms: Some(lease_ms),
                };
                match &verdict.announcement {
                    Announcement::Announce { attrs, .. }
                    | Announcement::GracefulShutdown { attrs, .. } => announce(attrs.clone()),
                    Announcement::FailOpen | Announcement::Settling => {
                        announce(RouteAttrs::default())
                    }
                    Announcement::Withdraw => Op::Withdraw {
                        prefixes: svc.prefixes.clone(),
                    },
                }
            });
            services.push(ServiceDecision {
                service: svc.name.clone(),
                verdict,
                op,
            });
        }
        let feed = document(ctx, &services);
        Decision { services, feed }
    }

    /// When the next settling withdraw is due (a round must come then), if one is pending: due
    /// after the last decision, which may be in the past when that decision took long to act
    /// on (a slow speaker). An overdue settle must still wake the site task at once, not wait
    /// for its next round.
    pub fn next_settled(&self, settle: Duration) -> Option<Instant> {
        self.settling
            .values()
            .map(|t| *t + settle)
            .filter(|due| self.decided_at.is_none_or(|at| *due > at))
            .min()
    }
}

/// The feed document of a decision.
fn document(ctx: &Context<'_>, services: &[ServiceDecision]) -> SiteFeed {
    let nodes = ctx
        .nodes
        .iter()
        .map(|e| NodeState {
            name: e.node.name.clone(),
            ipv4: e.node.ipv4,
            ipv6: e.node.ipv6,
            services: e.node.services.clone(),
            healthy: e.up(),
            // Rounded so that load jitter alone does not republish the feed each round.
            load: (e.report.load * 100.0).round() / 100.0,
            capacity_mbps: e.node.capacity_mbps,
            draining: ctx.drained || e.draining(),
            reason: e.reason(),
        })
        .collect();
    let services = services
        .iter()
        .map(|s| ServiceState {
            name: s.service.clone(),
            healthy: s.verdict.healthy,
            announcement: announcement_kind(&s.verdict.announcement).to_owned(),
            reason: s.verdict.reason.clone(),
        })
        .collect();
    SiteFeed {
        site: ctx.site.name.clone(),
        instance: String::new(),
        generation: 0,
        services,
        nodes,
        peers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Health;
    use crate::report::NodeReport;

    /// The three-site example, `live` withdrawn at once when unhealthy.
    fn deployment() -> Deployment {
        let text = include_str!("../../config/examples/three-sites.toml").replace(
            "degrade = { action = \"graceful-shutdown\", delay = \"5s\" }",
            "degrade = { action = \"withdraw\" }",
        );
        Deployment::parse(&text, std::path::Path::new("three-sites.toml")).unwrap()
    }

    /// The Amsterdam site with `up` of its nodes up.
    fn nodes(d: &Deployment, up: usize) -> NodeTable {
        let site = d.site("ams").unwrap();
        let mut table = NodeTable::new(site);
        for node in site.nodes.iter().take(up) {
            table.update(
                &node.name,
                Health::Up,
                true,
                NodeReport::default(),
                String::new(),
            );
        }
        table
    }

    fn live(decision: &Decision) -> &ServiceDecision {
        decision
            .services
            .iter()
            .find(|s| s.service == "live")
            .unwrap()
    }

    fn decide_at(
        decider: &mut Decider,
        d: &Deployment,
        table: &NodeTable,
        drained: bool,
        elsewhere: Elsewhere,
        now: Instant,
    ) -> Decision {
        let elsewhere = move |_: &str| elsewhere;
        decider.decide(
            now,
            &Context {
                deployment: d,
                site: d.site("ams").unwrap(),
                nodes: table,
                drained,
                elsewhere: &elsewhere,
            },
        )
    }

    #[test]
    fn a_healthy_site_announces_with_a_lease_and_says_so_in_its_feed() {
        let d = deployment();
        let table = nodes(&d, 2);
        let decision = decide_at(
            &mut Decider::default(),
            &d,
            &table,
            false,
            Elsewhere::Unsure,
            Instant::now(),
        );
        let live = live(&decision);
        assert!(live.verdict.healthy);
        assert!(matches!(
            &live.op,
            Some(Op::Announce { lease_ms: Some(3000), service: Some(s), .. }) if s == "live"
        ));
        assert!(decision.feed.nodes.iter().all(|n| n.healthy));
        assert_eq!(decision.feed.services[0].announcement, "announced");
    }

    #[test]
    fn a_site_going_down_settles_then_withdraws() {
        let d = deployment();
        let table = nodes(&d, 0);
        let mut decider = Decider::default();
        let t0 = Instant::now();
        let settle = d.site("ams").unwrap().healthd.withdraw_settle.get();
        let first = decide_at(&mut decider, &d, &table, false, Elsewhere::Unsure, t0);
        assert_eq!(live(&first).verdict.announcement, Announcement::Settling);
        assert!(
            matches!(live(&first).op, Some(Op::Announce { .. })),
            "still announced"
        );
        assert_eq!(first.feed.services[0].announcement, "withdrawing");
        assert!(
            !first.feed.services[0].healthy,
            "the feed says down at once"
        );
        assert_eq!(decider.next_settled(settle), Some(t0 + settle));
        let later = decide_at(
            &mut decider,
            &d,
            &table,
            false,
            Elsewhere::Unsure,
            t0 + settle,
        );
        assert_eq!(live(&later).verdict.announcement, Announcement::Withdraw);
        assert!(matches!(live(&later).op, Some(Op::Withdraw { .. })));
        assert_eq!(
            decider.next_settled(settle),
            None,
            "acted on: no more rounds"
        );
    }

    /// Found in the lab: a round that took longer than the settle to act on (the speaker was
    /// slow to answer) left the settle overdue, and an overdue settle woke nobody; the withdraw
    /// waited for the next probe round, 400 ms later.
    #[test]
    fn an_overdue_settle_still_asks_for_a_round() {
        let d = deployment();
        let table = nodes(&d, 0);
        let mut decider = Decider::default();
        let t0 = Instant::now();
        let settle = d.site("ams").unwrap().healthd.withdraw_settle.get();
        decide_at(&mut decider, &d, &table, false, Elsewhere::Unsure, t0);
        // Whenever the site task looks, even after the settle is due, a round is asked for.
        let due = decider.next_settled(settle).expect("a round is due");
        assert_eq!(due, t0 + settle);
        let later = decide_at(
            &mut decider,
            &d,
            &table,
            false,
            Elsewhere::Unsure,
            due + Duration::from_millis(300),
        );
        assert_eq!(live(&later).verdict.announcement, Announcement::Withdraw);
        assert_eq!(decider.next_settled(settle), None);
    }

    #[test]
    fn a_site_withdraws_at_once_when_one_ranked_ahead_is_healthy_or_none_carries_it() {
        let d = deployment();
        let table = nodes(&d, 0);
        for elsewhere in [Elsewhere::HealthyAhead, Elsewhere::Nobody] {
            let mut decider = Decider::default();
            let t0 = Instant::now();
            let decision = decide_at(&mut decider, &d, &table, false, elsewhere, t0);
            assert_eq!(live(&decision).verdict.announcement, Announcement::Withdraw);
            assert!(matches!(live(&decision).op, Some(Op::Withdraw { .. })));
            assert_eq!(decider.next_settled(Duration::from_secs(1)), None);
        }
    }

    #[test]
    fn a_settling_site_that_hears_a_healthy_site_ahead_withdraws_before_the_settle_ends() {
        let d = deployment();
        let table = nodes(&d, 0);
        let mut decider = Decider::default();
        let t0 = Instant::now();
        let first = decide_at(&mut decider, &d, &table, false, Elsewhere::Unsure, t0);
        assert_eq!(live(&first).verdict.announcement, Announcement::Settling);
        let t1 = t0 + Duration::from_millis(5);
        let next = decide_at(&mut decider, &d, &table, false, Elsewhere::HealthyAhead, t1);
        assert_eq!(live(&next).verdict.announcement, Announcement::Withdraw);
    }

    #[test]
    fn the_last_site_standing_fails_open_instead_of_withdrawing() {
        let d = deployment();
        let table = nodes(&d, 0);
        let decision = decide_at(
            &mut Decider::default(),
            &d,
            &table,
            false,
            Elsewhere::AllDown,
            Instant::now(),
        );
        let live = live(&decision);
        assert!(live.fail_open());
        assert!(live.verdict.reason.contains("fail open"));
        assert!(matches!(live.op, Some(Op::Announce { .. })));
    }

    #[test]
    fn an_operators_drain_is_obeyed_even_by_the_last_site() {
        let d = deployment();
        let table = nodes(&d, 2);
        let decision = decide_at(
            &mut Decider::default(),
            &d,
            &table,
            true,
            Elsewhere::AllDown,
            Instant::now(),
        );
        let live = live(&decision);
        assert!(!live.verdict.healthy);
        assert!(matches!(
            live.verdict.announcement,
            Announcement::GracefulShutdown { .. }
        ));
        assert!(decision.feed.nodes.iter().all(|n| n.draining));
    }

    #[test]
    fn a_node_draining_itself_counts_as_gone_but_stays_healthy_in_the_feed() {
        let d = deployment();
        let mut table = nodes(&d, 2);
        let site = d.site("ams").unwrap();
        for node in &site.nodes {
            let report = NodeReport {
                load: 0.1,
                draining: true,
            };
            table.update(&node.name, Health::Up, true, report, String::new());
        }
        let decision = decide_at(
            &mut Decider::default(),
            &d,
            &table,
            false,
            Elsewhere::AllDown,
            Instant::now(),
        );
        assert!(!live(&decision).verdict.healthy);
        assert!(decision.feed.nodes.iter().all(|n| n.healthy && n.draining));
    }
}
