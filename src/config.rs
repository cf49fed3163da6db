//! What an operator can tune, and the command line that sets it.
//!
//! [`Config`] is the library's view: plain values with production defaults,
//! built by tests and examples directly. [`Cli`] is the binary's view of the
//! same settings: every flag, its default shown by `--help`, turned into a
//! `Config` by [`Cli::into_config`]. Keeping them apart means the library does
//! not care how a setting was spelled, and the CLI can be read on one screen.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// The address a server listens on when none is given: loopback only, so a
/// first `cargo run` exposes nothing to the network.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// Everything a [`Server`](crate::Server) needs to know before it starts.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on (IPv4 and/or IPv6). Port 0 picks a free port;
    /// [`Server::local_addrs`](crate::Server::local_addrs) tells which.
    pub listen: Vec<SocketAddr>,
    /// How many connections may be open at once; beyond it new clients are
    /// accepted and closed at once (refused), so they learn it promptly
    /// instead of hanging in the backlog. `None` derives it from the
    /// open-file limit, leaving headroom for the server's own descriptors.
    pub max_connections: Option<usize>,
    /// Cap on a connection's pending output: echoed bytes its peer has not
    /// taken yet. At the cap the server stops reading from that peer until
    /// it drains, so memory is bounded by connections × this, whatever
    /// clients do.
    pub max_pending: usize,
    /// Size of the one read buffer the loop owns and lends to every
    /// connection in turn. Large enough for bulk streams (a 4 KiB buffer
    /// makes 16 KiB messages several times slower); it costs memory once,
    /// not per connection.
    pub read_buffer: usize,
    /// Close connections that have had no traffic for this long. `None`
    /// (the default) keeps idle connections forever, as RFC 862 allows.
    pub idle_timeout: Option<Duration>,
    /// On shutdown, how long to keep flushing echoes already read before
    /// closing whatever remains.
    pub shutdown_grace: Duration,
    /// Log the counters at info level this often; `None` logs them only at
    /// exit.
    pub stats_interval: Option<Duration>,
    /// Set `TCP_NODELAY` on accepted sockets, so a small echo leaves at once
    /// instead of waiting on Nagle's algorithm for the peer's delayed ACK.
    pub nodelay: bool,
    /// Reads one connection may do per loop turn before the loop moves on
    /// (it comes back next turn). One client streaming at full speed cannot
    /// starve the others.
    pub reads_per_turn: usize,
    /// Length of each listener's queue of connections the kernel has
    /// completed but we have not accepted yet. A burst beyond it is dropped
    /// by the kernel and retried by clients only after a second or more.
    pub backlog: u32,
    /// Accepts per listener per loop turn: a connection flood cannot starve
    /// the clients already being served.
    pub accepts_per_turn: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![DEFAULT_LISTEN
                .parse()
                .expect("DEFAULT_LISTEN is a valid address")],
            max_connections: None,
            max_pending: 64 * 1024,
            read_buffer: 64 * 1024,
            idle_timeout: None,
            shutdown_grace: Duration::from_secs(5),
            stats_interval: None,
            nodelay: true,
            reads_per_turn: 16,
            accepts_per_turn: 128,
            backlog: 4096,
        }
    }
}

/// echoloop: a TCP echo server (RFC 862) on one single-threaded readiness
/// loop. Every byte a client sends comes back, in order, until it closes.
///
/// Logging: RUST_LOG=debug shows one line per connection event.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// Address to listen on; repeat for several (e.g. IPv4 and IPv6).
    #[arg(long = "listen", value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: Vec<SocketAddr>,

    /// Most connections open at once; beyond it new clients are closed at
    /// once and counted as refused. Default: open-file limit minus 64 (at
    /// most 1,048,576); 16,384 on Windows, which has no such limit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,

    /// Most echoed bytes held for a peer that is not reading; at the cap
    /// the server stops reading from it.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024, value_parser = parse_size)]
    pub max_pending: usize,

    /// Size of the loop's single read buffer.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024, value_parser = parse_size)]
    pub read_buffer: usize,

    /// Close connections idle for this many seconds (fractions allowed).
    /// Default: never.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub idle_timeout: Option<Duration>,

    /// On Ctrl-C/SIGTERM, seconds to keep flushing pending echoes before
    /// closing everything.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub shutdown_grace: Duration,

    /// Log the counters every this many seconds. Default: only at exit.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub stats_interval: Option<Duration>,

    /// Listen backlog: connections the kernel queues for us before we
    /// accept them (capped by the kernel, e.g. net.core.somaxconn).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub backlog: u32,

    /// Leave Nagle's algorithm on (do not set TCP_NODELAY).
    #[arg(long)]
    pub no_nodelay: bool,
}

impl Cli {
    /// The library configuration these flags describe.
    pub fn into_config(self) -> Config {
        Config {
            listen: self.listen,
            max_connections: self
                .max_connections
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            max_pending: self.max_pending,
            read_buffer: self.read_buffer,
            idle_timeout: self.idle_timeout,
            shutdown_grace: self.shutdown_grace,
            stats_interval: self.stats_interval,
            nodelay: !self.no_nodelay,
            backlog: self.backlog,
            ..Config::default()
        }
    }
}

/// Parses seconds, fractions allowed ("0.5"), into a `Duration`.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` seconds is out of range"))
}

/// Parses a byte count, at least 1.
fn parse_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a positive number of bytes")),
    }
}
