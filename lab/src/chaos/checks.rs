//! The failure table (docs/ARCHITECTURE.md), checked over a run's typed events: each function is one row's
//! requirement (withdrawn within a bound, or never; answers moved, or unchanged; DNS never
//! empty; viewers' stall time), and a fault picks the ones its row states.

use std::net::IpAddr;
use std::time::Duration;

use super::{Check, World};
use crate::timeline::{Event, EventKind, What, lane};
use crate::viewer::Experience;

/// What a run saw, as the checks read it.
pub(crate) struct Run<'a> {
    pub world: &'a World<'a>,
    /// The site the fault aimed at.
    pub site: &'a str,
    pub events: Vec<Event>,
    pub fault_at: Duration,
    pub restore_at: Duration,
    pub viewers: &'a [(String, Experience)],
}

/// A measured time as a check states it.
pub fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// The time in a check's `measured` when it is one written by [`ms`] (not "not withdrawn",
/// "kept"...), for the figures over several trials.
pub fn parse_ms(measured: &str) -> Option<Duration> {
    let n = measured.strip_suffix(" ms")?;
    n.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| n.parse().ok().map(Duration::from_millis))
        .flatten()
}

impl Run<'_> {
    /// Whether `e` happened between the fault and the repair.
    fn during(&self, e: &Event) -> bool {
        e.at >= self.fault_at && e.at <= self.restore_at
    }

    /// When each of the site's routers first lost the route, after `from` (the fault when
    /// `None`).
    fn withdrawals(&self, from: Option<Duration>) -> Vec<(String, Option<Duration>)> {
        let from = from.unwrap_or(self.fault_at);
        self.world
            .site_nodes(self.site, "router")
            .into_iter()
            .map(|router| {
                let lane = lane::route(&router);
                let at = self
                    .events
                    .iter()
                    .find(|e| {
                        e.lane == lane
                            && e.at >= from
                            && e.at <= self.restore_at
                            && e.what.is_withdrawn_route()
                    })
                    .map(|e| e.at - from);
                (router, at)
            })
            .collect()
    }

    /// Every router of the site withdrew within `bound` of `from` (the fault when `None`);
    /// `skip` routers are not expected to (a stalled one).
    pub fn withdrawn_within(
        &self,
        bound: Duration,
        what: &str,
        from: Option<Duration>,
        skip: &[String],
    ) -> Vec<Check> {
        self.withdrawals(from)
            .into_iter()
            .filter(|(router, _)| !skip.contains(router))
            .map(|(router, at)| Check {
                what: format!("{what}: withdrawn at {router}"),
                bound: format!("< {}", ms(bound)),
                measured: at.map_or("not withdrawn".into(), ms),
                passed: at.is_some_and(|a| a < bound),
            })
            .collect()
    }

    /// Every router of the site but `skip` kept the route throughout.
    pub fn stays_announced_except(&self, skip: &[String]) -> Vec<Check> {
        self.withdrawals(None)
            .into_iter()
            .filter(|(router, _)| !skip.contains(router))
            .map(|(router, at)| Check {
                what: format!("the site stays announced at {router}"),
                bound: "no withdraw".into(),
                measured: at.map_or("announced throughout".into(), |a| {
                    format!("withdrawn after {}", ms(a))
                }),
                passed: at.is_none(),
            })
            .collect()
    }

    /// The timeline lanes of the transit network's routes.
    fn transit_lanes(&self) -> Vec<String> {
        self.world
            .lab
            .topology()
            .nodes_labelled("lab.role", "transit")
            .map(|n| lane::route(&n.name))
            .collect()
    }

    /// Every router of the site kept the route throughout.
    pub fn stays_announced(&self) -> Vec<Check> {
        self.stays_announced_except(&[])
    }

    /// The transit network stopped sending the prefix to `hop` (`router`'s uplink address)
    /// within `bound` of the fault: traffic is off that router. It must have been sending it
    /// there just before, or the check proves nothing.
    pub fn transit_leaves(&self, hop: &str, router: &str, bound: Duration) -> Check {
        let lanes = self.transit_lanes();
        let via = |e: &Event| match &e.what {
            What::TransitRoute { hops } => Some(hops.iter().any(|h| h == hop)),
            _ => None,
        };
        let before = self
            .events
            .iter()
            .rfind(|e| lanes.contains(&e.lane) && e.at < self.fault_at && via(e).is_some())
            .and_then(via);
        let left = self
            .events
            .iter()
            .find(|e| lanes.contains(&e.lane) && self.during(e) && via(e) == Some(false))
            .map(|e| e.at - self.fault_at);
        Check {
            what: format!("the transit network's traffic leaves {router}"),
            bound: format!("< {}", ms(bound)),
            measured: match (before, left) {
                (Some(true), Some(at)) => ms(at),
                (Some(true), None) => "still via it".into(),
                _ => format!("not via {router} before the fault"),
            },
            passed: before == Some(true) && left.is_some_and(|at| at < bound),
        }
    }

    /// The cities whose answers came from the site just before the fault.
    pub fn served_cities(&self) -> Vec<String> {
        self.cities_served_by(&[self.site.to_string()])
    }

    /// The cities whose answers came from one of `sites` just before the fault.
    pub fn cities_served_by(&self, sites: &[String]) -> Vec<String> {
        self.world
            .viewers
            .iter()
            .filter(|p| {
                let lane = lane::dns(&p.city);
                self.events
                    .iter()
                    .rfind(|e| e.lane == lane && e.at < self.fault_at)
                    .and_then(|e| e.what.answer_sites())
                    .is_some_and(|answered| answered.iter().any(|s| sites.contains(s)))
            })
            .map(|p| p.city.clone())
            .collect()
    }

    /// The first answer for `city` after `from` (the fault when `None`) that `pred` accepts,
    /// until the repair.
    pub fn answer_change(
        &self,
        city: &str,
        from: Option<Duration>,
        pred: &dyn Fn(&What) -> bool,
    ) -> Option<Duration> {
        let from = from.unwrap_or(self.fault_at);
        let lane = lane::dns(city);
        self.events
            .iter()
            .find(|e| e.lane == lane && e.at >= from && e.at <= self.restore_at && pred(&e.what))
            .map(|e| e.at - from)
    }

    /// DNS never failed or answered empty after the fault (a query lost and answered when
    /// asked again, as resolvers do, is noted but is not a failure).
    pub fn never_empty(&self) -> Check {
        let bad: Vec<String> = self
            .events
            .iter()
            .filter(|e| {
                (e.lane.starts_with("dns ") || e.lane.starts_with("resolver "))
                    && e.kind() == EventKind::Error
                    && e.at >= self.fault_at
            })
            .map(|e| format!("{}: {}", e.lane, e.text()))
            .collect();
        let retried = self
            .events
            .iter()
            .filter(|e| matches!(e.what, What::Retried(_)) && e.at >= self.fault_at)
            .count();
        Check {
            what: "DNS never answers empty or fails".into(),
            bound: "never".into(),
            measured: match (bad.is_empty(), retried) {
                (true, 0) => "always answered".into(),
                (true, n) => format!("always answered ({n} lost in flight, answered on retry)"),
                (false, _) => bad.join("; "),
            },
            passed: bad.is_empty(),
        }
    }

    /// Every viewer played on, stalling at most `allowed`.
    pub fn viewers_unharmed(&self, allowed: Duration) -> Vec<Check> {
        self.viewers
            .iter()
            .map(|(city, seen)| Check {
                what: format!("viewer in {city} keeps playing"),
                bound: format!("stall ≤ {}", ms(allowed)),
                measured: format!(
                    "stalled {}, {} errors, {} segments, startup {}",
                    ms(seen.stalled),
                    seen.errors,
                    seen.segments,
                    seen.startup.map_or("never".into(), ms)
                ),
                passed: seen.stalled <= allowed && seen.segments > 0,
            })
            .collect()
    }

    /// The addresses of `nodes` left the answers of every city the site served, within
    /// `bound`.
    pub fn dropped_from_dns(&self, nodes: &[String], bound: Duration) -> Vec<Check> {
        let ips = self.addresses(nodes);
        let names: Vec<String> = ips.iter().map(ToString::to_string).collect();
        self.served_cities()
            .into_iter()
            .map(|city| {
                let at = self.answer_change(&city, None, &|w| {
                    w.answer_addresses()
                        .is_some_and(|a| !a.iter().any(|ip| ips.contains(ip)))
                });
                Check {
                    what: format!("{} leaves the answers for {city}", names.join(", ")),
                    bound: format!("< {}", ms(bound)),
                    measured: at.map_or("still answered".into(), ms),
                    passed: at.is_some_and(|a| a < bound),
                }
            })
            .collect()
    }

    /// The answers of every city the site served moved to another site within `bound` of
    /// `from` (the fault when `None`).
    pub fn answers_move(&self, bound: Duration, from: Option<Duration>) -> Vec<Check> {
        self.served_cities()
            .into_iter()
            .map(|city| {
                let at = self.answer_change(&city, from, &|w| {
                    w.answer_sites()
                        .is_some_and(|sites| !sites.iter().any(|s| s == self.site))
                });
                Check {
                    what: format!("answers for {city} move to another site"),
                    bound: format!("< {}", ms(bound)),
                    measured: at.map_or("not moved".into(), ms),
                    passed: at.is_some_and(|a| a < bound),
                }
            })
            .collect()
    }

    /// The answers for `cities` did not change between the fault and the repair.
    pub fn answers_unchanged(&self, cities: &[String], why: &str) -> Vec<Check> {
        cities
            .iter()
            .map(|city| {
                let at = self.answer_change(city, None, &|_| true);
                Check {
                    what: format!("answers for {city} unchanged{why}"),
                    bound: "unchanged".into(),
                    measured: at.map_or("unchanged".into(), |a| format!("changed after {}", ms(a))),
                    passed: at.is_none(),
                }
            })
            .collect()
    }

    /// Every city.
    pub fn all_cities(&self) -> Vec<String> {
        self.world.viewers.iter().map(|p| p.city.clone()).collect()
    }

    /// Never a black hole: the transit network had a route to the prefix throughout.
    pub fn transit_keeps_route(&self, condition: &str) -> Check {
        let lanes = self.transit_lanes();
        let lost = self.events.iter().find(|e| {
            lanes.contains(&e.lane)
                && self.during(e)
                && matches!(&e.what, What::TransitRoute { hops } if hops.is_empty())
        });
        Check {
            what: format!(
                "the transit network keeps a route to {}{condition}",
                self.world.prefix
            ),
            bound: "never without".into(),
            measured: lost.map_or("kept".into(), |e| {
                format!("lost after {}", ms(e.at - self.fault_at))
            }),
            passed: lost.is_none(),
        }
    }

    /// Every site's routers announce the prefix at the end of the fault (fail open).
    pub fn every_site_announces(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        for site in &self.world.deployment.sites {
            for router in self.world.site_nodes(&site.name, "router") {
                let lane = lane::route(&router);
                let last = self
                    .events
                    .iter()
                    .rfind(|e| e.lane == lane && e.at <= self.restore_at);
                checks.push(Check {
                    what: format!(
                        "{} announced at {router} while every site is down (fail open)",
                        site.name
                    ),
                    bound: "announced".into(),
                    measured: last.map_or("no route seen".into(), Event::text),
                    passed: last.is_some_and(|e| {
                        matches!(
                            e.what,
                            What::SiteRoute {
                                announced: true,
                                ..
                            }
                        )
                    }),
                });
            }
        }
        checks
    }

    /// What geodns reported of the sites' feeds before the repair: every one past its grace.
    pub fn feeds_stale(&self) -> Check {
        let sites = self.world.deployment.sites.len();
        let seen: Vec<(usize, usize, String)> = self
            .events
            .iter()
            .filter_map(|e| match &e.what {
                What::FeedsStale { node, stale, total } => Some((*stale, *total, node.clone())),
                _ => None,
            })
            .collect();
        Check {
            what: "geodns counts the silent feeds as past their grace".into(),
            bound: format!("{sites} sites stale"),
            measured: if seen.is_empty() {
                "not seen".into()
            } else {
                seen.iter()
                    .map(|(s, t, n)| format!("{s} of {t} at {n}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            },
            passed: !seen.is_empty() && seen.iter().all(|(s, t, _)| *s == sites && *t == sites),
        }
    }

    /// Every geodns instance served throughout: `/healthz` ok and no panic, as it reported
    /// before the repair.
    pub fn geodns_served(&self) -> Vec<Check> {
        let reports: Vec<(String, u16, u64)> = self
            .events
            .iter()
            .filter_map(|e| match &e.what {
                What::Served {
                    node,
                    healthz,
                    panics,
                } => Some((node.clone(), *healthz, *panics)),
                _ => None,
            })
            .collect();
        if reports.is_empty() {
            return vec![Check {
                what: "geodns reports serving".into(),
                bound: "/healthz 200, no panic".into(),
                measured: "no report".into(),
                passed: false,
            }];
        }
        reports
            .into_iter()
            .map(|(node, healthz, panics)| Check {
                what: format!("geodns at {node} serves every worker"),
                bound: "/healthz 200, no panic".into(),
                measured: format!("/healthz {healthz}, {panics} panics"),
                passed: healthz == 200 && panics == 0,
            })
            .collect()
    }

    /// The deployment addresses of topology nodes.
    pub fn addresses(&self, nodes: &[String]) -> Vec<IpAddr> {
        nodes
            .iter()
            .filter_map(|n| self.world.node(n).ok().and_then(|n| n.ipv4))
            .map(IpAddr::V4)
            .collect()
    }

    /// When an info event with `text` was recorded in the fault lane, if it was.
    pub fn noted(&self, text: &str) -> Option<Duration> {
        self.events
            .iter()
            .find(|e| e.lane == lane::FAULT && matches!(&e.what, What::Info(t) if t == text))
            .map(|e| e.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_times_read_back() {
        let d = Duration::from_millis(188);
        assert_eq!(parse_ms(&ms(d)), Some(d));
        for not_a_time in [
            "not withdrawn",
            "changed after 12 ms",
            "12ms",
            " ms",
            "-1 ms",
        ] {
            assert_eq!(parse_ms(not_a_time), None, "{not_a_time}");
        }
    }
}
