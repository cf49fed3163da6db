//! `echoloop-stress`: a many-connection load generator for TCP (and, with
//! `--udp`, UDP) echo servers (RFC 862) that verifies every echoed byte.
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
//! `tcp.rs`). One large read buffer per loop, no buffer per connection, no
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
//!   addresses so ephemeral ports never run out; against a loopback server
//!   on Linux, 127.0.0.1-127.0.0.16 by default) before a non-blocking
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
//! - **UDP.** `--udp` drives UDP sockets on the same loops: datagrams that
//!   carry their sequence number and socket, a bounded ring of those in
//!   flight per socket, and every echo sorted into echoed, lost, late,
//!   duplicated, reordered or corrupted (`udp.rs`).
//!
//! - **Beyond a plain run.** `--warmup` verifies traffic before it is
//!   counted (the loop core keeps its counts at the warm-up's end, the
//!   recorder throws away what it timed: `record.rs`, `counts.rs`);
//!   `--stages` ramps the active connections (`stages.rs`); `--send` with
//!   `--expect` loads servers that answer without echoing (`exchange.rs`,
//!   `tcp/request.rs`); UDP runs report RFC 3550 jitter (`udp/jitter.rs`).
//!   Each costs a plain echo run nothing per message: the loop core looks
//!   at the warm-up and the stages once a turn, and the TCP engine takes
//!   the any-server path by one branch per read and per write.
//! - **Latency over time.** Each loop records round trips (corrected and,
//!   in the open loop, uncorrected), connect times and times to first byte
//!   into histograms it hands to a shared timeline per `--interval`
//!   (`record.rs`); the main thread writes each complete interval to the
//!   `--hlog` interval log and keeps a point for the `--plot` picture
//!   (`intervals.rs`, `plot.rs`).
//! - **The latency distribution.** `--plot-percentiles` draws the run's
//!   whole histograms by percentile on HdrHistogram's "1 in N" axis, and
//!   `chart --percentiles` several reports side by side (`spectrum.rs`);
//!   `--html` puts the report and both pictures on one self-contained page
//!   (`html.rs`). Every output file follows one rule (`run.rs`).
//! - **Many machines.** `--json` embeds every histogram, `--start-at`
//!   starts clients together, and `echoloop-stress merge` adds their
//!   reports up exactly (`merge.rs`). `echoloop-stress chart` draws the
//!   benchmark's results (`chart.rs`).
//!
//! Once a second a status line goes to stderr (rewritten in place on a
//! terminal). The final report goes to stdout, as text or `--json`. Ctrl-C
//! stops the run and still prints the report so far. The exit status is 1 on
//! any verification error, when nothing was verified, or when failures
//! (connections never established among them) exceed `--max-failures`.

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod chart;
mod cli;
mod conn;
mod counts;
mod engine;
mod exchange;
mod html;
mod intervals;
mod json;
mod keyed;
mod live;
mod merge;
#[cfg(test)]
mod merge_properties;
#[path = "../common/output.rs"]
mod output;
mod payload;
mod plan;
mod plot;
mod record;
mod report;
mod run;
mod shared;
mod spectrum;
mod stages;
mod tcp;
mod tls;
mod udp;
#[path = "../common/usage.rs"]
mod usage;

use std::io::{self, Write};

use crate::cli::{Args, Command};
use crate::plan::Plan;
use crate::run::EXIT_SETUP;

fn main() {
    let code = start();
    let _ = io::stdout().flush();
    std::process::exit(code);
}

/// Runs the tool; returns the exit status.
fn start() -> i32 {
    let args: Args = usage::parse_or_exit("echoloop-stress");
    match &args.command {
        Some(Command::Merge(merge)) => return merge::run(merge),
        Some(Command::Chart(chart)) => return chart::run(chart),
        None => {}
    }
    match Plan::from_args(&args) {
        Ok(plan) => {
            let fd_limit = raise_fd_limit(plan.connections);
            run::execute(&args, plan, fd_limit)
        }
        Err(message) => {
            eprintln!("echoloop-stress: {message}");
            EXIT_SETUP
        }
    }
}

/// Every connection is a descriptor, and distributions default the soft
/// limit to 1,024: raises it to the hard limit, and warns when even that is
/// too few for `connections` (the plan's: `--stages` sets them). Returns
/// the limit (Unix; `None` on Windows).
fn raise_fd_limit(connections: u64) -> Option<u64> {
    let fd_limit = match echoloop::raise_fd_limit() {
        Ok(limit) => limit,
        Err(e) => {
            eprintln!("echoloop-stress: warning: raise the open-file limit: {e}");
            None
        }
    };
    if let Some(limit) = fd_limit {
        // Each connection is a descriptor; a few more go to polls and stdio.
        if connections.saturating_add(32) > limit {
            eprintln!(
                "echoloop-stress: warning: {connections} connections exceed what the \
                 open-file limit ({limit}) allows; the excess connects will fail (counted \
                 as other)"
            );
        }
    }
    fd_limit
}
