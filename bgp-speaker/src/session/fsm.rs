//! The BGP finite state machine (RFC 4271 section 8), without I/O.
//!
//! [`Fsm::handle`] takes one [`Event`] and returns the [`Action`]s the session task must carry
//! out (connect, send, close, arm timers, report the session up or down). Nothing here touches
//! sockets or clocks, so every transition is unit-tested.

use std::time::Duration;

use serde::Serialize;

use crate::packet::open::{Negotiated, Open, negotiate};
use crate::packet::{Notification, keepalive};

/// Session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Connect => "Connect",
            Self::Active => "Active",
            Self::OpenSent => "OpenSent",
            Self::OpenConfirm => "OpenConfirm",
            Self::Established => "Established",
        }
    }

    /// Value of the per-peer state gauge (BGP MIB numbering).
    pub fn number(self) -> u8 {
        match self {
            Self::Idle => 1,
            Self::Connect => 2,
            Self::Active => 3,
            Self::OpenSent => 4,
            Self::OpenConfirm => 5,
            Self::Established => 6,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Administrative start (the peer is configured).
    Start,
    /// Administrative stop, with the reason sent in the Cease (RFC 8203).
    Stop {
        reason: String,
    },
    ConnectRetryExpired,
    HoldTimerExpired,
    KeepaliveTimerExpired,
    /// A TCP connection to or from the peer is up.
    TcpConnected,
    /// The TCP connection failed or closed.
    TcpFailed,
    OpenReceived(Open),
    KeepaliveReceived,
    /// An UPDATE (body after the header); its contents are the session task's business.
    UpdateReceived,
    RouteRefreshReceived,
    NotificationReceived(Notification),
    /// The peer sent something we must answer with this NOTIFICATION (bad header, bad OPEN,
    /// an UPDATE that RFC 7606 says resets the session).
    ProtocolError(Notification),
    /// The BFD session with the peer went down: the path is gone, whatever TCP still thinks.
    BfdDown,
    /// A connection collision (RFC 4271 section 6.8) was resolved for the other connection
    /// ([`Fsm::collision_keeps_other`]): our OPEN already went out on it and this is the
    /// peer's OPEN from it. The session carries on there as if that OPEN had just arrived.
    SwitchConnection(Open),
}

/// What the session task must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to the peer (unless the peer is passive).
    Connect,
    /// Write these bytes.
    Send(Vec<u8>),
    /// Close the TCP connection.
    Disconnect,
    ArmConnectRetry(Duration),
    ArmHold(Duration),
    DisarmHold,
    ArmKeepalive(Duration),
    DisarmKeepalive,
    /// The session reached Established.
    Up(Box<Negotiated>),
    /// The session left Established, or an attempt failed; the reason is for logs and the CLI.
    Down(DownReason),
}

/// Why a session went down (or never came up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// We sent this NOTIFICATION.
    Sent(Notification),
    /// The peer sent this NOTIFICATION.
    Received(Notification),
    /// The TCP connection failed or was closed by the peer.
    ConnectionLost,
    /// An operator stopped the session.
    Stopped,
}

impl DownReason {
    /// A short fixed name for each kind of reason, for metrics, in the order of
    /// [`DownReason::index`].
    pub const LABELS: [&'static str; 4] = [
        "notification_sent",
        "notification_received",
        "connection_lost",
        "stopped",
    ];

    /// The place of the reason's kind in [`DownReason::LABELS`].
    pub fn index(&self) -> usize {
        match self {
            Self::Sent(_) => 0,
            Self::Received(_) => 1,
            Self::ConnectionLost => 2,
            Self::Stopped => 3,
        }
    }
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sent(n) => write!(f, "sent {n}"),
            Self::Received(n) => write!(f, "received {n}"),
            Self::ConnectionLost => f.write_str("connection lost"),
            Self::Stopped => f.write_str("administratively stopped"),
        }
    }
}

/// Settings the FSM needs from the peer configuration.
#[derive(Debug, Clone)]
pub struct FsmConfig {
    pub local: Open,
    pub remote_asn: u32,
    pub passive: bool,
    pub keepalive: Option<u16>,
    pub connect_retry: Duration,
}

/// Longest delay between connection attempts.
const MAX_CONNECT_RETRY: Duration = Duration::from_secs(60);
/// Hold timer while waiting for the peer's OPEN (RFC 4271 section 8.2.2 suggests 4 minutes).
const OPEN_HOLD: Duration = Duration::from_secs(240);

/// One peer's state machine.
#[derive(Debug)]
pub struct Fsm {
    config: FsmConfig,
    state: State,
    negotiated: Option<Negotiated>,
    retry: Duration,
}

impl Fsm {
    pub fn new(config: FsmConfig) -> Self {
        let retry = config.connect_retry;
        Self {
            config,
            state: State::Idle,
            negotiated: None,
            retry,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    pub fn local_open(&self) -> &Open {
        &self.config.local
    }

    /// Feeds one event; returns the actions in the order they must be carried out.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        use Event as E;
        use State as S;
        match (self.state, event) {
            (S::Idle, E::Start) => self.start_connecting(),
            (_, E::Start) => Vec::new(),

            (S::Idle, E::Stop { .. }) => Vec::new(),
            (S::Connect | S::Active, E::Stop { .. }) => {
                self.state = S::Idle;
                vec![
                    Action::Disconnect,
                    Action::DisarmHold,
                    Action::DisarmKeepalive,
                    Action::Down(DownReason::Stopped),
                ]
            }
            (_, E::Stop { reason }) => {
                let n = Notification::cease(
                    crate::packet::notification::cease::ADMIN_SHUTDOWN,
                    &reason,
                );
                let mut actions = vec![Action::Send(n.encode())];
                actions.extend(self.drop_session(DownReason::Stopped, false));
                self.state = S::Idle;
                actions
            }

            (S::Idle, _) => Vec::new(),

            (S::Connect | S::Active, E::ConnectRetryExpired) => {
                self.state = if self.config.passive {
                    S::Active
                } else {
                    S::Connect
                };
                let mut actions = Vec::new();
                if !self.config.passive {
                    actions.push(Action::Connect);
                }
                actions.push(Action::ArmConnectRetry(self.retry));
                actions
            }
            (S::Connect | S::Active, E::TcpConnected) => {
                self.state = S::OpenSent;
                vec![
                    Action::Send(self.config.local.encode()),
                    Action::ArmHold(OPEN_HOLD),
                ]
            }
            (S::Connect, E::TcpFailed) => {
                // Stay in Connect and wait for the retry timer (section 8.2.2, event 18).
                self.state = if self.config.passive {
                    S::Active
                } else {
                    S::Connect
                };
                vec![Action::Disconnect]
            }
            (S::Connect | S::Active, E::NotificationReceived(_) | E::TcpFailed) => {
                vec![Action::Disconnect]
            }
            (S::Connect | S::Active, _) => Vec::new(),

            (S::OpenSent | S::OpenConfirm, E::SwitchConnection(open)) => {
                self.state = S::OpenSent;
                self.negotiated = None;
                self.open_received(&open)
            }
            (S::OpenSent, E::OpenReceived(open)) => self.open_received(&open),
            (S::OpenConfirm, E::KeepaliveReceived) => {
                let Some(n) = self.negotiated.clone() else {
                    let n = Notification::fsm_error(2);
                    return self.fail(DownReason::Sent(n.clone()), Some(n));
                };
                self.state = S::Established;
                // A session that came up resets the back-off.
                self.retry = self.config.connect_retry;
                let mut actions = Vec::new();
                if n.hold_time > 0 {
                    actions.push(Action::ArmHold(Duration::from_secs(u64::from(n.hold_time))));
                }
                actions.push(Action::Up(Box::new(n)));
                actions
            }
            (
                S::Established,
                E::KeepaliveReceived | E::UpdateReceived | E::RouteRefreshReceived,
            ) => self.rearm_hold(),
            (S::OpenSent | S::OpenConfirm | S::Established, E::KeepaliveTimerExpired) => {
                let mut actions = vec![Action::Send(keepalive())];
                if let Some(n) = &self.negotiated
                    && n.keepalive > 0
                {
                    actions.push(Action::ArmKeepalive(Duration::from_secs(u64::from(
                        n.keepalive,
                    ))));
                }
                actions
            }
            (_, E::BfdDown) => {
                let n = Notification::cease(crate::packet::notification::cease::BFD_DOWN, "");
                self.fail(DownReason::Sent(n.clone()), Some(n))
            }
            (_, E::HoldTimerExpired) => {
                let n = Notification::hold_timer_expired();
                self.fail(DownReason::Sent(n.clone()), Some(n))
            }
            (_, E::NotificationReceived(n)) => self.fail(DownReason::Received(n), None),
            (_, E::TcpFailed) => self.fail(DownReason::ConnectionLost, None),
            (_, E::ProtocolError(n)) => self.fail(DownReason::Sent(n.clone()), Some(n)),
            (_, E::ConnectRetryExpired) => Vec::new(),
            // Anything else out of order is an FSM error (RFC 6608 subcode by state).
            (state, _) => {
                let sub = match state {
                    S::OpenSent => 1,
                    S::OpenConfirm => 2,
                    _ => 3,
                };
                let n = Notification::fsm_error(sub);
                self.fail(DownReason::Sent(n.clone()), Some(n))
            }
        }
    }

    /// The peer's OPEN in OpenSent: negotiate, or refuse it.
    fn open_received(&mut self, open: &Open) -> Vec<Action> {
        match negotiate(
            &self.config.local,
            open,
            self.config.remote_asn,
            self.config.keepalive,
        ) {
            Ok(n) => {
                let hold = Duration::from_secs(u64::from(n.hold_time));
                let keep = Duration::from_secs(u64::from(n.keepalive));
                self.negotiated = Some(n);
                self.state = State::OpenConfirm;
                let mut actions = vec![Action::Send(keepalive())];
                if hold.is_zero() {
                    actions.push(Action::DisarmHold);
                } else {
                    actions.push(Action::ArmHold(hold));
                    actions.push(Action::ArmKeepalive(keep));
                }
                actions
            }
            Err(n) => self.fail(DownReason::Sent(n.clone()), Some(n)),
        }
    }

    /// Which connection survives a collision (RFC 4271 section 6.8) when the other one's OPEN
    /// arrives: the one opened by the speaker with the higher BGP identifier. `current_outgoing`
    /// says whether the connection the session is on was opened by us. True: switch to the
    /// other ([`Event::SwitchConnection`]); false: close the other. Once Established, the
    /// session always stays.
    pub fn collision_keeps_other(&self, other: &Open, current_outgoing: bool) -> bool {
        if self.state == State::Established {
            return false;
        }
        let ours = u32::from(self.config.local.router_id);
        let theirs = u32::from(other.router_id);
        // The other connection was opened by the peer when ours is outgoing, and by us when
        // ours was accepted.
        if ours < theirs {
            current_outgoing
        } else {
            !current_outgoing
        }
    }

    fn start_connecting(&mut self) -> Vec<Action> {
        self.retry = self.config.connect_retry;
        if self.config.passive {
            self.state = State::Active;
            vec![Action::ArmConnectRetry(self.retry)]
        } else {
            self.state = State::Connect;
            vec![Action::Connect, Action::ArmConnectRetry(self.retry)]
        }
    }

    fn rearm_hold(&self) -> Vec<Action> {
        match &self.negotiated {
            Some(n) if n.hold_time > 0 => {
                vec![Action::ArmHold(Duration::from_secs(u64::from(n.hold_time)))]
            }
            _ => Vec::new(),
        }
    }

    /// Tears the connection down and goes back to trying, with a longer back-off.
    fn fail(&mut self, reason: DownReason, notify: Option<Notification>) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(n) = notify {
            actions.push(Action::Send(n.encode()));
        }
        actions.extend(self.drop_session(reason, true));
        actions
    }

    fn drop_session(&mut self, reason: DownReason, retry: bool) -> Vec<Action> {
        self.negotiated = None;
        let mut actions = vec![
            Action::Disconnect,
            Action::DisarmHold,
            Action::DisarmKeepalive,
            Action::Down(reason),
        ];
        if retry {
            self.state = if self.config.passive {
                State::Active
            } else {
                State::Connect
            };
            // Exponential back-off so a broken peer is not hammered (section 8.1.1 damping).
            self.retry = (self.retry * 2).min(MAX_CONNECT_RETRY);
            actions.push(Action::ArmConnectRetry(self.retry));
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::packet::open::Capabilities;

    fn open(asn: u32, id: [u8; 4], hold: u16) -> Open {
        Open {
            asn,
            hold_time: hold,
            router_id: Ipv4Addr::from(id),
            caps: Capabilities {
                ipv4_unicast: true,
                ..Default::default()
            },
        }
    }

    fn fsm(passive: bool) -> Fsm {
        Fsm::new(FsmConfig {
            local: open(65001, [10, 0, 0, 1], 9),
            remote_asn: 65000,
            passive,
            keepalive: None,
            connect_retry: Duration::from_secs(1),
        })
    }

    fn up(f: &mut Fsm) {
        f.handle(Event::Start);
        f.handle(Event::TcpConnected);
        f.handle(Event::OpenReceived(open(65000, [10, 0, 0, 2], 90)));
        let actions = f.handle(Event::KeepaliveReceived);
        assert!(matches!(actions.last(), Some(Action::Up(_))));
    }

    #[test]
    fn active_peer_connects_and_reaches_established() {
        let mut f = fsm(false);
        assert_eq!(
            f.handle(Event::Start),
            vec![
                Action::Connect,
                Action::ArmConnectRetry(Duration::from_secs(1))
            ]
        );
        let actions = f.handle(Event::TcpConnected);
        assert!(
            matches!(&actions[0], Action::Send(b) if b[18] == 1),
            "sends OPEN"
        );
        assert_eq!(f.state(), State::OpenSent);
        let actions = f.handle(Event::OpenReceived(open(65000, [10, 0, 0, 2], 90)));
        assert_eq!(f.state(), State::OpenConfirm);
        assert!(actions.contains(&Action::ArmHold(Duration::from_secs(9))));
        assert!(actions.contains(&Action::ArmKeepalive(Duration::from_secs(3))));
        f.handle(Event::KeepaliveReceived);
        assert_eq!(f.state(), State::Established);
    }

    #[test]
    fn a_collision_keeps_the_connection_of_the_higher_identifier() {
        let mut f = fsm(false);
        f.handle(Event::Start);
        f.handle(Event::TcpConnected);
        // We are 10.0.0.1. A peer with a higher identifier wins: its connection (the incoming
        // one, the other when ours is outgoing) stays.
        let higher = open(65000, [10, 0, 0, 2], 90);
        let lower = open(65000, [10, 0, 0, 0], 90);
        assert!(f.collision_keeps_other(&higher, true));
        assert!(!f.collision_keeps_other(&higher, false));
        assert!(!f.collision_keeps_other(&lower, true));
        assert!(f.collision_keeps_other(&lower, false));
        // Switching: the session goes on on the other connection with the OPEN it brought,
        // without sending another OPEN.
        let actions = f.handle(Event::SwitchConnection(higher.clone()));
        assert_eq!(f.state(), State::OpenConfirm);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::Send(b) if b[18] == 1))
        );
        assert!(actions.contains(&Action::ArmHold(Duration::from_secs(9))));
        f.handle(Event::KeepaliveReceived);
        assert_eq!(f.state(), State::Established);
        assert!(
            !f.collision_keeps_other(&higher, true),
            "an established session stays"
        );
    }

    #[test]
    fn passive_peer_waits_for_the_connection() {
        let mut f = fsm(true);
        assert_eq!(
            f.handle(Event::Start),
            vec![Action::ArmConnectRetry(Duration::from_secs(1))]
        );
        assert_eq!(f.state(), State::Active);
        assert_eq!(
            f.handle(Event::ConnectRetryExpired),
            vec![Action::ArmConnectRetry(Duration::from_secs(1))]
        );
        f.handle(Event::TcpConnected);
        assert_eq!(f.state(), State::OpenSent);
    }

    #[test]
    fn wrong_peer_as_sends_bad_peer_as_and_backs_off() {
        let mut f = fsm(false);
        f.handle(Event::Start);
        f.handle(Event::TcpConnected);
        let actions = f.handle(Event::OpenReceived(open(65999, [10, 0, 0, 2], 90)));
        let bad_peer_as = Notification::new(2, 2, vec![]);
        assert_eq!(actions[0], Action::Send(bad_peer_as.encode()));
        assert!(actions.contains(&Action::Down(DownReason::Sent(bad_peer_as))));
        assert!(actions.contains(&Action::ArmConnectRetry(Duration::from_secs(2))));
        assert_eq!(f.state(), State::Connect);
    }

    #[test]
    fn hold_timer_expiry_sends_notification_and_goes_down() {
        let mut f = fsm(false);
        up(&mut f);
        let actions = f.handle(Event::HoldTimerExpired);
        assert_eq!(
            actions[0],
            Action::Send(Notification::hold_timer_expired().encode())
        );
        assert!(actions.contains(&Action::Disconnect));
        assert_ne!(f.state(), State::Established);
    }

    #[test]
    fn bfd_down_tears_the_session_down_with_a_cease_and_means_nothing_before_tcp() {
        let mut f = fsm(false);
        f.handle(Event::Start);
        assert_eq!(
            f.handle(Event::BfdDown),
            Vec::new(),
            "no session to tear down"
        );
        up(&mut f);
        let actions = f.handle(Event::BfdDown);
        let n = Notification::cease(crate::packet::notification::cease::BFD_DOWN, "");
        assert_eq!(actions[0], Action::Send(n.encode()));
        assert!(actions.contains(&Action::Disconnect));
        assert_ne!(f.state(), State::Established);
        assert_eq!(n.subcode_name(), "BFD Down");
    }

    #[test]
    fn messages_in_established_rearm_the_hold_timer() {
        let mut f = fsm(false);
        up(&mut f);
        assert_eq!(
            f.handle(Event::UpdateReceived),
            vec![Action::ArmHold(Duration::from_secs(9))]
        );
        assert_eq!(
            f.handle(Event::KeepaliveReceived),
            vec![Action::ArmHold(Duration::from_secs(9))]
        );
    }

    #[test]
    fn update_before_established_is_an_fsm_error() {
        let mut f = fsm(false);
        f.handle(Event::Start);
        f.handle(Event::TcpConnected);
        let actions = f.handle(Event::UpdateReceived);
        assert_eq!(
            actions[0],
            Action::Send(Notification::fsm_error(1).encode())
        );
    }

    #[test]
    fn received_notification_takes_the_session_down() {
        let mut f = fsm(false);
        up(&mut f);
        let cease = Notification::cease(2, "bye");
        let actions = f.handle(Event::NotificationReceived(cease.clone()));
        assert!(actions.contains(&Action::Down(DownReason::Received(cease))));
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Send(_))),
            "no NOTIFICATION in reply"
        );
    }

    #[test]
    fn stop_sends_cease_with_the_reason_and_stays_idle() {
        let mut f = fsm(false);
        up(&mut f);
        let actions = f.handle(Event::Stop {
            reason: "maintenance".into(),
        });
        assert!(matches!(&actions[0], Action::Send(b) if b[19] == 6 && b[20] == 2));
        assert_eq!(f.state(), State::Idle);
        assert!(f.handle(Event::ConnectRetryExpired).is_empty());
    }

    #[test]
    fn back_off_is_capped_and_reset_by_success() {
        let mut f = fsm(false);
        f.handle(Event::Start);
        for _ in 0..10 {
            f.handle(Event::TcpConnected);
            f.handle(Event::TcpFailed);
        }
        f.handle(Event::TcpConnected);
        let actions = f.handle(Event::TcpFailed);
        assert!(actions.contains(&Action::ArmConnectRetry(MAX_CONNECT_RETRY)));
        f.handle(Event::TcpConnected);
        f.handle(Event::OpenReceived(open(65000, [10, 0, 0, 2], 90)));
        f.handle(Event::KeepaliveReceived);
        let actions = f.handle(Event::TcpFailed);
        assert!(actions.contains(&Action::ArmConnectRetry(Duration::from_secs(2))));
    }

    #[test]
    fn zero_hold_time_disables_timers() {
        let mut f = fsm(false);
        f.handle(Event::Start);
        f.handle(Event::TcpConnected);
        let actions = f.handle(Event::OpenReceived(open(65000, [10, 0, 0, 2], 0)));
        assert!(actions.contains(&Action::DisarmHold));
        assert!(!actions.iter().any(|a| matches!(a, Action::ArmKeepalive(_))));
    }
}
