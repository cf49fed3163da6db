//! One client socket of a `--udp` run: what it has sent, what is in
//! flight, and what became of each datagram.
//!
//! The datagrams in flight are kept in a ring of recent datagrams, entry
//! `seq mod window`, with their send times: no list, no allocation per
//! datagram. A new datagram goes out only while fewer than `--pipeline` are
//! in flight *and* its entry is free, so the ring (at least twice the
//! pipeline) also bounds how far back a lost datagram can hold the socket
//! up: it may go on sending past one for a whole window before it waits for
//! that datagram's `--echo-timeout`.
//!
//! Beside the ring, one bit per recent sequence (at least 4,096 of them)
//! says whether any echo of it came back: a second echo is a duplicate, an
//! echo of a datagram no longer in flight and never echoed came back late.
//! An echo older than those bits cannot be told from a duplicate, and
//! counts as late.

use mio::net::UdpSocket;

use super::jitter::Jitter;

/// One datagram of the ring.
#[derive(Debug, Clone, Copy)]
struct Flight {
    /// Its sequence number (`u64::MAX`: none yet), to tell it from the
    /// datagrams that share its entry.
    seq: u64,
    /// When it was due (open loop: scheduled; else when it was issued):
    /// the latency counts from here.
    sent_at: u64,
    /// When the kernel took it: `--echo-timeout` counts from here, and so
    /// does the open loop's uncorrected latency.
    actual: u64,
    /// Sent and not yet echoed, lost or abandoned.
    in_flight: bool,
}

/// What an echo that checked out turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// In time: its due and actual send times, and whether a later
    /// datagram's echo came before it.
    Echoed {
        /// When it was due.
        sent_at: u64,
        /// When it went out.
        actual: u64,
        /// Whether it came after a later datagram's echo.
        reordered: bool,
    },
    /// After its `--echo-timeout`; `expired_now`: the timeout had passed
    /// but the loss was not counted yet (count it now).
    Late {
        /// The loss is to be counted now.
        expired_now: bool,
    },
    /// A datagram already echoed (or late) came back again.
    Duplicated,
}

/// What a look for expired datagrams found on one socket.
#[derive(Debug, Default)]
pub struct Expired {
    /// Datagrams lost now.
    pub lost: u64,
    /// The first of them.
    pub first: Option<u64>,
    /// When the oldest datagram still in flight expires.
    pub next_deadline: Option<u64>,
}

/// One socket and its datagrams.
#[derive(Debug)]
pub struct Flow {
    /// The socket; `None` once it failed (or never opened).
    pub socket: Option<UdpSocket>,
    /// Global socket number: in every header, picks its payload stream and
    /// its source address.
    pub index: u64,
    /// Where its stream starts in the payload table.
    pub start: usize,
    /// Datagrams it is to send (`u64::MAX` for a timed run).
    pub quota: u64,
    /// Sequences issued so far; the next datagram's sequence.
    pub next: u64,
    /// The last datagrams issued that have not gone out yet (sequences
    /// `next - unsent .. next`): issued to go together, or held back because
    /// the socket would not take them. They go first, in order.
    pub unsent: u64,
    /// Datagrams issued and not yet echoed, lost or abandoned.
    pub in_flight: u64,
    /// No datagram below this sequence is in flight: the expiry look starts here.
    oldest: u64,
    /// The highest sequence echoed so far, to see reordering.
    highest: Option<u64>,
    /// Whether WRITABLE is in the registered interest: only while a
    /// datagram is held back.
    pub writable: bool,
    /// Open loop: when datagram 0 was due.
    pub rate_origin: u64,
    /// Open loop: a send timer for this socket is in the heap.
    pub timer_armed: bool,
    /// Whether the receive budget stopped a drain (it is in the ready list).
    pub queued: bool,
    /// Nothing more to send and nothing in flight (or failed): done; the
    /// socket stays open to the end, to count late and duplicate echoes.
    pub done: bool,
    /// Its RFC 3550 jitter estimate.
    pub jitter: Jitter,
    /// Recent datagrams, entry `seq & (len - 1)`.
    ring: Box<[Flight]>,
    /// Whether an echo of sequence `q` came back: bit `q mod (64 × len)`.
    seen: Box<[u64]>,
}

/// Sequences the echo bits remember at least.
const SEEN_AT_LEAST: usize = 4096;

impl Flow {
    /// Socket number `index` with a ring of `window` entries (a power of
    /// two), to send `quota` datagrams.
    pub fn new(index: u64, start: usize, quota: u64, window: usize) -> Self {
        let empty = Flight {
            seq: u64::MAX,
            sent_at: 0,
            actual: 0,
            in_flight: false,
        };
        Flow {
            socket: None,
            index,
            start,
            quota,
            next: 0,
            unsent: 0,
            in_flight: 0,
            oldest: 0,
            highest: None,
            writable: false,
            rate_origin: 0,
            timer_armed: false,
            queued: false,
            done: false,
            jitter: Jitter::default(),
            ring: vec![empty; window].into_boxed_slice(),
            seen: vec![0; window.max(SEEN_AT_LEAST) / 64].into_boxed_slice(),
        }
    }

    /// Datagrams that went out: sequences `0..sent()`.
    pub fn sent(&self) -> u64 {
        self.next - self.unsent
    }

    /// The ring entry of `seq`.
    fn entry(&mut self, seq: u64) -> &mut Flight {
        let mask = self.ring.len() as u64 - 1;
        &mut self.ring[(seq & mask) as usize]
    }

    /// Whether `seq` is recent enough for the echo bits.
    fn remembered(&self, seq: u64) -> bool {
        self.next - seq <= self.seen.len() as u64 * 64
    }

    /// Sets (`on`) or clears the echo bit of `seq`; returns what it was.
    fn mark(&mut self, seq: u64, on: bool) -> bool {
        let bit = seq % (self.seen.len() as u64 * 64);
        let (word, mask) = ((bit / 64) as usize, 1u64 << (bit % 64));
        let was = self.seen[word] & mask != 0;
        if on {
            self.seen[word] |= mask;
        } else {
            self.seen[word] &= !mask;
        }
        was
    }

    /// Whether another datagram may be issued: the quota not reached, fewer
    /// than `pipeline` in flight (counting those not sent yet) and its
    /// entry free.
    pub fn may_issue(&mut self, pipeline: u64) -> bool {
        let next = self.next;
        next < self.quota && self.in_flight < pipeline && !self.entry(next).in_flight
    }

    /// Issues the next datagram, due at `sent_at`; it is unsent until
    /// [`Flow::mark_sent`].
    pub fn issue(&mut self, sent_at: u64) {
        let seq = self.next;
        *self.entry(seq) = Flight {
            seq,
            sent_at,
            actual: 0,
            in_flight: true,
        };
        self.mark(seq, false);
        self.next += 1;
        self.in_flight += 1;
        self.unsent += 1;
    }

    /// The first unsent datagram went out at `now`.
    pub fn mark_sent(&mut self, now: u64) {
        let seq = self.next - self.unsent;
        self.entry(seq).actual = now;
        self.unsent -= 1;
    }

    /// Takes back the unsent datagrams (the run stopped sending).
    pub fn unissue(&mut self) {
        while self.unsent > 0 {
            self.next -= 1;
            let seq = self.next;
            self.entry(seq).in_flight = false;
            self.in_flight -= 1;
            self.unsent -= 1;
        }
    }

    /// An echo of `seq` checked out at `turn`: what it is. A datagram in
    /// flight for longer than `timeout` is late.
    pub fn take(&mut self, seq: u64, turn: u64, timeout: u64) -> Arrival {
        if !self.remembered(seq) {
            return Arrival::Late { expired_now: false };
        }
        if self.mark(seq, true) {
            return Arrival::Duplicated;
        }
        let e = *self.entry(seq);
        if e.seq != seq || !e.in_flight {
            return Arrival::Late { expired_now: false };
        }
        self.entry(seq).in_flight = false;
        self.in_flight -= 1;
        if turn.saturating_sub(e.actual) > timeout {
            return Arrival::Late { expired_now: true };
        }
        let reordered = self.highest.is_some_and(|h| seq < h);
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        Arrival::Echoed {
            sent_at: e.sent_at,
            actual: e.actual,
            reordered,
        }
    }

    /// A corrupted echo named `seq`: it came back (wrong), so it is no
    /// longer in flight, and a right copy after it would be a duplicate.
    pub fn take_corrupted(&mut self, seq: u64) {
        if !self.remembered(seq) || self.mark(seq, true) {
            return;
        }
        let e = self.entry(seq);
        if e.seq == seq && e.in_flight {
            e.in_flight = false;
            self.in_flight -= 1;
        }
    }

    /// Counts as lost every datagram sent more than `timeout` before `now`
    /// and still in flight. Datagrams go out in sequence order, so the
    /// look stops at the first one still in time.
    pub fn expire(&mut self, now: u64, timeout: u64) -> Expired {
        let mut found = Expired::default();
        let sent = self.sent();
        while self.oldest < sent {
            let oldest = self.oldest;
            let e = self.entry(oldest);
            if e.seq == oldest && e.in_flight {
                let deadline = e.actual.saturating_add(timeout);
                if deadline > now {
                    found.next_deadline = Some(deadline);
                    break;
                }
                e.in_flight = false;
                self.in_flight -= 1;
                found.lost += 1;
                found.first.get_or_insert(oldest);
            }
            self.oldest += 1;
        }
        found
    }

    /// Gives up on whatever is in flight (the socket failed, or the run was
    /// interrupted); returns how many datagrams that was.
    pub fn abandon(&mut self) -> u64 {
        self.unissue();
        let left = self.in_flight;
        self.in_flight = 0;
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring of `window` entries with sequences `0..n` issued and sent at
    /// time 10 × seq.
    fn flow_with(n: u64, window: usize, pipeline: u64) -> Flow {
        let mut flow = Flow::new(0, 0, u64::MAX, window);
        for seq in 0..n {
            assert!(flow.may_issue(pipeline), "seq {seq}");
            flow.issue(seq * 10);
            flow.mark_sent(seq * 10);
        }
        flow
    }

    /// Echoes in time are echoed, a second copy is a duplicate, an earlier
    /// sequence after a later one is reordered.
    #[test]
    fn arrivals_are_told_apart() {
        let mut flow = flow_with(4, 64, 8);
        assert!(matches!(
            flow.take(1, 15, 100),
            Arrival::Echoed {
                reordered: false,
                ..
            }
        ));
        assert_eq!(flow.take(1, 16, 100), Arrival::Duplicated);
        assert!(matches!(
            flow.take(0, 17, 100),
            Arrival::Echoed {
                reordered: true,
                ..
            }
        ));
        assert_eq!(flow.in_flight, 2);
    }

    /// A datagram not back within the timeout is lost when the look comes,
    /// and its echo after that is late; one whose timeout passed before
    /// the look is late, and lost, at once.
    #[test]
    fn expiry_and_late_echoes() {
        let mut flow = flow_with(3, 64, 8);
        let found = flow.expire(115, 100);
        assert_eq!((found.lost, found.first), (2, Some(0)));
        assert_eq!(found.next_deadline, Some(120));
        assert_eq!(flow.take(0, 130, 100), Arrival::Late { expired_now: false });
        assert_eq!(flow.take(0, 131, 100), Arrival::Duplicated);
        assert_eq!(flow.take(2, 500, 100), Arrival::Late { expired_now: true });
        assert_eq!(flow.in_flight, 0);
    }

    /// The pipeline bounds what is in flight, and a datagram still in
    /// flight a window back holds the socket up.
    #[test]
    fn window_and_pipeline_bound_the_sends() {
        let mut flow = flow_with(2, 64, 2);
        assert!(!flow.may_issue(2));
        assert!(matches!(flow.take(1, 20, 100), Arrival::Echoed { .. }));
        for seq in 2..64 {
            assert!(flow.may_issue(2), "seq {seq}");
            flow.issue(seq);
            flow.mark_sent(seq);
            assert!(matches!(flow.take(seq, seq, 100), Arrival::Echoed { .. }));
        }
        // Sequence 64 shares sequence 0's entry, still in flight.
        assert!(!flow.may_issue(2));
    }
}
