//! Linux's epoll: the batched echo — one `recvmmsg` for up to [`BATCH`] datagrams,
//! one `sendmmsg` to send the admitted ones back, and in it, replies to one
//! source of one size sharing a GSO message ([`crate::mmsg`] explains both).
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

use log::info;

use super::{is_peer_error, Policy, Udp, DATAGRAMS_PER_TURN};
use crate::logging::Throttle;
use crate::mmsg::{self, Received, SegmentControl, BATCH};
use crate::rules;
use crate::stats::{Counter, Counters};

/// Largest datagram sent with GSO: one that fits a 1,500-byte path in one
/// IPv6 packet. The kernel refuses a GSO segment above the path's MTU; a
/// larger datagram goes alone and may be fragmented, as without GSO.
const GSO_MAX_SEGMENT: usize = 1452;

/// The batch's memory.
#[derive(Debug)]
pub(super) struct Buffers {
    /// The datagrams of the last `recvmmsg`, replies sent from there.
    received: Received,
    /// Rate limit for "GSO refused" lines.
    refusals: Throttle,
}

/// How [`Buffers::send_back`] sends a batch: its datagrams in message order,
/// and each message's run of them.
struct Plan {
    /// Datagram indexes, message by message.
    order: [usize; BATCH],
    /// Each message's (start in `order`, number of datagrams).
    spans: [(usize, usize); BATCH],
    /// Messages in use.
    messages: usize,
    /// Datagrams in use.
    datagrams: usize,
}

impl Plan {
    /// The datagrams of messages `from..to`, in order.
    fn members(&self, from: usize, to: usize) -> impl Iterator<Item = usize> + '_ {
        let span = |g: usize| self.spans[g].0..self.spans[g].0 + self.spans[g].1;
        let datagrams = if from < to {
            span(from).start..span(to - 1).end
        } else {
            0..0
        };
        self.order[datagrams].iter().copied()
    }

    /// Tells `outcome` that the datagrams of messages `from..` were dropped:
    /// the socket was full.
    fn blocked(&self, from: usize, outcome: &mut Outcome<'_>) {
        if from < self.messages {
            let full = || Err(io::ErrorKind::WouldBlock.into());
            self.members(from, self.messages)
                .for_each(|k| outcome(k, full()));
        }
    }
}

/// What became of one datagram's reply: `Ok`, `WouldBlock` (the socket was
/// full: it and the rest are dropped), or the error its message met.
type Outcome<'a> = dyn FnMut(usize, io::Result<()>) + 'a;

impl Buffers {
    /// Buffers for one batch.
    pub(super) fn new() -> Self {
        Buffers {
            received: Received::new(),
            refusals: Throttle::default(),
        }
    }

    /// Sends the datagrams whose `keep` is set back to their sources, with
    /// as few messages as [`Buffers::groups`] allows (one each without
    /// `gso`); `outcome(k, result)` is told what became of each. Returns
    /// whether the socket was full (the rest were dropped).
    fn send_back(
        &mut self,
        socket: BorrowedFd<'_>,
        keep: &[bool],
        gso: bool,
        now: Instant,
        outcome: &mut Outcome<'_>,
    ) -> bool {
        let plan = self.groups(keep, gso);
        // SAFETY: zeroed iovecs, headers and control space are valid.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let mut control = [SegmentControl::default(); BATCH];
        self.headers(&plan, &mut iov, &mut hdrs, &mut control);
        let mut g = 0;
        while g < plan.messages {
            // SAFETY: headers g.. point at live iovecs, buffers, addresses
            // and control space filled above; all outlive the call.
            let r = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    hdrs[g..].as_mut_ptr(),
                    (plan.messages - g) as _,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                let sent = r as usize;
                plan.members(g, g + sent).for_each(|k| outcome(k, Ok(())));
                g += sent;
                continue;
            }
            if r == 0 {
                // Never for a non-empty batch; were it to happen, no spin.
                plan.blocked(g, outcome);
                return true;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    plan.blocked(g, outcome);
                    return true;
                }
                _ if plan.spans[g].1 > 1 && mmsg::gso_refused(&e) => {
                    self.refused(&e, plan.order[plan.spans[g].0], now);
                    let mut alone = [false; BATCH];
                    plan.members(g, g + 1).for_each(|k| alone[k] = true);
                    if self.send_back(socket, &alone[..keep.len()], false, now, outcome) {
                        plan.blocked(g + 1, outcome);
                        return true;
                    }
                }
                _ => {
                    let failed = || Err(io::Error::from(e.kind()));
                    plan.members(g, g + 1).for_each(|k| outcome(k, failed()));
                }
            }
            g += 1; // this message is done with: on to the next
        }
        false
    }

    /// A GSO reply to datagram `k`'s source was refused with `e`: said,
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
    /// buffers (in `iov`), its destination and, for more than one datagram,
    /// a `UDP_SEGMENT` control message (in `control`).
    fn headers(
        &mut self,
        plan: &Plan,
        iov: &mut [libc::iovec; BATCH],
        hdrs: &mut [libc::mmsghdr; BATCH],
        control: &mut [SegmentControl; BATCH],
    ) {
        let names = self.received.replies(&plan.order[..plan.datagrams], iov);
        let iovs = iov.as_mut_ptr();
        for (g, &(start, count)) in plan.spans[..plan.messages].iter().enumerate() {
            let hdr = &mut hdrs[g].msg_hdr;
            // SAFETY: start + count <= plan.datagrams <= BATCH: the run lies
            // in `iov` (a pointer from the whole array, not one element).
            hdr.msg_iov = unsafe { iovs.add(start) };
            hdr.msg_iovlen = count as _;
            (hdr.msg_name, hdr.msg_namelen) = names[start];
            if count > 1 {
                let size = self.received.len(plan.order[start]) as u16;
                mmsg::set_segment_size(hdr, &mut control[g], size);
            }
        }
    }

    /// The messages the kept datagrams go out in: with `gso`, a datagram
    /// joins the message of its source's latest datagram if that has its
    /// size and room ([`mmsg::gso_capacity`]) — never an earlier one, which
    /// would send it ahead of datagrams it follows. The kernel cuts such a
    /// message back into those datagrams, after one pass down the IP stack
    /// for the lot. Without `gso`, one message each.
    fn groups(&self, keep: &[bool], gso: bool) -> Plan {
        let r = &self.received;
        let mut group_of = [usize::MAX; BATCH];
        let mut heads = [(0usize, 0usize); BATCH]; // first datagram, count
        let mut messages = 0;
        for k in (0..keep.len()).filter(|&k| keep[k]) {
            let len = r.len(k);
            let latest = (0..messages).rev().find(|&g| r.same_source(heads[g].0, k));
            let joins = latest.filter(|&g| {
                let (first, count) = heads[g];
                gso && len <= GSO_MAX_SEGMENT
                    && r.len(first) == len
                    && count < mmsg::gso_capacity(len)
            });
            let g = joins.unwrap_or_else(|| {
                heads[messages] = (k, 0);
                messages += 1;
                messages - 1
            });
            heads[g].1 += 1;
            group_of[k] = g;
        }
        let mut plan = Plan {
            order: [0; BATCH],
            spans: [(0, 0); BATCH],
            messages,
            datagrams: 0,
        };
        for (g, &(_, count)) in heads[..messages].iter().enumerate() {
            plan.spans[g] = (plan.datagrams, count);
            for k in (0..keep.len()).filter(|&k| group_of[k] == g) {
                plan.order[plan.datagrams] = k;
                plan.datagrams += 1;
            }
        }
        plan
    }
}

/// Receives and echoes on `udp` in batches until the socket is drained or
/// the budget is spent. Returns an unexpected receive error.
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
        received += n;
        let mut keep = [false; BATCH];
        let mut dst = [None; BATCH];
        let mut lens = [0; BATCH];
        for (k, keep) in keep.iter_mut().enumerate().take(n) {
            let (src, len) = (batch.received.source(k), batch.received.len(k));
            *keep = src.is_some_and(|src| policy.admit(src, len, counters, now));
            (dst[k], lens[k]) = (src, len);
        }
        batch.send_back(
            udp.socket.as_fd(),
            &keep[..n],
            gso,
            now,
            &mut |k, result| {
                policy.account_send(result, lens[k], dst[k], counters, now);
            },
        );
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

    /// A batch as `recvmmsg` leaves it when datagram k came from sender
    /// `from[k]` (of three sockets) with `lens[k]` bytes, sent in order.
    fn batch(from: &[usize], lens: &[usize]) -> Buffers {
        let bind = || UdpSocket::bind("127.0.0.1:0").expect("bind");
        let receiver = bind();
        let senders = [bind(), bind(), bind()];
        let to = receiver.local_addr().expect("local_addr");
        for (&s, &len) in from.iter().zip(lens) {
            senders[s].send_to(&vec![7; len], to).expect("send_to");
        }
        let mut b = Buffers::new();
        // Loopback queues a datagram before send_to returns.
        let n = b.received.receive(&receiver).expect("recvmmsg");
        assert_eq!(n, from.len());
        b
    }

    /// The messages of a plan, as lists of datagram indexes.
    fn messages(plan: &Plan) -> Vec<Vec<usize>> {
        let spans = &plan.spans[..plan.messages];
        spans
            .iter()
            .map(|&(s, c)| plan.order[s..s + c].to_vec())
            .collect()
    }

    /// Replies to one source with one size share a message, in their
    /// order; another source, another size, a datagram too large for GSO
    /// or one not kept each go their own way.
    #[test]
    fn one_message_per_source_and_size() {
        let from = [0, 1, 0, 0, 1, 0, 2, 0];
        let lens = [100, 100, 100, 100, 100, 50, 2000, 100];
        let keep = [true, true, true, true, true, true, true, false];
        let plan = batch(&from, &lens).groups(&keep, true);
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
            let plan = batch(&[0, 0, 0], &lens).groups(&[true; 3], true);
            assert_eq!(messages(&plan), [vec![0], vec![1], vec![2]], "{lens:?}");
        }
    }

    /// A message holds at most what the kernel takes in one: 16 datagrams
    /// of 1 byte.
    #[test]
    fn a_message_holds_what_the_kernel_takes() {
        let plan = batch(&[0; 20], &[1; 20]).groups(&[true; 20], true);
        assert_eq!(
            messages(&plan),
            [(0..16).collect::<Vec<_>>(), (16..20).collect()]
        );
    }

    /// A run of messages yields their datagrams in order, and a full
    /// socket drops exactly the datagrams of the messages not yet sent.
    #[test]
    fn members_and_the_dropped_rest() {
        let plan = batch(&[0, 1, 0, 2], &[100, 100, 100, 100]).groups(&[true; 4], true);
        assert_eq!(messages(&plan), [vec![0, 2], vec![1], vec![3]]);
        assert_eq!(plan.members(0, 2).collect::<Vec<_>>(), [0, 2, 1]);
        assert_eq!(plan.members(2, 2).count(), 0);
        let mut dropped = Vec::new();
        plan.blocked(1, &mut |k, r: io::Result<()>| {
            assert_eq!(r.map_err(|e| e.kind()), Err(io::ErrorKind::WouldBlock));
            dropped.push(k);
        });
        assert_eq!(dropped, [1, 3]);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            // Each case sends its batch over loopback: fewer cases.
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Any batch (up to a full one, from three sources, of sizes
            /// around the GSO limits), any datagrams kept, GSO on or off:
            /// every kept datagram goes out exactly once and no other; each
            /// source's replies leave in the order they came; a message is
            /// one source and one size, within what the kernel takes (and
            /// one datagram without GSO, or above the GSO segment size);
            /// and the messages' runs tile the send order.
            #[test]
            fn every_datagram_once_each_source_in_order(
                datagrams in prop::collection::vec(
                    (0usize..3, prop::sample::select(vec![0usize, 1, 7, 100, 1452, 1453, 3000])),
                    1..=BATCH,
                ),
                keep in prop::collection::vec(any::<bool>(), BATCH),
                gso in any::<bool>(),
            ) {
                let (from, lens): (Vec<usize>, Vec<usize>) = datagrams.into_iter().unzip();
                let keep = &keep[..from.len()];
                let plan = batch(&from, &lens).groups(keep, gso);
                let sent: Vec<usize> = plan.order[..plan.datagrams].to_vec();
                let mut want: Vec<usize> = (0..from.len()).filter(|&k| keep[k]).collect();
                let mut sorted = sent.clone();
                sorted.sort_unstable();
                prop_assert_eq!(&sorted, &want, "kept datagrams, once each");
                for source in 0..3 {
                    let theirs: Vec<usize> = sent.iter().copied().filter(|&k| from[k] == source).collect();
                    want = (0..from.len()).filter(|&k| keep[k] && from[k] == source).collect();
                    prop_assert_eq!(theirs, want.clone(), "source {}'s order", source);
                }
                let mut next = 0;
                for &(start, count) in &plan.spans[..plan.messages] {
                    prop_assert_eq!(start, next, "runs tile the order");
                    prop_assert!(count >= 1);
                    next += count;
                    let members = &plan.order[start..start + count];
                    let (first, len) = (members[0], lens[members[0]]);
                    prop_assert!(members.iter().all(|&k| from[k] == from[first] && lens[k] == len));
                    if count > 1 {
                        prop_assert!(gso && len <= GSO_MAX_SEGMENT && count <= mmsg::gso_capacity(len));
                    }
                }
                prop_assert_eq!(next, plan.datagrams);
                prop_assert!(plan.members(0, plan.messages).eq(sent.iter().copied()));
            }
        }
    }

    /// Without GSO every datagram is its own message, in batch order.
    #[test]
    fn without_gso_one_message_each() {
        let plan = batch(&[0, 0, 0], &[100, 100, 100]).groups(&[true; 3], false);
        assert_eq!(messages(&plan), [vec![0], vec![1], vec![2]]);
    }
}
