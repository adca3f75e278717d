//! The routes this speaker originates: what healthd and operators asked for, each with an
//! optional lease, and the drain state.
//!
//! The table is owned by the speaker task; every change produces a new immutable [`Snapshot`]
//! that peer sessions diff against what they advertised, so a session never blocks the table.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::types::Community;
use imbl::OrdMap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::route::RouteAttrs;

/// One originated route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Announcement {
    pub attrs: RouteAttrs,
    /// The service the prefix belongs to, for per-peer export policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// When the lease runs out; `None` means until withdrawn.
    #[serde(skip)]
    pub expires: Option<Instant>,
    /// When a drain will withdraw the route; the route carries GRACEFUL_SHUTDOWN until then.
    #[serde(skip)]
    pub draining_until: Option<Instant>,
}

impl Announcement {
    /// The attributes as exported: drained routes carry GRACEFUL_SHUTDOWN (RFC 8326 section 4).
    pub fn effective_attrs(&self) -> RouteAttrs {
        let mut attrs = self.attrs.clone();
        if self.draining_until.is_some()
            && !attrs.communities.contains(&Community::GRACEFUL_SHUTDOWN)
        {
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
    pub routes: OrdMap<IpNet, Arc<Announcement>>,
}

/// The table with its lease and drain deadlines.
#[derive(Debug, Default)]
pub struct Rib {
    routes: OrdMap<IpNet, Arc<Announcement>>,
    /// Every route's next deadline (lease or drain), to expire without scanning the table.
    deadlines: BTreeSet<(Instant, IpNet)>,
    version: u64,
}

/// What a change did, for logs and the control API's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    Added,
    Updated,
    /// Same attributes; only the lease moved.
    Renewed,
    Removed,
    Unknown,
}

fn deadline(route: &Announcement) -> Option<Instant> {
    [route.expires, route.draining_until]
        .into_iter()
        .flatten()
        .min()
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

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    fn put(&mut self, prefix: IpNet, route: Announcement) {
        if let Some(old) = self.routes.get(&prefix).and_then(|r| deadline(r)) {
            self.deadlines.remove(&(old, prefix));
        }
        if let Some(t) = deadline(&route) {
            self.deadlines.insert((t, prefix));
        }
        self.routes.insert(prefix, Arc::new(route));
    }

    /// Announces or renews `prefix`. Renewing with the same attributes does not disturb peers;
    /// announcing a draining route again cancels the drain.
    pub fn announce(
        &mut self,
        prefix: IpNet,
        attrs: RouteAttrs,
        service: Option<String>,
        lease: Option<Duration>,
        now: Instant,
    ) -> Change {
        let expires = lease.map(|l| now + l);
        let new = Announcement {
            attrs,
            service,
            expires,
            draining_until: None,
        };
        let change = match self.routes.get(&prefix) {
            None => Change::Added,
            Some(old)
                if old.attrs == new.attrs
                    && old.service == new.service
                    && old.draining_until.is_none() =>
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

    /// Starts draining the given prefixes (all when `None`): GRACEFUL_SHUTDOWN now, withdraw
    /// after `delay`. Returns how many routes started draining.
    pub fn drain(&mut self, prefixes: Option<&[IpNet]>, delay: Duration, now: Instant) -> usize {
        let chosen: Vec<(IpNet, Arc<Announcement>)> = self
            .routes
            .iter()
            .filter(|(prefix, route)| {
                route.draining_until.is_none() && prefixes.is_none_or(|list| list.contains(prefix))
            })
            .map(|(p, r)| (*p, r.clone()))
            .collect();
        for (prefix, route) in &chosen {
            let mut drained = Announcement::clone(route);
            drained.draining_until = Some(now + delay);
            self.put(*prefix, drained);
        }
        if !chosen.is_empty() {
            self.version += 1;
        }
        chosen.len()
    }

    /// Removes routes whose lease or drain ran out; returns them with the reason.
    pub fn expire(&mut self, now: Instant) -> Vec<(IpNet, &'static str)> {
        let mut gone = Vec::new();
        while let Some(&(t, prefix)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(route) = self.routes.get(&prefix) else {
                continue;
            };
            let reason = if route.expires.is_some_and(|e| e <= now) {
                "lease expired"
            } else if route.draining_until.is_some_and(|d| d <= now) {
                "drain completed"
            } else {
                continue;
            };
            self.routes.remove(&prefix);
            gone.push((prefix, reason));
        }
        if !gone.is_empty() {
            self.version += 1;
        }
        gone
    }

    /// The earliest lease or drain deadline, to arm the expiry timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
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
    fn drain_tags_graceful_shutdown_then_withdraws() {
        let mut rib = Rib::default();
        let t0 = Instant::now();
        rib.announce(p("198.51.100.0/24"), RouteAttrs::default(), None, None, t0);
        assert_eq!(rib.drain(None, Duration::from_secs(5), t0), 1);
        let snap = rib.snapshot();
        let route = &snap.routes[&p("198.51.100.0/24")];
        assert!(
            route
                .effective_attrs()
                .communities
                .contains(&Community::GRACEFUL_SHUTDOWN)
        );
        assert!(rib.expire(t0 + Duration::from_secs(4)).is_empty());
        assert_eq!(
            rib.expire(t0 + Duration::from_secs(5)),
            vec![(p("198.51.100.0/24"), "drain completed")]
        );
    }

    #[test]
    fn announcing_again_cancels_a_drain() {
        let mut rib = Rib::default();
        let t0 = Instant::now();
        rib.announce(p("198.51.100.0/24"), RouteAttrs::default(), None, None, t0);
        rib.drain(None, Duration::from_secs(5), t0);
        assert_eq!(
            rib.announce(p("198.51.100.0/24"), RouteAttrs::default(), None, None, t0),
            Change::Updated
        );
        assert!(rib.expire(t0 + Duration::from_secs(10)).is_empty());
    }
}
