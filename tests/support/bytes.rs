//! The clients' side: connecting, each client's verifiable byte stream, and
//! the checks on what comes back.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, Type};

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
    connect_with(addr, |_| Ok(())).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// Connects from a socket that `setup` prepared for what must be set
/// before the handshake (a source address bound, a receive buffer's size),
/// with read and write timeouts. A blocking connect: on loopback it ends at
/// once, established or refused (a non-blocking one would report a
/// connection that the server accepts and closes at once as an error).
pub fn connect_with(
    addr: SocketAddr,
    setup: impl FnOnce(&Socket) -> io::Result<()>,
) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    setup(&socket)?;
    socket.connect(&addr.into())?;
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// A client connected from the loopback address `ip` (127.0.0.0/8 is all
/// loopback on Linux and Windows), with read and write timeouts.
#[track_caller]
pub fn connect_from(ip: &str, addr: SocketAddr) -> TcpStream {
    let source: SocketAddr = format!("{ip}:0").parse().expect("a source address");
    connect_with(addr, |socket| socket.bind(&source.into()))
        .unwrap_or_else(|e| panic!("connect from {ip} to {addr}: {e}"))
}

/// Whether connections from 127.0.0.2 are seen as from 127.0.0.2 (not as
/// 127.0.0.1, as under Wine), so sources can be told apart; where not, says
/// so, for the caller to skip.
pub fn sources_are_told_apart() -> bool {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a listener");
    let _client = connect_from("127.0.0.2", listener.local_addr().expect("its address"));
    let (_, peer) = listener.accept().expect("accept");
    let apart = peer.ip().to_string() == "127.0.0.2";
    if !apart {
        eprintln!(
            "skipped: this platform reports connections from 127.0.0.2 as from 127.0.0.1 \
             (Wine does), so sources cannot be told apart here"
        );
    }
    apart
}

/// Writes `msg`, then reads as many bytes back: they must be `msg` (for a
/// message the socket buffers hold).
#[track_caller]
pub fn round_trip(stream: &TcpStream, msg: &[u8]) {
    let mut stream = stream;
    stream
        .write_all(msg)
        .unwrap_or_else(|e| panic!("write {} bytes: {e}", msg.len()));
    let mut got = vec![0u8; msg.len()];
    stream
        .read_exact(&mut got)
        .unwrap_or_else(|e| panic!("read back {} bytes: {e}", msg.len()));
    assert_same(&got, msg);
}

/// Writes `data` from a writer thread while this thread reads as many
/// bytes back (any size: the server meets full socket buffers and must
/// resume); they must be `data`. The connection stays open.
#[track_caller]
pub fn stream_through(stream: &TcpStream, data: &[u8]) {
    let writer = spawn_writer(stream, data.to_vec());
    let mut got = vec![0u8; data.len()];
    (&*stream)
        .read_exact(&mut got)
        .unwrap_or_else(|e| panic!("read back {} bytes: {e}", data.len()));
    let sent = writer.join().expect("writer thread");
    assert_eq!(sent, data.len(), "the writer stopped early");
    assert_same(&got, data);
}

/// Sends `data` from a writer thread while this thread reads, then
/// half-closes; asserts the echo is byte-exact and followed by end of
/// stream.
#[track_caller]
pub fn assert_echo(stream: &TcpStream, data: &[u8]) {
    let mut writer = stream.try_clone().expect("try_clone");
    let owned = data.to_vec();
    let sender = thread::spawn(move || {
        writer.write_all(&owned).expect("write to server");
        writer.shutdown(Shutdown::Write).expect("shutdown(Write)");
    });
    let got = read_to_eof(stream);
    sender.join().expect("writer thread");
    assert_same(&got, data);
}

/// The sizes of the byte-exact echo checks, 1 byte to 16 MiB: either side
/// of a TCP segment, of the examples' 16 KiB buffers and of the server's
/// 64 KiB read buffer and pending cap, and far past what socket buffers
/// hold.
pub const ECHO_SIZES: [usize; 16] = [
    1,
    2,
    100,
    255,
    1460,
    4096,
    16 * 1024 - 1,
    16 * 1024,
    16 * 1024 + 1,
    64 * 1024 - 1,
    64 * 1024,
    64 * 1024 + 1,
    64 * 1024 + 3,
    300_000,
    1 << 20,
    16 << 20,
];

/// For each of [`ECHO_SIZES`], one connection: the payload written and the
/// write side shut down at once, the echo read back meanwhile; it must be
/// byte-exact and followed by the server's close. Returns the bytes sent.
#[track_caller]
pub fn echo_each_size(addr: SocketAddr) -> u64 {
    for (i, len) in ECHO_SIZES.into_iter().enumerate() {
        assert_echo(&connect(addr), &payload(i, len));
    }
    ECHO_SIZES.iter().sum::<usize>() as u64
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

/// Reads until end of stream; a reset, or no end of stream within the
/// read timeout, fails the test. Returns what arrived.
#[track_caller]
pub fn read_to_eof(stream: &TcpStream) -> Vec<u8> {
    let (got, end) = read_until_end(stream);
    if let Err(e) = end {
        panic!(
            "waiting for the server to close (after {} bytes): {e}",
            got.len()
        );
    }
    got
}

/// Reads until end of stream or a reset (which counts as the end); no end
/// within the read timeout fails the test. Returns what arrived.
#[track_caller]
pub fn read_until_closed(stream: &TcpStream) -> Vec<u8> {
    let (got, end) = read_until_end(stream);
    if let Err(e) = end {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            panic!("server did not close within {TIMEOUT:?}");
        }
    }
    got
}

/// What arrived until end of stream or the first error (which it returns).
fn read_until_end(stream: &TcpStream) -> (Vec<u8>, io::Result<()>) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (got, Err(e)),
        }
    }
}

/// Writes `data` on a clone of `stream` from a new thread; returns the
/// thread, which yields how many bytes it wrote before an error (if any).
pub fn spawn_writer(stream: &TcpStream, data: Vec<u8>) -> JoinHandle<usize> {
    let mut writer = stream.try_clone().expect("try_clone");
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
    SockRef<'s>: From<&'s S>,
{
    SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
}

/// A refused client reads end of stream (or a reset) at once, nothing else.
#[track_caller]
pub fn assert_refused(stream: &TcpStream) {
    let _ = (&*stream).write_all(b"let me in");
    let mut buf = [0u8; 16];
    match (&*stream).read(&mut buf) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("a refused client got {n} bytes of echo"),
    }
}
