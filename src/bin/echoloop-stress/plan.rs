//! The plan every loop follows, made from the flags once the checks that need
//! more than one flag have passed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::cli::{Args, Mode, ProxyVersion, SourceAddrs, DEFAULT_DURATION};
use crate::payload::Payload;

/// Most `sent_at` timestamps (connections × pipeline) we allocate: 128 MiB.
const MAX_IN_FLIGHT: u64 = 16 << 20;

/// `--udp`: most datagrams in flight (connections × pipeline). Each socket
/// keeps a record of twice its pipeline (see `udp/flow.rs`), 32 bytes each:
/// at most 128 MiB.
const UDP_MAX_IN_FLIGHT: u64 = 1 << 20;

/// The run, as every loop needs it; shared read-only.
#[derive(Debug)]
pub struct Plan {
    /// The echo server.
    pub addr: SocketAddr,
    /// What the connections do.
    pub mode: Mode,
    /// Connections over all loops (churn: concurrent cycles).
    pub connections: u64,
    /// Number of loops; connection `i` belongs to loop `i mod threads`.
    pub threads: u64,
    /// Bytes per message.
    pub message_size: u64,
    /// Messages in flight per connection.
    pub pipeline: u64,
    /// Total messages (load) or cycles (churn) when the run is counted.
    pub messages: Option<u64>,
    /// Load and churn: end of a timed run, in ns since the epoch.
    pub deadline: Option<u64>,
    /// Idle: how long to hold the connections, in ns.
    pub hold_ns: u64,
    /// Open loop: ns between two messages of one connection.
    pub rate_interval_ns: Option<u64>,
    /// Ramp-up pacing: ns between two connects over all loops.
    pub connect_interval_ns: Option<u64>,
    /// How long a connect may take.
    pub connect_timeout_ns: u64,
    /// How long an outstanding echo may take before the connection is stalled.
    pub echo_timeout_ns: u64,
    /// Source addresses to bind to, round robin by connection index.
    pub source_addrs: Vec<IpAddr>,
    /// `--proxy-protocol`: the header version, and the clients the headers
    /// name (round robin by connection index).
    pub proxy: Option<(ProxyVersion, Vec<IpAddr>)>,
    /// The bytes every connection sends.
    pub payload: Payload,
    /// Spin on `poll` with a zero timeout instead of sleeping in it.
    pub busy_poll: bool,
    /// `--interval`: the length of one histogram of the timeline, in ns.
    pub interval_ns: u64,
    /// `--udp`: the share of datagrams that may be lost, in percent.
    pub max_loss: f64,
    /// `--udp`: the entries of each socket's record of recent datagrams
    /// (a power of two, at least twice the pipeline).
    pub udp_window: usize,
}

/// A duration in whole nanoseconds, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds between two events at `rate` per second, at least 1.
fn interval_ns(rate: f64) -> u64 {
    ((1e9 / rate).round() as u64).max(1)
}

/// Loopback source addresses a loopback IPv4 target is connected from by
/// default: each brings its own ephemeral ports (~28 K), so a run does not
/// find them all in TIME_WAIT from the run before.
pub const DEFAULT_LOOPBACK_SOURCES: u8 = 16;

/// The source addresses when `--source-addrs` is not given: against an IPv4
/// loopback target on Linux (which routes all of 127.0.0.0/8 to the
/// loopback), 127.0.0.1 to 127.0.0.16, round robin; elsewhere none (the OS
/// picks).
fn default_sources(target: SocketAddr) -> Vec<IpAddr> {
    match target.ip() {
        IpAddr::V4(ip) if cfg!(target_os = "linux") && ip.is_loopback() => (1
            ..=DEFAULT_LOOPBACK_SOURCES)
            .map(|n| IpAddr::from([127, 0, 0, n]))
            .collect(),
        _ => Vec::new(),
    }
}

impl Plan {
    /// Checks the flags and turns them into the plan the loops follow.
    pub fn from_args(args: &Args) -> Result<Plan, String> {
        let addr = args.resolve_addr()?;
        args.validate(addr)?;
        if args.connections.saturating_mul(args.pipeline) > MAX_IN_FLIGHT {
            return Err(format!(
                "--connections × --pipeline is above {MAX_IN_FLIGHT} messages in flight"
            ));
        }
        let mode = if args.udp { Mode::Udp } else { args.mode };
        let udp_window = if args.udp {
            if args.connections.saturating_mul(args.pipeline) > UDP_MAX_IN_FLIGHT {
                return Err(format!(
                    "--connections × --pipeline is above {UDP_MAX_IN_FLIGHT} datagrams in flight"
                ));
            }
            crate::udp::window(args.message_size, args.pipeline)?
        } else {
            0
        };
        let duration = args.run_length();
        Ok(Plan {
            addr,
            mode,
            connections: args.connections,
            threads: args.threads.min(args.connections),
            message_size: args.message_size,
            pipeline: args.pipeline,
            messages: args.messages,
            deadline: match args.mode {
                Mode::Idle => None,
                Mode::Load | Mode::Churn | Mode::Udp => duration.map(nanos),
            },
            hold_ns: duration.map_or(0, nanos),
            rate_interval_ns: args.rate.map(interval_ns),
            connect_interval_ns: args.connect_rate.map(interval_ns),
            connect_timeout_ns: nanos(args.connect_timeout),
            echo_timeout_ns: nanos(args.echo_timeout).max(1),
            source_addrs: args
                .source_addrs
                .clone()
                .map_or_else(|| default_sources(addr), |SourceAddrs(list)| list),
            proxy: args
                .proxy_protocol
                .zip(args.proxy_source.clone().map(|s| s.0)),
            payload: Payload::new(),
            busy_poll: args.busy_poll,
            interval_ns: nanos(args.interval).max(1),
            max_loss: args.max_loss.unwrap_or(0.0),
            udp_window,
        })
    }

    /// `--proxy-protocol`: the header connection `index` begins with, for
    /// the client `--proxy-source` gives it: the addresses in turn, then the
    /// next port (from 1024), so every connection of a run names its own
    /// client address and port.
    pub fn proxy_header(&self, index: u64) -> Option<Vec<u8>> {
        let (version, sources) = self.proxy.as_ref()?;
        let n = sources.len() as u64;
        let ip = sources[(index % n) as usize];
        let port = 1024 + ((index / n) % (65_536 - 1024)) as u16;
        let client = SocketAddr::new(ip, port);
        Some(match version {
            ProxyVersion::V1 => echoloop::proxy::v1(client, self.addr),
            ProxyVersion::V2 => echoloop::proxy::v2(client, self.addr),
        })
    }

    /// Messages connection `index` is to echo before closing (`--udp`:
    /// datagrams socket `index` is to send).
    pub fn quota(&self, index: u64) -> u64 {
        match (self.mode, self.messages) {
            (Mode::Load | Mode::Udp, Some(total)) => {
                total / self.connections + u64::from(index < total % self.connections)
            }
            (Mode::Load | Mode::Udp, None) => u64::MAX,
            (Mode::Churn | Mode::Idle, _) => 1,
        }
    }
}

impl Args {
    /// The run length (idle mode: the hold), or `None` for a run counted by
    /// `--messages`.
    pub fn run_length(&self) -> Option<Duration> {
        match (self.duration, self.messages) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_DURATION),
        }
    }
}
