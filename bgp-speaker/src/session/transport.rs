//! TCP for BGP: connecting from a chosen local address, TTL for eBGP multihop, GTSM (RFC 5082)
//! and TCP-MD5 signatures (RFC 2385) on Linux.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

/// Socket settings for one peer.
#[derive(Debug, Clone, Default)]
pub struct TransportOptions {
    pub local_addr: Option<IpAddr>,
    pub local_port: Option<u16>,
    /// IP TTL of our packets (eBGP multihop); 1 for directly connected eBGP when unset.
    pub ttl: Option<u8>,
    /// GTSM: send with TTL 255 and drop anything that arrives with less.
    pub ttl_security: bool,
    pub md5_key: Option<Vec<u8>>,
}

/// The kernel's `struct tcp_md5sig` (linux/tcp.h); libc does not define it.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; 80],
}

/// Installs (or with an empty key, removes) the TCP-MD5 key for `peer` on `socket`.
pub fn set_md5_key(socket: &impl AsRawFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > 80 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TCP-MD5 key longer than 80 bytes",
        ));
    }
    let addr = SockAddr::from(SocketAddr::new(peer, 0));
    // SAFETY: an all-zero `sockaddr_storage` is a valid value, the copy writes `addr.len()`
    // bytes (at most the size of `sockaddr_storage`) into it, and setsockopt reads exactly
    // `size_of::<TcpMd5Sig>()` bytes from a live, properly aligned struct.
    unsafe {
        let mut sig = TcpMd5Sig {
            addr: std::mem::zeroed(),
            flags: 0,
            prefixlen: 0,
            keylen: key.len() as u16,
            ifindex: 0,
            key: [0; 80],
        };
        std::ptr::copy_nonoverlapping(
            addr.as_ptr().cast::<u8>(),
            (&raw mut sig.addr).cast::<u8>(),
            (addr.len() as usize).min(std::mem::size_of::<libc::sockaddr_storage>()),
        );
        sig.key[..key.len()].copy_from_slice(key);
        let rc = libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&raw const sig).cast(),
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        );
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sets the minimum TTL (hop limit) accepted, for GTSM.
fn set_min_ttl(socket: &impl AsRawFd, v6: bool, min: u8) -> io::Result<()> {
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT)
    } else {
        (libc::IPPROTO_IP, libc::IP_MINTTL)
    };
    let value = libc::c_int::from(min);
    // SAFETY: setsockopt reads one c_int from a live local.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The TTL our packets leave with, and GTSM's minimum for those that arrive (RFC 5082).
fn apply_ttl(socket: &Socket, v6: bool, opts: &TransportOptions) -> io::Result<()> {
    let ttl = if opts.ttl_security {
        255
    } else {
        u32::from(opts.ttl.unwrap_or(64))
    };
    if v6 {
        socket.set_unicast_hops_v6(ttl)?;
    } else {
        socket.set_ttl_v4(ttl)?;
    }
    if opts.ttl_security {
        // RFC 5082: accept only packets that can have crossed at most one hop.
        set_min_ttl(socket, v6, 254)?;
    }
    Ok(())
}

/// Connects to `peer` with the options applied, within `timeout`.
pub async fn connect(
    peer: SocketAddr,
    opts: &TransportOptions,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let v6 = peer.is_ipv6();
    let socket = Socket::new(
        Domain::for_address(peer),
        Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if opts.local_addr.is_some() || opts.local_port.is_some() {
        let ip = opts.local_addr.unwrap_or(if v6 {
            IpAddr::from([0u16; 8])
        } else {
            IpAddr::from([0u8; 4])
        });
        socket.set_reuse_address(true)?;
        socket.bind(&SockAddr::from(SocketAddr::new(
            ip,
            opts.local_port.unwrap_or(0),
        )))?;
    }
    apply_ttl(&socket, v6, opts)?;
    if let Some(key) = &opts.md5_key {
        set_md5_key(&socket, peer.ip(), key)?;
    }
    match socket.connect(&SockAddr::from(peer)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let std_stream: std::net::TcpStream = socket.into();
    let stream = TcpStream::from_std(std_stream)?;
    tokio::time::timeout(timeout, stream.writable())
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    stream.peer_addr()?;
    Ok(stream)
}

/// Applies per-peer options to an accepted connection.
pub fn accepted(stream: &TcpStream, opts: &TransportOptions) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let socket = socket2::SockRef::from(stream);
    apply_ttl(&socket, stream.local_addr()?.is_ipv6(), opts)
}

/// Binds the listening socket for passive and colliding connections.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::from_std(listen_std(addr)?)
}

/// [`listen`], as a std listener (to be handed to a replacement before it serves).
pub fn listen_std(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(64)?;
    Ok(socket.into())
}
