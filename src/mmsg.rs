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
//! - **UDP receive offload** (`UDP_GRO`, [`enable_gro`]): the other way
//!   round. A socket that asks for it may be handed a *train* — datagrams
//!   of one source, one after the other, as one buffer with the segment
//!   size in a control message ([`Received::segment_size`]) — instead of
//!   the datagrams one by one: the datagrams of a GSO message that loopback
//!   never cut, or those a NIC's GRO joined. The kernel's rule defines a
//!   train: every segment has the segment size but the last, which may be
//!   shorter (a datagram shorter than the segment size ends a train). So
//!   the boundaries are known exactly, and such a train can go back as one
//!   GSO message with the same segment size: each datagram as it came.
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
//! GRO came in Linux 5.0; where the kernel lacks it, [`enable_gro`] says so
//! and the socket receives datagrams one by one, as before.
//!
//! Everything here works on a socket the caller lends ([`AsFd`]: a
//! descriptor that stays open for the call) and caller-owned memory; the
//! headers and `iovec`s pointing into that memory are built on the stack for
//! each call, so no pointer is kept between calls.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
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

/// The memory of one `recvmmsg`: a buffer, a source address and control
/// space per message. A message is one datagram, or on a socket with
/// [`enable_gro`] a train of them ([`Received::segments`]).
pub struct Received {
    /// [`BATCH`] buffers of [`DATAGRAM_MAX`] bytes, one after the other:
    /// 2 MiB, touched only as datagrams fill them. A train is at most one
    /// IP packet's worth, so it fits one buffer whole.
    bufs: Vec<u8>,
    /// Each message's source address, as the kernel wrote it.
    addrs: Vec<libc::sockaddr_storage>,
    /// Each source address's length.
    addr_lens: [libc::socklen_t; BATCH],
    /// Each message's length (a train's: all its datagrams').
    lens: [usize; BATCH],
    /// Each message's control space, where the kernel says a train's
    /// segment size.
    controls: [ControlSpace; BATCH],
    /// Each message's segment size: a train's, else its length.
    segment_sizes: [usize; BATCH],
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
            controls: [ControlSpace::default(); BATCH],
            segment_sizes: [0; BATCH],
        }
    }

    /// One `recvmmsg` on `socket`: how many messages arrived (at least 1),
    /// or the error (`WouldBlock` when there were none). Without
    /// [`enable_gro`] each message is one datagram.
    pub fn receive(&mut self, socket: impl AsFd) -> io::Result<usize> {
        // SAFETY: zeroed iovec and mmsghdr are valid (null pointers, 0 lengths).
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        // One pointer into each vector, offset per datagram: indexing the
        // vectors again would re-borrow them and void the pointers taken.
        let (bufs, addrs) = (self.bufs.as_mut_ptr(), self.addrs.as_mut_ptr());
        let (iovs, controls) = (iov.as_mut_ptr(), self.controls.as_mut_ptr());
        for (k, hdr) in hdrs.iter_mut().enumerate() {
            // SAFETY: k < BATCH: within the arrays and the BATCH buffers.
            unsafe {
                let v = &mut *iovs.add(k);
                v.iov_base = bufs.add(k * DATAGRAM_MAX).cast();
                v.iov_len = DATAGRAM_MAX;
                hdr.msg_hdr.msg_iov = iovs.add(k);
                hdr.msg_hdr.msg_name = addrs.add(k).cast();
                hdr.msg_hdr.msg_control = controls.add(k).cast();
            }
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as _;
            hdr.msg_hdr.msg_controllen = std::mem::size_of::<ControlSpace>() as _;
        }
        // SAFETY: BATCH headers, each pointing at its own live iovec, buffer
        // and address storage of the lengths given; all outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_fd().as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as _,
                // glibc declares the flags `int`, musl `unsigned int`.
                libc::MSG_DONTWAIT as _,
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
            self.segment_sizes[k] = gro_segment_size(&hdr.msg_hdr).unwrap_or(self.lens[k]);
        }
        Ok(n)
    }

    /// Message `k`'s length (a train's: all its datagrams').
    pub fn len(&self, k: usize) -> usize {
        self.lens[k]
    }

    /// Message `k`'s bytes (a train's: its datagrams one after the other).
    pub fn data(&self, k: usize) -> &[u8] {
        &self.bufs[k * DATAGRAM_MAX..k * DATAGRAM_MAX + self.lens[k]]
    }

    /// Message `k`'s segment size: each of its datagrams has this many
    /// bytes but the last, which may have fewer. A message that is not a
    /// train is one datagram: its length.
    pub fn segment_size(&self, k: usize) -> usize {
        self.segment_sizes[k]
    }

    /// How many datagrams message `k` holds: 1 unless it is a train (an
    /// empty datagram is one too).
    pub fn segments(&self, k: usize) -> usize {
        segments(self.lens[k], self.segment_sizes[k])
    }

    /// Message `k`'s source (`None` if not an IP address).
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

    /// Points `iovs[i]` at the bytes `pieces[i]` names (a message and a
    /// range of its bytes), for each `i`, to send them back as received;
    /// writes each one's source address (name and length) into `names[i]`
    /// for the replies' headers.
    pub(crate) fn replies(
        &mut self,
        pieces: &[(usize, Range<usize>)],
        iovs: &mut [libc::iovec],
        names: &mut [(*mut libc::c_void, libc::socklen_t)],
    ) {
        assert!(
            pieces.len() <= iovs.len() && pieces.len() <= names.len(),
            "{} pieces, {} iovecs, {} names",
            pieces.len(),
            iovs.len(),
            names.len()
        );
        // As in `receive`: one pointer into each vector.
        let (bufs, addrs) = (self.bufs.as_mut_ptr(), self.addrs.as_mut_ptr());
        for (((k, bytes), iov), name) in pieces.iter().zip(iovs).zip(names) {
            let k = *k;
            assert!(k < BATCH, "message {k} of a batch of {BATCH}");
            assert!(
                bytes.start <= bytes.end && bytes.end <= self.lens[k],
                "{bytes:?} of {k}"
            );
            // SAFETY: k < BATCH and the range lies within its length: within
            // the buffers and the addresses.
            unsafe {
                iov.iov_base = bufs.add(k * DATAGRAM_MAX + bytes.start).cast();
                *name = (addrs.add(k).cast(), self.addr_lens[k]);
            }
            iov.iov_len = bytes.len();
        }
    }

    /// Whether messages `a` and `b` came from the same address.
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

/// Space for one UDP control message: `UDP_SEGMENT`'s (a `u16`) of
/// [`set_segment_size`], or the `UDP_GRO` one (a `c_int`) a train comes
/// with. 8-aligned, 32 bytes: more than `CMSG_SPACE(4)`.
pub(crate) type ControlSpace = [u64; 4];

/// How many datagrams `len` bytes in segments of `segment_size` are: a
/// segment size of 0 (an empty datagram) is one.
pub fn segments(len: usize, segment_size: usize) -> usize {
    if segment_size == 0 {
        1
    } else {
        len.div_ceil(segment_size).max(1)
    }
}

/// The segment size of the `UDP_GRO` control message in `hdr`, as
/// `recvmsg`/`recvmmsg` left it: `Some` for a train, `None` for one
/// datagram (the kernel adds the message only to a train).
fn gro_segment_size(hdr: &libc::msghdr) -> Option<usize> {
    // SAFETY: `hdr` points at control space of `msg_controllen` bytes, into
    // which the kernel wrote well-formed control messages; CMSG_FIRSTHDR
    // (null when there is less than one header, or no space) and
    // CMSG_NXTHDR stay within that length.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return usize::try_from(size).ok();
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

/// Asks for `hdr`'s bytes to go out as datagrams of `size` bytes: writes a
/// `UDP_SEGMENT` control message into `control` and points `hdr` at it.
pub(crate) fn set_segment_size(hdr: &mut libc::msghdr, control: &mut ControlSpace, size: u16) {
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
    let mut control = ControlSpace::default();
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

/// Asks the kernel to hand `socket` trains (`UDP_GRO`, Linux 5.0+; see the
/// module docs): true if it will. A kernel without it refuses the option,
/// and the socket receives datagrams one by one as before. Only for a
/// socket whose every receive reads [`Received::segment_size`]: to one
/// that does not, a train would look like one large datagram.
pub fn enable_gro(socket: impl AsFd) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: a live c_int and its length, which is what the option reads.
    let r = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
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

    /// This kernel (5.0+) takes `UDP_GRO` on IPv4 and (where there is IPv6
    /// loopback) IPv6 sockets alike; a train to an IPv6 socket arrives
    /// whole with its segment size, as to an IPv4 one.
    #[test]
    fn gro_is_available_here() {
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        assert!(enable_gro(&v4));
        let Ok(v6) = std::net::UdpSocket::bind("[::1]:0") else {
            eprintln!("IPv6 part skipped: this machine has no IPv6 loopback ([::1])");
            return;
        };
        assert!(enable_gro(&v6));
        let sender = std::net::UdpSocket::bind("[::1]:0").expect("bind");
        let to = v6.local_addr().expect("local_addr");
        send_segments(&sender, &[3; 2500], 1000, to).expect("sendmsg");
        let mut r = Received::new();
        assert_eq!(r.receive(&v6).expect("recvmmsg"), 1);
        assert_eq!(
            (r.len(0), r.segment_size(0), r.segments(0)),
            (2500, 1000, 3)
        );
        assert_eq!(r.source(0), Some(sender.local_addr().expect("local_addr")));
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
