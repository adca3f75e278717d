//! MPEG-TS over UDP with a primary and a backup feed, the way encoders (and
//! `ffmpeg -f mpegts udp://...`) send it: datagrams of whole 188-byte packets, usually seven.
//!
//! Both feeds are received all the time, so the node always knows whether the one it is not
//! using is fit to take over; only the active feed's packets reach the packager.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use config::service::Failback;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::channel::{Channel, Ingest};
use crate::feeder::{Faults, report_ingest};
use crate::handover::{Feeder, HoldPoint};
use crate::status::Changes;
use crate::ts::{PACKET, Packet};

/// Which of a channel's feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Primary,
    Backup,
}

impl Feed {
    pub fn name(self) -> &'static str {
        match self {
            Feed::Primary => "primary",
            Feed::Backup => "backup",
        }
    }
}

/// How a channel is fed over UDP.
#[derive(Debug, Clone)]
pub struct UdpIngest {
    pub backup: Option<SocketAddr>,
    /// Interface name on which multicast groups are joined (the default route's otherwise).
    pub interface: Option<String>,
    pub stall_timeout: Duration,
    pub max_cc_errors_per_sec: u32,
    pub failback: Failback,
}

/// Opens a feed's socket: bound to the port, joined to the group when the address is
/// multicast (several channels or processes may share a group port, hence SO_REUSEADDR).
pub fn open(addr: SocketAddr, interface: Option<&str>) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    // A live feed arrives in bursts; a large buffer rides out scheduling delays.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let index = match interface {
        Some(name) => interface_index(name)?,
        None => 0,
    };
    match addr.ip() {
        IpAddr::V4(group) if group.is_multicast() => {
            socket.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port()).into())?;
            let via = if index == 0 {
                socket2::InterfaceIndexOrAddress::Address(Ipv4Addr::UNSPECIFIED)
            } else {
                socket2::InterfaceIndexOrAddress::Index(index)
            };
            socket.join_multicast_v4_n(&group, &via)?;
        }
        IpAddr::V6(group) if group.is_multicast() => {
            socket.set_only_v6(true)?;
            socket.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), addr.port()).into())?;
            socket.join_multicast_v6(&group, index)?;
        }
        _ => socket.bind(&addr.into())?,
    }
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

fn interface_index(name: &str) -> std::io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no network interface named {name:?}"),
        )),
        index => Ok(index),
    }
}

/// What the node knows about one feed.
#[derive(Debug)]
struct FeedState {
    last_packet: Option<Instant>,
    /// Since when the feed has been continuously clean (packets flowing, few CC errors).
    clean_since: Option<Instant>,
    /// Continuity counter per PID, for error counting.
    continuity: HashMap<u16, u8>,
    errors_this_second: u32,
    second_started: Instant,
    broken_until: Option<Instant>,
}

impl FeedState {
    fn new(now: Instant) -> Self {
        Self {
            last_packet: None,
            clean_since: None,
            continuity: HashMap::new(),
            errors_this_second: 0,
            second_started: now,
            broken_until: None,
        }
    }

    /// Accounts one packet; continuity errors are counted per second.
    fn packet(&mut self, packet: &Packet<'_>, now: Instant, max_errors: u32) {
        self.last_packet = Some(now);
        self.clean_since.get_or_insert(now);
        if now.duration_since(self.second_started) >= Duration::from_secs(1) {
            (self.second_started, self.errors_this_second) = (now, 0);
        }
        let pid = packet.pid();
        if pid != 0x1FFF && packet.has_payload() {
            let cc = packet.continuity();
            if let Some(previous) = self.continuity.insert(pid, cc)
                && cc != (previous + 1) & 0x0F
                && cc != previous
            {
                self.errors_this_second += 1;
                if self.errors_this_second > max_errors {
                    // Broken for a second at least; clean again only after that.
                    self.broken_until = Some(now + Duration::from_secs(1));
                    self.clean_since = None;
                }
            }
        }
    }

    /// Fit to carry the channel: packets within the stall timeout, not broken.
    fn healthy(&mut self, now: Instant, stall: Duration) -> bool {
        let flowing = self
            .last_packet
            .is_some_and(|t| now.duration_since(t) < stall);
        let broken = self.broken_until.is_some_and(|t| now < t);
        if !flowing {
            self.clean_since = None;
        }
        flowing && !broken
    }
}

/// The switching policy, apart from sockets so it can be reasoned about (and tested) alone.
#[derive(Debug)]
struct Switch {
    active: Feed,
    primary: FeedState,
    backup: FeedState,
    stall: Duration,
    failback: Failback,
}

impl Switch {
    /// The feed that should be active now. Leave a feed only for a healthy one; go back to the
    /// primary (with `failback = "auto"`) once it has been clean for a whole stall timeout, so a
    /// flapping primary does not bounce viewers between feeds.
    fn decide(&mut self, now: Instant, has_backup: bool) -> Feed {
        let primary_ok = self.primary.healthy(now, self.stall);
        let backup_ok = has_backup && self.backup.healthy(now, self.stall);
        match self.active {
            Feed::Primary if !primary_ok && backup_ok => Feed::Backup,
            Feed::Backup if !backup_ok && primary_ok => Feed::Primary,
            Feed::Backup
                if self.failback == Failback::Auto
                    && primary_ok
                    && self
                        .primary
                        .clean_since
                        .is_some_and(|t| now.duration_since(t) >= self.stall) =>
            {
                Feed::Primary
            }
            active => active,
        }
    }

    /// Whether the channel has a source: some feed fit to carry it.
    fn ingest(&mut self, now: Instant, has_backup: bool) -> Ingest {
        let primary = self.primary.healthy(now, self.stall);
        let backup = has_backup && self.backup.healthy(now, self.stall);
        if primary || backup {
            Ingest::Flowing
        } else {
            Ingest::Lost
        }
    }
}

/// Receives a channel's feeds forever, passing the active feed's packets to `channel` and
/// reporting whether any feed delivers; from the start, or where a replaced process stopped
/// (`resume`: which feeds were fit, with `channel` as it left it). Fault injection as for the
/// built-in channel: while `faults.frozen` is set nothing is passed on; while `faults.cut` is
/// set datagrams are dropped as they arrive, as if the network lost them. A `hold` stops it
/// between two datagrams for a hand-over (those that come meanwhile wait in the sockets).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    channel: Arc<RwLock<Channel>>,
    primary: UdpSocket,
    backup: Option<UdpSocket>,
    ingest: UdpIngest,
    faults: Faults,
    changes: Changes,
    mut hold: HoldPoint,
    resume: Option<Feeder>,
) {
    let now = Instant::now();
    let mut switch = Switch {
        active: Feed::Primary,
        primary: FeedState::new(now),
        backup: FeedState::new(now),
        stall: ingest.stall_timeout,
        failback: ingest.failback,
    };
    let name = {
        let mut c = channel.write().unwrap_or_else(|e| e.into_inner());
        match resume {
            // The feeds as the replaced process last saw them: fit ones count as heard now.
            Some(Feeder::Udp { primary, backup }) => {
                if c.active_feed == Feed::Backup.name() {
                    switch.active = Feed::Backup;
                }
                for (fit, state) in [(primary, &mut switch.primary), (backup, &mut switch.backup)] {
                    if fit {
                        state.last_packet = Some(now);
                        state.clean_since = Some(now);
                    }
                }
            }
            _ => c.switch_feed(Feed::Primary.name()),
        }
        c.name.clone()
    };
    let mut tick = tokio::time::interval(ingest.stall_timeout.min(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut a, mut b) = (vec![0u8; 65536], vec![0u8; 65536]);
    loop {
        if hold.held() {
            let now = Instant::now();
            let at = Feeder::Udp {
                primary: switch.primary.healthy(now, switch.stall),
                backup: backup.is_some() && switch.backup.healthy(now, switch.stall),
            };
            hold.stop(&name, at).await;
            continue;
        }
        let (feed, len) = tokio::select! {
            () = hold.requested() => continue,
            r = primary.recv(&mut a) => match r {
                Ok(n) => (Feed::Primary, n),
                Err(_) => continue,
            },
            r = async { match &backup { Some(s) => s.recv(&mut b).await, None => std::future::pending().await } } => match r {
                Ok(n) => (Feed::Backup, n),
                Err(_) => continue,
            },
            _ = tick.tick() => {
                let now = Instant::now();
                report_ingest(&channel, switch.ingest(now, backup.is_some()), &changes);
                let next = switch.decide(now, backup.is_some());
                if next != switch.active {
                    tracing::warn!(channel = %name, from = switch.active.name(), to = next.name(), "switching feed");
                    switch.active = next;
                    channel.write().unwrap_or_else(|e| e.into_inner()).switch_feed(next.name());
                }
                continue;
            }
        };
        if faults.cut.load(Ordering::Relaxed) {
            continue;
        }
        let now = Instant::now();
        let (buf, state) = match feed {
            Feed::Primary => (&a[..len], &mut switch.primary),
            Feed::Backup => (&b[..len], &mut switch.backup),
        };
        let active = feed == switch.active && !faults.frozen.load(Ordering::Relaxed);
        // Whole packets only: a datagram's tail that is not one is garbage, as is any packet
        // without the sync byte (Packet::new refuses it).
        let mut packager = active.then(|| channel.write().unwrap_or_else(|e| e.into_inner()));
        for chunk in buf.chunks_exact(PACKET) {
            let bytes: &[u8; PACKET] = chunk.try_into().expect("chunks_exact");
            let Some(packet) = Packet::new(bytes) else {
                continue;
            };
            state.packet(&packet, now, ingest.max_cc_errors_per_sec);
            if let Some(c) = packager.as_mut() {
                c.push(bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pid: u16, cc: u8) -> [u8; PACKET] {
        let mut p = [0xFFu8; PACKET];
        p[0] = 0x47;
        p[1] = (pid >> 8) as u8 & 0x1F;
        p[2] = pid as u8;
        p[3] = 0x10 | (cc & 0x0F);
        p
    }

    fn switch(failback: Failback) -> (Switch, Instant) {
        let now = Instant::now();
        let s = Switch {
            active: Feed::Primary,
            primary: FeedState::new(now),
            backup: FeedState::new(now),
            stall: Duration::from_secs(1),
            failback,
        };
        (s, now)
    }

    fn feed(state: &mut FeedState, at: Instant, cc: u8) {
        state.packet(&Packet::new(&packet(256, cc)).unwrap(), at, 50);
    }

    #[test]
    fn stalled_primary_switches_to_a_live_backup_and_back_after_a_clean_stall_timeout() {
        let (mut s, t0) = switch(Failback::Auto);
        feed(&mut s.primary, t0, 0);
        feed(&mut s.backup, t0, 0);
        assert_eq!(s.decide(t0, true), Feed::Primary);
        let t1 = t0 + Duration::from_millis(1100);
        feed(&mut s.backup, t1, 1);
        assert_eq!(s.decide(t1, true), Feed::Backup);
        s.active = Feed::Backup;
        // The primary returns: not yet clean for a stall timeout.
        let t2 = t1 + Duration::from_millis(100);
        feed(&mut s.primary, t2, 1);
        feed(&mut s.backup, t2, 2);
        assert_eq!(s.decide(t2, true), Feed::Backup);
        let t3 = t2 + Duration::from_millis(1000);
        feed(&mut s.primary, t3, 2);
        feed(&mut s.backup, t3, 3);
        assert_eq!(s.decide(t3, true), Feed::Primary);
    }

    #[test]
    fn manual_failback_stays_on_the_backup_until_it_fails() {
        let (mut s, t0) = switch(Failback::Manual);
        s.active = Feed::Backup;
        feed(&mut s.primary, t0, 0);
        feed(&mut s.backup, t0, 0);
        let t1 = t0 + Duration::from_millis(900);
        feed(&mut s.primary, t1, 1);
        feed(&mut s.backup, t1, 1);
        assert_eq!(s.decide(t1, true), Feed::Backup);
        let t2 = t1 + Duration::from_millis(1500);
        feed(&mut s.primary, t2, 2);
        assert_eq!(s.decide(t2, true), Feed::Primary);
    }

    #[test]
    fn without_a_healthy_backup_the_primary_stays_active() {
        let (mut s, t0) = switch(Failback::Auto);
        feed(&mut s.primary, t0, 0);
        assert_eq!(s.decide(t0 + Duration::from_secs(5), false), Feed::Primary);
        assert_eq!(s.decide(t0 + Duration::from_secs(5), true), Feed::Primary);
    }

    #[test]
    fn continuity_errors_past_the_threshold_break_a_feed() {
        let (mut s, t0) = switch(Failback::Auto);
        feed(&mut s.backup, t0, 0);
        for i in 0..60u8 {
            // Every packet skips one counter value.
            feed(&mut s.primary, t0, (i * 2) & 0x0F);
        }
        assert_eq!(s.decide(t0, true), Feed::Backup);
    }
}
