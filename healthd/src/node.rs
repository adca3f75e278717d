//! One node's state from its probe results: rise/fall hysteresis, then flap damping.
//!
//! The first probe result decides a node's state at once: a restarted healthd relearns its
//! site within one probe instead of holding every node down for `rise` rounds (which withdrew a
//! healthy site on every restart). From then on, rise and fall apply.
//!
//! Rise/fall keep single lost probes from moving routes. Damping works like BGP route flap
//! damping (RFC 2439): each state change adds a penalty that halves every `half_life`; above
//! `suppress` the node is held down until the penalty decays below `reuse`, so a node that
//! flaps causes one withdrawal, not one per flap.

use std::time::Instant;

use config::CheckProfile;
use config::check::Damping;
use serde::{Deserialize, Serialize};

/// A node's state as the site verdict sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    Down,
}

/// A node's tracker handed to a replacement healthd ([`NodeTracker::save`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedTracker {
    pub raw: Health,
    pub effective: Health,
    pub streak: u32,
    /// Decayed to the moment it was saved.
    pub penalty: f64,
    pub suppressed: bool,
    pub observed: bool,
    pub flaps: u64,
}

/// Why the effective state changed, for the log line an operator reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub to: Health,
    pub reason: String,
}

/// Probe results folded into a state.
#[derive(Debug, Clone)]
pub struct NodeTracker {
    rise: u32,
    fall: u32,
    damping: Option<Damping>,
    /// State after hysteresis, before damping.
    raw: Health,
    /// Consecutive results disagreeing with `raw`.
    streak: u32,
    penalty: f64,
    penalty_at: Instant,
    suppressed: bool,
    effective: Health,
    /// A result has been seen: the first one decides alone.
    observed: bool,
    pub flaps: u64,
}

impl NodeTracker {
    /// A node starts down until its first probe result says otherwise.
    pub fn new(profile: &CheckProfile, now: Instant) -> Self {
        Self {
            rise: profile.rise.max(1),
            fall: profile.fall.max(1),
            damping: profile.damping.clone(),
            raw: Health::Down,
            streak: 0,
            penalty: 0.0,
            penalty_at: now,
            suppressed: false,
            effective: Health::Down,
            observed: false,
            flaps: 0,
        }
    }

    pub fn health(&self) -> Health {
        self.effective
    }

    /// Whether the next probe should come sooner (a change is being confirmed).
    pub fn confirming(&self) -> bool {
        self.streak > 0
    }

    fn decayed(&self, now: Instant) -> f64 {
        let Some(d) = &self.damping else { return 0.0 };
        let half_life = d.half_life.get().as_secs_f64().max(0.001);
        let elapsed = now.saturating_duration_since(self.penalty_at).as_secs_f64();
        self.penalty * 0.5f64.powf(elapsed / half_life)
    }

    /// Folds in one probe result; returns the change of the effective state, if any.
    pub fn observe(&mut self, ok: bool, detail: &str, now: Instant) -> Option<Transition> {
        let result = if ok { Health::Up } else { Health::Down };
        let mut reason = String::new();
        if !self.observed {
            self.observed = true;
            self.raw = result;
            reason = match result {
                Health::Up => "first probe succeeded".to_owned(),
                Health::Down => format!("first probe failed: {detail}"),
            };
        } else if result == self.raw {
            self.streak = 0;
        } else {
            self.streak += 1;
            let needed = if result == Health::Up {
                self.rise
            } else {
                self.fall
            };
            if self.streak >= needed {
                self.raw = result;
                self.streak = 0;
                reason = match result {
                    Health::Up => format!("{needed} consecutive probes succeeded"),
                    Health::Down => format!("{needed} consecutive probes failed: {detail}"),
                };
                self.flaps += 1;
                if let Some(d) = &self.damping {
                    self.penalty = self.decayed(now) + d.penalty;
                    self.penalty_at = now;
                    if self.penalty > d.suppress {
                        self.suppressed = true;
                    }
                }
            }
        }
        self.settle(now, reason)
    }

    /// Re-evaluates damping as time passes (call on each round even without a new result).
    pub fn tick(&mut self, now: Instant) -> Option<Transition> {
        self.settle(now, String::new())
    }

    fn settle(&mut self, now: Instant, reason: String) -> Option<Transition> {
        if self.suppressed
            && let Some(d) = &self.damping
            && self.decayed(now) < d.reuse
        {
            self.suppressed = false;
        }
        let effective = if self.suppressed {
            Health::Down
        } else {
            self.raw
        };
        if effective == self.effective {
            return None;
        }
        self.effective = effective;
        let reason = if self.suppressed && self.raw == Health::Up {
            "flapping: held down by damping".to_owned()
        } else if reason.is_empty() {
            "damping penalty decayed below the reuse threshold".to_owned()
        } else {
            reason
        };
        Some(Transition {
            to: effective,
            reason,
        })
    }

    /// The tracker as a replacement healthd goes on with it.
    pub fn save(&self, now: Instant) -> SavedTracker {
        SavedTracker {
            raw: self.raw,
            effective: self.effective,
            streak: self.streak,
            penalty: self.decayed(now),
            suppressed: self.suppressed,
            observed: self.observed,
            flaps: self.flaps,
        }
    }

    /// A tracker for `profile` going on from `saved` (a replaced healthd's): rise, fall and
    /// damping apply from where they were, not from a first probe.
    pub fn restore(profile: &CheckProfile, saved: &SavedTracker, now: Instant) -> Self {
        let mut tracker = Self::new(profile, now);
        tracker.raw = saved.raw;
        tracker.effective = saved.effective;
        tracker.streak = saved.streak.min(tracker.rise.max(tracker.fall));
        tracker.penalty = if saved.penalty.is_finite() {
            saved.penalty.max(0.0)
        } else {
            0.0
        };
        tracker.suppressed = saved.suppressed && tracker.damping.is_some();
        tracker.observed = saved.observed;
        tracker.flaps = saved.flaps;
        tracker
    }

    /// How long until a suppressed node may come back.
    #[cfg(test)]
    pub fn suppressed_for(&self, now: Instant) -> Option<std::time::Duration> {
        let d = self.damping.as_ref().filter(|_| self.suppressed)?;
        let penalty = self.decayed(now);
        if penalty <= d.reuse {
            return Some(std::time::Duration::ZERO);
        }
        let half_lives = (penalty / d.reuse).log2();
        Some(d.half_life.get().mul_f64(half_lives))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use config::types::HumanDuration;

    fn profile(rise: u32, fall: u32, damping: Option<Damping>) -> CheckProfile {
        let text = format!("name = \"p\"\nkind = \"http\"\nrise = {rise}\nfall = {fall}\n");
        let mut p: CheckProfile = toml::from_str(&text).unwrap();
        p.damping = damping;
        p
    }

    #[test]
    fn rise_and_fall_need_consecutive_results() {
        let t0 = Instant::now();
        let mut n = NodeTracker::new(&profile(2, 3, None), t0);
        let first = n.observe(false, "refused", t0);
        assert_eq!(first, None, "the first result decides: down, as it started");
        assert_eq!(n.observe(true, "", t0), None, "one success is not enough");
        assert_eq!(n.observe(true, "", t0).map(|t| t.to), Some(Health::Up));
        assert_eq!(n.observe(false, "timeout", t0), None);
        assert_eq!(
            n.observe(true, "", t0),
            None,
            "a single failure is forgotten"
        );
        assert_eq!(n.observe(false, "timeout", t0), None);
        assert_eq!(n.observe(false, "timeout", t0), None);
        let down = n.observe(false, "timeout", t0).unwrap();
        assert_eq!(down.to, Health::Down);
        assert!(
            down.reason.contains("3 consecutive probes failed: timeout"),
            "{}",
            down.reason
        );
    }

    #[test]
    fn the_first_result_decides_at_once() {
        let t0 = Instant::now();
        let mut n = NodeTracker::new(&profile(3, 3, None), t0);
        let up = n.observe(true, "", t0).expect("up on the first success");
        assert_eq!(
            (up.to, up.reason.as_str()),
            (Health::Up, "first probe succeeded")
        );
        assert_eq!(n.observe(false, "timeout", t0), None, "then fall applies");
    }

    #[test]
    fn flapping_is_held_down_by_damping_until_the_penalty_decays() {
        let damping = Damping {
            penalty: 1000.0,
            suppress: 2500.0,
            reuse: 750.0,
            half_life: HumanDuration::from_secs(10),
        };
        let t0 = Instant::now();
        let mut n = NodeTracker::new(&profile(1, 1, Some(damping)), t0);
        // Known down to begin with (the first result sets the state without a flap).
        assert_eq!(n.observe(false, "starting", t0), None);
        let mut changes = 0;
        let mut t = t0;
        for i in 0..10 {
            t += Duration::from_millis(500);
            changes += usize::from(n.observe(i % 2 == 0, "flap", t).is_some());
        }
        // Up, down, then held down while it keeps flapping: two effective changes for ten.
        assert_eq!(changes, 2, "damping caps the churn");
        assert_eq!(n.health(), Health::Down);
        assert!(
            n.suppressed_for(t)
                .is_some_and(|d| d > Duration::from_secs(10))
        );
        // Healthy from now on: it comes back once the penalty falls below reuse.
        let mut back = None;
        for s in 1..200 {
            let now = t + Duration::from_secs(s);
            if let Some(tr) = n.observe(true, "", now) {
                back = Some((s, tr));
                break;
            }
        }
        let (after, tr) = back.expect("released eventually");
        assert_eq!(tr.to, Health::Up);
        assert!(after > 10, "not before a half-life or more: {after}s");
    }
}
