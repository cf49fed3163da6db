//! The idle timer: connections in order of last activity.
//!
//! Every connection has the same timeout, so the connection idle longest is
//! always the next to expire. A doubly linked list in last-activity order is
//! therefore a complete timer queue: activity moves a connection to the back
//! (O(1)), and expiry only ever looks at the front (O(1) per connection
//! closed). No per-tick scan of every connection, no heap, no allocation per
//! event. The links live in a vector indexed by the connection's slab key,
//! beside the slab rather than inside [`Connection`](crate::connection), so a
//! connection knows nothing of timers.

use std::time::{Duration, Instant};

/// "No neighbour" in the links.
const NIL: u32 = u32::MAX;

/// One connection's place in the queue.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// Key of the connection active just before this one (towards the front).
    prev: u32,
    /// Key of the connection active just after this one (towards the back).
    next: u32,
    /// When this connection last moved a byte (or was accepted).
    last_active: Instant,
    /// Whether this slot is in the list at all (keys are reused).
    linked: bool,
}

/// Connections ordered by last activity, front = idle longest.
#[derive(Debug)]
pub(crate) struct IdleQueue {
    /// Nodes indexed by slab key; grows with the largest key ever used.
    nodes: Vec<Node>,
    /// Idle longest; `NIL` when empty.
    front: u32,
    /// Active most recently; `NIL` when empty.
    back: u32,
    /// The one timeout every connection shares.
    timeout: Duration,
}

impl IdleQueue {
    /// An empty queue expiring connections idle for `timeout`.
    pub(crate) fn new(timeout: Duration) -> Self {
        IdleQueue {
            nodes: Vec::new(),
            front: NIL,
            back: NIL,
            timeout,
        }
    }

    /// Records activity of connection `key` at `now`: it moves to the back.
    pub(crate) fn touch(&mut self, key: usize, now: Instant) {
        let k = u32::try_from(key).expect("slab keys stay below u32::MAX");
        if key >= self.nodes.len() {
            let blank = Node {
                prev: NIL,
                next: NIL,
                last_active: now,
                linked: false,
            };
            self.nodes.resize(key + 1, blank);
        }
        self.unlink(key);
        let node = &mut self.nodes[key];
        node.last_active = now;
        node.prev = self.back;
        node.next = NIL;
        node.linked = true;
        match self.back {
            NIL => self.front = k,
            back => self.nodes[back as usize].next = k,
        }
        self.back = k;
    }

    /// Forgets connection `key` (it closed).
    pub(crate) fn remove(&mut self, key: usize) {
        if key < self.nodes.len() {
            self.unlink(key);
        }
    }

    /// The connection idle longest, if it has now been idle for the timeout.
    pub(crate) fn expired(&self, now: Instant) -> Option<usize> {
        let front = self.nodes.get(self.front as usize)?;
        (now >= front.last_active + self.timeout).then_some(self.front as usize)
    }

    /// When the next connection will expire, if any is open.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let front = self.nodes.get(self.front as usize)?;
        Some(front.last_active + self.timeout)
    }

    fn unlink(&mut self, key: usize) {
        let Node {
            prev, next, linked, ..
        } = self.nodes[key];
        if !linked {
            return;
        }
        match prev {
            NIL => self.front = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.back = prev,
            n => self.nodes[n as usize].prev = prev,
        }
        self.nodes[key].linked = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashMap};

    /// One thing the loop does to the queue; time only moves forward.
    #[derive(Debug, Clone)]
    enum Op {
        /// `ms` pass, then connection `key` moves a byte (or is accepted).
        Touch { key: usize, ms: u64 },
        /// Connection `key` closes.
        Remove(usize),
        /// `ms` pass, then the timer runs: every expired connection closes.
        Expire(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0usize..12, 0u64..400).prop_map(|(key, ms)| Op::Touch { key, ms }),
            1 => (0usize..12).prop_map(Op::Remove),
            1 => (0u64..1500).prop_map(Op::Expire),
        ]
    }

    /// The model: last activity of each open connection, and the same
    /// connections ordered by when they were last touched (a sequence
    /// number, since several can share an instant).
    #[derive(Default)]
    struct Model {
        by_key: HashMap<usize, (u64, Instant)>,
        by_order: BTreeMap<u64, usize>,
        seq: u64,
    }

    impl Model {
        fn touch(&mut self, key: usize, now: Instant) {
            self.remove(key);
            self.seq += 1;
            self.by_key.insert(key, (self.seq, now));
            self.by_order.insert(self.seq, key);
        }
        fn remove(&mut self, key: usize) {
            if let Some((seq, _)) = self.by_key.remove(&key) {
                self.by_order.remove(&seq);
            }
        }
        fn front(&self) -> Option<(usize, Instant)> {
            let (_, &key) = self.by_order.first_key_value()?;
            Some((key, self.by_key[&key].1))
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Against a sorted-map model, under any touches, closes and timer
        /// runs (keys reused, several at one instant): the next deadline is
        /// the least recently active connection's, and a timer run closes
        /// exactly the connections idle for the timeout, oldest first.
        #[test]
        fn queue_matches_a_sorted_map(timeout_ms in 1u64..1000, ops in prop::collection::vec(op(), 1..80)) {
            let timeout = Duration::from_millis(timeout_ms);
            let mut q = IdleQueue::new(timeout);
            let mut model = Model::default();
            let mut now = Instant::now();
            for op in ops {
                match op {
                    Op::Touch { key, ms } => {
                        now += Duration::from_millis(ms);
                        q.touch(key, now);
                        model.touch(key, now);
                    }
                    Op::Remove(key) => {
                        q.remove(key);
                        model.remove(key);
                    }
                    Op::Expire(ms) => {
                        now += Duration::from_millis(ms);
                        let mut closed = Vec::new();
                        while let Some(key) = q.expired(now) {
                            prop_assert!(closed.len() <= 12, "expiry does not end");
                            closed.push(key);
                            q.remove(key);
                        }
                        let mut want = Vec::new();
                        while let Some((key, last)) = model.front() {
                            if now < last + timeout {
                                break;
                            }
                            want.push(key);
                            model.remove(key);
                        }
                        prop_assert_eq!(closed, want);
                    }
                }
                let deadline = model.front().map(|(_, last)| last + timeout);
                prop_assert_eq!(q.next_deadline(), deadline);
                prop_assert_eq!(q.expired(now).is_some(), deadline.is_some_and(|d| now >= d));
            }
        }
    }

    /// Expiry follows last activity, not accept order, and removal unlinks.
    #[test]
    fn expires_in_last_activity_order() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut q = IdleQueue::new(second * 10);
        q.touch(0, t0);
        q.touch(1, t0 + second);
        q.touch(2, t0 + second * 2);
        q.touch(0, t0 + second * 3); // 0 becomes the most recent
        assert_eq!(q.next_deadline(), Some(t0 + second * 11));
        assert_eq!(q.expired(t0 + second * 10), None);
        assert_eq!(q.expired(t0 + second * 11), Some(1));
        q.remove(1);
        assert_eq!(q.expired(t0 + second * 12), Some(2));
        q.remove(2);
        assert_eq!(q.expired(t0 + second * 12), None);
        assert_eq!(q.expired(t0 + second * 13), Some(0));
        q.remove(0);
        assert_eq!(q.next_deadline(), None);
        q.touch(5, t0);
        assert_eq!(q.expired(t0 + second * 10), Some(5));
    }
}
