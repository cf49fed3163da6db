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
//! GSO came in Linux 4.18, and a kernel without it does not refuse the
//! control message — it ignores it, and would send a message as *one*
//! datagram. So it is used only where [`gso_supported`] says the kernel
//! knows `UDP_SEGMENT`: one answer per process, for the server and the
//! stress client alike. Even then the kernel refuses a message whose segment
//! exceeds the path's MTU (`EMSGSIZE`, or `EINVAL` on older kernels), or that
//! a device cannot checksum (`EIO`); [`gso_refused`] names those errors, and
//! the caller sends that message's datagrams one per message instead.
//! [`gso_capacity`] says how many datagrams of a size may share a message.
//!
//! Everything here works on a socket the caller lends ([`AsFd`]: a
//! descriptor that stays open for the call) and caller-owned memory; the
//! headers and `iovec`s pointing into that memory are built on the stack for
//! each call, so no pointer is kept between calls.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::OnceLock;

use crate::rules::DATAGRAM_MAX;

/// Datagrams per `recvmmsg` call (and per server `sendmmsg` call).
pub const BATCH: usize = 32;

/// The kernel's `UDP_MAX_SEGMENTS`: most segments one GSO message may have.
const MAX_SEGMENTS: usize = 64;

/// UDP and IPv6 header bytes. Before Linux 5.16 the kernel checked the
/// segment limit against the packet's length *with* its headers, so a
/// message may carry this many bytes less than `MAX_SEGMENTS` segments.
const HEADERS: usize = 48;

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

    /// One `recvmmsg` on `socket`: how many datagrams arrived (at least 1),
    /// or the error (`WouldBlock` when there were none).
    pub fn receive(&mut self, socket: impl AsFd) -> io::Result<usize> {
        // SAFETY: zeroed iovec and mmsghdr are valid (null pointers, 0 lengths).
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        // One pointer into each vector, offset per datagram: indexing the
        // vectors again would re-borrow them and void the pointers taken.
        let (bufs, addrs) = (self.bufs.as_mut_ptr(), self.addrs.as_mut_ptr());
        let iovs = iov.as_mut_ptr();
        for (k, hdr) in hdrs.iter_mut().enumerate() {
            // SAFETY: k < BATCH: within the arrays and the BATCH buffers.
            unsafe {
                let v = &mut *iovs.add(k);
                v.iov_base = bufs.add(k * DATAGRAM_MAX).cast();
                v.iov_len = DATAGRAM_MAX;
                hdr.msg_hdr.msg_iov = iovs.add(k);
                hdr.msg_hdr.msg_name = addrs.add(k).cast();
            }
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as _;
        }
        // SAFETY: BATCH headers, each pointing at its own live iovec, buffer
        // and address storage of the lengths given; all outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_fd().as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as _,
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

    /// Points `iovs[i]` at datagram `order[i]`'s bytes, for each `i`, to
    /// send them back as received; returns each one's source address (name
    /// and length) for the replies' headers.
    pub(crate) fn replies(
        &mut self,
        order: &[usize],
        iovs: &mut [libc::iovec],
    ) -> [(*mut libc::c_void, libc::socklen_t); BATCH] {
        assert!(
            order.len() <= iovs.len(),
            "{} datagrams, {} iovecs",
            order.len(),
            iovs.len()
        );
        let mut names = [(std::ptr::null_mut(), 0); BATCH];
        // As in `receive`: one pointer into each vector.
        let (bufs, addrs) = (self.bufs.as_mut_ptr(), self.addrs.as_mut_ptr());
        for ((&k, iov), name) in order.iter().zip(iovs).zip(&mut names) {
            assert!(k < BATCH, "datagram {k} of a batch of {BATCH}");
            // SAFETY: k < BATCH: within the buffers and the addresses.
            unsafe {
                iov.iov_base = bufs.add(k * DATAGRAM_MAX).cast();
                *name = (addrs.add(k).cast(), self.addr_lens[k]);
            }
            iov.iov_len = self.lens[k];
        }
        names
    }

    /// Whether datagrams `a` and `b` came from the same address.
    pub(crate) fn same_source(&self, a: usize, b: usize) -> bool {
        let bytes = |k: usize| {
            let len = self.addr_lens[k] as usize;
            // SAFETY: the kernel wrote `len` bytes of the address, within
            // the storage's size.
            unsafe {
                let start = (&self.addrs[k] as *const libc::sockaddr_storage).cast::<u8>();
                std::slice::from_raw_parts(start, len)
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
    hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
    // SAFETY: `control` is 32 bytes, 8-aligned, at least CMSG_SPACE(2), and
    // `hdr` points at it, so the first header and its 2 data bytes lie in it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(hdr);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
    }
}

/// Sends `bytes` to `dst` as datagrams of `segment` bytes (the last may be
/// shorter) in one GSO message: all of them, or none (`WouldBlock` when the
/// socket has no room). `InvalidInput` if there are none, or more than
/// [`gso_capacity`] allows.
pub fn send_segments(
    socket: impl AsFd,
    bytes: &[u8],
    segment: usize,
    dst: SocketAddr,
) -> io::Result<()> {
    if segment == 0 || bytes.is_empty() || bytes.len().div_ceil(segment) > gso_capacity(segment) {
        return Err(io::ErrorKind::InvalidInput.into());
    }
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
    let n = unsafe { libc::sendmsg(socket.as_fd().as_raw_fd(), &hdr, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the kernel knows `UDP_SEGMENT` (Linux 4.18+), so that GSO may
/// be used: asked once per process, of the first UDP socket to ask, and the
/// same answer for every later caller (it is the kernel's, not a socket's).
/// The server and the stress client both ask here; what each does after a
/// refused message ([`gso_refused`]) is its own policy.
pub fn gso_supported(socket: impl AsFd) -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| knows_udp_segment(socket.as_fd()))
}

/// Whether `getsockopt(UDP_SEGMENT)` works on `socket`: it does where the
/// kernel has GSO, and fails with `ENOPROTOOPT` before.
fn knows_udp_segment(socket: BorrowedFd<'_>) -> bool {
    let mut size: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a live c_int and its length, which is what the option writes.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&mut size as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0
}

/// Whether a send with `UDP_SEGMENT` failed because that message cannot
/// go as one GSO message (a segment above the path's MTU, a device that
/// cannot checksum it, no support after all), not for a reason that would
/// fail a plain send too: its datagrams may still go one per message.
pub fn gso_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP | libc::EMSGSIZE)
    )
}

/// How many datagrams of `size` bytes may share one GSO message: at most
/// [`GSO_MAX_BYTES`] in all, and the kernel's 64 segments less the headers'
/// worth older kernels count; none of 0 bytes (a segment size of 0 means "no
/// GSO", so the kernel would send the lot as *one* empty datagram).
pub fn gso_capacity(size: usize) -> usize {
    if size == 0 {
        return 1;
    }
    let segments = MAX_SEGMENTS - HEADERS.div_ceil(size).min(MAX_SEGMENTS - 1);
    (GSO_MAX_BYTES / size).min(segments).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This kernel (the CI's is 6.x) has GSO, and says so, on IPv4 and
    /// (where there is IPv6 loopback) IPv6 sockets alike.
    #[test]
    fn gso_is_supported_here() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        assert!(knows_udp_segment(socket.as_fd()));
        assert!(gso_supported(&socket));
        if let Ok(v6) = std::net::UdpSocket::bind("[::1]:0") {
            assert!(knows_udp_segment(v6.as_fd()));
        }
    }

    /// Empty datagrams never share a message; small ones are capped by the
    /// segment count (less the headers' worth), large ones by the bytes.
    #[test]
    fn capacity_per_size() {
        assert_eq!(gso_capacity(0), 1);
        assert_eq!(gso_capacity(1), 16);
        assert_eq!(gso_capacity(48), 63);
        assert_eq!(gso_capacity(1000), 63);
        assert_eq!(gso_capacity(1400), 46);
        assert_eq!(gso_capacity(40_000), 1);
    }
}
