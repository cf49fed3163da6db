//! `echoloop-stress`: a many-connection load generator for TCP echo servers
//! (RFC 862) that verifies every echoed byte.
//!
//! Point it at echoloop, or at any echo server, and it opens `--connections`
//! sockets, pushes messages through them and reports throughput, latency
//! percentiles and every failure by kind:
//!
//! ```text
//! echoloop-stress --addr 127.0.0.1:7878 --connections 50 --message-size 512 --duration 10
//! ```
//!
//! # How it works
//!
//! It is the client-side half of the same technique the server uses: each of
//! `--threads` loops is one `mio::Poll` owning an equal share of the
//! connections, all non-blocking and edge-triggered. An event means "read
//! until `WouldBlock`, then write what is due"; WRITABLE interest is
//! registered only while a socket has output it would not take (see
//! `worker.rs`). One large read buffer per loop, no buffer per connection, no
//! allocation per message.
//!
//! - **Verification without copies.** Each connection's outgoing byte stream
//!   is a function of its position (`payload.rs`), so an echo is checked with
//!   one `memcmp` against a shared table, in place, and sends are `write`s
//!   straight out of that table.
//! - **Pipelining.** `--pipeline K` keeps K messages in flight per connection:
//!   they are one contiguous stretch of the stream, so K messages may go out
//!   in a single `write`.
//! - **Closed or open loop.** By default the next message goes out when an
//!   echo returns. With `--rate R` each connection sends on a fixed schedule
//!   and every latency is measured from the message's *scheduled* time: if the
//!   server stalls, the messages that should have been sent meanwhile carry
//!   the stall in their latency (the coordinated-omission correction of wrk2).
//! - **Connections.** Sockets are made with socket2 so they can be bound to a
//!   source address (`--source-addrs`, spreading connections over loopback
//!   addresses so ephemeral ports never run out) before a non-blocking
//!   connect. `--connect-rate` paces the ramp-up. A failed connect is counted
//!   by reason (refused, timeout, addr-not-available, reset, other) and never
//!   stops the run. The soft open-file limit is raised to the hard limit.
//! - **Latency-bound runs.** A loop that sleeps in `poll` adds its own
//!   wake-up time (tens of µs on a VM) to every round trip; `--busy-poll`
//!   spins with a zero timeout instead, at the cost of a core per loop.
//!   Measured on the 2-core dev machine, 1 connection × 64 B against a C
//!   epoll echo: 13.5 K msg/s sleeping, 41 K msg/s spinning.
//! - **Modes.** `load` (default), `idle` (hold N connections open for the
//!   duration, then check each still echoes) and `churn` (connect, echo one
//!   message, close, repeat; reports connections per second).
//!
//! Once a second a status line goes to stderr (rewritten in place on a
//! terminal). The final report goes to stdout, as text or `--json`. Ctrl-C
//! stops the run and still prints the report so far. The exit status is 1 on
//! any verification error, when nothing was verified, or when failures
//! (connections never established among them) exceed `--max-failures`.

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod cli;
mod conn;
mod payload;
mod report;
#[path = "../common/usage.rs"]
mod usage;
mod worker;

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use mio::{Poll, Waker};

use crate::cli::{Args, Mode, SourceAddrs, DEFAULT_DURATION};
use crate::payload::Payload;
use crate::report::{new_histogram, status_line, Counts, Live, LiveTotals, Report, Samples, Setup};
use crate::worker::{Plan, Shared, Worker, WAKER};

/// Most `sent_at` timestamps (connections × pipeline) we allocate: 128 MiB.
const MAX_IN_FLIGHT: u64 = 16 << 20;

/// Exit status for bad flags or a setup failure.
const EXIT_SETUP: i32 = usage::EXIT_USAGE as i32;

fn main() {
    let code = run();
    let _ = io::stdout().flush();
    std::process::exit(code);
}

/// Runs the tool; returns the exit status.
fn run() -> i32 {
    let args: Args = usage::parse_or_exit("echoloop-stress");
    match prepare(&args) {
        Ok(plan) => execute(&args, plan),
        Err(message) => {
            eprintln!("echoloop-stress: {message}");
            EXIT_SETUP
        }
    }
}

/// Checks the flags and turns them into the plan the loops follow.
fn prepare(args: &Args) -> Result<(Plan, Option<u64>), String> {
    let addr = args.resolve_addr()?;
    args.validate(addr)?;
    if args.connections.saturating_mul(args.pipeline) > MAX_IN_FLIGHT {
        return Err(format!(
            "--connections × --pipeline is above {MAX_IN_FLIGHT} messages in flight"
        ));
    }
    // Every connection is a descriptor, and distributions default the soft
    // limit to 1,024: raise it to the hard limit (Unix; `None` on Windows).
    let fd_limit = match echoloop::raise_fd_limit() {
        Ok(limit) => limit,
        Err(e) => {
            eprintln!("echoloop-stress: warning: raise the open-file limit: {e}");
            None
        }
    };
    if let Some(limit) = fd_limit {
        // Each connection is a descriptor; a few more go to polls and stdio.
        if args.connections.saturating_add(32) > limit {
            eprintln!(
                "echoloop-stress: warning: --connections {} exceeds what the open-file \
                 limit ({limit}) allows; the excess connects will fail (counted as other)",
                args.connections
            );
        }
    }
    let duration = match (args.duration, args.messages) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_DURATION),
    };
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let per_second = |rate: f64| ((1e9 / rate).round() as u64).max(1);
    let plan = Plan {
        addr,
        mode: args.mode,
        connections: args.connections,
        threads: args.threads.min(args.connections),
        message_size: args.message_size,
        pipeline: args.pipeline,
        messages: args.messages,
        deadline: match args.mode {
            Mode::Idle => None,
            Mode::Load | Mode::Churn => duration.map(nanos),
        },
        hold_ns: duration.map_or(0, nanos),
        rate_interval_ns: args.rate.map(per_second),
        connect_interval_ns: args.connect_rate.map(per_second),
        connect_timeout_ns: nanos(args.connect_timeout),
        echo_timeout_ns: nanos(args.echo_timeout).max(1),
        source_addrs: args
            .source_addrs
            .clone()
            .map_or_else(Vec::new, |SourceAddrs(list)| list),
        payload: Payload::new(),
        busy_poll: args.busy_poll,
    };
    Ok((plan, fd_limit))
}

/// Runs the loops, shows the status line, prints the report.
fn execute(args: &Args, (plan, fd_limit): (Plan, Option<u64>)) -> i32 {
    let plan = Arc::new(plan);
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        latency: Mutex::new(new_histogram()),
    });
    let threads = plan.threads;
    let epoch = Instant::now();

    let mut workers = Vec::new();
    let mut wakers = Vec::new();
    let mut lives = Vec::new();
    for id in 0..threads {
        let poll = match Poll::new() {
            Ok(poll) => poll,
            Err(e) => {
                eprintln!("echoloop-stress: create poll: {e}");
                return EXIT_SETUP;
            }
        };
        match Waker::new(poll.registry(), WAKER) {
            Ok(waker) => wakers.push(waker),
            Err(e) => {
                eprintln!("echoloop-stress: create waker: {e}");
                return EXIT_SETUP;
            }
        }
        let live = Arc::new(Live::default());
        lives.push(Arc::clone(&live));
        workers.push(Worker::new(
            id,
            Arc::clone(&plan),
            Arc::clone(&shared),
            live,
            poll,
            epoch,
        ));
    }

    // Ctrl-C: ask every loop to stop (they then report); a second one quits.
    let stop_shared = Arc::clone(&shared);
    if let Err(e) = ctrlc::set_handler(move || {
        if stop_shared.stop.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        for waker in &wakers {
            let _ = waker.wake();
        }
    }) {
        eprintln!("echoloop-stress: warning: no Ctrl-C handler: {e}");
    }

    let (done_tx, done_rx) = mpsc::channel();
    let mut handles = Vec::new();
    for worker in workers {
        let done = done_tx.clone();
        let spawned = thread::Builder::new()
            .name("echoloop-stress-loop".into())
            .spawn(move || {
                let outcome = worker.run();
                let _ = done.send(());
                outcome
            });
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                eprintln!("echoloop-stress: spawn a loop thread: {e}");
                shared.stop.store(true, Ordering::SeqCst);
                return EXIT_SETUP;
            }
        }
    }
    drop(done_tx);

    show_status(&done_rx, handles.len(), &lives, &shared, epoch);

    let mut counts = Counts::default();
    let mut samples = Samples::default();
    let mut connect_latency = new_histogram();
    let mut interrupted = false;
    let mut crashed = false;
    for handle in handles {
        match handle.join() {
            Ok(outcome) => {
                counts.add(&outcome.counts);
                samples.add(outcome.samples);
                let _ = connect_latency.add(&outcome.connect_latency);
                interrupted |= outcome.interrupted;
            }
            Err(_) => crashed = true,
        }
    }
    let elapsed = epoch.elapsed();
    let latency = shared
        .latency
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let report = Report {
        setup: Setup {
            mode: plan.mode,
            addr: plan.addr.to_string(),
            connections: plan.connections,
            message_size: plan.message_size,
            pipeline: plan.pipeline,
            threads,
            rate: args.rate,
            messages: args.messages,
            duration: if args.messages.is_some() {
                None
            } else {
                Some(args.duration.unwrap_or(DEFAULT_DURATION))
            },
            max_failures: args.max_failures,
            fd_limit,
        },
        counts,
        samples,
        latency,
        connect_latency,
        elapsed,
        interrupted,
    };
    let text = if args.json {
        report.json()
    } else {
        report.text()
    };
    let mut stdout = io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{text}") {
        eprintln!("echoloop-stress: write the report: {e}");
    }
    if crashed {
        eprintln!("echoloop-stress: a loop thread panicked; the report is incomplete");
        return EXIT_SETUP;
    }
    report.exit_code()
}

/// Prints one status line per second to stderr until every loop is done:
/// rewritten in place on a terminal, one line each otherwise.
fn show_status(
    done: &mpsc::Receiver<()>,
    mut running: usize,
    lives: &[Arc<Live>],
    shared: &Shared,
    epoch: Instant,
) {
    const TICK: Duration = Duration::from_secs(1);
    let tty = io::stderr().is_terminal();
    let mut previous = LiveTotals::default();
    let mut previous_at = epoch;
    let mut next_tick = epoch + TICK;
    let mut width = 0;
    while running > 0 {
        match done.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok(()) => running -= 1,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                let totals = LiveTotals::read(lives);
                let p99 = {
                    let h = shared
                        .latency
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    (!h.is_empty()).then(|| h.value_at_quantile(0.99))
                };
                let line = status_line(now - epoch, totals, previous, now - previous_at, p99);
                let mut stderr = io::stderr().lock();
                let _ = if tty {
                    // Pad over the previous line; no escape codes needed.
                    let pad = width.max(line.len());
                    width = line.len();
                    write!(stderr, "\r{line:<pad$}")
                } else {
                    writeln!(stderr, "{line}")
                };
                let _ = stderr.flush();
                previous = totals;
                previous_at = now;
                next_tick += TICK;
                // Never queue up ticks after a stall of the main thread.
                if next_tick < now {
                    next_tick = now + TICK;
                }
            }
        }
    }
    if tty && width > 0 {
        eprintln!();
    }
}
