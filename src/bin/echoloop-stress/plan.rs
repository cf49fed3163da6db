//! The plan every loop follows, made from the flags once the checks that need
//! more than one flag have passed. They are all here ([`Plan::from_args`]):
//! clap checks each flag alone, this file every combination.
//!
//! A run is a transport (TCP, or UDP with `--udp`) × a workload (`--mode`
//! load, idle or churn). UDP runs the load workload only; the other two
//! are refused here, in one line naming both flags.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::cli::{Args, Mode, ProxyVersion, SourceAddrs, DEFAULT_DURATION};
use crate::exchange::{self, Expect, Request};
use crate::payload::Payload;
use crate::stages::Stages;
use crate::udp::datagram::window;

/// Most `sent_at` timestamps (connections × pipeline) we allocate: 128 MiB.
const MAX_IN_FLIGHT: u64 = 16 << 20;

/// `--udp`: most datagrams in flight (connections × pipeline). Each socket
/// keeps a record of twice its pipeline (see `udp/flow.rs`), 32 bytes each:
/// at most 128 MiB.
const UDP_MAX_IN_FLIGHT: u64 = 1 << 20;

/// The largest UDP payload over IPv4: 65,535 less the IPv4 and UDP headers.
pub const UDP_MAX_V4: u64 = 65_507;

/// The largest UDP payload over IPv6 (no jumbograms): 65,535 less the UDP header.
pub const UDP_MAX_V6: u64 = 65_527;

/// What carries the messages: it picks the loops' engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP connections, each a verified byte stream (`tcp.rs`).
    Tcp,
    /// UDP sockets, each datagram verified on its own (`--udp`, `udp.rs`).
    Udp,
}

/// What a run measured, as the reports name it (their `mode`): a TCP run
/// by its workload (`load`, `idle`, `churn`), a UDP run `udp` (its
/// workload is always load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// What carried the messages.
    pub transport: Transport,
    /// What the connections did.
    pub workload: Mode,
}

impl Kind {
    /// Whether it is a `--udp` run.
    pub fn udp(self) -> bool {
        self.transport == Transport::Udp
    }

    /// The name the reports give it.
    pub fn name(self) -> &'static str {
        match self.transport {
            Transport::Tcp => self.workload.name(),
            Transport::Udp => "udp",
        }
    }

    /// The run a report's name stands for.
    fn named(name: &str) -> Option<Kind> {
        let (transport, workload) = match name {
            "udp" => (Transport::Udp, Mode::Load),
            "load" => (Transport::Tcp, Mode::Load),
            "idle" => (Transport::Tcp, Mode::Idle),
            "churn" => (Transport::Tcp, Mode::Churn),
            _ => return None,
        };
        Some(Kind {
            transport,
            workload,
        })
    }
}

/// Written as its name.
impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// Read from its name.
impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Kind::named(&name).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown mode `{name}`, expected load, idle, churn or udp"
            ))
        })
    }
}

/// The run, as every loop needs it; shared read-only.
#[derive(Debug)]
pub struct Plan {
    /// The echo server.
    pub addr: SocketAddr,
    /// What carries the messages.
    pub transport: Transport,
    /// What the connections do (`--mode`; UDP: always load).
    pub workload: Mode,
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
    /// `--send` with `--expect` or `--expect-bytes`: what a message and a
    /// response are (`None`: echo, verified byte for byte).
    pub exchange: Option<Exchange>,
    /// `--stages`: the active connections over time (`None`: all of them
    /// throughout).
    pub stages: Option<Stages>,
    /// `--warmup`: when the measurement starts, in ns since the epoch (0:
    /// from the start). The deadline comes this much later.
    pub warmup_ns: u64,
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
    /// `--tls`: what every connection's TLS shares.
    pub tls: Option<crate::tls::ClientTls>,
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

/// Any TCP server: the request and what one response is.
#[derive(Debug)]
pub struct Exchange {
    /// `--send`.
    pub request: Request,
    /// `--expect` or `--expect-bytes`.
    pub expect: Expect,
}

impl Exchange {
    /// `--send` with its `--expect` (clap made sure one comes with the
    /// other); reads an @FILE. `None` without `--send`.
    fn from_args(args: &Args) -> Result<Option<Exchange>, String> {
        let Some(send) = &args.send else {
            if args.expect.is_some() || args.expect_bytes.is_some() {
                return Err(
                    "--expect and --expect-bytes say what a response to --send is; \
                            give --send too"
                        .into(),
                );
            }
            return Ok(None);
        };
        if args.udp {
            return Err("--send applies to TCP; --udp echoes datagrams".into());
        }
        let request = match send.strip_prefix('@') {
            Some(path) => {
                let bytes =
                    std::fs::read(path).map_err(|e| format!("--send @{path}: read: {e}"))?;
                exchange::parse_send(&bytes, false).map_err(|e| format!("--send @{path}: {e}"))?
            }
            None => exchange::parse_send(send.as_bytes(), true)
                .map_err(|e| format!("--send {send:?}: {e}"))?,
        };
        let expect = match (&args.expect, args.expect_bytes) {
            (Some(pattern), _) => {
                Expect::parse(pattern).map_err(|e| format!("--expect {pattern:?}: {e}"))?
            }
            (None, Some(n)) => Expect::Bytes(n as usize),
            (None, None) => return Err("--send needs --expect or --expect-bytes".into()),
        };
        Ok(Some(Exchange { request, expect }))
    }
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

/// `--tls`: the client TLS of `--tls-ca` or `--tls-insecure`, for
/// `--tls-sni` or the target's host.
fn client_tls(args: &Args, addr: SocketAddr) -> Result<Option<crate::tls::ClientTls>, String> {
    if !args.tls {
        return Ok(None);
    }
    if args.udp {
        return Err("--tls is for TCP; UDP has no TLS here".into());
    }
    if args.tls_ca.is_none() && !args.tls_insecure {
        return Err("--tls needs --tls-ca FILE, or --tls-insecure".into());
    }
    let host = args
        .addr
        .rsplit_once(':')
        .map_or(args.addr.as_str(), |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() {
        addr.ip().to_string()
    } else {
        host.to_string()
    };
    let name = args.tls_sni.clone().unwrap_or(host);
    let identity = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
    crate::tls::client(args.tls_ca.as_deref(), identity, &name, args.tls_resume).map(Some)
}

impl Plan {
    /// Checks the flags and turns them into the plan the loops follow.
    pub fn from_args(args: &Args) -> Result<Plan, String> {
        let addr = args.resolve_addr()?;
        let transport = if args.udp {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        check_combination(args, transport)?;
        check(args, addr)?;
        let udp_window = match transport {
            Transport::Udp => check_udp(args, addr)?,
            Transport::Tcp => 0,
        };
        let duration = args.run_length();
        let warmup_ns = args.warmup.map_or(0, nanos);
        let exchange = Exchange::from_args(args)?;
        let connections = args.stages.as_ref().map_or(args.connections, Stages::max);
        Ok(Plan {
            addr,
            transport,
            workload: args.mode,
            connections,
            threads: args.threads.min(connections),
            // Any server: the first request's size, for the report.
            message_size: exchange.as_ref().map_or(args.message_size, |x| {
                let mut first = Vec::new();
                x.request.render(0, &mut first);
                first.len() as u64
            }),
            pipeline: args.pipeline,
            messages: args.messages,
            deadline: match args.mode {
                Mode::Idle => None,
                Mode::Load | Mode::Churn => duration.map(|d| nanos(d).saturating_add(warmup_ns)),
            },
            warmup_ns,
            stages: args.stages.clone(),
            exchange,
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
            tls: client_tls(args, addr)?,
            payload: Payload::new(),
            busy_poll: args.busy_poll,
            interval_ns: nanos(args.interval).max(1),
            max_loss: args.max_loss.unwrap_or(0.0),
            udp_window,
        })
    }

    /// Messages connection `index` is to echo before closing (`--udp`:
    /// datagrams socket `index` is to send).
    pub fn quota(&self, index: u64) -> u64 {
        match (self.workload, self.messages) {
            (Mode::Load, Some(total)) => {
                total / self.connections + u64::from(index < total % self.connections)
            }
            (Mode::Load, None) => u64::MAX,
            (Mode::Churn | Mode::Idle, _) => 1,
        }
    }

    /// The source address socket number `index` binds to (`None`: the
    /// OS picks): the list's, round robin.
    pub fn source_for(&self, index: u64) -> Option<IpAddr> {
        let sources = &self.source_addrs;
        (!sources.is_empty()).then(|| sources[(index % sources.len() as u64) as usize])
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

    /// What the run measures, as the reports name it.
    pub fn kind(&self) -> Kind {
        Kind {
            transport: self.transport,
            workload: self.workload,
        }
    }
}

/// Refuses a transport × workload pair that is not supported, in one line
/// naming both flags.
fn check_combination(args: &Args, transport: Transport) -> Result<(), String> {
    match (transport, args.mode) {
        (Transport::Tcp, _) | (Transport::Udp, Mode::Load) => Ok(()),
        (Transport::Udp, mode) => Err(format!(
            "--udp sends datagrams for --duration or --messages; --mode {} does not apply",
            mode.name()
        )),
    }
}

/// The combinations of flags clap cannot check, for either transport.
fn check(args: &Args, addr: SocketAddr) -> Result<(), String> {
    if !args.udp && args.max_loss.is_some() {
        return Err("--max-loss applies to --udp".into());
    }
    if args.mode == Mode::Idle && args.messages.is_some() {
        return Err(
            "--mode idle holds connections for --duration; --messages does not apply".into(),
        );
    }
    if args.mode != Mode::Load && args.rate.is_some() {
        return Err(format!(
            "--rate applies to --mode load, not --mode {}",
            args.mode.name()
        ));
    }
    if args.stages.is_some() {
        check_stages(args)?;
    }
    if args.warmup.is_some() && (args.mode == Mode::Idle || args.messages.is_some()) {
        return Err(
            "--warmup precedes a timed run of --mode load or churn (--duration); \
             not --mode idle or --messages"
                .into(),
        );
    }
    if let Some(total) = args.messages {
        if total.checked_mul(args.message_size).is_none() {
            return Err("--messages × --message-size is more bytes than can be counted".into());
        }
    }
    if args.message_size.checked_mul(args.pipeline).is_none() {
        return Err("--message-size × --pipeline is more bytes than can be counted".into());
    }
    if let Some(SourceAddrs(list)) = &args.source_addrs {
        if let Some(bad) = list.iter().find(|ip| ip.is_ipv4() != addr.is_ipv4()) {
            return Err(format!(
                "--source-addrs {bad}: not the same address family as --addr {addr}"
            ));
        }
    }
    if args.connections.saturating_mul(args.pipeline) > MAX_IN_FLIGHT {
        return Err(format!(
            "--connections × --pipeline is above {MAX_IN_FLIGHT} messages in flight"
        ));
    }
    Ok(())
}

/// What `--stages` cannot go with: it sets the run's length and its
/// connections (`--udp`: sockets), for the load workload.
fn check_stages(args: &Args) -> Result<(), String> {
    let clash = if args.duration.is_some() {
        "--duration (the stages set the run's length)"
    } else if args.messages.is_some() {
        "--messages (the stages set the run's length)"
    } else if args.mode != Mode::Load {
        "--mode idle or churn (stages ramp the load workload)"
    } else if args.warmup.is_some() {
        "--warmup (make the first stage the warm-up)"
    } else {
        return Ok(());
    };
    Err(format!("--stages does not go with {clash}"))
}

/// The combinations `--udp` adds; returns the entries of each socket's
/// record of recent datagrams.
fn check_udp(args: &Args, addr: SocketAddr) -> Result<usize, String> {
    if args.connect_rate.is_some() {
        return Err("--connect-rate applies to TCP connects, not to --udp".into());
    }
    if args.proxy_protocol.is_some() {
        return Err("--proxy-protocol heads TCP connections; UDP has no header".into());
    }
    let (max, family) = match addr {
        SocketAddr::V4(_) => (UDP_MAX_V4, "IPv4"),
        SocketAddr::V6(_) => (UDP_MAX_V6, "IPv6"),
    };
    if args.message_size > max {
        return Err(format!(
            "--message-size {}: a UDP datagram carries at most {max} bytes over {family}",
            args.message_size
        ));
    }
    if args.connections.saturating_mul(args.pipeline) > UDP_MAX_IN_FLIGHT {
        return Err(format!(
            "--connections × --pipeline is above {UDP_MAX_IN_FLIGHT} datagrams in flight"
        ));
    }
    window(args.message_size, args.pipeline)
}

impl Args {
    /// The run length (idle mode: the hold), or `None` for a run counted by
    /// `--messages`.
    pub fn run_length(&self) -> Option<Duration> {
        if let Some(stages) = &self.stages {
            return stages.total();
        }
        match (self.duration, self.messages) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_DURATION),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run's kind is written as the name the reports have always used
    /// (`udp` for a UDP run) and read back to the same transport and
    /// workload; an unknown name is refused.
    #[test]
    fn kinds_round_trip_through_their_names() {
        for name in ["load", "idle", "churn", "udp"] {
            let json = format!("\"{name}\"");
            let kind: Kind = serde_json::from_str(&json).expect(name);
            assert_eq!(kind.name(), name);
            assert_eq!(kind.udp(), name == "udp");
            assert_eq!(serde_json::to_string(&kind).expect("write"), json);
        }
        assert!(serde_json::from_str::<Kind>("\"tls\"").is_err());
    }

    /// UDP runs the load workload only: the others are refused in one line
    /// naming both flags.
    #[test]
    fn udp_refuses_the_other_workloads() {
        use clap::Parser;
        for mode in ["idle", "churn"] {
            let args = Args::try_parse_from(["x", "--udp", "--mode", mode]).expect("parse");
            let why = check_combination(&args, Transport::Udp).unwrap_err();
            assert!(
                why.contains("--udp") && why.contains(&format!("--mode {mode}")),
                "{why}"
            );
        }
        let args = Args::try_parse_from(["x", "--udp"]).expect("parse");
        assert!(check_combination(&args, Transport::Udp).is_ok());
    }
}
