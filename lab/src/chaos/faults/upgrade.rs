//! Upgrading a site in place, the procedure a rolling upgrade applies site after site: drain
//! the site (healthd's drain: the routes go, DNS steers its viewers to the next site), replace
//! each of its daemons by the binary at its path (`streamnode replace` for every node, `healthd
//! replace`, `bgp-speaker replace`), check that the site is whole again (every node healthy in
//! its feed), and undrain. Viewers must not notice: they are steered away before anything is
//! replaced, and the replaced processes drop no request anyway.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use daemon::http::Method;

use super::super::checks::{Run, ms};
use super::super::{Check, World};
use super::{Fault, first, http_in_within, stream_nodes};
use crate::timeline::{Timeline, What, lane};

/// How long one daemon's replacement may take to serve.
const REPLACE_WITHIN: Duration = Duration::from_secs(30);
/// How long the drain may take to withdraw the site: its graceful shutdown (30 s unless the
/// service's `degrade.delay` says) and a margin.
const DRAIN_WITHIN: Duration = Duration::from_secs(45);
/// How long the site may take to be whole again after its daemons are replaced.
const SETTLE_WITHIN: Duration = Duration::from_secs(20);

/// The fault-lane notes the checks time from.
const DRAINED: &str = "site drained: withdrawn";
const REPLACED: &str = "every daemon replaced";
const WHOLE: &str = "every node healthy again";

pub struct SiteUpgrade {
    site: String,
    healthd: String,
    speaker: String,
    nodes: Vec<String>,
    /// Each replace as it went: daemon, whether it served, and what it said.
    replaced: Mutex<Vec<(String, bool, String)>>,
}

impl SiteUpgrade {
    pub fn new(world: &World<'_>, site: &str) -> Result<Self> {
        let nodes = stream_nodes(world, site);
        first(nodes.clone(), site, "streamnode")?;
        Ok(Self {
            site: site.to_owned(),
            healthd: first(world.site_nodes(site, "healthd"), site, "healthd")?,
            speaker: first(world.site_nodes(site, "speaker"), site, "speaker")?,
            nodes,
            replaced: Mutex::new(Vec::new()),
        })
    }

    /// healthd's feed, read from inside its node.
    fn feed(&self, world: &World<'_>) -> Result<serde_json::Value> {
        let s = world
            .deployment
            .site(&self.site)
            .ok_or_else(|| anyhow!("no site `{}`", self.site))?;
        let ns = world.lab.namespace(&self.healthd)?;
        let (status, body) = http_in_within(
            ns,
            Method::GET,
            s.healthd.feed,
            "/feed",
            None,
            Duration::from_secs(2),
        )?;
        if status != 200 {
            bail!("GET /feed: {status}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// A POST to healthd's admin API (with its token).
    fn healthd_post(&self, world: &World<'_>, path: &str, within: Duration) -> Result<String> {
        let s = world
            .deployment
            .site(&self.site)
            .ok_or_else(|| anyhow!("no site `{}`", self.site))?;
        let token = s
            .healthd
            .admin_token
            .as_ref()
            .map(|t| t.resolve())
            .transpose()?;
        post(world, &self.healthd, s.healthd.admin, path, token, within)
    }

    /// Replaces one daemon; what it said.
    fn replace(&self, world: &World<'_>, daemon: &str) -> Result<String> {
        let s = world
            .deployment
            .site(&self.site)
            .ok_or_else(|| anyhow!("no site `{}`", self.site))?;
        if daemon == self.healthd {
            return self.healthd_post(world, "/replace", REPLACE_WITHIN);
        }
        if daemon == self.speaker {
            // The speaker's control API: a Unix socket, the same path from every namespace.
            let endpoint = s.speaker.control_endpoint(&s.name);
            let token = s
                .speaker
                .control_token
                .as_ref()
                .map(|t| t.resolve())
                .transpose()?;
            let reply = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let mut client =
                        speaker_control::Client::connect(&endpoint, token, REPLACE_WITHIN).await?;
                    client.call(speaker_control::Op::Replace).await
                })
                .context("the speaker's control API")?;
            return match reply {
                speaker_control::Reply::Replaced { pid, ms } => Ok(format!(
                    "replaced: pid {pid} serves, {ms} ms after the command"
                )),
                other => bail!("{other:?}"),
            };
        }
        let node = world.node(daemon)?;
        let admin = node
            .admin
            .ok_or_else(|| anyhow!("node {daemon} has no admin address"))?;
        let token = node.admin_token.as_ref().map(|t| t.resolve()).transpose()?;
        post(world, daemon, admin, "/replace", token, REPLACE_WITHIN)
    }

    /// Polls healthd's feed until `done` holds.
    fn wait_feed(
        &self,
        world: &World<'_>,
        what: &str,
        within: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<()> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if self.feed(world).is_ok_and(|f| done(&f)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("{what}: not within {}", ms(within))
    }
}

/// A POST from inside `node`'s namespace; the body of a 2xx answer.
fn post(
    world: &World<'_>,
    node: &str,
    addr: SocketAddr,
    path: &str,
    token: Option<String>,
    within: Duration,
) -> Result<String> {
    let ns = world.lab.namespace(node)?;
    let (status, body) = http_in_within(ns, Method::POST, addr, path, token, within)?;
    if !(200..300).contains(&status) {
        bail!("POST {path} to {addr}: {status} {}", body.trim());
    }
    Ok(body.trim().to_owned())
}

impl Fault for SiteUpgrade {
    fn describe(&self) -> String {
        format!(
            "drain {}, replace {}, {} and {}, undrain",
            self.site,
            self.nodes.join(", "),
            self.healthd,
            self.speaker
        )
    }

    fn target(&self) -> String {
        self.site.clone()
    }

    fn observe_at_least(&self, _: &World<'_>, _: &str) -> Duration {
        Duration::from_secs(6)
    }

    fn inject(&self, world: &World<'_>, timeline: &Timeline, _: Duration) -> Result<()> {
        self.healthd_post(world, "/drain", Duration::from_secs(2))?;
        self.wait_feed(world, "the drain withdrawing the site", DRAIN_WITHIN, |f| {
            f["services"].as_array().is_some_and(|s| {
                !s.is_empty() && s.iter().all(|s| s["announcement"] == "withdrawn")
            })
        })?;
        timeline.record(lane::FAULT, What::Info(DRAINED.into()));
        // Stream nodes first, then what decides and announces.
        let order: Vec<&String> = self
            .nodes
            .iter()
            .chain([&self.healthd, &self.speaker])
            .collect();
        for daemon in order {
            let outcome = self.replace(world, daemon);
            let (served, said) = match outcome {
                Ok(said) => (true, said),
                Err(e) => (false, format!("{e:#}")),
            };
            timeline.record(lane::FAULT, What::Info(format!("{daemon}: {said}")));
            self.replaced
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((daemon.clone(), served, said));
        }
        timeline.record(lane::FAULT, What::Info(REPLACED.into()));
        self.wait_feed(
            world,
            "every node healthy after the replace",
            SETTLE_WITHIN,
            |f| {
                f["nodes"]
                    .as_array()
                    .is_some_and(|n| !n.is_empty() && n.iter().all(|n| n["healthy"] == true))
            },
        )?;
        timeline.record(lane::FAULT, What::Info(WHOLE.into()));
        Ok(())
    }

    fn restore(&self, world: &World<'_>) -> Result<()> {
        self.healthd_post(world, "/undrain", Duration::from_secs(2))
            .map(|_| ())
    }

    fn checks(&self, run: &Run<'_>) -> Result<Vec<Check>> {
        let mut checks = Vec::new();
        for (daemon, served, said) in self
            .replaced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            checks.push(Check {
                what: format!("{daemon} replaced in place"),
                bound: "the new process serves".into(),
                measured: said.clone(),
                passed: *served,
            });
        }
        let noted = |text: &str| run.noted(text);
        checks.push(Check {
            what: format!("{} drained before anything was replaced", self.site),
            bound: "withdrawn first".into(),
            measured: noted(DRAINED).map_or("never withdrawn".into(), ms),
            passed: matches!((noted(DRAINED), noted(REPLACED)), (Some(d), Some(r)) if d <= r),
        });
        let whole = noted(WHOLE)
            .zip(noted(REPLACED))
            .map(|(whole, replaced)| whole.saturating_sub(replaced));
        checks.push(Check {
            what: format!("{} whole again after its upgrade", self.site),
            bound: format!("every node healthy < {} after", ms(SETTLE_WITHIN)),
            measured: whole.map_or("never".into(), ms),
            passed: whole.is_some_and(|w| w < SETTLE_WITHIN),
        });
        // DNS steers the site's viewers away as soon as the drain is in the feed.
        checks.extend(run.answers_move(Duration::from_secs(2), None));
        checks.push(run.never_empty());
        checks.extend(run.viewers_unharmed(Duration::ZERO));
        Ok(checks)
    }
}
