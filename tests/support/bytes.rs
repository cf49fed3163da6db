//! The clients' side: connecting, each client's verifiable byte stream, and
//! the checks on what comes back.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::TIMEOUT;

/// xorshift64* — small, seeded, good enough to pick sizes and timings.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Never zero (xorshift's one fixed point), and seeds 1, 2, 3 diverge.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        assert!(lo <= hi);
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.range(0, items.len() - 1)]
    }
}

/// The period of every client's stream: prime, so no read or write size
/// lines up with it, and each client's stream is the pattern at its own
/// offset. A lost, duplicated, reordered or cross-wired chunk therefore
/// shows up as a mismatch (unless it is displaced by an exact multiple of
/// the period, a megabyte).
const PERIOD: usize = 1_048_573;

/// The pattern, twice over, so that any window of up to `PERIOD` bytes is
/// one contiguous slice: sending and checking cost a memcpy/memcmp, not a
/// generator call per byte — that matters in debug builds, where these
/// tests move gigabytes.
fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut rng = Rng::new(0xEC40);
        let mut bytes = Vec::with_capacity(2 * PERIOD);
        while bytes.len() < PERIOD {
            bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        bytes.truncate(PERIOD);
        bytes.extend_from_within(..);
        bytes
    })
}

/// Bytes `offset..offset + len` of client `id`'s stream (`len` is capped at
/// `PERIOD`; callers loop for more).
pub fn stream_bytes(id: usize, offset: u64, len: usize) -> &'static [u8] {
    let shift = (id as u64).wrapping_mul(104_729) % PERIOD as u64;
    let start = ((offset + shift) % PERIOD as u64) as usize;
    &pattern()[start..start + len.min(PERIOD)]
}

/// The first `len` bytes of client `id`'s stream, owned: for a payload of
/// any length (past [`PERIOD`], the stream repeats).
pub fn payload(id: usize, len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        bytes.extend_from_slice(stream_bytes(id, bytes.len() as u64, len - bytes.len()));
    }
    bytes
}

/// Connects with read and write timeouts, so a hung server fails the test
/// instead of hanging it.
#[track_caller]
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to test server");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Sends `data` from a writer thread while this thread reads, then
/// half-closes; asserts the echo is byte-exact and followed by end of stream.
#[track_caller]
pub fn assert_echo(stream: &TcpStream, data: &[u8]) {
    let got = echo_all(stream, data);
    assert_same(&got, data);
}

/// Sends `data` (writer thread), shuts down the write side, and returns
/// everything read until end of stream.
pub fn echo_all(stream: &TcpStream, data: &[u8]) -> Vec<u8> {
    let mut writer = stream.try_clone().unwrap();
    let owned = data.to_vec();
    let sender = thread::spawn(move || {
        writer.write_all(&owned).expect("write to server");
        writer.shutdown(Shutdown::Write).expect("shutdown(Write)");
    });
    let mut got = Vec::with_capacity(data.len());
    (&*stream).read_to_end(&mut got).expect("read echo");
    sender.join().expect("writer thread");
    got
}

/// Asserts two byte strings are equal, reporting the first difference
/// instead of dumping megabytes.
#[track_caller]
pub fn assert_same(got: &[u8], want: &[u8]) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "echo differs: got {} bytes, want {}; first differing byte at {:?}",
            got.len(),
            want.len(),
            first
        );
    }
}

/// Reads until end of stream or an error (a reset counts as the end);
/// returns what arrived.
pub fn read_until_closed(stream: &TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                panic!("server did not close within {TIMEOUT:?}")
            }
            Err(_) => return got,
        }
    }
}

/// Writes `data` on a clone of `stream` from a new thread; returns the
/// thread, which yields how many bytes it wrote before an error (if any).
pub fn spawn_writer(stream: &TcpStream, data: Vec<u8>) -> JoinHandle<usize> {
    let mut writer = stream.try_clone().unwrap();
    thread::spawn(move || {
        let mut sent = 0;
        for chunk in data.chunks(16 * 1024) {
            if writer.write_all(chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    })
}

/// Sets SO_LINGER 0, so that closing the socket sends RST instead of FIN
/// (and discards whatever is unsent or unread).
pub fn linger_zero<'s, S>(stream: &'s S)
where
    socket2::SockRef<'s>: From<&'s S>,
{
    socket2::SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
}
