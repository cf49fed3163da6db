//! Linux: many datagrams per system call, for the server's UDP echo and
//! echoloop-stress's `--udp` alike.
//!
//! The portable floor is two calls per datagram, one `recvfrom` and one
//! `sendto`. Linux offers two ways below it, and both sides use both:
//!
//! - **`recvmmsg(2)`** ([`Received`]): one call fills up to [`BATCH`]
//!   buffers, each with its sender's address. A batch shorter than asked
//!   for proves the socket drained on epoll
//!   ([`rules::read_proves_drained`](crate::rules::read_proves_drained)).
//! - **UDP segmentation offload** (`UDP_SEGMENT`, "GSO";
//!   [`send_segments`], and the server's `sendmmsg` groups): datagrams of
//!   one size to one address go out as *one* message, with the segment size
//!   in a control message. The kernel makes one pass down the IP stack for
//!   the lot (socket accounting, route, IP id, queueing) and cuts it into
//!   those datagrams as late as it can — on a NIC that can, in hardware; on
//!   loopback, at the receiving socket. The receiver sees the same separate
//!   datagrams it would have seen one by one.
//!
//! GSO is refused where the kernel lacks it (before Linux 4.18), where a
//! segment exceeds the path's MTU, or where the device cannot checksum it;
//! [`gso_refused`] names those errors, and a caller that meets one sends
//! one datagram per message from then on. At most [`GSO_MAX_SEGMENTS`]
//! datagrams, and [`GSO_MAX_BYTES`] in all, share a message.
//!
//! Everything here works on a raw descriptor and caller-owned memory; the
//! headers and `iovec`s pointing into that memory are built on the stack for
//! each call, so no pointer is kept between calls.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use crate::rules::DATAGRAM_MAX;

/// Datagrams per `recvmmsg` call (and per server `sendmmsg` call).
pub const BATCH: usize = 32;

/// Most datagrams one GSO message may carry: the kernel's
/// `UDP_MAX_SEGMENTS` (64 until Linux 6.12, 128 since).
pub const GSO_MAX_SEGMENTS: usize = 64;

/// Most bytes one GSO message may carry: it is one IP packet until it is
/// cut, so its UDP payload stays under 64 KiB with IPv6's headers.
pub const GSO_MAX_BYTES: usize = 65_000;

/// The memory of one `recvmmsg`: a buffer and a source address per datagram.
pub struct Received {
    /// [`BATCH`] buffers of [`DATAGRAM_MAX`] bytes, one after the other:
    /// 2 MiB, touched only as datagrams fill them.
    bufs: Vec<u8>,
    /// Each datagram's source address, as the kernel wrote it.
    addrs: Vec<libc::sockaddr_storage>,
    /// Each source address's length.
    addr_lens: [libc::socklen_t; BATCH],
    /// Each datagram's length.
    lens: [usize; BATCH],
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("datagrams", &BATCH)
            .finish()
    }
}

impl Default for Received {
    fn default() -> Self {
        Self::new()
    }
}

impl Received {
    /// Buffers for one batch.
    pub fn new() -> Self {
        Received {
            bufs: vec![0; BATCH * DATAGRAM_MAX],
            // SAFETY: all zeros is a valid sockaddr_storage.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            addr_lens: [0; BATCH],
            lens: [0; BATCH],
        }
    }

    /// One `recvmmsg` on `fd`: how many datagrams arrived (at least 1), or
    /// the error (`WouldBlock` when there were none).
    pub fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
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

    /// Datagram `k`'s length.
    pub fn len(&self, k: usize) -> usize {
        self.lens[k]
    }

    /// Datagram `k`'s bytes.
    pub fn data(&self, k: usize) -> &[u8] {
        &self.bufs[k * DATAGRAM_MAX..k * DATAGRAM_MAX + self.lens[k]]
    }

    /// Datagram `k`'s source (`None` if not an IP address).
    pub fn source(&self, k: usize) -> Option<SocketAddr> {
        let mut storage = socket2::SockAddrStorage::zeroed();
        // SAFETY: sockaddr_storage is a sockaddr type of this platform, and
        // the kernel wrote `addr_lens[k]` bytes of a valid address into it.
        let addr = unsafe {
            *storage.view_as::<libc::sockaddr_storage>() = self.addrs[k];
            socket2::SockAddr::new(storage, self.addr_lens[k])
        };
        addr.as_socket()
    }

    /// Points `iov` at datagram `k`'s bytes, to send it back as received;
    /// returns its source address (name and length) for the reply's header.
    pub(crate) fn reply(
        &mut self,
        k: usize,
        iov: &mut libc::iovec,
    ) -> (*mut libc::c_void, libc::socklen_t) {
        iov.iov_base = self.bufs[k * DATAGRAM_MAX..].as_mut_ptr().cast();
        iov.iov_len = self.lens[k];
        let name = (&mut self.addrs[k] as *mut libc::sockaddr_storage).cast();
        (name, self.addr_lens[k])
    }

    /// Whether datagrams `a` and `b` came from the same address.
    pub(crate) fn same_source(&self, a: usize, b: usize) -> bool {
        let bytes = |k: usize| {
            let len = self.addr_lens[k] as usize;
            // SAFETY: the kernel wrote `len` bytes of the address, within
            // the storage's size.
            unsafe {
                std::slice::from_raw_parts(
                    (&self.addrs[k] as *const libc::sockaddr_storage).cast::<u8>(),
                    len,
                )
            }
        };
        bytes(a) == bytes(b)
    }
}

/// Space for one control message of [`set_segment_size`]: 8-aligned, larger
/// than `CMSG_SPACE(2)`.
pub(crate) type SegmentControl = [u64; 4];

/// Asks for `hdr`'s bytes to go out as datagrams of `size` bytes: writes a
/// `UDP_SEGMENT` control message into `control` and points `hdr` at it.
pub(crate) fn set_segment_size(hdr: &mut libc::msghdr, control: &mut SegmentControl, size: u16) {
    hdr.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a length.
    hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
    // SAFETY: `control` is 32 bytes, 8-aligned, at least CMSG_SPACE(2), and
    // `hdr` points at it, so the first header and its 2 data bytes lie in it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(hdr);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(2) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
    }
}

/// Sends `bytes` to `dst` as datagrams of `segment` bytes (the last may be
/// shorter) in one GSO message: all of them, or none (`WouldBlock` when the
/// socket has no room). At most [`GSO_MAX_SEGMENTS`] segments and
/// [`GSO_MAX_BYTES`] bytes.
pub fn send_segments(fd: RawFd, bytes: &[u8], segment: usize, dst: SocketAddr) -> io::Result<()> {
    let segment = u16::try_from(segment).map_err(|_| io::ErrorKind::InvalidInput)?;
    let dst = socket2::SockAddr::from(dst);
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: a zeroed msghdr is valid (null pointers, 0 lengths).
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_name = dst.as_ptr() as *mut libc::c_void;
    hdr.msg_namelen = dst.len();
    let mut control = SegmentControl::default();
    set_segment_size(&mut hdr, &mut control, segment);
    // SAFETY: `hdr` points at a live iovec over `bytes` (which the kernel
    // only reads), at `dst` and at `control`; all outlive the call.
    let n = unsafe { libc::sendmsg(fd, &hdr, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a send with `UDP_SEGMENT` failed because GSO cannot be used
/// here (no kernel support, a segment above the path's MTU, a device that
/// cannot checksum it), not for a reason that would fail a plain send too.
pub fn gso_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP | libc::EMSGSIZE)
    )
}

/// How many datagrams of `size` bytes may share one GSO message: none of
/// 0 bytes (a segment size of 0 means "no GSO", so the kernel would send the
/// lot as *one* empty datagram).
pub fn gso_capacity(size: usize) -> usize {
    match size {
        0 => 1,
        _ => (GSO_MAX_BYTES / size).clamp(1, GSO_MAX_SEGMENTS),
    }
}
