//! The routes this speaker originates: what healthd and operators asked for, each with an
//! optional lease, and operators' drains.
//!
//! The table is owned by the speaker task; every change produces a new immutable [`Snapshot`]
//! that peer sessions diff against what they advertised, so a session never blocks the table.
//!
//! An operator's drain is an order of its own, not a property of a route: it holds until
//! `undrain` whatever healthd renews or re-announces, covers routes announced after it, and
//! after its delay keeps its routes withdrawn from every peer while they stay in the table (so
//! `undrain` brings them back at once).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use config::types::Community;
use imbl::OrdMap;
use ipnet::IpNet;
use speaker_control::{Change, RouteAttrs};

/// One originated route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Originated {
    pub attrs: RouteAttrs,
    /// The service the prefix belongs to, for per-peer export policy.
    pub service: Option<String>,
    /// When the lease runs out; `None` means until withdrawn.
    pub expires: Option<Instant>,
    /// The operator's drain covering the route, if any.
    pub drain: Option<DrainMark>,
}

/// How an operator's drain applies to one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainMark {
    /// Who asked, and when.
    pub by: String,
    pub at: SystemTime,
    /// GRACEFUL_SHUTDOWN until then, withdrawn from peers after.
    pub withdraw_at: Instant,
    pub withdrawn: bool,
}

impl Originated {
    /// Under a drain, still announced with GRACEFUL_SHUTDOWN.
    pub fn draining(&self) -> bool {
        self.drain.as_ref().is_some_and(|d| !d.withdrawn)
    }

    /// Withdrawn from every peer by a drain (kept in the table until `undrain`).
    pub fn withdrawn_by_drain(&self) -> bool {
        self.drain.as_ref().is_some_and(|d| d.withdrawn)
    }

    /// The attributes as exported: drained routes carry GRACEFUL_SHUTDOWN (RFC 8326 section 4).
    pub fn effective_attrs(&self) -> RouteAttrs {
        let mut attrs = self.attrs.clone();
        if self.draining() && !attrs.communities.contains(&Community::GRACEFUL_SHUTDOWN) {
            attrs.communities.push(Community::GRACEFUL_SHUTDOWN);
        }
        attrs
    }
}

/// An immutable view of the table handed to sessions. Cloning it is O(1) and two versions
/// share structure, so a session finds what changed with [`OrdMap::diff`] in time proportional
/// to the change, not to the table.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub version: u64,
    pub routes: OrdMap<IpNet, Arc<Originated>>,
}

/// An operator's drain order.
#[derive(Debug, Clone)]
struct DrainOrder {
    /// The prefixes it covers; every prefix when `None`.
    prefixes: Option<BTreeSet<IpNet>>,
    /// Prefixes undrained since (for an order covering every prefix).
    except: BTreeSet<IpNet>,
    by: String,
    at: SystemTime,
    withdraw_at: Instant,
}

impl DrainOrder {
    fn covers(&self, prefix: &IpNet) -> bool {
        !self.except.contains(prefix) && self.prefixes.as_ref().is_none_or(|p| p.contains(prefix))
    }
}

/// The table with its lease and drain deadlines.
#[derive(Debug, Default)]
pub struct Rib {
    routes: OrdMap<IpNet, Arc<Originated>>,
    /// Every route's next deadline (lease or drain), to expire without scanning the table.
    deadlines: BTreeSet<(Instant, IpNet)>,
    /// Operators' drains, oldest first.
    drains: Vec<DrainOrder>,
    version: u64,
}

fn deadline(route: &Originated) -> Option<Instant> {
    let drain = route
        .drain
        .as_ref()
        .filter(|d| !d.withdrawn)
        .map(|d| d.withdraw_at);
    [route.expires, drain].into_iter().flatten().min()
}

impl Rib {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            version: self.version,
            routes: self.routes.clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    fn put(&mut self, prefix: IpNet, route: Originated) {
        if let Some(old) = self.routes.get(&prefix).and_then(|r| deadline(r)) {
            self.deadlines.remove(&(old, prefix));
        }
        if let Some(t) = deadline(&route) {
            self.deadlines.insert((t, prefix));
        }
        self.routes.insert(prefix, Arc::new(route));
    }

    /// The drain `prefix` is under at `now`: the oldest order covering it.
    fn mark_for(&self, prefix: &IpNet, now: Instant) -> Option<DrainMark> {
        self.drains
            .iter()
            .find(|o| o.covers(prefix))
            .map(|o| DrainMark {
                by: o.by.clone(),
                at: o.at,
                withdraw_at: o.withdraw_at,
                withdrawn: now >= o.withdraw_at,
            })
    }

    /// Gives every route the drain mark the orders say; returns how many changed.
    fn remark(&mut self, now: Instant) -> usize {
        let changed: Vec<(IpNet, Originated)> = self
            .routes
            .iter()
            .filter_map(|(prefix, route)| {
                let mark = self.mark_for(prefix, now);
                (mark != route.drain).then(|| {
                    let mut next = Originated::clone(route);
                    next.drain = mark;
                    (*prefix, next)
                })
            })
            .collect();
        let n = changed.len();
        for (prefix, route) in changed {
            self.put(prefix, route);
        }
        if n > 0 {
            self.version += 1;
        }
        n
    }

    /// Announces or renews `prefix`. Renewing with the same attributes does not disturb peers;
    /// an operator's drain covering the prefix stays in force.
    pub fn announce(
        &mut self,
        prefix: IpNet,
        attrs: RouteAttrs,
        service: Option<String>,
        lease: Option<Duration>,
        now: Instant,
    ) -> Change {
        let expires = lease.map(|l| now + l);
        let new = Originated {
            attrs,
            service,
            expires,
            drain: self.mark_for(&prefix, now),
        };
        let change = match self.routes.get(&prefix) {
            None => Change::Added,
            Some(old)
                if old.attrs == new.attrs
                    && old.service == new.service
                    && old.drain == new.drain =>
            {
                Change::Renewed
            }
            Some(_) => Change::Updated,
        };
        self.put(prefix, new);
        if change != Change::Renewed {
            self.version += 1;
        }
        change
    }

    pub fn withdraw(&mut self, prefix: &IpNet) -> Change {
        match self.routes.remove(prefix) {
            Some(old) => {
                if let Some(t) = deadline(&old) {
                    self.deadlines.remove(&(t, *prefix));
                }
                self.version += 1;
                Change::Removed
            }
            None => Change::Unknown,
        }
    }

    /// An operator drains the given prefixes (all when `None`): GRACEFUL_SHUTDOWN now,
    /// withdrawn from peers after `delay`, until [`Rib::undrain`]. Returns how many routes of
    /// the table it covers now.
    pub fn drain(
        &mut self,
        prefixes: Option<&[IpNet]>,
        delay: Duration,
        by: &str,
        now: Instant,
    ) -> usize {
        self.drains.push(DrainOrder {
            prefixes: prefixes.map(|p| p.iter().copied().collect()),
            except: BTreeSet::new(),
            by: by.to_owned(),
            at: SystemTime::now(),
            withdraw_at: now + delay,
        });
        self.remark(now);
        self.routes.values().filter(|r| r.drain.is_some()).count()
    }

    /// Ends the drain of the given prefixes (all when `None`); returns how many routes of the
    /// table came out of a drain.
    pub fn undrain(&mut self, prefixes: Option<&[IpNet]>, now: Instant) -> usize {
        let before = self.routes.values().filter(|r| r.drain.is_some()).count();
        match prefixes {
            None => self.drains.clear(),
            Some(list) => {
                for order in &mut self.drains {
                    match &mut order.prefixes {
                        Some(covered) => {
                            for p in list {
                                covered.remove(p);
                            }
                        }
                        None => order.except.extend(list.iter().copied()),
                    }
                }
                self.drains
                    .retain(|o| o.prefixes.as_ref().is_none_or(|p| !p.is_empty()));
            }
        }
        self.remark(now);
        let after = self.routes.values().filter(|r| r.drain.is_some()).count();
        before - after
    }

    /// Applies the deadlines that passed: routes whose lease ran out leave the table, drained
    /// routes whose delay ran out are withdrawn from peers. Returns each with the reason.
    pub fn expire(&mut self, now: Instant) -> Vec<(IpNet, &'static str)> {
        let mut done = Vec::new();
        while let Some(&(t, prefix)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(route) = self.routes.get(&prefix).cloned() else {
                continue;
            };
            if route.expires.is_some_and(|e| e <= now) {
                self.routes.remove(&prefix);
                if let Some(t) = deadline(&route) {
                    self.deadlines.remove(&(t, prefix));
                }
                done.push((prefix, "lease expired"));
            } else if let Some(mark) = route.drain.as_ref().filter(|d| !d.withdrawn)
                && mark.withdraw_at <= now
            {
                let mut next = Originated::clone(&route);
                if let Some(d) = next.drain.as_mut() {
                    d.withdrawn = true;
                }
                self.put(prefix, next);
                done.push((prefix, "drain delay over: withdrawn until undrain"));
            }
        }
        if !done.is_empty() {
            self.version += 1;
        }
        done
    }

    /// The earliest lease or drain deadline, to arm the expiry timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }
}

/// The table as a replacement process takes it over ([`Rib::save`]): times as what is left of
/// them, since the two processes share no monotonic clock.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedRib {
    routes: Vec<SavedRoute>,
    drains: Vec<SavedDrain>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct SavedRoute {
    prefix: IpNet,
    attrs: RouteAttrs,
    service: Option<String>,
    /// What is left of the lease; `None`: until withdrawn.
    lease_left_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct SavedDrain {
    prefixes: Option<Vec<IpNet>>,
    except: Vec<IpNet>,
    by: String,
    at: SystemTime,
    /// Until its routes are withdrawn from peers (0: they are).
    withdraw_in_ms: u64,
}

impl SavedRib {
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl Rib {
    /// The table and the drain orders as they stand at `now`.
    pub fn save(&self, now: Instant) -> SavedRib {
        let left = |t: Instant| t.saturating_duration_since(now).as_millis() as u64;
        SavedRib {
            routes: self
                .routes
                .iter()
                .map(|(prefix, route)| SavedRoute {
                    prefix: *prefix,
                    attrs: route.attrs.clone(),
                    service: route.service.clone(),
                    lease_left_ms: route.expires.map(left),
                })
                .collect(),
            drains: self
                .drains
                .iter()
                .map(|o| SavedDrain {
                    prefixes: o.prefixes.as_ref().map(|p| p.iter().copied().collect()),
                    except: o.except.iter().copied().collect(),
                    by: o.by.clone(),
                    at: o.at,
                    withdraw_in_ms: left(o.withdraw_at),
                })
                .collect(),
        }
    }

    /// The table `saved` describes, from `now`: the same routes with what was left of their
    /// leases (those run out are gone), under the same drains.
    pub fn restore(saved: SavedRib, now: Instant) -> Self {
        let mut rib = Rib {
            drains: saved
                .drains
                .into_iter()
                .map(|d| DrainOrder {
                    prefixes: d.prefixes.map(|p| p.into_iter().collect()),
                    except: d.except.into_iter().collect(),
                    by: d.by,
                    at: d.at,
                    withdraw_at: now + Duration::from_millis(d.withdraw_in_ms),
                })
                .collect(),
            ..Rib::default()
        };
        for route in saved.routes {
            let lease = route.lease_left_ms.map(Duration::from_millis);
            if lease.is_some_and(|l| l.is_zero()) || route.prefix.trunc() != route.prefix {
                continue;
            }
            rib.announce(route.prefix, route.attrs, route.service, lease, now);
        }
        rib
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn renewing_with_the_same_attributes_changes_nothing_for_peers() {
        let mut rib = Rib::default();
        let now = Instant::now();
        let lease = Some(Duration::from_secs(3));
        assert_eq!(
            rib.announce(
                p("198.51.100.0/24"),
                RouteAttrs::default(),
                None,
                lease,
                now
            ),
            Change::Added
        );
        let v = rib.snapshot().version;
        assert_eq!(
            rib.announce(
                p("198.51.100.0/24"),
                RouteAttrs::default(),
                None,
                lease,
                now
            ),
            Change::Renewed
        );
        assert_eq!(rib.snapshot().version, v);
        let prepended = RouteAttrs {
            prepend: 2,
            ..Default::default()
        };
        assert_eq!(
            rib.announce(p("198.51.100.0/24"), prepended, None, lease, now),
            Change::Updated
        );
        assert!(rib.snapshot().version > v);
    }

    #[test]
    fn leases_expire_unless_renewed() {
        let mut rib = Rib::default();
        let t0 = Instant::now();
        rib.announce(
            p("198.51.100.0/24"),
            RouteAttrs::default(),
            None,
            Some(Duration::from_secs(3)),
            t0,
        );
        rib.announce(p("203.0.113.0/24"), RouteAttrs::default(), None, None, t0);
        assert_eq!(rib.next_deadline(), Some(t0 + Duration::from_secs(3)));
        rib.announce(
            p("198.51.100.0/24"),
            RouteAttrs::default(),
            None,
            Some(Duration::from_secs(3)),
            t0 + Duration::from_secs(2),
        );
        assert!(
            rib.expire(t0 + Duration::from_secs(4)).is_empty(),
            "renewed lease still running"
        );
        let gone = rib.expire(t0 + Duration::from_secs(6));
        assert_eq!(gone, vec![(p("198.51.100.0/24"), "lease expired")]);
        assert_eq!(rib.len(), 1, "routes without a lease stay");
        assert_eq!(rib.next_deadline(), None);
    }

    #[test]
    fn drain_tags_graceful_shutdown_then_withdraws_until_undrain() {
        let mut rib = Rib::default();
        let t0 = Instant::now();
        let prefix = p("198.51.100.0/24");
        rib.announce(prefix, RouteAttrs::default(), None, None, t0);
        assert_eq!(rib.drain(None, Duration::from_secs(5), "alice", t0), 1);
        let snap = rib.snapshot();
        let route = &snap.routes[&prefix];
        assert!(route.draining());
        assert_eq!(route.drain.as_ref().unwrap().by, "alice");
        assert!(
            route
                .effective_attrs()
                .communities
                .contains(&Community::GRACEFUL_SHUTDOWN)
        );
        assert!(rib.expire(t0 + Duration::from_secs(4)).is_empty());
        assert_eq!(
            rib.expire(t0 + Duration::from_secs(5)),
            vec![(prefix, "drain delay over: withdrawn until undrain")]
        );
        assert!(rib.snapshot().routes[&prefix].withdrawn_by_drain());
        assert_eq!(rib.len(), 1, "kept in the table");
        assert_eq!(rib.undrain(None, t0 + Duration::from_secs(6)), 1);
        assert_eq!(rib.snapshot().routes[&prefix].drain, None);
    }

    #[test]
    fn an_operators_drain_outlasts_healthds_renewals_and_new_announcements() {
        let mut rib = Rib::default();
        let t0 = Instant::now();
        let lease = Some(Duration::from_secs(3));
        let (a, b) = (p("198.51.100.0/24"), p("203.0.113.0/24"));
        rib.announce(a, RouteAttrs::default(), Some("live".into()), lease, t0);
        rib.drain(None, Duration::from_secs(30), "bob", t0);
        // healthd renews every round: the drain stays, peers see no change.
        for i in 1..10u64 {
            let now = t0 + Duration::from_millis(130 * i);
            let change = rib.announce(a, RouteAttrs::default(), Some("live".into()), lease, now);
            assert_eq!(change, Change::Renewed);
        }
        assert!(rib.snapshot().routes[&a].draining());
        // A route announced after the drain is drained too.
        rib.announce(b, RouteAttrs::default(), None, None, t0);
        assert!(rib.snapshot().routes[&b].draining());
        // Withdrawn by healthd and announced again: still drained.
        rib.withdraw(&a);
        rib.announce(a, RouteAttrs::default(), None, lease, t0);
        assert!(rib.snapshot().routes[&a].draining());
        // Undrain one prefix of an all-prefix drain.
        assert_eq!(rib.undrain(Some(&[b]), t0), 1);
        assert!(!rib.snapshot().routes[&b].draining());
        assert!(rib.snapshot().routes[&a].draining());
    }

    #[test]
    fn a_saved_table_restores_with_its_leases_and_drains() {
        let mut rib = Rib::default();
        let now = Instant::now();
        let attrs = RouteAttrs {
            med: Some(7),
            ..RouteAttrs::default()
        };
        rib.announce(
            p("198.51.100.0/24"),
            attrs.clone(),
            Some("live".into()),
            Some(Duration::from_secs(3)),
            now,
        );
        rib.announce(p("2001:db8::/48"), RouteAttrs::default(), None, None, now);
        rib.announce(
            p("203.0.113.0/24"),
            RouteAttrs::default(),
            None,
            Some(Duration::from_secs(1)),
            now,
        );
        rib.drain(
            Some(&[p("2001:db8::/48")]),
            Duration::from_secs(30),
            "ops",
            now,
        );
        let later = now + Duration::from_millis(1500);
        let saved = rib.save(later);
        let json = serde_json::to_string(&saved).unwrap();
        let saved: SavedRib = serde_json::from_str(&json).unwrap();
        let elsewhere = Instant::now() + Duration::from_secs(100);
        let restored = Rib::restore(saved, elsewhere);
        let routes = restored.snapshot().routes;
        assert_eq!(routes.len(), 2, "the run-out lease is gone: {routes:?}");
        let live = &routes[&p("198.51.100.0/24")];
        assert_eq!(
            (live.attrs.clone(), live.service.as_deref()),
            (attrs, Some("live"))
        );
        assert_eq!(live.expires, Some(elsewhere + Duration::from_millis(1500)));
        let drained = &routes[&p("2001:db8::/48")];
        assert!(drained.draining(), "the drain holds: {drained:?}");
        assert_eq!(
            drained.drain.as_ref().unwrap().withdraw_at,
            elsewhere + Duration::from_millis(28_500)
        );
    }
}
