//! Liveness that means "serving", not "running": what `/healthz` answers.
//!
//! A process can be up while the part that does its job is not: a worker thread that died, a
//! task stuck on a peer that stopped reading, a listener whose accept loop ended. Each such
//! part registers here and proves itself alive, either by beating (a loop that must come round
//! within a bound) or by holding a flag (a listener that is accepting). `/healthz` answers 503
//! naming every part that is not serving, so a supervisor or the lab sees it and fails over.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The parts of one daemon that must be serving; cheap to clone.
#[derive(Clone, Default)]
pub struct Liveness {
    parts: Arc<Mutex<Vec<Arc<Part>>>>,
}

struct Part {
    name: String,
    /// `None`: a flag; `Some(bound)`: must beat at least this often.
    bound: Option<Duration>,
    /// Milliseconds since [`epoch`] of the last beat.
    last_beat: AtomicU64,
    serving: AtomicBool,
    /// Unregistered (its owner ended on purpose): no longer reported.
    retired: AtomicBool,
}

/// The handle a part keeps to say it is alive; clones share the part.
#[derive(Clone)]
pub struct Beat(Arc<Part>);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

impl Liveness {
    fn add(&self, name: String, bound: Option<Duration>) -> Beat {
        let part = Arc::new(Part {
            name,
            bound,
            last_beat: AtomicU64::new(now_ms()),
            serving: AtomicBool::new(true),
            retired: AtomicBool::new(false),
        });
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        parts.retain(|p| !p.retired.load(Ordering::Relaxed));
        parts.push(part.clone());
        Beat(part)
    }

    /// A loop that must call [`Beat::beat`] at least every `bound`.
    pub fn heartbeat(&self, name: impl Into<String>, bound: Duration) -> Beat {
        self.add(name.into(), Some(bound))
    }

    /// A part that is serving until it says otherwise ([`Beat::set_serving`]).
    pub fn flag(&self, name: impl Into<String>) -> Beat {
        self.add(name.into(), None)
    }

    /// What is not serving, each with why; empty when all is well.
    pub fn problems(&self) -> Vec<String> {
        let now = now_ms();
        let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        parts
            .iter()
            .filter(|p| !p.retired.load(Ordering::Relaxed))
            .filter_map(|p| {
                if !p.serving.load(Ordering::Relaxed) {
                    return Some(format!("{}: not serving", p.name));
                }
                let bound = p.bound?;
                let silent = now.saturating_sub(p.last_beat.load(Ordering::Relaxed));
                (silent > bound.as_millis() as u64)
                    .then(|| format!("{}: silent for {silent} ms (bound {bound:?})", p.name))
            })
            .collect()
    }
}

impl Beat {
    /// Alive now (and serving again if it had stopped).
    pub fn beat(&self) {
        self.0.last_beat.store(now_ms(), Ordering::Relaxed);
        self.0.serving.store(true, Ordering::Relaxed);
    }

    pub fn set_serving(&self, serving: bool) {
        if serving {
            self.beat();
        } else {
            self.0.serving.store(false, Ordering::Relaxed);
        }
    }

    /// The part ended on purpose (a reload removed it): stop reporting it.
    pub fn retire(&self) {
        self.0.retired.store(true, Ordering::Relaxed);
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Serving for as long as the returned guard lives: a loop holds it so that however it
    /// ends (returned, panicked, aborted) the part is reported down.
    pub fn serving_while(self) -> ServingGuard {
        self.set_serving(true);
        ServingGuard(self)
    }
}

/// Reports its part not serving when dropped (see [`Beat::serving_while`]).
pub struct ServingGuard(Beat);

impl Drop for ServingGuard {
    fn drop(&mut self) {
        self.0.set_serving(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_heartbeat_and_a_lowered_flag_are_reported_until_they_recover() {
        let liveness = Liveness::default();
        let worker = liveness.heartbeat("worker 0", Duration::from_millis(20));
        let listener = liveness.flag("tcp 127.0.0.1:53");
        assert!(liveness.problems().is_empty());
        std::thread::sleep(Duration::from_millis(40));
        let problems = liveness.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("worker 0: silent"), "{problems:?}");
        worker.beat();
        listener.set_serving(false);
        assert_eq!(liveness.problems(), ["tcp 127.0.0.1:53: not serving"]);
        listener.retire();
        assert!(liveness.problems().is_empty());
    }
}
