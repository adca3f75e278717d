//! What the console remembers beyond the health steering reads: each site's last feed document
//! (verdicts, announcements, node reasons, BGP sessions) and the recent events, told in words.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use feed::SiteFeed;
use serde::Serialize;

/// How many events the console keeps.
pub const EVENTS: usize = 200;

/// How an event reads: something back to normal, or something an operator should look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
}

/// One thing that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub site: String,
    pub level: Level,
    pub text: String,
}

/// The console's memory, shared by the feed followers, the admin routes and the console.
#[derive(Debug, Default)]
pub struct Board {
    inner: Mutex<Inner>,
    /// Moves with every change here, so a console stream knows when to send.
    version: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    feeds: HashMap<String, SiteFeed>,
    events: VecDeque<Event>,
}

impl Board {
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        // A poisoned lock only means a panic elsewhere mid-update; the maps stay whole.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut inner);
        self.version.fetch_add(1, Ordering::AcqRel);
        r
    }

    /// Records `doc`, the newest document of its site, and the events its changes make.
    pub fn feed(&self, doc: &SiteFeed) {
        self.with(|inner| {
            let events = changes(inner.feeds.get(&doc.site), doc);
            for (level, text) in events {
                push(&mut inner.events, &doc.site, level, text);
            }
            inner.feeds.insert(doc.site.clone(), doc.clone());
        });
    }

    /// Records an event that does not come from a document (a silent feed, an operator).
    pub fn note(&self, site: &str, level: Level, text: String) {
        self.with(|inner| push(&mut inner.events, site, level, text));
    }

    /// The last document of `site`.
    pub fn document(&self, site: &str) -> Option<SiteFeed> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.feeds.get(site).cloned()
    }

    /// The recent events, newest first.
    pub fn events(&self) -> Vec<Event> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.events.iter().rev().cloned().collect()
    }
}

fn push(events: &mut VecDeque<Event>, site: &str, level: Level, text: String) {
    if events.len() >= EVENTS {
        events.pop_front();
    }
    let at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    events.push_back(Event {
        at_ms,
        site: site.to_owned(),
        level,
        text,
    });
}

/// What changed from `old` to `new`, in words.
fn changes(old: Option<&SiteFeed>, new: &SiteFeed) -> Vec<(Level, String)> {
    let mut out = Vec::new();
    let Some(old) = old else {
        out.push((
            Level::Info,
            format!("feed heard (healthd instance {})", new.instance),
        ));
        return out;
    };
    if old.instance != new.instance {
        out.push((
            Level::Warn,
            format!(
                "healthd restarted (instance {} after {})",
                new.instance, old.instance
            ),
        ));
    }
    for s in &new.services {
        let was = old.services.iter().find(|o| o.name == s.name);
        if was.is_some_and(|w| w.healthy == s.healthy && w.announcement == s.announcement) {
            continue;
        }
        let level = if s.healthy { Level::Info } else { Level::Warn };
        let verdict = if s.healthy { "healthy" } else { "unhealthy" };
        out.push((
            level,
            format!(
                "service {}: {verdict}, {} ({})",
                s.name, s.announcement, s.reason
            ),
        ));
    }
    for n in &new.nodes {
        let was = old.nodes.iter().find(|o| o.name == n.name);
        if was.is_some_and(|w| w.healthy == n.healthy && w.draining == n.draining) {
            continue;
        }
        let text = match (n.healthy, n.draining) {
            (_, true) => (Level::Warn, format!("node {} draining", n.name)),
            (true, false) => (Level::Info, format!("node {} up", n.name)),
            (false, false) => (
                Level::Warn,
                format!(
                    "node {} down: {}",
                    n.name,
                    n.reason.as_deref().unwrap_or("no reason given")
                ),
            ),
        };
        out.push(text);
    }
    for p in &new.peers {
        let was = old.peers.iter().find(|o| o.name == p.name);
        if was.is_some_and(|w| w.state == p.state) {
            continue;
        }
        let level = if p.state == "Established" {
            Level::Info
        } else {
            Level::Warn
        };
        let from = was.map_or("new", |w| w.state.as_str());
        out.push((
            level,
            format!(
                "BGP session {} ({}): {from} -> {}",
                p.name, p.address, p.state
            ),
        ));
    }
    for p in &old.peers {
        if !new.peers.iter().any(|n| n.name == p.name) {
            out.push((
                Level::Warn,
                format!("BGP session {} no longer reported", p.name),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use feed::{NodeState, PeerState, ServiceState};

    fn doc(instance: &str, healthy: bool, draining: bool, peer: &str) -> SiteFeed {
        SiteFeed {
            site: "ams".into(),
            instance: instance.into(),
            generation: 1,
            services: vec![ServiceState {
                name: "live".into(),
                healthy,
                announcement: if healthy { "announced" } else { "withdrawn" }.into(),
                reason: "why".into(),
            }],
            nodes: vec![NodeState {
                name: "ams-1".into(),
                ipv4: None,
                ipv6: None,
                services: vec!["live".into()],
                healthy,
                load: 0.0,
                capacity_mbps: 1000,
                draining,
                reason: (!healthy).then(|| "3 probes failed".into()),
            }],
            peers: vec![PeerState {
                name: "transit-a".into(),
                address: "192.0.2.1".into(),
                state: peer.into(),
                since: 0,
                prefixes_advertised: 1,
                bfd: None,
            }],
        }
    }

    fn texts(board: &Board) -> Vec<String> {
        board.events().into_iter().map(|e| e.text).collect()
    }

    #[test]
    fn each_change_of_a_document_is_one_event_and_an_unchanged_one_none() {
        let board = Board::default();
        board.feed(&doc("a", true, false, "Established"));
        assert_eq!(texts(&board), ["feed heard (healthd instance a)"]);
        board.feed(&doc("a", true, false, "Established"));
        assert_eq!(board.events().len(), 1);
        board.feed(&doc("a", true, true, "Established"));
        assert_eq!(texts(&board)[0], "node ams-1 draining");
        board.feed(&doc("a", false, false, "Active"));
        let t = texts(&board);
        assert_eq!(
            t[0],
            "BGP session transit-a (192.0.2.1): Established -> Active"
        );
        assert_eq!(t[1], "node ams-1 down: 3 probes failed");
        assert_eq!(t[2], "service live: unhealthy, withdrawn (why)");
        board.feed(&doc("b", false, false, "Active"));
        assert_eq!(texts(&board)[0], "healthd restarted (instance b after a)");
        assert_eq!(board.document("ams").unwrap().instance, "b");
    }

    #[test]
    fn the_board_keeps_the_newest_events_only() {
        let board = Board::default();
        for i in 0..EVENTS + 10 {
            board.note("ams", Level::Info, i.to_string());
        }
        let events = board.events();
        assert_eq!(events.len(), EVENTS);
        assert_eq!(events[0].text, (EVENTS + 9).to_string());
    }
}
