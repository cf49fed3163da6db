//! The `--metrics` request reader, on any bytes split at any points, read
//! as the endpoint reads them (at most one buffer of 2 KiB a read, the
//! head parsed again after each): never a panic; while it says
//! "incomplete" it holds at most its limit; and once it answers, more
//! bytes behind what it read would not have changed the answer (so how
//! the network split the request does not matter).
//!
//! Input: two bytes that seed the read sizes (each read returns 1 to 2048
//! bytes, drawn from a small generator they start), then the bytes the
//! scraper sends. Seeds stay writable by hand: `\0\0GET /metrics …`.

#![no_main]

use echoloop::fuzzing::metrics::{parse, MAX_HEAD};
use libfuzzer_sys::fuzz_target;

/// The endpoint's read buffer: the most one read adds to the head.
const READ: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let Some((seed, bytes)) = data.split_first_chunk::<2>() else {
        return;
    };
    // xorshift32: any seed gives a different split, zero the largest reads.
    let mut state = u32::from(u16::from_le_bytes(*seed));
    let mut next_read = || {
        if state == 0 {
            return READ;
        }
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        // Mostly short reads, now and then a full buffer.
        match state % 8 {
            0 => READ,
            _ => 1 + (state >> 3) as usize % 64,
        }
    };
    let mut head = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(next_read().min(rest.len()));
        rest = after;
        head.extend_from_slice(chunk);
        match parse(&head) {
            None => assert!(
                head.len() <= MAX_HEAD,
                "incomplete at {} bytes, past the limit {MAX_HEAD}",
                head.len()
            ),
            Some(answer) => {
                let whole = parse(bytes);
                assert_eq!(
                    whole,
                    Some(answer),
                    "answered {answer:?} after {} bytes, but {whole:?} given all {}",
                    head.len(),
                    bytes.len()
                );
                return;
            }
        }
    }
});
