//! Pending output: the echo a connection owes a peer that has not taken it
//! yet, and the pool its buffers come from and go back to.
//!
//! Only a connection in back-pressure holds one (see `connection.rs`); the
//! memory follows the bytes actually owed, up to `--max-pending`.

use std::collections::VecDeque;

/// Echoed bytes the peer has not taken yet, oldest first.
///
/// A ring ([`VecDeque`]): appending copies only the bytes appended, and a
/// partial write only moves the start, so a connection deep in back-pressure
/// costs its neighbours nothing extra per event. It grows with the bytes
/// actually owed — doubling, but never past the connection's cap — so a large
/// `--max-pending` costs memory only for a peer that really stops reading.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// The bytes owed, in order.
    bytes: VecDeque<u8>,
}

/// The smallest allocation a pending buffer starts with: a few pages, so
/// that a burst of small appends does not reallocate for each.
const MIN_PENDING_CAPACITY: usize = 4096;

impl Pending {
    /// Bytes still owed to the peer.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends `data`, growing the ring geometrically up to `cap` (the
    /// caller never lets the pending bytes exceed it).
    pub(crate) fn append(&mut self, data: &[u8], cap: usize) {
        let needed = self.bytes.len() + data.len();
        if needed > self.bytes.capacity() {
            let target = (self.bytes.capacity() * 2)
                .max(MIN_PENDING_CAPACITY)
                .min(cap)
                .max(needed);
            self.bytes.reserve_exact(target - self.bytes.len());
        }
        self.bytes.extend(data);
    }

    /// The oldest owed bytes that are contiguous in memory: what the next
    /// write sends. Empty only when nothing is owed.
    pub(crate) fn front(&self) -> &[u8] {
        let (front, back) = self.bytes.as_slices();
        if front.is_empty() {
            back
        } else {
            front
        }
    }

    /// Forgets the first `n` bytes: the socket took them.
    pub(crate) fn consume(&mut self, n: usize) {
        self.bytes.drain(..n);
    }
}

/// Output buffers not owned by any connection, kept for reuse.
///
/// A slow reader that catches up gives its buffer back; the next one that
/// falls behind takes it, so steady back-pressure allocates nothing. The pool
/// is bounded in count and in the size of what it keeps: a burst of slow
/// readers, or one huge buffer, costs memory once, not forever.
#[derive(Debug)]
pub(crate) struct BufferPool {
    /// Buffers ready to be lent, emptied. Boxed on purpose: a connection
    /// holds its pending output as one pointer (it stays small while idle),
    /// and lending moves that pointer.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Pending>>,
    /// Most buffers kept; beyond it a returned buffer is freed.
    keep: usize,
}

/// A returned buffer larger than this is freed rather than pooled: its
/// memory goes back to the allocator (and the OS) once its peer caught up.
const POOLED_CAPACITY: usize = 64 * 1024;

impl BufferPool {
    /// A pool keeping at most `keep` spare buffers.
    pub(crate) fn new(keep: usize) -> Self {
        BufferPool {
            spare: Vec::new(),
            keep,
        }
    }

    pub(crate) fn take(&mut self) -> Box<Pending> {
        self.spare.pop().unwrap_or_default()
    }

    pub(crate) fn give_back(&mut self, mut pending: Box<Pending>) {
        if self.spare.len() < self.keep && pending.bytes.capacity() <= POOLED_CAPACITY {
            pending.bytes.clear();
            self.spare.push(pending);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    /// One step a connection takes on its pending output.
    #[derive(Debug, Clone)]
    enum Op {
        /// Echo owed: append this many bytes (clipped to the cap, as the
        /// connection stops reading at the cap).
        Append(usize),
        /// The socket took this much of the front (clipped to the front).
        Write(usize),
        /// The peer caught up: give the buffer back and take one again.
        Recycle,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..6000).prop_map(Op::Append),
            (0usize..6000).prop_map(Op::Write),
            Just(Op::Recycle),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Against a `VecDeque` model, under any appends, partial writes and
        /// pool round-trips: what is written out is exactly what was
        /// appended, in order, none lost or repeated; `front` is the start
        /// of what is owed and empty only when nothing is; the memory never
        /// passes the cap; and a buffer taken from the pool owes nothing.
        #[test]
        fn ring_matches_a_vecdeque(cap in 1usize..20_000, ops in prop::collection::vec(op(), 1..60)) {
            let mut pool = BufferPool::new(2);
            let mut ring = pool.take();
            let mut model: VecDeque<u8> = VecDeque::new();
            let mut next = 0u8; // every byte appended is the next of a counter
            for op in ops {
                match op {
                    Op::Append(n) => {
                        let n = n.min(cap - model.len());
                        let data: Vec<u8> = (0..n).map(|_| { next = next.wrapping_add(1); next }).collect();
                        ring.append(&data, cap);
                        model.extend(&data);
                    }
                    Op::Write(n) => {
                        let n = n.min(ring.front().len());
                        ring.consume(n);
                        model.drain(..n);
                    }
                    Op::Recycle => {
                        // The connection gives its buffer back only once the
                        // peer has everything; write the rest out first.
                        while ring.len() > 0 {
                            let n = ring.front().len();
                            prop_assert!(model.iter().take(n).eq(ring.front().iter()));
                            ring.consume(n);
                            model.drain(..n);
                        }
                        pool.give_back(ring);
                        ring = pool.take();
                        prop_assert_eq!(ring.len(), 0);
                    }
                }
                prop_assert_eq!(ring.len(), model.len());
                let front = ring.front();
                prop_assert_eq!(front.is_empty(), model.is_empty());
                prop_assert!(model.iter().take(front.len()).eq(front.iter()));
                prop_assert!(ring.bytes.capacity() <= cap, "capacity {} past the cap {cap}", ring.bytes.capacity());
            }
            let mut out = Vec::new();
            while ring.len() > 0 {
                let n = ring.front().len();
                out.extend_from_slice(ring.front());
                ring.consume(n);
            }
            prop_assert_eq!(out, Vec::from(model));
        }
    }

    /// Memory follows the bytes owed, not the cap: with a 1 GiB cap, 100
    /// pending bytes hold a few KiB, and growth stops at the cap exactly.
    #[test]
    fn pending_grows_with_the_bytes_owed() {
        let mut p = Pending::default();
        p.append(&[7; 100], 1 << 30);
        assert_eq!(p.len(), 100);
        assert!(
            p.bytes.capacity() <= 2 * MIN_PENDING_CAPACITY,
            "{}",
            p.bytes.capacity()
        );
        let cap = 10_000;
        let mut p = Pending::default();
        for _ in 0..100 {
            p.append(&[1; 100], cap);
        }
        assert_eq!(p.len(), cap);
        assert_eq!(p.bytes.capacity(), cap);
    }

    /// An append copies only the bytes appended: what is already owed stays
    /// where it is, even after a partial write consumed the front (the old
    /// buffer compacted — moved every owed byte — on each append).
    #[test]
    fn append_moves_nothing_already_owed() {
        let mut p = Pending::default();
        let data: Vec<u8> = (0..=255).cycle().take(3000).collect();
        p.append(&data, 1 << 20);
        p.consume(1000);
        let before = p.front().as_ptr();
        p.append(&data[..500], 1 << 20);
        assert_eq!(p.front().as_ptr(), before);
        assert_eq!(p.front()[0], data[1000]);
        // Wrapped around the ring, order is kept.
        let mut out = Vec::new();
        while p.len() > 0 {
            let n = p.front().len();
            out.extend_from_slice(p.front());
            p.consume(n);
        }
        assert_eq!(out.len(), 2500);
        assert_eq!(&out[..2000], &data[1000..]);
        assert_eq!(&out[2000..], &data[..500]);
    }
}
