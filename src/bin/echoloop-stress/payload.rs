//! The deterministic byte stream every connection sends, and checks its echo against.
//!
//! Why not remember what was sent? Because with thousands of connections and
//! several messages in flight on each, a copy of the outstanding bytes per
//! connection is megabytes of memory and a `memcpy` per message. Instead every
//! connection's outgoing stream is a *function of its position*: byte `p` of
//! connection `c` is `TABLE[(start(c) + p) mod PERIOD]`, where `TABLE` is one
//! pseudo-random block shared read-only by every loop. Sending is then a
//! `write` straight out of the table (no per-connection send buffer), and
//! verifying an echo is a `memcmp` of the read buffer against the table at the
//! position the connection has reached — in place, no copy, no allocation.
//!
//! The table is stored twice back to back, so any window of up to `PERIOD`
//! bytes starting anywhere in the period is one contiguous slice. `PERIOD` is
//! prime, so no message size short of a multiple of a megabyte lines a message
//! up with an earlier one: an echo server that repeats, drops or reorders a
//! message is caught, not only one that flips a bit. Each connection starts at
//! a different offset (`index × MULTIPLIER mod PERIOD`, distinct for the first
//! `PERIOD` indices), so one connection's bytes delivered on another are
//! caught too. The bytes are random, NUL included: the stream is binary.

/// Length of the pattern: the largest prime below 2^20.
///
/// A megabyte keeps the doubled table (2 MiB) in cache-friendly range while
/// being larger than any read buffer, so a verify never needs two slices.
pub const PERIOD: usize = 1_048_573;

/// Spreads connection indices over the period; any value that is not a
/// multiple of the (prime) period keeps the start offsets distinct.
const MULTIPLIER: u64 = 0x9E37_79B9;

/// The shared pattern every connection's stream is cut from.
#[derive(Debug)]
pub struct Payload {
    /// `PERIOD` pseudo-random bytes, then the same bytes again, so that any
    /// `PERIOD`-long window is contiguous.
    bytes: Box<[u8]>,
}

impl Payload {
    /// Builds the table from a fixed seed: every run, and every build of the
    /// tool, sends the same bytes (a failure can be reproduced).
    pub fn new() -> Self {
        let mut bytes = vec![0u8; 2 * PERIOD];
        // xorshift64*: fast and good enough that no echo bug lines up with it.
        let mut state: u64 = 0x5EED_EC40_100B_u64;
        for chunk in bytes[..PERIOD].chunks_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let word = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        bytes.copy_within(..PERIOD, PERIOD);
        Payload {
            bytes: bytes.into_boxed_slice(),
        }
    }

    /// Where in the pattern the stream of connection number `index` starts.
    pub fn start_of(index: u64) -> usize {
        let period = PERIOD as u64;
        // Both factors are below 2^32, so the product fits in a u64.
        ((index % period) * (MULTIPLIER % period) % period) as usize
    }

    /// The `len` bytes at stream position `pos` of the stream that starts at
    /// `start` (from [`Payload::start_of`]). `len` must not exceed `PERIOD`.
    pub fn slice(&self, start: usize, pos: u64, len: usize) -> &[u8] {
        debug_assert!(len <= PERIOD);
        let offset = (start + (pos % PERIOD as u64) as usize) % PERIOD;
        &self.bytes[offset..offset + len]
    }

    /// Checks bytes received at stream position `pos` of the stream starting
    /// at `start`. `None` when they all match; otherwise the index in `got` of
    /// the first wrong byte and the byte that was expected there.
    pub fn first_mismatch(&self, start: usize, pos: u64, got: &[u8]) -> Option<(usize, u8)> {
        let want = self.slice(start, pos, got.len());
        // The fast path is one memcmp; the scan only runs on a failure.
        if want == got {
            return None;
        }
        want.iter()
            .zip(got)
            .position(|(w, g)| w != g)
            .map(|i| (i, want[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_is_prime_and_multiplier_coprime() {
        let p = PERIOD as u64;
        let mut d = 2;
        while d * d <= p {
            assert_ne!(p % d, 0, "{p} divisible by {d}");
            d += 1;
        }
        assert_ne!(MULTIPLIER % p, 0);
    }

    #[test]
    fn doubled_table_wraps_seamlessly() {
        let payload = Payload::new();
        let start = Payload::start_of(7);
        // A window that crosses the end of the period equals the bytes taken
        // position by position.
        let pos = (PERIOD - start - 3) as u64;
        let window = payload.slice(start, pos, 10);
        for (i, &b) in window.iter().enumerate() {
            assert_eq!(b, payload.slice(start, pos + i as u64, 1)[0]);
        }
        assert_eq!(
            payload.slice(start, PERIOD as u64, 16),
            payload.slice(start, 0, 16)
        );
    }

    #[test]
    fn mismatch_is_located() {
        let payload = Payload::new();
        let start = Payload::start_of(3);
        let mut got = payload.slice(start, 100, 64).to_vec();
        assert_eq!(payload.first_mismatch(start, 100, &got), None);
        got[17] ^= 0x40;
        let expected = payload.slice(start, 117, 1)[0];
        assert_eq!(
            payload.first_mismatch(start, 100, &got),
            Some((17, expected))
        );
    }

    #[test]
    fn connections_start_apart() {
        let starts: std::collections::HashSet<usize> = (0..10_000).map(Payload::start_of).collect();
        assert_eq!(starts.len(), 10_000);
    }
}
