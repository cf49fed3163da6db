//! Linux's epoll: the batched echo — one `recvmmsg` for up to [`BATCH`]
//! messages, one `sendmmsg` to send the admitted datagrams back, and in it,
//! replies to one source of one size sharing a GSO message ([`crate::mmsg`]
//! explains both).
//!
//! The sockets ask for GRO where the kernel has it ([`prepare`]), so a
//! message received may be a *train* of datagrams with its segment size;
//! each datagram of it is counted, admitted and rate-limited on its own,
//! and what is admitted — all of it, or a prefix cut by `--udp-rate` — goes
//! back as one GSO message with the same segment size: the same datagrams,
//! with the same boundaries.
//!
//! The replies go straight back to the addresses they came from, as
//! received (no conversion on the way back), each source's in their order.
//! A batch shorter than asked for proves the socket drained on epoll
//! ([`rules::read_proves_drained`]); elsewhere the loop receives again until
//! `EAGAIN`. A `sendmmsg` that stops at `EAGAIN` drops the rest of the batch
//! (counted, as on the portable path); one that fails on one message skips
//! it and sends the rest. A GSO message the kernel refuses goes again one
//! datagram per message; GSO stays on for the others, so no peer (a path
//! with a small MTU, a spoofed source) can turn it off for everyone.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Instant;

use log::{debug, info};
use mio::net::UdpSocket;

use super::{is_peer_error, Policy, Udp, DATAGRAMS_PER_TURN};
use crate::logging::Throttle;
use crate::mmsg::{self, ControlSpace, Received, BATCH};
use crate::rules;
use crate::stats::{Counter, Counters};

/// Largest datagram sent with GSO: one that fits a 1,500-byte path in one
/// IPv6 packet. The kernel refuses a GSO segment above the path's MTU; a
/// larger datagram goes alone and may be fragmented, as without GSO. (A
/// train received with a larger segment size goes back as it came.)
const GSO_MAX_SEGMENT: usize = 1452;

/// Most pieces, and messages, one [`Plan`] holds: a batch's messages, or
/// the datagrams of one train sent one per message (a train has at most
/// the kernel's 64).
const PLAN_MAX: usize = 64;

/// Asks for GRO on a server socket, where the kernel has both it and GSO
/// (a train must be able to go back as one GSO message); elsewhere the
/// socket receives datagrams one by one, as without it.
pub(super) fn prepare(socket: &UdpSocket) {
    let on = mmsg::gso_supported(socket) && mmsg::enable_gro(socket);
    debug!("udp: GRO {}", if on { "on" } else { "not available" });
}

/// The batch's memory.
#[derive(Debug)]
pub(super) struct Buffers {
    /// The messages of the last `recvmmsg`, replies sent from there.
    received: Received,
    /// Rate limit for "GSO refused" lines.
    refusals: Throttle,
}

/// A run of datagrams of one received message that goes out in one
/// message: a whole train, its admitted prefix, or one datagram of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Piece {
    /// The received message it is from (its index in the batch).
    k: usize,
    /// Where it starts in that message's bytes.
    start: usize,
    /// Its bytes.
    len: usize,
    /// How many datagrams it holds.
    datagrams: usize,
}

impl Piece {
    /// Its datagrams, one piece each, for `segment`-byte segments (the
    /// last may be shorter).
    fn split(self, segment: usize) -> impl Iterator<Item = Piece> {
        (0..self.datagrams).map(move |i| {
            if self.datagrams == 1 {
                return self;
            }
            let start = self.start + i * segment;
            Piece {
                k: self.k,
                start,
                len: segment.min(self.start + self.len - start),
                datagrams: 1,
            }
        })
    }
}

/// One message of a [`Plan`]: a run of its pieces, one segment size.
#[derive(Clone, Copy, Debug, Default)]
struct Message {
    /// Its first piece in [`Plan::pieces`].
    first: usize,
    /// How many pieces.
    pieces: usize,
    /// Each datagram's size but the last's (which may be shorter).
    segment: usize,
    /// How many datagrams in all.
    datagrams: usize,
    /// Whether its last datagram is shorter than `segment`: it ends a
    /// train, and nothing may join it.
    closed: bool,
}

/// How [`Buffers::send_back`] sends a batch: its pieces in message order,
/// and the messages they form.
struct Plan {
    /// The pieces, message by message.
    pieces: [Piece; PLAN_MAX],
    /// The messages.
    messages: [Message; PLAN_MAX],
    /// Messages in use.
    used: usize,
    /// Pieces in use.
    placed: usize,
}

impl Plan {
    /// An empty plan.
    fn new() -> Self {
        Plan {
            pieces: [Piece::default(); PLAN_MAX],
            messages: [Message::default(); PLAN_MAX],
            used: 0,
            placed: 0,
        }
    }

    /// Adds `piece` as a message of its own, of `segment`-byte segments.
    fn push(&mut self, piece: Piece, segment: usize) {
        self.messages[self.used] = Message {
            first: self.placed,
            pieces: 1,
            segment,
            datagrams: piece.datagrams,
            closed: piece.len < piece.datagrams * segment,
        };
        self.pieces[self.placed] = piece;
        self.used += 1;
        self.placed += 1;
    }

    /// The pieces of messages `from..to`, in order.
    fn pieces_of(&self, from: usize, to: usize) -> impl Iterator<Item = Piece> + '_ {
        let range = if from < to {
            self.messages[from].first..self.messages[to - 1].first + self.messages[to - 1].pieces
        } else {
            0..0
        };
        self.pieces[range].iter().copied()
    }

    /// Tells `outcome` that the pieces of messages `from..` were dropped:
    /// the socket was full.
    fn blocked(&self, from: usize, outcome: &mut Outcome<'_>) {
        let full = || Err(io::ErrorKind::WouldBlock.into());
        self.pieces_of(from, self.used)
            .for_each(|p| outcome(p, full()));
    }
}

/// What became of one piece's reply: `Ok`, `WouldBlock` (the socket was
/// full: it and the rest are dropped), or the error its message met.
type Outcome<'a> = dyn FnMut(Piece, io::Result<()>) + 'a;

impl Buffers {
    /// Buffers for one batch.
    pub(super) fn new() -> Self {
        Buffers {
            received: Received::new(),
            refusals: Throttle::default(),
        }
    }

    /// Sends `plan`'s messages; `outcome(piece, result)` is told what became
    /// of each piece. A message of several datagrams goes as one GSO
    /// message where `gso` allows and the kernel takes it, else one
    /// datagram per message ([`Buffers::send_singly`]). Returns whether the
    /// socket was full (the rest were dropped).
    fn send_back(
        &mut self,
        socket: BorrowedFd<'_>,
        plan: &Plan,
        gso: bool,
        now: Instant,
        outcome: &mut Outcome<'_>,
    ) -> bool {
        // SAFETY: zeroed iovecs and headers are valid.
        let mut iov: [libc::iovec; PLAN_MAX] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; PLAN_MAX] = unsafe { std::mem::zeroed() };
        let mut control = [ControlSpace::default(); PLAN_MAX];
        self.headers(plan, &mut iov, &mut hdrs, &mut control);
        let one_by_one = |m: &Message| !gso && m.datagrams > 1;
        let mut g = 0;
        while g < plan.used {
            let m = plan.messages[g];
            if one_by_one(&m) {
                if self.send_singly(socket, plan, g, now, outcome) {
                    plan.blocked(g + 1, outcome);
                    return true;
                }
                g += 1;
                continue;
            }
            let end = (g..plan.used)
                .find(|&h| one_by_one(&plan.messages[h]))
                .unwrap_or(plan.used);
            // SAFETY: headers g..end point at live iovecs, buffers,
            // addresses and control space filled above.
            let e = match unsafe { sendmmsg(socket, &mut hdrs[g..end]) } {
                Ok(0) => {
                    // Never for a non-empty batch; were it to happen, no spin.
                    plan.blocked(g, outcome);
                    return true;
                }
                Ok(sent) => {
                    plan.pieces_of(g, g + sent).for_each(|p| outcome(p, Ok(())));
                    g += sent;
                    continue;
                }
                Err(e) => e,
            };
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    plan.blocked(g, outcome);
                    return true;
                }
                _ if m.datagrams > 1 && mmsg::gso_refused(&e) => {
                    self.refused(&e, plan.pieces[m.first].k, now);
                    if self.send_singly(socket, plan, g, now, outcome) {
                        plan.blocked(g + 1, outcome);
                        return true;
                    }
                }
                _ => {
                    let failed = || Err(io::Error::from(e.kind()));
                    plan.pieces_of(g, g + 1).for_each(|p| outcome(p, failed()));
                }
            }
            g += 1; // this message is done with: on to the next
        }
        false
    }

    /// Sends message `g` of `plan` one datagram per message, in order, as
    /// many at a time as a plan holds. Returns whether the socket was full
    /// (the rest of its datagrams were dropped, and said so to `outcome`).
    fn send_singly(
        &mut self,
        socket: BorrowedFd<'_>,
        plan: &Plan,
        g: usize,
        now: Instant,
        outcome: &mut Outcome<'_>,
    ) -> bool {
        let segment = plan.messages[g].segment;
        let mut datagrams = plan.pieces_of(g, g + 1).flat_map(|p| p.split(segment));
        loop {
            let mut singles = Plan::new();
            for d in datagrams.by_ref().take(PLAN_MAX) {
                singles.push(d, d.len);
            }
            if singles.used == 0 {
                return false;
            }
            if self.send_back(socket, &singles, false, now, outcome) {
                let full = || Err(io::ErrorKind::WouldBlock.into());
                datagrams.for_each(|d| outcome(d, full()));
                return true;
            }
        }
    }

    /// A GSO reply to message `k`'s source was refused with `e`: said,
    /// rate-limited. Its datagrams go again one per message.
    fn refused(&mut self, e: &io::Error, k: usize, now: Instant) {
        if let Some(missed) = self.refusals.allow(now) {
            let to = self
                .received
                .source(k)
                .map_or_else(|| "?".into(), |a| a.to_string());
            info!(
                "udp: sendmmsg: a GSO reply to {to} refused ({e}); sent one datagram per message \
                 ({missed} more refused since last said)"
            );
        }
    }

    /// Points one `sendmmsg` header per message of `plan` at its run of
    /// pieces (in `iov`), its destination and, for more than one datagram,
    /// a `UDP_SEGMENT` control message (in `control`).
    fn headers(
        &mut self,
        plan: &Plan,
        iov: &mut [libc::iovec; PLAN_MAX],
        hdrs: &mut [libc::mmsghdr; PLAN_MAX],
        control: &mut [ControlSpace; PLAN_MAX],
    ) {
        let pieces: [_; PLAN_MAX] = std::array::from_fn(|i| {
            let p = plan.pieces[i];
            (p.k, p.start..p.start + p.len)
        });
        let mut names = [(std::ptr::null_mut(), 0); PLAN_MAX];
        self.received
            .replies(&pieces[..plan.placed], iov, &mut names);
        let iovs = iov.as_mut_ptr();
        for (g, m) in plan.messages[..plan.used].iter().enumerate() {
            let hdr = &mut hdrs[g].msg_hdr;
            // SAFETY: first + pieces <= plan.placed <= PLAN_MAX: the run lies
            // in `iov` (a pointer from the whole array, not one element).
            hdr.msg_iov = unsafe { iovs.add(m.first) };
            hdr.msg_iovlen = m.pieces as _;
            (hdr.msg_name, hdr.msg_namelen) = names[m.first];
            if m.datagrams > 1 {
                // A segment size above u16 cannot have come in a train, nor
                // pass the joining rule of `groups`.
                let size = u16::try_from(m.segment).unwrap_or(u16::MAX);
                mmsg::set_segment_size(hdr, &mut control[g], size);
            }
        }
    }

    /// The messages the admitted datagrams go out in: message `k`'s first
    /// `admitted[k]` datagrams are one piece. With `gso`, a piece joins the
    /// message of its source's latest piece if that has its segment size,
    /// is not closed by a short datagram and has room
    /// ([`mmsg::gso_capacity`]) — never an earlier one, which would send it
    /// ahead of datagrams it follows. The kernel cuts such a message back
    /// into those datagrams, after one pass down the IP stack for the lot.
    /// Without `gso`, one message each (a train is then sent one datagram
    /// per message).
    fn groups(&self, admitted: &[usize], gso: bool) -> Plan {
        let r = &self.received;
        let mut piece_of = [Piece::default(); BATCH];
        let mut group_of = [usize::MAX; BATCH];
        let mut heads = Plan::new(); // one piece a message: its first
        for k in (0..admitted.len()).filter(|&k| admitted[k] > 0) {
            let segment = r.segment_size(k);
            let piece = Piece {
                k,
                start: 0,
                len: r.len(k).min(admitted[k] * segment),
                datagrams: admitted[k],
            };
            let latest = (0..heads.used)
                .rev()
                .find(|&g| r.same_source(heads.pieces[g].k, k));
            let joins = latest.filter(|&g| {
                let m = &heads.messages[g];
                gso && segment <= GSO_MAX_SEGMENT
                    && m.segment == segment
                    && !m.closed
                    && m.datagrams + piece.datagrams <= mmsg::gso_capacity(segment)
            });
            group_of[k] = match joins {
                Some(g) => {
                    let m = &mut heads.messages[g];
                    m.pieces += 1;
                    m.datagrams += piece.datagrams;
                    m.closed = piece.len < piece.datagrams * segment;
                    g
                }
                None => {
                    heads.push(piece, segment);
                    heads.used - 1
                }
            };
            piece_of[k] = piece;
        }
        let mut plan = Plan::new();
        for (g, head) in heads.messages[..heads.used].iter().enumerate() {
            plan.messages[g] = Message {
                first: plan.placed,
                ..*head
            };
            for k in (0..admitted.len()).filter(|&k| group_of[k] == g) {
                plan.pieces[plan.placed] = piece_of[k];
                plan.placed += 1;
            }
        }
        plan.used = heads.used;
        plan
    }
}

/// One `sendmmsg` of `hdrs`: how many messages went, or the error the
/// first one met.
///
/// # Safety
/// Every header must point at live iovecs, buffers, addresses and control
/// space of the lengths it gives.
unsafe fn sendmmsg(socket: BorrowedFd<'_>, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    // SAFETY: the caller's promise; all outlive the call.
    let r = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            hdrs.as_mut_ptr(),
            hdrs.len() as _,
            // glibc declares the flags `int`, musl `unsigned int`.
            libc::MSG_DONTWAIT as _,
        )
    };
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

/// Receives and echoes on `udp` in batches until the socket is drained or
/// the budget (in datagrams) is spent. Returns an unexpected receive error.
pub(super) fn serve(
    batch: &mut Buffers,
    policy: &mut Policy,
    udp: &mut Udp,
    counters: &Counters,
    now: Instant,
) -> io::Result<()> {
    let gso = mmsg::gso_supported(&udp.socket);
    let mut received = 0;
    while received < DATAGRAMS_PER_TURN {
        let n = match batch.received.receive(&udp.socket) {
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
        let r = &batch.received;
        let mut admitted = [0; BATCH];
        let mut dst = [None; BATCH];
        for (k, admitted) in admitted.iter_mut().enumerate().take(n) {
            let (src, datagrams) = (r.source(k), r.segments(k));
            *admitted = src.map_or(0, |src| {
                policy.admit(src, r.len(k), datagrams, counters, now)
            });
            dst[k] = src;
            received += datagrams;
        }
        let plan = batch.groups(&admitted[..n], gso);
        batch.send_back(udp.socket.as_fd(), &plan, gso, now, &mut |p, result| {
            policy.account_send(result, p.datagrams, p.len, dst[p.k], counters, now);
        });
        if rules::read_proves_drained(n, BATCH, false) {
            udp.ready = false;
            return Ok(());
        }
    }
    Ok(()) // budget spent: still ready, served again next turn
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    /// A receiver (with GRO where `gro`) and three senders.
    fn sockets(gro: bool) -> (UdpSocket, [UdpSocket; 3]) {
        let bind = || UdpSocket::bind("127.0.0.1:0").expect("bind");
        let receiver = bind();
        if gro {
            assert!(mmsg::enable_gro(&receiver), "this kernel (6.x) has UDP_GRO");
        }
        (receiver, [bind(), bind(), bind()])
    }

    /// The batch `receiver` holds, all `expected` of its messages.
    fn received(receiver: &UdpSocket, expected: usize) -> Buffers {
        let mut b = Buffers::new();
        // Loopback queues a datagram before send_to returns.
        let n = b.received.receive(receiver).expect("recvmmsg");
        assert_eq!(n, expected);
        b
    }

    /// A batch as `recvmmsg` leaves it when datagram k came from sender
    /// `from[k]` (of three sockets) with `lens[k]` bytes, sent in order.
    fn batch(from: &[usize], lens: &[usize]) -> Buffers {
        let (receiver, senders) = sockets(false);
        let to = receiver.local_addr().expect("local_addr");
        for (&s, &len) in from.iter().zip(lens) {
            senders[s].send_to(&vec![7; len], to).expect("send_to");
        }
        received(&receiver, from.len())
    }

    /// A batch of trains: message k is sender `from[k]`'s GSO message of
    /// `lens[k]` bytes in segments of `segments[k]`, received whole.
    fn trains(from: &[usize], lens: &[usize], segments: &[usize]) -> Buffers {
        let (receiver, senders) = sockets(true);
        let to = receiver.local_addr().expect("local_addr");
        for ((&s, &len), &segment) in from.iter().zip(lens).zip(segments) {
            mmsg::send_segments(&senders[s], &vec![7; len], segment, to).expect("sendmsg");
        }
        received(&receiver, from.len())
    }

    /// One datagram admitted of each message.
    fn each(n: usize) -> Vec<usize> {
        vec![1; n]
    }

    /// The messages of a plan, as lists of received message indexes.
    fn messages(plan: &Plan) -> Vec<Vec<usize>> {
        (0..plan.used)
            .map(|g| plan.pieces_of(g, g + 1).map(|p| p.k).collect())
            .collect()
    }

    /// Replies to one source with one size share a message, in their
    /// order; another source, another size, a datagram too large for GSO
    /// or one not kept each go their own way.
    #[test]
    fn one_message_per_source_and_size() {
        let from = [0, 1, 0, 0, 1, 0, 2, 0];
        let lens = [100, 100, 100, 100, 100, 50, 2000, 100];
        let admitted = [1, 1, 1, 1, 1, 1, 1, 0];
        let plan = batch(&from, &lens).groups(&admitted, true);
        assert_eq!(
            messages(&plan),
            [vec![0, 2, 3], vec![1, 4], vec![5], vec![6]]
        );
    }

    /// A datagram never joins a message its source sent before another
    /// size (or a datagram too large for GSO): that would reorder them.
    #[test]
    fn a_later_datagram_never_overtakes() {
        for lens in [[100, 50, 100], [100, 2000, 100], [100, 0, 100]] {
            let plan = batch(&[0, 0, 0], &lens).groups(&each(3), true);
            assert_eq!(messages(&plan), [vec![0], vec![1], vec![2]], "{lens:?}");
        }
    }

    /// A message holds at most what the kernel takes in one: 16 datagrams
    /// of 1 byte.
    #[test]
    fn a_message_holds_what_the_kernel_takes() {
        let plan = batch(&[0; 20], &[1; 20]).groups(&each(20), true);
        assert_eq!(
            messages(&plan),
            [(0..16).collect::<Vec<_>>(), (16..20).collect()]
        );
    }

    /// A run of messages yields their pieces in order, and a full socket
    /// drops exactly the pieces of the messages not yet sent.
    #[test]
    fn pieces_and_the_dropped_rest() {
        let plan = batch(&[0, 1, 0, 2], &[100, 100, 100, 100]).groups(&each(4), true);
        assert_eq!(messages(&plan), [vec![0, 2], vec![1], vec![3]]);
        let ks = |from, to| plan.pieces_of(from, to).map(|p| p.k).collect::<Vec<_>>();
        assert_eq!(ks(0, 2), [0, 2, 1]);
        assert_eq!(ks(2, 2), []);
        let mut dropped = Vec::new();
        plan.blocked(1, &mut |p, r: io::Result<()>| {
            assert_eq!(r.map_err(|e| e.kind()), Err(io::ErrorKind::WouldBlock));
            dropped.push(p.k);
        });
        assert_eq!(dropped, [1, 3]);
    }

    /// Without GSO every datagram is its own message, in batch order.
    #[test]
    fn without_gso_one_message_each() {
        let plan = batch(&[0, 0, 0], &[100, 100, 100]).groups(&each(3), false);
        assert_eq!(messages(&plan), [vec![0], vec![1], vec![2]]);
    }

    /// With GRO a GSO message arrives whole, with its segment size; its
    /// datagrams are the segments, the last one shorter.
    #[test]
    fn a_train_arrives_whole_with_its_segment_size() {
        let b = trains(&[0, 1], &[3500, 1000], &[1000, 1000]);
        let r = &b.received;
        assert_eq!(
            (r.len(0), r.segment_size(0), r.segments(0)),
            (3500, 1000, 4)
        );
        // A GSO message of one segment is sent, and received, as a datagram.
        assert_eq!(
            (r.len(1), r.segment_size(1), r.segments(1)),
            (1000, 1000, 1)
        );
    }

    /// A train goes back as one message of its segment size with all its
    /// bytes; one cut by the rate limit, as its admitted datagrams only; a
    /// later train of its source and size joins it unless a short datagram
    /// closed it, and a train whose segment size differs never joins.
    #[test]
    fn trains_go_back_whole_or_cut_joined_while_open() {
        let from = [0, 0, 0, 0, 1];
        let lens = [4000, 3500, 2000, 1800, 4000];
        let segs = [1000, 1000, 1000, 900, 1000];
        let plan = trains(&from, &lens, &segs).groups(&[4, 4, 2, 2, 3], true);
        assert_eq!(messages(&plan), [vec![0, 1], vec![2], vec![3], vec![4]]);
        let m = |g: usize| plan.messages[g];
        assert_eq!((m(0).segment, m(0).datagrams, m(0).closed), (1000, 8, true));
        assert_eq!((m(1).datagrams, m(2).segment, m(3).datagrams), (2, 900, 3));
        let p = |g: usize| plan.pieces_of(g, g + 1).map(|p| p.len).collect::<Vec<_>>();
        assert_eq!(
            (p(0), p(1), p(2), p(3)),
            (vec![4000, 3500], vec![2000], vec![1800], vec![3000])
        );
    }

    /// A train that cannot go as one GSO message (here: `gso` off) goes
    /// back one datagram per message, each with its own boundaries and
    /// bytes, in order, each reported sent.
    #[test]
    fn a_train_without_gso_goes_back_datagram_by_datagram() {
        let (receiver, senders) = sockets(true);
        let to = receiver.local_addr().expect("local_addr");
        let bytes: Vec<u8> = (0..2300u32).map(|i| (i % 251) as u8).collect();
        mmsg::send_segments(&senders[0], &bytes, 1000, to).expect("sendmsg");
        let mut b = received(&receiver, 1);
        let plan = b.groups(&[3], true);
        let mut reported = Vec::new();
        let full = b.send_back(
            receiver.as_fd(),
            &plan,
            false,
            Instant::now(),
            &mut |p, r| {
                reported.push((p.start, p.len, p.datagrams, r.is_ok()));
            },
        );
        assert!(!full);
        assert_eq!(
            reported,
            [
                (0, 1000, 1, true),
                (1000, 1000, 1, true),
                (2000, 300, 1, true)
            ]
        );
        senders[0].set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 4096];
        for want in bytes.chunks(1000) {
            let (n, _) = senders[0].recv_from(&mut buf).expect("an echoed datagram");
            assert_eq!(&buf[..n], want);
        }
        assert!(
            senders[0].recv_from(&mut buf).is_err(),
            "one datagram too many"
        );
    }

    /// A train sent one datagram per message comes apart at its segment
    /// boundaries, the last datagram shorter.
    #[test]
    fn a_train_splits_into_its_datagrams() {
        let train = Piece {
            k: 3,
            start: 0,
            len: 2500,
            datagrams: 3,
        };
        let split: Vec<_> = train
            .split(1000)
            .map(|p| (p.start, p.len, p.datagrams))
            .collect();
        assert_eq!(split, [(0, 1000, 1), (1000, 1000, 1), (2000, 500, 1)]);
        let empty = Piece {
            len: 0,
            datagrams: 1,
            ..train
        };
        assert_eq!(empty.split(0).collect::<Vec<_>>(), [empty]);
    }
}
