//! What happened during a scenario, and when: the fault, routes at each upstream, DNS answers,
//! what each viewer saw. Monitors and viewers write typed observations; the checks read them
//! as such, and the report renders them as text.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lanes of a timeline, named in one place.
pub mod lane {
    pub const FAULT: &str = "fault";

    /// Where a router sends the prefix.
    pub fn route(router: &str) -> String {
        format!("route {router}")
    }

    /// geodns's answer for a city (asked with the city's subnet).
    pub fn dns(city: &str) -> String {
        format!("dns {city}")
    }

    /// The viewers' resolver's answer, asked from a city.
    pub fn resolver(city: &str) -> String {
        format!("resolver {city}")
    }

    /// What a viewer in a city saw.
    pub fn viewer(city: &str) -> String {
        format!("viewer {city}")
    }
}

/// One observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Since the scenario started.
    pub at: Duration,
    /// Who saw it (see [`lane`]).
    pub lane: String,
    pub what: What,
}

impl Event {
    pub fn kind(&self) -> EventKind {
        self.what.kind()
    }

    pub fn text(&self) -> String {
        self.what.to_string()
    }
}

/// What was seen.
#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// The fault went in.
    Fault(String),
    /// The fault was taken out.
    Restore,
    Info(String),
    Error(String),
    /// A site router's route to the prefix: through its own site's speaker, or not (withdrawn
    /// there: through other routers, or none when `hops` is empty).
    SiteRoute {
        announced: bool,
        hops: Vec<String>,
    },
    /// The transit network's route to the prefix; none when `hops` is empty.
    TransitRoute {
        hops: Vec<String>,
    },
    /// A DNS answer: the sites of its addresses, and the addresses.
    Answer {
        sites: Vec<String>,
        addresses: Vec<IpAddr>,
    },
    /// A query got no answer in time and was answered when asked again, as a resolver does.
    Retried(String),
    /// geodns's own account of the sites' feeds, asked on its admin API.
    FeedsStale {
        node: String,
        stale: usize,
        total: usize,
    },
    /// A geodns instance's own account before the repair: `/healthz` and panics contained.
    Served {
        node: String,
        healthz: u16,
        panics: u64,
    },
    /// A viewer resolved the service name.
    Resolved(Vec<IpAddr>),
    /// A viewer started playing.
    Playing(IpAddr),
    /// A viewer's segments come from another server.
    SegmentsFrom(IpAddr),
    /// A viewer got a segment.
    Segment {
        server: IpAddr,
        sequence: u64,
    },
    /// A viewer's buffer ran empty.
    StallStart,
    /// A viewer plays again after a stall this long.
    StallEnd(Duration),
}

/// What kind of observation, for the report's marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Fault,
    Restore,
    /// A route or an answer changed.
    Change,
    /// A viewer got a segment.
    Segment,
    Error,
    StallStart,
    StallEnd,
    Info,
}

impl What {
    pub fn kind(&self) -> EventKind {
        match self {
            What::Fault(_) => EventKind::Fault,
            What::Restore => EventKind::Restore,
            What::Error(_) => EventKind::Error,
            What::SiteRoute { .. }
            | What::TransitRoute { .. }
            | What::Answer { .. }
            | What::SegmentsFrom(_) => EventKind::Change,
            What::Segment { .. } => EventKind::Segment,
            What::StallStart => EventKind::StallStart,
            What::StallEnd(_) => EventKind::StallEnd,
            What::Info(_)
            | What::Retried(_)
            | What::FeedsStale { .. }
            | What::Served { .. }
            | What::Resolved(_)
            | What::Playing(_) => EventKind::Info,
        }
    }

    /// A site router's route, withdrawn (not through its site's speaker).
    pub fn is_withdrawn_route(&self) -> bool {
        matches!(
            self,
            What::SiteRoute {
                announced: false,
                ..
            }
        )
    }

    /// The sites of a DNS answer.
    pub fn answer_sites(&self) -> Option<&[String]> {
        match self {
            What::Answer { sites, .. } => Some(sites),
            _ => None,
        }
    }

    /// The addresses of a DNS answer.
    pub fn answer_addresses(&self) -> Option<&[IpAddr]> {
        match self {
            What::Answer { addresses, .. } => Some(addresses),
            _ => None,
        }
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for What {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            What::Fault(text) | What::Info(text) | What::Error(text) => f.write_str(text),
            What::Restore => f.write_str("repaired"),
            What::SiteRoute { announced, hops } => {
                let state = if *announced { "announced" } else { "withdrawn" };
                if hops.is_empty() {
                    write!(f, "{state}: no route")
                } else {
                    write!(f, "{state}: via {}", hops.join(", "))
                }
            }
            What::TransitRoute { hops } if hops.is_empty() => f.write_str("no route"),
            What::TransitRoute { hops } => write!(f, "via {}", hops.join(", ")),
            What::Answer { sites, addresses } => {
                write!(f, "{}: {}", sites.join("+"), join(addresses))
            }
            What::Retried(text) => write!(f, "lost, answered on retry: {text}"),
            What::FeedsStale { node, stale, total } => {
                write!(
                    f,
                    "geodns sees {stale} of {total} feeds past their grace at {node}"
                )
            }
            What::Served {
                node,
                healthz,
                panics,
            } => write!(f, "geodns at {node}: /healthz {healthz}, {panics} panics"),
            What::Resolved(addresses) => write!(f, "resolved {}", join(addresses)),
            What::Playing(server) => write!(f, "playing from {server}"),
            What::SegmentsFrom(server) => write!(f, "segments from {server}"),
            What::Segment { server, sequence } => write!(f, "{server} seq {sequence}"),
            What::StallStart => f.write_str("buffer empty"),
            What::StallEnd(d) => write!(f, "stalled {:.2}s", d.as_secs_f64()),
        }
    }
}

/// Shared, append-only record of a scenario.
#[derive(Debug, Clone)]
pub struct Timeline {
    start: Instant,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Timeline {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            events: Arc::default(),
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// Time since the start.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn record(&self, lane: &str, what: What) {
        self.record_at(self.now(), lane, what);
    }

    pub fn record_at(&self, at: Duration, lane: &str, what: What) {
        let event = Event {
            at,
            lane: lane.to_string(),
            what,
        };
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }

    /// Every event so far, in time order.
    pub fn events(&self) -> Vec<Event> {
        let mut events = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        events.sort_by_key(|e| e.at);
        events
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}
