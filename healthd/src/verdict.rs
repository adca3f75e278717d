//! The site verdict for one service, and what the degrade policy says to announce.
//!
//! Healthy is the site-health rule (`feed::site_health`, the one geodns steers by): at least
//! `min_healthy_nodes` nodes up and load under `spill_load`; the prefixes are announced plainly. Otherwise the service's degrade policy applies: withdraw at once, keep
//! announcing made less preferred (prepend, MED, communities), or tag GRACEFUL_SHUTDOWN
//! (RFC 8326) and withdraw after a delay. A drained site (operator or drain file) always goes
//! the graceful-shutdown way.

use std::time::{Duration, Instant};

use config::Service;
use config::service::DegradeAction;
use config::types::Community;
pub use feed::site_health::NodeHealth;
use feed::site_health::{Operator, Thresholds, site_health};
use serde::Serialize;
use speaker_control::RouteAttrs;

/// What to tell the speaker about a service's prefixes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum Announcement {
    /// Announce with these attributes (plain when healthy, shaped when degraded).
    Announce {
        attrs: RouteAttrs,
        degraded: bool,
    },
    /// Announce tagged GRACEFUL_SHUTDOWN until `until`, then withdraw.
    GracefulShutdown {
        attrs: RouteAttrs,
        until_ms: u64,
    },
    Withdraw,
    /// Down, but every other site carrying the service is down too: announce anyway rather
    /// than leave the prefix nowhere (the failure table: never a black hole).
    FailOpen,
    /// Down just now: still announced for a moment, until the other sites' feeds say whether
    /// they went down too (`healthd.withdraw_settle`).
    Settling,
}

/// The verdict for one service at this site.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub healthy: bool,
    pub reason: String,
    pub announcement: Announcement,
}

/// Remembers when a service became unhealthy, so a graceful shutdown ends on time.
#[derive(Debug, Clone, Default)]
pub struct VerdictState {
    unhealthy_since: Option<Instant>,
}

impl VerdictState {
    /// Decides for `service` given its nodes at this site; `drained` is an operator drain.
    pub fn decide(
        &mut self,
        service: &Service,
        nodes: &[NodeHealth],
        drained: bool,
        now: Instant,
    ) -> Verdict {
        let operator = if drained {
            Operator::Drained
        } else {
            Operator::None
        };
        let thresholds = Thresholds {
            min_healthy_nodes: service.min_healthy_nodes,
            spill_load: service.spill_load,
        };
        let health = site_health(nodes.iter().copied(), thresholds, operator);
        let reason = health.reason.to_string();
        if health.usable {
            self.unhealthy_since = None;
            return Verdict {
                healthy: true,
                reason,
                announcement: Announcement::Announce {
                    attrs: RouteAttrs::default(),
                    degraded: false,
                },
            };
        }
        let since = *self.unhealthy_since.get_or_insert(now);
        let policy = &service.degrade;
        let graceful = |delay: Duration| {
            let until = since + delay;
            if now >= until {
                Announcement::Withdraw
            } else {
                let attrs = RouteAttrs {
                    communities: vec![Community::GRACEFUL_SHUTDOWN],
                    ..Default::default()
                };
                Announcement::GracefulShutdown {
                    attrs,
                    until_ms: until.saturating_duration_since(now).as_millis() as u64,
                }
            }
        };
        let announcement = match (drained, policy.action) {
            (true, _) => graceful(policy.delay.map_or(Duration::from_secs(30), |d| d.get())),
            (false, DegradeAction::Withdraw) => Announcement::Withdraw,
            (false, DegradeAction::GracefulShutdown) => {
                graceful(policy.delay.map_or(Duration::ZERO, |d| d.get()))
            }
            (false, DegradeAction::Announce) => Announcement::Announce {
                attrs: RouteAttrs {
                    prepend: policy.prepend,
                    med: policy.med,
                    communities: policy.communities.clone(),
                    large_communities: policy.large_communities.clone(),
                    ..Default::default()
                },
                degraded: true,
            },
        };
        Verdict {
            healthy: false,
            reason,
            announcement,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(extra: &str) -> Service {
        let text = format!(
            "name = \"live\"\nhostnames = [\"live.tv.example.net\"]\ncheck = \"c\"\nmin_healthy_nodes = 2\nspill_load = 0.8\n{extra}"
        );
        toml::from_str(&text).unwrap()
    }

    fn nodes(up: usize, total: usize, load: f64) -> Vec<NodeHealth> {
        (0..total)
            .map(|i| NodeHealth {
                up: i < up,
                load,
                capacity_mbps: 1000,
            })
            .collect()
    }

    #[test]
    fn enough_healthy_nodes_under_the_spill_load_announce_plainly() {
        let v =
            VerdictState::default().decide(&service(""), &nodes(2, 3, 0.5), false, Instant::now());
        assert!(v.healthy);
        assert_eq!(
            v.announcement,
            Announcement::Announce {
                attrs: RouteAttrs::default(),
                degraded: false
            }
        );
    }

    #[test]
    fn too_few_nodes_withdraw_by_default() {
        let v =
            VerdictState::default().decide(&service(""), &nodes(1, 3, 0.1), false, Instant::now());
        assert!(!v.healthy);
        assert_eq!(v.announcement, Announcement::Withdraw);
        assert!(
            v.reason.contains("1 of 3 nodes healthy, 2 needed"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn overload_announces_degraded_when_the_policy_says_so() {
        let svc = service(
            "degrade = { action = \"announce\", prepend = 3, communities = [\"65000:666\"] }",
        );
        let v = VerdictState::default().decide(&svc, &nodes(3, 3, 0.9), false, Instant::now());
        assert!(v.reason.contains("spill threshold"), "{}", v.reason);
        match v.announcement {
            Announcement::Announce {
                attrs,
                degraded: true,
            } => {
                assert_eq!(attrs.prepend, 3);
                assert_eq!(attrs.communities, vec![Community::new(65000, 666)]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn graceful_shutdown_tags_then_withdraws_after_the_delay() {
        let svc = service("degrade = { action = \"graceful-shutdown\", delay = \"5s\" }");
        let mut state = VerdictState::default();
        let t0 = Instant::now();
        let v = state.decide(&svc, &nodes(0, 2, 0.0), false, t0);
        assert!(
            matches!(&v.announcement, Announcement::GracefulShutdown { attrs, until_ms: 5000 } if attrs.communities == vec![Community::GRACEFUL_SHUTDOWN])
        );
        let later = state.decide(&svc, &nodes(0, 2, 0.0), false, t0 + Duration::from_secs(5));
        assert_eq!(later.announcement, Announcement::Withdraw);
        // Recovery resets the clock.
        assert!(
            state
                .decide(&svc, &nodes(2, 2, 0.0), false, t0 + Duration::from_secs(6))
                .healthy
        );
        let again = state.decide(&svc, &nodes(0, 2, 0.0), false, t0 + Duration::from_secs(7));
        assert!(matches!(
            again.announcement,
            Announcement::GracefulShutdown { .. }
        ));
    }

    #[test]
    fn a_drained_site_shuts_down_gracefully_whatever_the_policy() {
        let v =
            VerdictState::default().decide(&service(""), &nodes(3, 3, 0.1), true, Instant::now());
        assert!(!v.healthy && v.reason.contains("drained"));
        assert!(matches!(
            v.announcement,
            Announcement::GracefulShutdown { .. }
        ));
    }
}
