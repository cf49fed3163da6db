//! Linux: up to [`BATCH`] datagrams per system call each way, with
//! `recvmmsg(2)` and `sendmmsg(2)`.
//!
//! The portable path makes two calls per datagram (`recvfrom`, `sendto`);
//! here one `recvmmsg` fills up to 32 buffers, each with its sender's
//! address, and one `sendmmsg` sends the admitted ones straight back to the
//! addresses they came from, as received (no conversion on the way back).
//! A batch shorter than asked for proves the socket drained on epoll
//! ([`rules::read_proves_drained`]); elsewhere the loop receives again until
//! `EAGAIN`. A `sendmmsg` that stops at `EAGAIN` drops the rest of the batch
//! (counted, as on the portable path); one that fails on one datagram skips
//! it and sends the rest.
//!
//! The headers and `iovec`s point into `Batch`'s buffers, so they are built
//! on the stack for each call rather than kept: `Batch` holds no pointers.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

use super::{is_peer_error, Policy, Udp, DATAGRAMS_PER_TURN, DATAGRAM_MAX};
use crate::rules;
use crate::stats::{Counter, Counters};

/// Datagrams per `recvmmsg`/`sendmmsg` call.
const BATCH: usize = 32;

/// The batch's memory: a buffer and an address per datagram.
pub(super) struct Batch {
    /// `BATCH` buffers of [`DATAGRAM_MAX`] bytes, one after the other.
    bufs: Vec<u8>,
    /// Each datagram's source address, as the kernel wrote it.
    addrs: Vec<libc::sockaddr_storage>,
    /// Each source address's length.
    addr_lens: [libc::socklen_t; BATCH],
    /// Each datagram's length.
    lens: [usize; BATCH],
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("datagrams", &BATCH).finish()
    }
}

impl Batch {
    /// Buffers for one batch: 2 MiB, touched only as datagrams fill them.
    pub(super) fn new() -> Self {
        Batch {
            bufs: vec![0; BATCH * DATAGRAM_MAX],
            // SAFETY: all zeros is a valid sockaddr_storage.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            addr_lens: [0; BATCH],
            lens: [0; BATCH],
        }
    }

    /// One `recvmmsg`: how many datagrams arrived (at least 1), or the error
    /// (`WouldBlock` when there were none).
    fn receive(&mut self, fd: i32) -> io::Result<usize> {
        // SAFETY: zeroed iovec and mmsghdr are valid (null pointers, 0 lengths).
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (k, (iov, hdr)) in iov.iter_mut().zip(hdrs.iter_mut()).enumerate() {
            iov.iov_base = self.bufs[k * DATAGRAM_MAX..].as_mut_ptr().cast();
            iov.iov_len = DATAGRAM_MAX;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_name = (&mut self.addrs[k] as *mut libc::sockaddr_storage).cast();
            hdr.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        }
        // SAFETY: BATCH headers, each pointing at its own live iovec, buffer
        // and address storage of the lengths given; all outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (k, hdr) in hdrs.iter().take(n).enumerate() {
            self.lens[k] = hdr.msg_len as usize;
            self.addr_lens[k] = hdr.msg_hdr.msg_namelen;
        }
        Ok(n)
    }

    /// Datagram `k`'s source and length.
    fn datagram(&self, k: usize) -> (Option<std::net::SocketAddr>, usize) {
        let mut storage = socket2::SockAddrStorage::zeroed();
        // SAFETY: sockaddr_storage is a sockaddr type of this platform, and
        // the kernel wrote `addr_lens[k]` bytes of a valid address into it.
        let addr = unsafe {
            *storage.view_as::<libc::sockaddr_storage>() = self.addrs[k];
            socket2::SockAddr::new(storage, self.addr_lens[k])
        };
        (addr.as_socket(), self.lens[k])
    }

    /// `sendmmsg` of the datagrams whose `keep` is set, each to its source;
    /// `outcome(k, result)` is told what became of each one sent or not:
    /// `Ok`, `WouldBlock` (the socket was full: it and the rest are
    /// dropped), or the error that datagram alone met.
    fn send_back(
        &mut self,
        fd: i32,
        keep: &[bool],
        mut outcome: impl FnMut(usize, io::Result<()>),
    ) {
        // SAFETY: as in `receive`.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let mut which = [0usize; BATCH];
        let mut m = 0;
        for k in (0..keep.len()).filter(|&k| keep[k]) {
            iov[m].iov_base = self.bufs[k * DATAGRAM_MAX..].as_mut_ptr().cast();
            iov[m].iov_len = self.lens[k];
            hdrs[m].msg_hdr.msg_iov = &mut iov[m];
            hdrs[m].msg_hdr.msg_iovlen = 1;
            hdrs[m].msg_hdr.msg_name = (&mut self.addrs[k] as *mut libc::sockaddr_storage).cast();
            hdrs[m].msg_hdr.msg_namelen = self.addr_lens[k];
            which[m] = k;
            m += 1;
        }
        let mut i = 0;
        while i < m {
            // SAFETY: headers i..m point at live iovecs, buffers and
            // addresses filled by `receive`; all outlive the call.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs[i..].as_mut_ptr(),
                    (m - i) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if r >= 0 {
                for &k in &which[i..i + r as usize] {
                    outcome(k, Ok(()));
                }
                i += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    for &k in &which[i..m] {
                        outcome(k, Err(io::ErrorKind::WouldBlock.into()));
                    }
                    return;
                }
                _ => {
                    outcome(which[i], Err(e)); // this datagram only: skip it
                    i += 1;
                }
            }
        }
    }
}

/// Receives and echoes on `udp` in batches until the socket is drained or
/// the budget is spent. Returns an unexpected receive error.
pub(super) fn serve(
    batch: &mut Batch,
    policy: &mut Policy,
    udp: &mut Udp,
    counters: &Counters,
    now: Instant,
) -> io::Result<()> {
    let fd = udp.socket.as_raw_fd();
    let mut received = 0;
    while received < DATAGRAMS_PER_TURN {
        let n = match batch.receive(fd) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                udp.ready = false;
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_peer_error(&e) => {
                counters.add(Counter::UdpErrors, 1);
                continue;
            }
            Err(e) => return Err(e),
        };
        received += n;
        let mut keep = [false; BATCH];
        let mut dst = [None; BATCH];
        for (k, keep) in keep.iter_mut().enumerate().take(n) {
            let (src, len) = batch.datagram(k);
            *keep = src.is_some_and(|src| policy.admit(src, len, counters, now));
            dst[k] = src;
        }
        let lens = batch.lens;
        batch.send_back(fd, &keep[..n], |k, result| {
            policy.account_send(result, lens[k], dst[k], counters, now);
        });
        if rules::read_proves_drained(n, BATCH, false) {
            udp.ready = false;
            return Ok(());
        }
    }
    Ok(()) // budget spent: still ready, served again next turn
}
