//! The stress client's UDP datagram checker (`udp/datagram.rs`), on any
//! datagram against any expected sequence: any size of the run, any
//! socket, any count sent so far, and as the echo either any bytes or a
//! datagram the client really wrote (of this socket or another, of any
//! sequence), then cut, lengthened or with one byte changed. Never a
//! panic, and every echo sorted one way: accepted as datagram `q` — then
//! `q` was sent and the echo is exactly datagram `q` as written (nothing
//! corrupted passes); corrupted but naming a sequence that was sent; or
//! not ours at all. A datagram written and echoed untouched is always
//! accepted as the latest sequence sent with the bits it carries.
//! (Sorting an accepted echo into in time, late or duplicated is the
//! socket's flow, `udp/flow.rs`: not fuzzed here.)

#![no_main]
#![allow(dead_code, unused_imports)]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

// The stress client's modules, as its `main.rs` declares them (see the
// report target); build.rs writes the list.
include!(concat!(env!("OUT_DIR"), "/stress_modules.rs"));

use payload::Payload;
use udp::datagram::Shape;

#[derive(Arbitrary, Debug)]
struct Input {
    /// `--message-size` (clamped to 1..=65527, the largest UDP payload).
    size: u16,
    /// The socket the echo arrived on.
    socket: u32,
    /// Datagrams that socket has sent (`0..sent`).
    sent: u64,
    echo: Echo,
}

#[derive(Arbitrary, Debug)]
enum Echo {
    /// Any bytes at all.
    Bytes(Vec<u8>),
    /// Datagram `seq` as socket `socket` wrote it (its own when `own`),
    /// then changed.
    Written {
        own: bool,
        socket: u32,
        seq: u64,
        change: Change,
    },
}

#[derive(Arbitrary, Debug)]
enum Change {
    None,
    /// Cut to this many bytes.
    Cut(u16),
    /// Lengthened by these bytes.
    Extend(Vec<u8>),
    /// One byte, at this position (modulo the length), XORed with this.
    Flip(u16, u8),
}

fn payload() -> &'static Payload {
    static PAYLOAD: OnceLock<Payload> = OnceLock::new();
    PAYLOAD.get_or_init(Payload::new)
}

fuzz_target!(|input: Input| {
    let shape = Shape::new(usize::from(input.size).clamp(1, 65_527));
    let payload = payload();
    let start = |socket: u32| Payload::start_of(u64::from(socket));
    let (socket, sent) = (input.socket, input.sent);
    let mut untouched = None;
    let got = match input.echo {
        Echo::Bytes(bytes) => bytes,
        Echo::Written {
            own,
            socket: other,
            seq,
            change,
        } => {
            let from = if own { socket } else { other };
            let mut out = vec![0u8; shape.size];
            shape.write(payload, start(from), from, seq, &mut out);
            match change {
                Change::None => untouched = Some((from, seq)),
                Change::Cut(n) => out.truncate(usize::from(n)),
                Change::Extend(more) => out.extend_from_slice(&more),
                Change::Flip(at, x) => {
                    let at = usize::from(at) % out.len();
                    out[at] ^= x;
                    if x == 0 {
                        untouched = Some((from, seq));
                    }
                }
            }
            out
        }
    };
    match shape.check(payload, start(socket), socket, sent, &got) {
        Ok(q) => {
            assert!(q < sent, "accepted as datagram {q}, but only {sent} sent");
            let mut want = vec![0u8; shape.size];
            shape.write(payload, start(socket), socket, q, &mut want);
            assert_eq!(
                got, want,
                "accepted as datagram {q}, but it is not that datagram"
            );
        }
        Err(wrong) => {
            if let Some(q) = wrong.seq {
                assert!(
                    q < sent,
                    "corrupted echo of {q}, but only {sent} sent: {}",
                    wrong.why
                );
            }
            assert!(!wrong.why.is_empty());
            // A right echo of our own, of a sequence sent, is never refused
            // (when its header carries the whole sequence number; a short
            // one stands for the latest with its bits, checked above).
            if let Some((from, seq)) = untouched {
                let own = from == socket || shape.size < 9;
                assert!(
                    !(own && seq < sent && shape.exact()),
                    "datagram {seq} of socket {from} refused: {}",
                    wrong.why
                );
            }
        }
    }
});
