//! The command line: every flag, its default (read from
//! [`Config::default`], never restated) and its bounds (the library's, so a
//! flag and a `Config` built in code are checked alike).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::Parser;
use echoloop::config::DEFAULT_LISTEN;
use echoloop::Config;

/// echoloop: a TCP echo server (RFC 862) on one single-threaded readiness
/// loop. Every byte a client sends comes back, in order, until it closes.
///
/// Signals: Ctrl-C (SIGINT), SIGTERM and SIGHUP start a graceful shutdown; a
/// second one exits at once (status 130). SIGHUP is left ignored when it was
/// ignored at start, as under `nohup`.
///
/// Logging: RUST_LOG=debug shows one line per connection event.
#[derive(Debug, Parser)]
#[command(version, allow_negative_numbers = true)]
pub struct Cli {
    /// Address to listen on (host names are resolved, and every address
    /// they resolve to is listened on); repeat for several.
    #[arg(long = "listen", value_name = "ADDR", default_value = DEFAULT_LISTEN, value_parser = resolve)]
    pub listen: Vec<Resolved>,

    /// Most connections open at once; beyond it new clients are closed at
    /// once and counted as refused. Default: open-file limit minus 64 (at
    /// most 1,048,576); 16,384 on Windows, which has no such limit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,

    /// Most echoed bytes held for a peer that is not reading; at the cap
    /// the server stops reading from it. Each read takes at most this much,
    /// so a cap below --read-buffer also slows prompt readers. Memory
    /// follows the bytes actually held, up to this cap (at most 1 GiB).
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_pending,
          value_parser = |s: &str| Config::MAX_PENDING.parse_usize(s))]
    pub max_pending: usize,

    /// Size of the loop's single read buffer (at most 64 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().read_buffer,
          value_parser = |s: &str| Config::READ_BUFFER.parse_usize(s))]
    pub read_buffer: usize,

    /// Close connections idle for this many seconds (fractions allowed,
    /// 0.01 up to a year). Default: never.
    #[arg(long, value_name = "SECS", value_parser = |s: &str| Config::IDLE_TIMEOUT.parse(s))]
    pub idle_timeout: Option<Duration>,

    /// Reap connections whose peer vanished without a FIN or reset (power
    /// loss, a dead link) this many seconds after it last answered:
    /// keepalive probes from half of it idle, and on Linux TCP_USER_TIMEOUT
    /// for unacknowledged echo. Counted as vanished. Whole seconds, 2 to
    /// 65000. Default: off, and TCP never notices such a peer (the OS's
    /// keepalive default is two hours, and off unless asked for).
    #[arg(long, value_name = "SECS", value_parser = parse_keepalive)]
    pub tcp_keepalive: Option<Duration>,

    /// On Ctrl-C/SIGTERM, seconds to keep flushing pending echoes before
    /// closing everything (0 closes at once).
    #[arg(long, value_name = "SECS", default_value_t = Secs(Config::default().shutdown_grace),
          value_parser = |s: &str| Config::SHUTDOWN_GRACE.parse(s).map(Secs))]
    pub shutdown_grace: Secs,

    /// Log the counters every this many seconds (at least 0.01). Default:
    /// only at exit.
    #[arg(long, value_name = "SECS", value_parser = |s: &str| Config::STATS_INTERVAL.parse(s))]
    pub stats_interval: Option<Duration>,

    /// Listen backlog: connections the kernel queues for us before we
    /// accept them (at least 1; capped by the kernel, e.g.
    /// net.core.somaxconn).
    #[arg(long, value_name = "N", default_value_t = Config::default().backlog,
          value_parser = |s: &str| Config::BACKLOG.parse(s).map(|n| n as u32))]
    pub backlog: u32,

    /// Leave Nagle's algorithm on (do not set TCP_NODELAY).
    #[arg(long)]
    pub no_nodelay: bool,

    /// Serve UDP echo too (RFC 862 section 2: each datagram back to its
    /// source), on every --listen address, same port as TCP.
    #[arg(long)]
    pub udp: bool,

    /// Most UDP datagrams echoed per second to one source IP; over it they
    /// are dropped and counted. It caps what a spoofed-source flood can
    /// reflect at any one victim. 0: no limit (load tests from one host).
    #[arg(long, value_name = "N", default_value_t = Config::default().udp_rate,
          value_parser = |s: &str| Config::UDP_RATE.parse(s).map(|n| n as u32))]
    pub udp_rate: u32,
}

/// A duration flag with a default, shown in `--help` in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Secs(pub Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

/// Parses `--tcp-keepalive`: whole seconds the socket options can express.
fn parse_keepalive(text: &str) -> Result<Duration, String> {
    let b = Config::TCP_KEEPALIVE;
    b.parse(text)
        .map(Duration::from_secs)
        .map_err(|why| format!("{why}: whole seconds from {} to {}", b.min, b.max))
}

/// The socket addresses one `--listen` value resolved to.
#[derive(Debug, Clone)]
pub struct Resolved(pub Vec<SocketAddr>);

/// Resolves `host:port` (or a literal address) to every address it names.
fn resolve(text: &str) -> Result<Resolved, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(Resolved(vec![addr]));
    }
    let mut addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("`{text}` is not an address, and resolving it failed: {e}"))?
        .collect();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(format!("`{text}` resolved to no address"));
    }
    Ok(Resolved(addrs))
}

impl Cli {
    /// The library configuration these flags describe.
    pub fn into_config(self) -> Config {
        Config {
            listen: self.listen.into_iter().flat_map(|r| r.0).collect(),
            max_connections: self
                .max_connections
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            max_pending: self.max_pending,
            read_buffer: self.read_buffer,
            idle_timeout: self.idle_timeout,
            tcp_keepalive: self.tcp_keepalive,
            shutdown_grace: self.shutdown_grace.0,
            stats_interval: self.stats_interval,
            nodelay: !self.no_nodelay,
            backlog: self.backlog,
            udp: self.udp,
            udp_rate: self.udp_rate,
            ..Config::default()
        }
    }
}
