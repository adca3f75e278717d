//! What happened during a scenario, and when: the fault, routes at each upstream, DNS answers,
//! what each viewer saw. Monitors and viewers write; the report reads.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Since the scenario started.
    pub at: Duration,
    /// Who saw it: `fault`, `route ams-r1`, `dns Amsterdam`, `viewer Amsterdam`...
    pub lane: String,
    pub kind: EventKind,
    pub text: String,
}

/// What kind of observation, for the report's colours and the checks.
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

    pub fn record(&self, lane: &str, kind: EventKind, text: impl Into<String>) {
        self.record_at(self.now(), lane, kind, text);
    }

    pub fn record_at(&self, at: Duration, lane: &str, kind: EventKind, text: impl Into<String>) {
        let event = Event {
            at,
            lane: lane.to_string(),
            kind,
            text: text.into(),
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

    /// The first event of `kind` in `lane` at or after `after`.
    pub fn first(&self, lane: &str, kind: EventKind, after: Duration) -> Option<Event> {
        self.events()
            .into_iter()
            .find(|e| e.lane == lane && e.kind == kind && e.at >= after)
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}
