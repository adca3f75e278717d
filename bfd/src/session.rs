//! One BFD session in asynchronous mode (RFC 5880 section 6), without I/O: packets and time go
//! in, state changes and packets to send come out. The driver owns sockets and clocks.
//!
//! - **States**: Down → Init → Up by the three-way handshake of section 6.2; Up → Down when the
//!   peer's packets stop for the detection time, or when the peer says it is down.
//! - **Timers**: while not Up a session sends at most once a second (section 6.8.3); once Up it
//!   asks for the configured intervals with a Poll sequence, and the peer's Final makes them
//!   the agreed ones. We send every max(our Desired Min TX, the peer's Required Min RX), less
//!   up to 25% jitter (10% more with a multiplier of 1), and declare the peer dead after its
//!   multiplier times max(our Required Min RX, its Desired Min TX).
//! - **Packets out**: periodically, at once on a state change, and at once with Final when the
//!   peer polls. A passive session sends nothing until the peer has spoken.
//!
//! Echo, demand mode and authentication are not implemented; a peer that asks for demand mode
//! is served in asynchronous mode, as section 6.6 allows.

use std::time::{Duration, Instant};

use crate::packet::{Diag, Packet, State};

/// What a session is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How often we would like to send once Up.
    pub desired_min_tx: Duration,
    /// How often we can take the peer's packets.
    pub required_min_rx: Duration,
    /// Packets the peer may miss before we declare it dead.
    pub detect_mult: u8,
    /// Wait for the peer to speak first.
    pub passive: bool,
}

impl Default for Config {
    /// FRR's defaults: 300 ms both ways, multiplier 3.
    fn default() -> Self {
        Self {
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_mult: 3,
            passive: false,
        }
    }
}

/// The interval a session not Up sends at, at the slowest (section 6.8.3).
const SLOW_TX: Duration = Duration::from_secs(1);

/// A state change, for the driver to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub from: State,
    pub to: State,
    /// Why, when it went down.
    pub diag: Diag,
}

/// One session's state variables (section 6.8.1) and timers.
#[derive(Debug, Clone)]
pub struct Session {
    config: Config,
    state: State,
    remote_state: State,
    local_discr: u32,
    remote_discr: u32,
    local_diag: Diag,
    /// What we advertise now: 1 s while not Up, the configured interval once Up.
    desired_min_tx: Duration,
    /// The last Required Min RX the peer sent (1 µs until it has spoken, so we may send).
    remote_min_rx: Duration,
    remote_desired_min_tx: Duration,
    remote_detect_mult: u8,
    /// A Poll sequence runs: our packets carry Poll until the peer answers with Final.
    polling: bool,
    /// The peer polled: our next packet carries Final, and goes at once.
    answer_final: bool,
    /// Something changed that the peer should hear of at once.
    send_now: bool,
    next_tx: Option<Instant>,
    detect_at: Option<Instant>,
}

impl Session {
    /// A session in Down, with `local_discr` (unique and non-zero among the driver's sessions).
    pub fn new(config: Config, local_discr: u32) -> Self {
        Self {
            config,
            state: State::Down,
            remote_state: State::Down,
            local_discr,
            remote_discr: 0,
            local_diag: Diag::None,
            desired_min_tx: SLOW_TX.max(config.desired_min_tx),
            remote_min_rx: Duration::from_micros(1),
            remote_desired_min_tx: Duration::ZERO,
            remote_detect_mult: 0,
            polling: false,
            answer_final: false,
            send_now: !config.passive,
            next_tx: None,
            detect_at: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    pub fn local_discr(&self) -> u32 {
        self.local_discr
    }

    pub fn remote_discr(&self) -> u32 {
        self.remote_discr
    }

    pub fn diag(&self) -> Diag {
        self.local_diag
    }

    pub fn config(&self) -> Config {
        self.config
    }

    /// The time without a packet after which the peer is dead, once it has spoken.
    pub fn detection_time(&self) -> Option<Duration> {
        (self.remote_detect_mult > 0).then(|| {
            self.config.required_min_rx.max(self.remote_desired_min_tx)
                * u32::from(self.remote_detect_mult)
        })
    }

    /// The interval between our periodic packets, before jitter; `None` while the peer asks
    /// for none (Required Min RX 0).
    pub fn tx_interval(&self) -> Option<Duration> {
        (!self.remote_min_rx.is_zero()).then(|| self.desired_min_tx.max(self.remote_min_rx))
    }

    /// Takes a packet that passed [`Packet::decode`] and names this session (by its Your
    /// Discriminator, or by address while that is 0). Returns the state change it caused.
    pub fn receive(&mut self, packet: &Packet, now: Instant) -> Option<Change> {
        if packet.your_discr != 0 && packet.your_discr != self.local_discr {
            return None;
        }
        self.remote_discr = packet.my_discr;
        self.remote_state = packet.state;
        self.remote_min_rx = Duration::from_micros(u64::from(packet.required_min_rx_us));
        self.remote_desired_min_tx = Duration::from_micros(u64::from(packet.desired_min_tx_us));
        self.remote_detect_mult = packet.detect_mult;
        if packet.final_ && self.polling {
            self.polling = false;
        }
        if packet.poll {
            self.answer_final = true;
        }
        self.detect_at = self.detection_time().map(|d| now + d);
        if self.state == State::AdminDown {
            return None;
        }
        let from = self.state;
        let to = match (self.state, packet.state) {
            (State::Down | State::Init | State::Up, State::AdminDown) if from != State::Down => {
                self.local_diag = Diag::NeighborDown;
                State::Down
            }
            (State::Down, State::Down) => State::Init,
            (State::Down, State::Init) => State::Up,
            (State::Init, State::Init | State::Up) => State::Up,
            (State::Up, State::Down) => {
                self.local_diag = Diag::NeighborDown;
                State::Down
            }
            (state, _) => state,
        };
        self.change(from, to)
    }

    /// Declares the peer dead if its detection time has passed.
    pub fn expire(&mut self, now: Instant) -> Option<Change> {
        let due = self.detect_at.is_some_and(|at| now >= at);
        if !due {
            return None;
        }
        self.detect_at = None;
        self.remote_discr = 0;
        self.remote_state = State::Down;
        self.remote_detect_mult = 0;
        self.remote_min_rx = Duration::from_micros(1);
        let from = self.state;
        if matches!(from, State::Init | State::Up) {
            self.local_diag = Diag::DetectionTimeExpired;
            return self.change(from, State::Down);
        }
        None
    }

    /// Takes the session administratively down (the peer is told) or back.
    pub fn set_admin_down(&mut self, down: bool) -> Option<Change> {
        let from = self.state;
        match (down, from) {
            (true, State::AdminDown) | (false, State::Down | State::Init | State::Up) => None,
            (true, _) => {
                self.local_diag = Diag::AdminDown;
                self.change(from, State::AdminDown)
            }
            (false, State::AdminDown) => {
                self.local_diag = Diag::None;
                self.change(from, State::Down)
            }
        }
    }

    fn change(&mut self, from: State, to: State) -> Option<Change> {
        if from == to {
            return None;
        }
        self.state = to;
        self.send_now = true;
        // Fast intervals only while Up; every change of what we advertise is confirmed by a
        // Poll sequence (section 6.8.3).
        let desired = if to == State::Up {
            self.config.desired_min_tx
        } else {
            SLOW_TX.max(self.config.desired_min_tx)
        };
        if desired != self.desired_min_tx {
            self.desired_min_tx = desired;
            self.polling = true;
        }
        if to == State::Up {
            self.local_diag = Diag::None;
        }
        Some(Change {
            from,
            to,
            diag: self.local_diag,
        })
    }

    /// When the driver must call [`Session::transmit`] or [`Session::expire`] next.
    pub fn next_wakeup(&self) -> Option<Instant> {
        [self.next_tx, self.detect_at].into_iter().flatten().min()
    }

    /// The packet to send at `now`, if one is due: periodically, at once after a state change
    /// and with Final when polled. `jitter` in [0, 1) picks where in the allowed range the
    /// next periodic packet falls.
    pub fn transmit(&mut self, now: Instant, jitter: f64) -> Option<Packet> {
        let interval = self.tx_interval();
        // Passive before the peer has spoken, or a peer that asked for no packets: nothing
        // but the answer to a Poll (section 6.8.7).
        let silent = (self.config.passive && self.remote_discr == 0) || interval.is_none();
        let periodic = !silent && self.next_tx.is_none_or(|at| now >= at);
        let quiet_change = self.config.passive && self.remote_discr == 0;
        if !(self.answer_final || periodic || (self.send_now && !quiet_change)) {
            if silent {
                self.next_tx = None;
            }
            return None;
        }
        let packet = Packet {
            diag: self.local_diag,
            state: self.state,
            poll: self.polling && !self.answer_final,
            final_: self.answer_final,
            cpi: false,
            demand: false,
            detect_mult: self.config.detect_mult,
            my_discr: self.local_discr,
            your_discr: self.remote_discr,
            desired_min_tx_us: micros(self.desired_min_tx),
            required_min_rx_us: micros(self.config.required_min_rx),
            required_min_echo_rx_us: 0,
        };
        self.answer_final = false;
        self.send_now = false;
        self.next_tx = interval.filter(|_| !silent).map(|i| {
            // 75-100% of the interval, 75-90% with a multiplier of 1 (section 6.8.7).
            let span = if self.config.detect_mult == 1 {
                0.15
            } else {
                0.25
            };
            now + i.mul_f64(1.0 - span * jitter.clamp(0.0, 1.0))
        });
        Some(packet)
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Runs two sessions against each other for `span`, passing every packet at once.
    fn exchange(a: &mut Session, b: &mut Session, from: Instant, span: Duration) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut now = from;
        while now < from + span {
            step(a, b, now, &mut changes);
            step(b, a, now, &mut changes);
            now += MS;
        }
        changes
    }

    /// `tx`'s timers at `now`, and whatever it sends, through the wire format, to `rx`.
    fn step(tx: &mut Session, rx: &mut Session, now: Instant, changes: &mut Vec<Change>) {
        changes.extend(tx.expire(now));
        while let Some(p) = tx.transmit(now, 0.5) {
            let p = Packet::decode(&p.encode()).unwrap();
            changes.extend(rx.receive(&p, now));
        }
    }

    fn pair(config: Config) -> (Session, Session) {
        (Session::new(config, 11), Session::new(config, 22))
    }

    #[test]
    fn two_sessions_come_up_by_the_three_way_handshake_then_run_fast() {
        let (mut a, mut b) = pair(Config::default());
        let t0 = Instant::now();
        let changes = exchange(&mut a, &mut b, t0, 10 * MS);
        assert_eq!(
            (a.state(), b.state()),
            (State::Up, State::Up),
            "{changes:?}"
        );
        assert_eq!(a.remote_discr(), 22);
        assert_eq!(b.remote_discr(), 11);
        // The Poll sequence that brings the fast intervals in has ended.
        exchange(&mut a, &mut b, t0 + 10 * MS, 2000 * MS);
        assert!(!a.polling && !b.polling);
        assert_eq!(a.tx_interval(), Some(300 * MS));
        assert_eq!(a.detection_time(), Some(900 * MS));
    }

    #[test]
    fn silence_for_the_detection_time_takes_the_session_down() {
        let (mut a, mut b) = pair(Config::default());
        let t0 = Instant::now();
        exchange(&mut a, &mut b, t0, 2000 * MS);
        let last = t0 + 2000 * MS;
        // b stops: a hears nothing more.
        let mut now = last;
        let mut down = None;
        while now < last + 2000 * MS && down.is_none() {
            down = a.expire(now).map(|c| (now, c));
            let _ = a.transmit(now, 0.5);
            now += MS;
        }
        let (at, change) = down.expect("never declared down");
        assert_eq!(change.to, State::Down);
        assert_eq!(change.diag, Diag::DetectionTimeExpired);
        assert!(at - last <= 900 * MS, "{:?}", at - last);
        assert_eq!(a.remote_discr(), 0, "the peer is forgotten");
        // Down, a session slows to one packet a second and asks the peer to agree.
        let p = a.transmit(now + 2 * SLOW_TX, 0.0).unwrap();
        assert_eq!((p.state, p.desired_min_tx_us), (State::Down, 1_000_000));
        assert!(p.poll);
    }

    #[test]
    fn a_peer_saying_down_or_admin_down_takes_the_session_down() {
        for said in [State::Down, State::AdminDown] {
            let (mut a, mut b) = pair(Config::default());
            let t0 = Instant::now();
            exchange(&mut a, &mut b, t0, 2000 * MS);
            let mut p = b.transmit(t0 + 5000 * MS, 0.0).unwrap();
            p.state = said;
            let change = a.receive(&p, t0 + 5000 * MS).unwrap();
            assert_eq!((change.from, change.to), (State::Up, State::Down));
            assert_eq!(change.diag, Diag::NeighborDown);
        }
    }

    #[test]
    fn admin_down_is_told_to_the_peer_which_goes_down() {
        let (mut a, mut b) = pair(Config::default());
        let t0 = Instant::now();
        exchange(&mut a, &mut b, t0, 2000 * MS);
        assert!(a.set_admin_down(true).is_some());
        let changes = exchange(&mut a, &mut b, t0 + 2000 * MS, 10 * MS);
        assert_eq!(b.state(), State::Down, "{changes:?}");
        assert_eq!(b.diag(), Diag::NeighborDown);
        assert!(a.set_admin_down(false).is_some());
        exchange(&mut a, &mut b, t0 + 2010 * MS, 3000 * MS);
        assert_eq!((a.state(), b.state()), (State::Up, State::Up));
    }

    #[test]
    fn a_poll_is_answered_at_once_with_final() {
        let (mut a, _) = pair(Config::default());
        let t0 = Instant::now();
        let _ = a.transmit(t0, 0.0);
        let poll = Packet {
            diag: Diag::None,
            state: State::Down,
            poll: true,
            final_: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_discr: 99,
            your_discr: 0,
            desired_min_tx_us: 1_000_000,
            required_min_rx_us: 300_000,
            required_min_echo_rx_us: 0,
        };
        a.receive(&poll, t0 + MS);
        let answer = a.transmit(t0 + MS, 0.0).expect("answered at once");
        assert!(answer.final_ && !answer.poll);
        assert_eq!(answer.your_discr, 99);
    }

    #[test]
    fn a_passive_session_waits_for_the_peer_and_none_sends_to_a_peer_asking_for_nothing() {
        let passive = Config {
            passive: true,
            ..Config::default()
        };
        let mut a = Session::new(passive, 1);
        let t0 = Instant::now();
        assert_eq!(a.transmit(t0, 0.0), None);
        assert_eq!(a.transmit(t0 + 5000 * MS, 0.0), None);
        let mut hello = Session::new(Config::default(), 2)
            .transmit(t0, 0.0)
            .unwrap();
        a.receive(&hello, t0);
        assert!(a.transmit(t0, 0.0).is_some(), "speaks once spoken to");
        // Required Min RX 0: the peer wants no periodic packets.
        hello.required_min_rx_us = 0;
        hello.your_discr = 1;
        a.receive(&hello, t0 + MS);
        let _ = a.transmit(t0 + MS, 0.0);
        assert_eq!(a.transmit(t0 + 10_000 * MS, 0.0), None);
    }

    #[test]
    fn packets_for_another_discriminator_are_ignored() {
        let (mut a, mut b) = pair(Config::default());
        let mut p = b.transmit(Instant::now(), 0.0).unwrap();
        p.your_discr = 12345;
        assert_eq!(a.receive(&p, Instant::now()), None);
        assert_eq!(a.remote_discr(), 0);
    }

    #[test]
    fn periodic_packets_are_jittered_within_75_to_100_percent() {
        let (mut a, mut b) = pair(Config::default());
        let t0 = Instant::now();
        exchange(&mut a, &mut b, t0, 2000 * MS);
        let now = t0 + 3000 * MS;
        for (jitter, expected) in [(0.0, 300), (0.999, 225)] {
            let _ = a.transmit(now, jitter);
            let next = a.next_tx.unwrap() - now;
            assert!(
                next.as_millis().abs_diff(expected) <= 1,
                "{jitter}: {next:?}"
            );
            a.next_tx = Some(now);
        }
    }
}
