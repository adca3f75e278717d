//! Datagrams in and out in batches: one `recvmmsg`/`sendmmsg` each way per wake-up.

use std::net::SocketAddr;

/// Datagrams moved with one `recvmmsg`/`sendmmsg` each way: with one system call per packet
/// the kernel's per-call cost dominated (profiled with `perf record` under dnsperf: syscall
/// entry, wakeups and UDP socket locking were most of the time, the answer itself ~2%).
pub struct Batch {
    queries: Vec<[u8; 4096]>,
    answers: Vec<Vec<u8>>,
    sources: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    /// Headers changed since they were last set up for receiving (by the kernel's last
    /// receive or by our send): only those are set up again, since under light load a call
    /// carries one datagram and resetting all of them was most of a query's instructions.
    touched: usize,
}

const BATCH: usize = 32;

impl Batch {
    pub fn new() -> Self {
        // SAFETY: all-zero is a valid value for these plain C structs.
        let zeroed = || unsafe { std::mem::zeroed::<libc::sockaddr_storage>() };
        Self {
            queries: vec![[0u8; 4096]; BATCH],
            answers: (0..BATCH).map(|_| Vec::with_capacity(1500)).collect(),
            sources: (0..BATCH).map(|_| zeroed()).collect(),
            iovecs: (0..BATCH)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            // SAFETY: as above.
            headers: (0..BATCH)
                .map(|_| unsafe { std::mem::zeroed::<libc::mmsghdr>() })
                .collect(),
            touched: BATCH,
        }
    }

    /// Blocks (up to the socket's read timeout) for at least one datagram; returns how many.
    pub fn receive(&mut self, fd: std::os::fd::RawFd) -> std::io::Result<usize> {
        for i in 0..self.touched {
            self.iovecs[i] = libc::iovec {
                iov_base: self.queries[i].as_mut_ptr().cast(),
                iov_len: self.queries[i].len(),
            };
            let h = &mut self.headers[i];
            h.msg_hdr.msg_name = (&raw mut self.sources[i]).cast();
            h.msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &raw mut self.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_len = 0;
        }
        // SAFETY: every header points at buffers owned by `self` that outlive the call, with
        // their true lengths; the kernel writes at most those lengths.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            // Nothing was written: the headers stay as they were set up.
            self.touched = 0;
            return Err(std::io::Error::last_os_error());
        }
        self.touched = n as usize;
        Ok(n as usize)
    }

    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        let storage = &self.sources[i];
        match i32::from(storage.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the kernel wrote a sockaddr_in, which fits.
                let a = unsafe {
                    &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
                };
                let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the kernel wrote a sockaddr_in6, which fits.
                let a = unsafe {
                    &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                };
                let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::from((ip, u16::from_be(a.sin6_port))))
            }
            _ => None,
        }
    }

    pub fn query_and_out(&mut self, i: usize) -> (&[u8], &mut Vec<u8>) {
        let len = (self.headers[i].msg_len as usize).min(self.queries[i].len());
        (&self.queries[i][..len], &mut self.answers[i])
    }

    /// Sends the non-empty answers of the first `count` slots back to their sources.
    pub fn send(&mut self, fd: std::os::fd::RawFd, count: usize) -> std::io::Result<()> {
        let mut ready = 0;
        for i in 0..count {
            if self.answers[i].is_empty() {
                continue;
            }
            self.iovecs[ready] = libc::iovec {
                iov_base: self.answers[i].as_mut_ptr().cast(),
                iov_len: self.answers[i].len(),
            };
            let namelen = self.headers[i].msg_hdr.msg_namelen;
            self.sources.swap(ready, i);
            let h = &mut self.headers[ready];
            h.msg_hdr.msg_name = (&raw mut self.sources[ready]).cast();
            h.msg_hdr.msg_namelen = namelen;
            h.msg_hdr.msg_iov = &raw mut self.iovecs[ready];
            h.msg_hdr.msg_iovlen = 1;
            ready += 1;
        }
        self.touched = self.touched.max(ready);
        let mut sent = 0;
        while sent < ready {
            // SAFETY: headers `sent..ready` point at answer buffers and addresses owned by
            // `self`, alive for the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.headers[sent..].as_mut_ptr(),
                    (ready - sent) as libc::c_uint,
                    0,
                )
            };
            if n <= 0 {
                return Err(std::io::Error::last_os_error());
            }
            sent += n as usize;
        }
        Ok(())
    }
}
