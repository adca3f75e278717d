//! Handing a daemon's sockets to its replacement, for upgrades without a lost query or
//! connection.
//!
//! The running process offers its sockets on a Unix stream socket ([`Offer`]). Its replacement
//! connects and receives them in one message ([`Inherited`]): the descriptors themselves
//! (SCM_RIGHTS) with a description of each (which listener it is) and the state the
//! replacement should start from. The replacement serves on them and then says so; only then
//! does the old process stop reading and finish what it has in flight. A socket handed over is
//! the same kernel socket in both processes, so datagrams and connections queued on it are
//! taken by whichever process reads next and none is lost, where closing a socket and binding
//! a new one (even with SO_REUSEPORT beside it) drops everything queued on the closed one.
//!
//! `DAEMON replace` asks the running process (its admin endpoint, [`route`]) to start its own
//! replacement ([`Replacer`]): the binary at the path it was started from (a package upgrade
//! put the new one there) with the same arguments and `--take-over`. Under systemd the new
//! process is then in the same unit, and the old one hands it the unit (`MAINPID=`) once it
//! serves.
//!
//! The wire: the sender writes a 4-byte big-endian length and that many bytes of JSON
//! ([`Handover`] without the descriptors and payload, with the payload's length) in one
//! `sendmsg` carrying the descriptors, in the order of `Handover::sockets`, then the payload's
//! bytes. The receiver answers one line, `serving\n`, once it serves.

mod inherit;
mod offer;

pub use inherit::{Inherited, Released, TakeOverError};
pub use offer::{
    AskError, Captured, Carry, Offer, Offered, ReplaceError, Replaced, Replacer, ask, replaced,
    route,
};

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use serde::{Deserialize, Serialize};

/// Most descriptors one message may carry (the kernel's SCM_MAX_FD).
pub const MAX_SOCKETS: usize = 253;
/// Largest description accepted, in bytes: state is a summary, not a database.
pub const MAX_DESCRIPTION: usize = 16 << 20;
/// Largest payload accepted, in bytes (a stream node's segments in memory).
pub const MAX_PAYLOAD: u64 = 16 << 30;

/// What the replacement learns besides the descriptors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Handover {
    /// One name per descriptor, in order (`"dns udp 127.0.0.1:53"`); names may repeat.
    pub sockets: Vec<String>,
    /// The state to carry over, as the daemon defines it.
    pub state: serde_json::Value,
    /// Bytes the state refers to (media), sent after the description.
    pub payload: Vec<u8>,
}

/// The description as it goes on the wire.
#[derive(Serialize, Deserialize)]
struct Description {
    sockets: Vec<String>,
    state: serde_json::Value,
    #[serde(default)]
    payload: u64,
}

/// The name a listener is handed over under: its kind and address.
pub fn name(kind: &str, addr: std::net::SocketAddr) -> String {
    format!("{kind} {addr}")
}

/// Why a hand-over failed; the old process keeps serving whenever it does.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("hand-over socket: {0}")]
    Io(#[from] io::Error),
    #[error("hand-over of {0} sockets: at most {MAX_SOCKETS} fit in one message")]
    TooMany(usize),
    #[error("hand-over description of {0} bytes: at most {MAX_DESCRIPTION}")]
    TooLong(usize),
    #[error("hand-over payload of {0} bytes: at most {MAX_PAYLOAD}")]
    PayloadTooLong(u64),
    #[error("hand-over description: {0}")]
    Description(#[from] serde_json::Error),
    #[error("hand-over names {named} sockets but carried {carried}")]
    Mismatch { named: usize, carried: usize },
    #[error("the state to hand over: {0}")]
    Capture(String),
    #[error("the replacement did not say it serves (it said {0:?})")]
    NotServing(String),
}

/// Sends `sockets` (described by `handover.sockets`, in the same order) and the state on
/// `stream`.
pub fn send(
    stream: &UnixStream,
    handover: &Handover,
    sockets: &[BorrowedFd<'_>],
) -> Result<(), HandoverError> {
    if sockets.len() > MAX_SOCKETS {
        return Err(HandoverError::TooMany(sockets.len()));
    }
    if sockets.len() != handover.sockets.len() {
        return Err(HandoverError::Mismatch {
            named: handover.sockets.len(),
            carried: sockets.len(),
        });
    }
    let payload_len = handover.payload.len() as u64;
    if payload_len > MAX_PAYLOAD {
        return Err(HandoverError::PayloadTooLong(payload_len));
    }
    let json = serde_json::to_vec(&Description {
        sockets: handover.sockets.clone(),
        state: handover.state.clone(),
        payload: payload_len,
    })?;
    if json.len() > MAX_DESCRIPTION {
        return Err(HandoverError::TooLong(json.len()));
    }
    let mut payload = (json.len() as u32).to_be_bytes().to_vec();
    payload.extend_from_slice(&json);
    let fds: Vec<RawFd> = sockets.iter().map(AsRawFd::as_raw_fd).collect();
    let sent = send_with_fds(stream, &payload, &fds)?;
    // The descriptors went with the first byte; the rest of a long description follows.
    (&*stream).write_all(&payload[sent..])?;
    (&*stream).write_all(&handover.payload)?;
    Ok(())
}

/// Receives a hand-over from `stream`: the description and the descriptors, owned here.
pub fn receive(stream: &UnixStream) -> Result<(Handover, Vec<OwnedFd>), HandoverError> {
    let mut first = vec![0u8; 64 << 10];
    let (read, fds) = receive_with_fds(stream, &mut first)?;
    if read < 4 {
        // The length may come in pieces too.
        let mut rest = [0u8; 4];
        (&*stream).read_exact(&mut rest[read..])?;
        first[read..4].copy_from_slice(&rest[read..]);
    }
    let length = u32::from_be_bytes([first[0], first[1], first[2], first[3]]) as usize;
    if length > MAX_DESCRIPTION {
        return Err(HandoverError::TooLong(length));
    }
    let mut json = first[4..read.max(4)].to_vec();
    json.truncate(length);
    if json.len() < length {
        let mut rest = vec![0u8; length - json.len()];
        (&*stream).read_exact(&mut rest)?;
        json.extend_from_slice(&rest);
    }
    let description: Description = serde_json::from_slice(&json)?;
    if description.sockets.len() != fds.len() {
        return Err(HandoverError::Mismatch {
            named: description.sockets.len(),
            carried: fds.len(),
        });
    }
    if description.payload > MAX_PAYLOAD {
        return Err(HandoverError::PayloadTooLong(description.payload));
    }
    // Read as it comes rather than allocated up front from what the sender claims.
    let mut payload = Vec::new();
    stream.take(description.payload).read_to_end(&mut payload)?;
    if (payload.len() as u64) < description.payload {
        return Err(HandoverError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    let handover = Handover {
        sockets: description.sockets,
        state: description.state,
        payload,
    };
    Ok((handover, fds))
}

/// The replacement's word that it serves on what it received.
pub fn say_serving(stream: &UnixStream) -> io::Result<()> {
    (&*stream).write_all(b"serving\n")
}

/// Waits for the replacement's word (bounded by the stream's read timeout).
pub fn wait_serving(stream: &UnixStream) -> Result<(), HandoverError> {
    let mut said = Vec::new();
    let mut byte = [0u8; 1];
    while said.len() < 64 {
        match (&*stream).read(&mut byte)? {
            0 => break,
            _ if byte[0] == b'\n' => break,
            _ => said.push(byte[0]),
        }
    }
    if said == b"serving" {
        Ok(())
    } else {
        Err(HandoverError::NotServing(
            String::from_utf8_lossy(&said).into_owned(),
        ))
    }
}

/// The process at the other end of `stream` (SO_PEERCRED), when the kernel says.
pub fn peer_pid(stream: &UnixStream) -> Option<u32> {
    // SAFETY: a zeroed ucred is valid; getsockopt writes at most `len` bytes into it.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    let done = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (done == 0 && cred.pid > 0).then_some(cred.pid as u32)
}

/// `sendmsg` of `data` with `fds` as SCM_RIGHTS; the bytes sent.
fn send_with_fds(stream: &UnixStream, data: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    let mut control = vec![0u8; space.max(1)];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer is CMSG_SPACE(fd_bytes) long, so the first header and
        // its data fit; CMSG_FIRSTHDR is non-null for a buffer that large.
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&msg);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr() as *const u8,
                libc::CMSG_DATA(header),
                fd_bytes,
            );
        }
    }
    loop {
        // SAFETY: msg points at live buffers of the lengths it states.
        let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if sent >= 0 {
            return Ok(sent as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `recvmsg` into `buf`; the bytes read and the descriptors that came with them (close on
/// exec, owned by the caller).
fn receive_with_fds(stream: &UnixStream, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    // SAFETY: CMSG_SPACE only computes a size.
    let space =
        unsafe { libc::CMSG_SPACE((MAX_SOCKETS * std::mem::size_of::<RawFd>()) as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
    let read = loop {
        // SAFETY: msg points at live buffers of the lengths it states.
        let read = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if read >= 0 {
            break read as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control; the CMSG_* walk stays within msg_controllen, and
    // each SCM_RIGHTS payload is an array of descriptors now open in this process.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header);
                let bytes = (*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(
                        data.add(i * std::mem::size_of::<RawFd>()) as *const RawFd
                    );
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other(
            "descriptors were cut off: more than the hand-over allows",
        ));
    }
    Ok((read, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;
    use std::time::Duration;

    #[test]
    fn a_udp_socket_handed_over_keeps_what_was_queued_on_it() {
        let old = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = old.local_addr().unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Queued before the hand-over, read by nobody yet.
        for i in 0..10u8 {
            client.send_to(&[i], addr).unwrap();
        }
        let (a, b) = UnixStream::pair().unwrap();
        let handover = Handover {
            sockets: vec![format!("dns udp {addr} #0")],
            state: serde_json::json!({ "generation": 7 }),
            payload: b"segments".to_vec(),
        };
        send(&a, &handover, &[old.as_fd()]).unwrap();
        // The old process lets go of its descriptor: the socket lives on in the new one.
        drop(old);
        let (received, fds) = receive(&b).unwrap();
        assert_eq!(received, handover);
        let new = UdpSocket::from(fds.into_iter().next().unwrap());
        assert_eq!(new.local_addr().unwrap(), addr);
        new.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 8];
        let got: Vec<u8> = (0..10)
            .map(|_| {
                new.recv(&mut buf).unwrap();
                buf[0]
            })
            .collect();
        assert_eq!(got, (0..10).collect::<Vec<u8>>(), "nothing queued was lost");
        say_serving(&b).unwrap();
        wait_serving(&a).unwrap();
    }

    #[test]
    fn a_long_description_and_many_sockets_arrive_whole() {
        let sockets: Vec<UdpSocket> = (0..40)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let handover = Handover {
            sockets: sockets
                .iter()
                .map(|s| s.local_addr().unwrap().to_string())
                .collect(),
            state: serde_json::json!({ "padding": "x".repeat(300_000) }),
            payload: (0..5_000_000u32).map(|i| i as u8).collect(),
        };
        let (a, b) = UnixStream::pair().unwrap();
        let fds: Vec<BorrowedFd<'_>> = sockets.iter().map(AsFd::as_fd).collect();
        let sender = {
            let handover = handover.clone();
            let a = a.try_clone().unwrap();
            let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
            std::thread::spawn(move || {
                // SAFETY: the sockets outlive the thread (joined below).
                let fds: Vec<BorrowedFd<'_>> = raw
                    .iter()
                    .map(|fd| unsafe { BorrowedFd::borrow_raw(*fd) })
                    .collect();
                send(&a, &handover, &fds).unwrap();
            })
        };
        let (received, fds) = receive(&b).unwrap();
        sender.join().unwrap();
        assert_eq!(received, handover);
        let addresses: Vec<String> = fds
            .into_iter()
            .map(|fd| UdpSocket::from(fd).local_addr().unwrap().to_string())
            .collect();
        assert_eq!(addresses, handover.sockets, "each descriptor in its place");
    }

    #[test]
    fn a_replacement_that_does_not_serve_is_found_out() {
        let (a, b) = UnixStream::pair().unwrap();
        (&b).write_all(b"failed: no config\n").unwrap();
        assert!(matches!(
            wait_serving(&a),
            Err(HandoverError::NotServing(said)) if said == "failed: no config"
        ));
        drop(b);
        assert!(wait_serving(&a).is_err(), "a replacement that died");
        let (a, _b) = UnixStream::pair().unwrap();
        let handover = Handover {
            sockets: vec!["one".into(), "two".into()],
            ..Handover::default()
        };
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(matches!(
            send(&a, &handover, &[socket.as_fd()]),
            Err(HandoverError::Mismatch {
                named: 2,
                carried: 1
            })
        ));
    }
}
