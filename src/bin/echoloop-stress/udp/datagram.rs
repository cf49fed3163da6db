//! What a datagram carries, and how its echo is checked.
//!
//! A datagram of socket `c` with sequence number `q` is a 12-byte header —
//! `q` as 8 bytes little-endian, then `c` as 4 — followed by the bytes of
//! socket `c`'s stream in the payload table (`payload.rs`) from position
//! `q × size`: a function of (socket, sequence), so nothing sent is kept
//! and an echo is checked with one `memcmp` against the table.
//!
//! A datagram shorter than the header carries as much of it as fits, low
//! bytes first: under 8 bytes, the sequence modulo 2^(8 × size). An echo is
//! then taken for the latest datagram sent with those low bits, which is
//! right for every datagram in flight as long as they span fewer numbers
//! than that ([`window`] refuses a `--pipeline` that would
//! not). An echo that comes back later than that is taken for a newer
//! datagram with the same low bits, so a second echo of one cannot be told
//! from a late echo of an older one: under 8 bytes it counts as late,
//! never as duplicated ([`Shape::exact`]).

use crate::payload::Payload;

/// The ring entries of each socket for datagrams of `size` bytes and
/// `pipeline` in flight: a power of two, at least twice the pipeline and
/// 64; or why that pipeline cannot be told apart in datagrams so short.
pub fn window(size: u64, pipeline: u64) -> Result<usize, String> {
    let bits = Shape::new(size as usize).seq_bits();
    let ring = pipeline.saturating_mul(2).max(64).next_power_of_two();
    if bits >= 64 {
        return Ok(ring as usize);
    }
    let span = 1u64 << bits;
    if pipeline.saturating_mul(2) > span {
        return Err(format!(
            "--pipeline {pipeline}: {size}-byte datagrams carry their sequence number modulo \
             {span}, so at most {} may be in flight",
            span / 2
        ));
    }
    Ok(ring.min(span) as usize)
}

/// Header bytes of a full-sized datagram: sequence (8) and socket (4).
pub const HEADER: usize = 12;

/// The size of the run's datagrams, and how much of the header fits.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Bytes per datagram (`--message-size`).
    pub size: usize,
    /// Header bytes it carries: `min(size, HEADER)`.
    header: usize,
}

/// An echo that is not the datagram it claims to be.
#[derive(Debug)]
pub struct Wrong {
    /// The sequence it belongs to, when the header says so (its bytes or
    /// length are wrong); `None` when not even the header is ours.
    pub seq: Option<u64>,
    /// What is wrong, for the report.
    pub why: String,
}

impl Shape {
    /// Datagrams of `size` bytes.
    pub fn new(size: usize) -> Self {
        Shape {
            size,
            header: size.min(HEADER),
        }
    }

    /// How many low bits of the sequence number a datagram carries.
    pub fn seq_bits(self) -> u32 {
        (self.header.min(8) * 8) as u32
    }

    /// Whether a datagram carries its whole sequence number (8 bytes or
    /// more), so that an echo names the one datagram it belongs to and a
    /// second echo of it is a duplicate, not a late echo of another.
    pub fn exact(self) -> bool {
        self.seq_bits() == 64
    }

    /// Where the bytes after the header come from in the socket's stream.
    fn body_pos(self, seq: u64) -> u64 {
        seq.wrapping_mul(self.size as u64)
    }

    /// Writes datagram `seq` of `socket` (its stream starting at `start`)
    /// into `out[..size]`.
    pub fn write(self, payload: &Payload, start: usize, socket: u32, seq: u64, out: &mut [u8]) {
        let mut head = [0u8; HEADER];
        head[..8].copy_from_slice(&seq.to_le_bytes());
        head[8..].copy_from_slice(&socket.to_le_bytes());
        out[..self.header].copy_from_slice(&head[..self.header]);
        let body = self.size - self.header;
        if body > 0 {
            let bytes = payload.slice(start, self.body_pos(seq), body);
            out[self.header..self.size].copy_from_slice(bytes);
        }
    }

    /// Checks `got`, received on `socket` (stream at `start`), which has
    /// sent sequences `0..sent`. Returns the sequence it echoes, or what is
    /// wrong with it.
    pub fn check(
        self,
        payload: &Payload,
        start: usize,
        socket: u32,
        sent: u64,
        got: &[u8],
    ) -> Result<u64, Wrong> {
        let unknown = |why: String| Wrong { seq: None, why };
        if got.len() < self.header {
            return Err(unknown(format!(
                "{} bytes, shorter than the header (sent {})",
                got.len(),
                self.size
            )));
        }
        let mut head = [0u8; HEADER];
        head[..self.header].copy_from_slice(&got[..self.header]);
        let theirs = &head[8..self.header.max(8)];
        if theirs != &socket.to_le_bytes()[..theirs.len()] {
            return Err(unknown(format!(
                "carries another socket's header (socket bytes {theirs:02x?})"
            )));
        }
        let mut low = [0u8; 8];
        low.copy_from_slice(&head[..8]);
        let Some(seq) = self.sequence(u64::from_le_bytes(low), sent) else {
            return Err(unknown(format!(
                "sequence {} was never sent ({sent} sent so far)",
                u64::from_le_bytes(low)
            )));
        };
        let wrong = |why: String| Wrong {
            seq: Some(seq),
            why: format!("datagram {seq}: {why}"),
        };
        if got.len() != self.size {
            return Err(wrong(format!("{} bytes, sent {}", got.len(), self.size)));
        }
        let body = &got[self.header..];
        if let Some((i, want)) = payload.first_mismatch(start, self.body_pos(seq), body) {
            let at = self.header + i;
            return Err(wrong(format!(
                "byte {at} expected 0x{want:02x}, got 0x{:02x}",
                got[at]
            )));
        }
        Ok(seq)
    }

    /// The sequence a header's `low` bits stand for: the latest of
    /// `0..sent` with those bits, or `None` if no datagram sent has them.
    fn sequence(self, low: u64, sent: u64) -> Option<u64> {
        let bits = self.seq_bits();
        if bits == 64 {
            return (low < sent).then_some(low);
        }
        let top = sent.checked_sub(1)?;
        let mask = (1u64 << bits) - 1;
        let back = top.wrapping_sub(low) & mask;
        top.checked_sub(back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram written for (socket, seq) checks as that seq; a flipped
    /// byte, a wrong length, another socket's or an unsent sequence do not.
    #[test]
    fn written_datagrams_check() {
        let payload = Payload::new();
        let start = Payload::start_of(5);
        let shape = Shape::new(100);
        let mut out = vec![0u8; 100];
        shape.write(&payload, start, 5, 41, &mut out);
        assert_eq!(shape.check(&payload, start, 5, 42, &out).ok(), Some(41));
        assert!(shape.check(&payload, start, 5, 41, &out).is_err());
        assert!(shape.check(&payload, start, 6, 42, &out).is_err());
        let wrong = shape.check(&payload, start, 5, 42, &out[..99]).unwrap_err();
        assert_eq!(wrong.seq, Some(41));
        out[50] ^= 1;
        let wrong = shape.check(&payload, start, 5, 42, &out).unwrap_err();
        assert_eq!(wrong.seq, Some(41));
        assert!(wrong.why.contains("byte 50"), "{}", wrong.why);
    }

    /// One-byte datagrams carry the sequence modulo 256: an echo is the
    /// latest datagram sent with those bits.
    #[test]
    fn short_datagrams_carry_the_low_bits() {
        let payload = Payload::new();
        let shape = Shape::new(1);
        assert_eq!(shape.seq_bits(), 8);
        let mut out = [0u8; 1];
        shape.write(&payload, 0, 0, 300, &mut out);
        assert_eq!(out[0], 44);
        assert_eq!(shape.check(&payload, 0, 0, 301, &out).ok(), Some(300));
        assert_eq!(shape.check(&payload, 0, 0, 400, &out).ok(), Some(300));
        assert_eq!(shape.check(&payload, 0, 0, 45, &out).ok(), Some(44));
        assert!(shape.check(&payload, 0, 0, 44, &out).is_err());
        assert!(shape.check(&payload, 0, 0, 0, &out).is_err());
    }
}
