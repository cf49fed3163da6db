//! The live status line: counters each loop publishes as it goes, and the
//! main thread's once-a-second line on stderr.

use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, PoisonError};
use std::time::{Duration, Instant};

use crate::conn::FailReason;
use crate::counts::Counts;
use crate::record::Series;
use crate::report::{group, us, MIB};
use crate::shared::Shared;

/// Counters one loop updates as it goes and the status line reads once a
/// second. One per loop, on its own cache lines, so loops never contend.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Live {
    /// Connections open right now.
    pub up: AtomicU64,
    /// Connects attempted so far.
    pub attempted: AtomicU64,
    /// Messages echoed so far.
    pub messages: AtomicU64,
    /// Echoed bytes so far.
    pub bytes: AtomicU64,
    /// Failed connects, unexpected closes, stalls and verification errors so far.
    pub errors: AtomicU64,
    /// While echoes are owed: when the longest-waiting connection last
    /// received an echo byte (ns since the run's epoch, at least 1); 0 while
    /// nothing is outstanding. The status line shows a stall from it before
    /// `--echo-timeout` ends it.
    pub waiting_since: AtomicU64,
    /// Connects failed for want of a local port (addr-not-available).
    pub ports_short: AtomicU64,
    /// `--udp`: datagrams lost so far.
    pub lost: AtomicU64,
}

impl Live {
    /// Mirrors a loop's counts, with `up` connections open and the wait
    /// for echoes `waiting_since` (0: none owed).
    pub fn publish(&self, c: &Counts, up: u64, waiting_since: u64) {
        self.up.store(up, Ordering::Relaxed);
        self.waiting_since.store(waiting_since, Ordering::Relaxed);
        self.attempted.store(c.attempted, Ordering::Relaxed);
        self.messages.store(c.messages, Ordering::Relaxed);
        self.bytes.store(c.bytes, Ordering::Relaxed);
        self.ports_short.store(
            c.failed[FailReason::AddrNotAvailable.index()],
            Ordering::Relaxed,
        );
        self.errors.store(
            c.failed_total()
                + c.unexpected_closes
                + c.stalled
                + c.verification_errors
                + c.udp.corrupted
                + c.udp.duplicated,
            Ordering::Relaxed,
        );
        self.lost.store(c.udp.lost, Ordering::Relaxed);
    }
}

/// Sums of all loops' [`Live`] counters at one instant.
#[derive(Debug, Default, Clone, Copy)]
pub struct LiveTotals {
    /// Connections open.
    pub up: u64,
    /// Connects attempted.
    pub attempted: u64,
    /// Messages echoed.
    pub messages: u64,
    /// Bytes echoed.
    pub bytes: u64,
    /// Errors of every kind.
    pub errors: u64,
    /// The longest-waiting loop's last progress (ns since the epoch), if
    /// any loop is owed echoes.
    pub waiting_since: Option<u64>,
    /// Connects failed for want of a local port.
    pub ports_short: u64,
    /// `--udp`: datagrams lost.
    pub lost: u64,
}

impl LiveTotals {
    /// Reads and adds up every loop's counters.
    pub fn read(lives: &[Arc<Live>]) -> Self {
        let mut t = LiveTotals::default();
        for live in lives {
            t.up += live.up.load(Ordering::Relaxed);
            t.attempted += live.attempted.load(Ordering::Relaxed);
            t.messages += live.messages.load(Ordering::Relaxed);
            t.bytes += live.bytes.load(Ordering::Relaxed);
            t.errors += live.errors.load(Ordering::Relaxed);
            t.ports_short += live.ports_short.load(Ordering::Relaxed);
            t.lost += live.lost.load(Ordering::Relaxed);
            let since = live.waiting_since.load(Ordering::Relaxed);
            if since > 0 {
                t.waiting_since = Some(t.waiting_since.map_or(since, |t| t.min(since)));
            }
        }
        t
    }
}

/// One status line from two samples `interval` apart (`udp`: of a
/// `--udp` run, in sockets and datagrams).
pub fn status_line(
    elapsed: Duration,
    now: LiveTotals,
    before: LiveTotals,
    interval: Duration,
    p99_ns: Option<u64>,
    udp: bool,
) -> String {
    let secs = interval.as_secs_f64().max(1e-9);
    let msgs = (now.messages - before.messages) as f64 / secs;
    let mib = (now.bytes - before.bytes) as f64 / secs / MIB;
    let p99 = p99_ns.map_or_else(|| "-".to_string(), |ns| format!("{:.1} us", us(ns)));
    let (up, unit) = if udp {
        (format!("sockets {}", group(now.up)), "datagrams/s")
    } else {
        let up = format!(
            "conns up {} (tried {})",
            group(now.up),
            group(now.attempted)
        );
        (up, "msg/s")
    };
    let mut line = format!(
        "[{:>4.0}s] {up} | {} {unit} | {:.1} MiB/s | p99 {} | errors {}",
        elapsed.as_secs_f64(),
        group(msgs.round() as u64),
        mib,
        p99,
        group(now.errors),
    );
    if udp {
        let _ = write!(line, " | lost {}", group(now.lost));
    }
    // A stall says so, rather than looking like a finished run's 0 msg/s.
    let elapsed_ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    if let Some(since) = now.waiting_since {
        let waited = Duration::from_nanos(elapsed_ns.saturating_sub(since));
        if waited >= Duration::from_secs(1) {
            let _ = write!(line, " | no echo for {:.1} s", waited.as_secs_f64());
        }
    }
    if now.ports_short > 0 {
        line.push_str(" | ephemeral ports exhausted (TIME_WAIT): use --source-addrs");
    }
    line
}

/// Prints one status line per second to stderr until every loop is done
/// (`done` receives one message per loop that ends): rewritten in place on
/// a terminal, one line each otherwise. `on_tick` runs after each line;
/// `look` says what kind of line.
pub fn show_status(
    done: &mpsc::Receiver<()>,
    mut running: usize,
    lives: &[Arc<Live>],
    shared: &Shared,
    epoch: Instant,
    look: Look<'_>,
    on_tick: &mut dyn FnMut(),
) {
    const TICK: Duration = Duration::from_secs(1);
    let phase = look.phase;
    let mut line = StatusWriter::new(epoch, look.udp);
    let mut next_tick = epoch + TICK;
    while running > 0 {
        match done.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok(()) => running -= 1,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                line.tick(now, LiveTotals::read(lives), shared, phase(now - epoch));
                on_tick();
                next_tick += TICK;
                // Never queue up ticks after a stall of the main thread.
                if next_tick < now {
                    next_tick = now + TICK;
                }
            }
        }
    }
    line.finish();
}

/// What kind of status line a run shows.
pub struct Look<'a> {
    /// The line of a `--udp` run (sockets and datagrams).
    pub udp: bool,
    /// What the run is doing at that time since its start, if it says
    /// (the warm-up, a stage), shown at the end of the line.
    pub phase: &'a dyn Fn(Duration) -> Option<String>,
}

impl std::fmt::Debug for Look<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Look")
            .field("udp", &self.udp)
            .finish_non_exhaustive()
    }
}

/// The status line's state between ticks.
#[derive(Debug)]
struct StatusWriter {
    /// Time zero of the run.
    epoch: Instant,
    /// Whether stderr is a terminal (rewrite the line in place).
    tty: bool,
    /// The totals at the previous tick, for the rates.
    previous: LiveTotals,
    /// When the previous tick was.
    previous_at: Instant,
    /// Length of the line last written, to pad over it.
    width: usize,
    /// Whether it is a `--udp` run's line.
    udp: bool,
}

impl StatusWriter {
    /// Nothing written yet.
    fn new(epoch: Instant, udp: bool) -> Self {
        StatusWriter {
            epoch,
            tty: io::stderr().is_terminal(),
            previous: LiveTotals::default(),
            previous_at: epoch,
            width: 0,
            udp,
        }
    }

    /// Writes the line for `totals` read at `now`.
    fn tick(&mut self, now: Instant, totals: LiveTotals, shared: &Shared, phase: Option<String>) {
        let p99 = {
            let timeline = shared
                .timeline
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let h = timeline.total.get(Series::Rtt);
            (!h.is_empty()).then(|| h.value_at_quantile(0.99))
        };
        let mut line = status_line(
            now - self.epoch,
            totals,
            self.previous,
            now - self.previous_at,
            p99,
            self.udp,
        );
        if let Some(phase) = phase {
            let _ = write!(line, " | {phase}");
        }
        let mut stderr = io::stderr().lock();
        let _ = if self.tty {
            // Pad over the previous line; no escape codes needed.
            let pad = self.width.max(line.len());
            self.width = line.len();
            write!(stderr, "\r{line:<pad$}")
        } else {
            writeln!(stderr, "{line}")
        };
        let _ = stderr.flush();
        self.previous = totals;
        self.previous_at = now;
    }

    /// Ends a line rewritten in place.
    fn finish(&self) {
        if self.tty && self.width > 0 {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status line names a stall of a second or more, and only then.
    #[test]
    fn status_line_shows_a_stall() {
        let second = Duration::from_secs(1);
        let waiting = |since: Option<u64>| LiveTotals {
            up: 1,
            waiting_since: since,
            ..LiveTotals::default()
        };
        let line = |since| {
            status_line(
                second * 5,
                waiting(since),
                waiting(None),
                second,
                None,
                false,
            )
        };
        assert!(line(Some(1_500_000_000)).ends_with(" | no echo for 3.5 s"));
        assert!(!line(Some(4_500_000_000)).contains("no echo"));
        assert!(!line(None).contains("no echo"));
    }

    /// Connects short of local ports are named, with the cure.
    #[test]
    fn status_line_names_port_exhaustion() {
        let second = Duration::from_secs(1);
        let short = LiveTotals {
            ports_short: 3,
            ..LiveTotals::default()
        };
        let line = status_line(second, short, LiveTotals::default(), second, None, false);
        assert!(
            line.contains("ephemeral ports exhausted (TIME_WAIT)"),
            "{line}"
        );
        assert!(line.contains("--source-addrs"), "{line}");
    }

    /// A `--udp` run's line counts sockets and datagrams, and its losses.
    #[test]
    fn udp_status_line_counts_datagrams_and_losses() {
        let second = Duration::from_secs(1);
        let now = LiveTotals {
            up: 50,
            messages: 1200,
            lost: 3,
            ..LiveTotals::default()
        };
        let line = status_line(second, now, LiveTotals::default(), second, None, true);
        assert!(
            line.starts_with("[   1s] sockets 50 | 1,200 datagrams/s"),
            "{line}"
        );
        assert!(line.ends_with(" | lost 3"), "{line}");
    }
}
