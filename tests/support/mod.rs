//! Helpers for the hostile-client scenario tests (`hostile.rs`, `random.rs`,
//! `shutdown_load.rs`, `soak.rs`; see `docs/hostile.md`): a seeded PRNG, a
//! cheap verifiable byte stream per client, process facts from `/proc`, and
//! a few small conveniences on top of `tests/common`.

#![allow(dead_code)] // each test file uses a different subset

pub mod fleet;
#[cfg(target_os = "linux")]
pub mod netns;

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::common::{stat_field, Binary, TIMEOUT};

/// Runs the heavy scenarios of one test binary one at a time: each loads the
/// 2 cores of a CI machine on its own, and their timing and memory bounds
/// mean something only if they do not share the machine with each other.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

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
pub const PERIOD: usize = 1_048_573;

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

/// Whether `got` is exactly bytes `offset..` of client `id`'s stream.
pub fn stream_matches(id: usize, offset: u64, got: &[u8]) -> bool {
    let mut at = 0;
    while at < got.len() {
        let want = stream_bytes(id, offset + at as u64, got.len() - at);
        if got[at..at + want.len()] != *want {
            return false;
        }
        at += want.len();
    }
    true
}

/// Round-trip times, summarised.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    pub fn of(samples: &mut [Duration]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Latency {
            count: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: samples[samples.len() - 1],
        }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} round trips, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.count,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3
        )
    }
}

/// A process's resident set, in KiB (`VmRSS` in /proc/PID/status).
#[cfg(target_os = "linux")]
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

/// How many descriptors a process has open (entries of /proc/PID/fd).
#[cfg(target_os = "linux")]
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc fd")
        .count()
}

/// Waits (up to `limit`) for a `stats:` line of a binary started with
/// `--stats-interval` that satisfies `pred`, and returns it.
#[track_caller]
pub fn wait_for_stats(
    server: &mut Binary,
    what: &str,
    limit: Duration,
    mut pred: impl FnMut(&str) -> bool,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        // Each wait_for_line is bounded by TIMEOUT; stats lines come far
        // more often than that.
        let line = server.wait_for_line("stats:");
        if pred(&line) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}; last: {line}"
        );
    }
}

/// `key=value` of a stats line, as with [`stat_field`].
pub fn stat(line: &str, key: &str) -> u64 {
    stat_field(line, key)
}

/// Waits for `cond` with a deadline of `limit` (for the waits that are
/// longer than the common [`TIMEOUT`]); the nap only saves CPU.
#[track_caller]
pub fn wait_long(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit.max(TIMEOUT);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
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

/// The value of `"key": value` in the JSON report of `echoloop-stress`
/// (numbers, `null`, `true`/`false`, or a string without its quotes).
pub fn json_field<'a>(json: &'a str, key: &str) -> &'a str {
    let needle = format!("\"{key}\": ");
    let start = json
        .find(&needle)
        .unwrap_or_else(|| panic!("no {key:?} in report:\n{json}"))
        + needle.len();
    let rest = &json[start..];
    let end = rest.find([',', '\n', '}']).unwrap_or(rest.len());
    rest[..end].trim().trim_matches('"')
}

/// A numeric field of the stress report.
pub fn json_u64(json: &str, key: &str) -> u64 {
    let v = json_field(json, key);
    v.parse()
        .unwrap_or_else(|_| panic!("{key} = {v:?} is not an integer"))
}

/// Megabytes (MiB) from KiB, for reports.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The kernel's TCP memory in use, in KiB (`mem` of /proc/net/sockstat,
/// counted in pages): what socket buffers hold, which no RSS shows.
#[cfg(target_os = "linux")]
pub fn tcp_kernel_kib() -> u64 {
    let stat = std::fs::read_to_string("/proc/net/sockstat").expect("read sockstat");
    let pages: u64 = stat
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "mem").nth(1))
        .and_then(|v| v.parse().ok())
        .expect("TCP mem in sockstat");
    pages * 4
}
