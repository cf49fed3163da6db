//! Command-line flags and their defaults; each flag checked alone (the checks
//! that need more than one flag are in `plan.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use echoloop::units::{Bounds, MAX_DURATION};
use serde::{Deserialize, Serialize};

use crate::record::Series;
use crate::stages::Stages;

/// What the connections do once they are up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Send messages and verify their echoes, for --duration or --messages.
    Load,
    /// Open the connections, hold them idle for --duration, then check that
    /// each one still echoes one message.
    Idle,
    /// Connect, echo one message, close, and again, as fast as allowed.
    Churn,
}

impl Mode {
    /// The name used on the command line and in the reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Load => "load",
            Mode::Idle => "idle",
            Mode::Churn => "churn",
        }
    }
}

/// `--proxy-protocol`: which version of the header to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProxyVersion {
    /// The text line: `PROXY TCP4 <client> <server> <ports>\r\n`.
    V1,
    /// The binary form.
    V2,
}

/// Load generator for TCP and (with --udp) UDP echo servers (RFC 862): many
/// connections or sockets on mio readiness loops; every echoed byte is
/// verified and every message's round trip lands in a latency histogram.
///
/// A live status line goes to stderr once a second; the final report goes to
/// stdout (human-readable, or JSON with --json). Exit status: 0 when every
/// byte matched and failures stayed within --max-failures; 1 otherwise (a
/// verification error, or too many failed connects, unexpected closes and
/// stalls); 2 for bad flags or a setup error. Ctrl-C stops the run and still
/// prints the report so far.
#[derive(Debug, Parser)]
#[command(
    name = "echoloop-stress",
    version,
    about,
    long_about,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    /// Instead of a run: combine reports, or chart benchmark results.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Echo server to connect to (host:port; the first resolved address is used).
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub addr: String,

    /// Concurrent connections (in churn mode: connections in flight at once;
    /// with --udp: sockets).
    #[arg(short = 'c', long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub connections: u64,

    /// Bytes per message (at most 1 GiB).
    #[arg(short = 's', long, default_value_t = 512, value_parser = |s: &str| MESSAGE_SIZE.parse(s))]
    pub message_size: u64,

    /// Messages in flight per connection: the next one is sent as soon as any
    /// of them is echoed, so K messages are always outstanding.
    #[arg(short = 'k', long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub pipeline: u64,

    /// How long to run in seconds (fractions allowed; in idle mode, how long
    /// to hold the connections). Default: 10, unless --messages is given.
    #[arg(short = 'd', long, value_parser = parse_secs, conflicts_with = "messages")]
    pub duration: Option<Duration>,

    /// Any TCP server, not only echo: each message is this (TEXT, with
    /// escapes \r \n \t \0 \\ \xHH) or this file's bytes (@FILE, as
    /// they are); `{seq}` becomes the message's number on its connection
    /// (0, 1, …), `{{` a `{`. Needs --expect or --expect-bytes; latency is
    /// request to response, and each response must match. Example, a
    /// Redis server: `--send 'PING\r\n' --expect '\+PONG\r\n'`.
    #[arg(long, value_name = "TEXT|@FILE")]
    pub send: Option<String>,

    /// With --send: what one response is, a regular expression over bytes
    /// (the regex crate's syntax) matched where the response starts;
    /// responses come in order, each right after the one before. A
    /// response no continuation could make match, or 1 MiB with no match,
    /// is a verification error. Write it so a partial response does not
    /// match. Example, HTTP/1.1
    /// keep-alive with a 2-byte body: `--send 'GET / HTTP/1.1\r\nHost:
    /// x\r\n\r\n' --expect '(?s)HTTP/1\.1 200 .*?\r\n\r\nok'`.
    #[arg(long, value_name = "REGEX", group = "response")]
    pub expect: Option<String>,

    /// With --send: each response is this many bytes, whatever they are.
    #[arg(long, value_name = "N", group = "response", value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub expect_bytes: Option<u64>,

    /// Load that ramps: stages LENGTH:CONNECTIONS, comma-separated; the
    /// number of active connections moves linearly through each stage,
    /// from where the one before ended (the first from 0). Closed loop: N
    /// connections each with --pipeline in flight; open loop: N × --rate
    /// messages per second. A connection above the count closes once its
    /// echoes are in; a new one opens when the count rises again (--udp:
    /// a socket above it sends nothing until it is back in). The run
    /// lasts the stages' total (so not with --duration); the status line
    /// and the report show each stage. Example: `--stages 10s:100,30s:1000,10s:0`.
    #[arg(long, value_name = "LENGTH:CONNECTIONS,...", value_parser = crate::stages::parse, conflicts_with = "connections")]
    pub stages: Option<Stages>,

    /// Seconds of traffic before the measurement starts, on top of
    /// --duration: every echo is verified from the first, but the counts
    /// of traffic, the histograms, the interval log, the plot and the
    /// throughput start when it ends (connections and errors count over
    /// the whole run: an error in the warm-up still fails it). The report
    /// shows the warm-up's messages and errors apart. Example: `--warmup 2
    /// --duration 10` runs 12 s and measures the last 10.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub warmup: Option<Duration>,

    /// Stop after this many echoed messages in total, spread evenly over the
    /// connections (churn mode: this many connect-echo-close cycles; with
    /// --udp: this many datagrams sent, each then echoed or lost).
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: Option<u64>,

    /// Event loops (threads), each owning an equal share of the connections.
    #[arg(short = 't', long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: u64,

    /// New connections per second, over all threads. Default: unlimited.
    #[arg(long, value_parser = parse_rate)]
    pub connect_rate: Option<f64>,

    /// Local source addresses to bind client sockets to, round robin: a range
    /// (127.0.0.1-127.0.0.8), a list (127.0.0.1,127.0.0.2) or one address.
    /// Each address brings its own ~28 K ephemeral ports. Default: against
    /// an IPv4 loopback server on Linux, 127.0.0.1-127.0.0.16 (so that one
    /// run's TIME_WAIT sockets do not starve the next of ports); otherwise
    /// the OS picks.
    #[arg(long, value_parser = parse_source_addrs)]
    pub source_addrs: Option<SourceAddrs>,

    /// Begin every connection with a PROXY protocol header (HAProxy's v1
    /// text or v2 binary), as a balancer does, naming a client from
    /// --proxy-source: a PROXY-aware server (echoloop --proxy-protocol)
    /// then admits, limits and logs each connection as that client. The
    /// header is not echoed by such a server, and not expected back. TCP
    /// only.
    #[arg(long, value_enum, value_name = "VERSION", requires = "proxy_source")]
    pub proxy_protocol: Option<ProxyVersion>,

    /// With --proxy-protocol: the client addresses the headers name, round
    /// robin by connection (a range, a list or one address, as
    /// --source-addrs), with ports from 1024 up.
    #[arg(long, value_name = "RANGE", value_parser = parse_source_addrs, requires = "proxy_protocol")]
    pub proxy_source: Option<SourceAddrs>,

    /// Speak TLS to the server (1.2 or 1.3): every connection handshakes
    /// first, and its echo is of the plaintext. Needs --tls-ca or
    /// --tls-insecure. TCP only.
    #[arg(long)]
    pub tls: bool,

    /// With --tls: trust the CAs in this PEM file; a certificate they did
    /// not sign, or for another name, fails the connection and the run.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls",
        conflicts_with = "tls_insecure"
    )]
    pub tls_ca: Option<String>,

    /// With --tls: accept any certificate for any name (the handshake's
    /// signatures are still checked). Said on stderr at start: the peer is
    /// not authenticated.
    #[arg(long, requires = "tls")]
    pub tls_insecure: bool,

    /// With --tls: the server name to ask for (SNI) and to verify the
    /// certificate against. Default: the host of the target address.
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub tls_sni: Option<String>,

    /// With --tls, for mutual TLS: the client certificate chain (PEM)
    /// every connection presents.
    #[arg(long, value_name = "FILE", requires = "tls", requires = "tls_key")]
    pub tls_cert: Option<String>,

    /// With --tls-cert: its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<String>,

    /// With --tls: keep sessions and resume them (tickets, or a TLS 1.2
    /// session ID) when connecting again: churn's cycles then resume.
    /// Default: every handshake is a full one.
    #[arg(long, requires = "tls")]
    pub tls_resume: bool,

    /// Print the final report as JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,

    /// Write the final report (text, or JSON with --json) to this file
    /// instead of stdout: for a container with no shell to redirect with,
    /// whose log mixes stdout with the status lines on stderr.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Open loop: send R messages per second on each connection on a fixed
    /// schedule, and measure each latency from the message's *scheduled* send
    /// time, so a server stall shows up in the percentiles instead of merely
    /// slowing the client down (coordinated omission corrected, as wrk2 does).
    /// Default: closed loop (send when an echo comes back).
    #[arg(short = 'r', long, value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Failed connects, unexpected closes, stalled connections and
    /// connections never established (still connecting at the end, or never
    /// attempted) tolerated before the exit status turns to 1. A run that
    /// verified nothing fails whatever this says.
    #[arg(long, default_value_t = 0)]
    pub max_failures: u64,

    /// What the connections do.
    #[arg(short = 'm', long, value_enum, default_value_t = Mode::Load)]
    pub mode: Mode,

    /// Seconds a connect may take before it counts as failed (timeout).
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    pub connect_timeout: Duration,

    /// Seconds a connection owed an echo may go without receiving a byte of
    /// it before it counts as stalled (checked every quarter of this, at
    /// most every 250 ms); also how long the end of a timed run waits for
    /// echoes in flight (those still arriving then count as unfinished).
    /// With --udp: how long a datagram has to come back before it counts
    /// as lost.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    pub echo_timeout: Duration,

    /// Spin on poll with a zero timeout instead of sleeping in the kernel:
    /// removes the client's own wake-up latency from latency-bound runs (one
    /// connection ping-pong), at the price of a whole core per loop.
    #[arg(long)]
    pub busy_poll: bool,

    /// Write an HdrHistogram interval log here: one histogram per
    /// --interval and series, tagged rtt, rtt-uncorrected (open loop),
    /// connect and first-byte; V2-deflate encoded, values in ns, the max
    /// column in ms. HistogramLogAnalyzer and HistogramLogProcessor read it.
    #[arg(long, value_name = "FILE")]
    pub hlog: Option<PathBuf>,

    /// Seconds per histogram of the interval log and per point of the plot,
    /// at least 0.1. Each interval costs: with --hlog, --plot or --html, a set of
    /// histograms (about 1 MiB) is held per interval until the once-a-second
    /// status tick writes it out, and every loop hands its histograms over
    /// at each interval's end (about 10 MiB more at 0.1 s than at 1 s).
    /// The plot keeps at most 10,000 points: past that, neighbours
    /// are joined (their worst latency shown).
    #[arg(long, default_value = "1", value_parser = parse_interval)]
    pub interval: Duration,

    /// Which latency percentiles the report shows, comma-separated, each
    /// above 0 and at most 100.
    #[arg(long, default_value = "50,90,99,99.9", value_parser = parse_percentiles)]
    pub percentiles: Percentiles,

    /// Draw msgs/s and latency (p50, p99, p99.9, max) over time, one point
    /// per --interval, as an SVG picture here.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// Draw the latency distribution as an SVG picture here: latency by
    /// percentile on a log-scaled "1 in N" axis (0%, 90%, 99%, 99.9%, …),
    /// as HdrHistogram's plotter draws it, one line per series (rtt,
    /// rtt-uncorrected in the open loop, connect, first-byte), from the
    /// run's full histograms. Example: --rate 1000 -d 30 --plot-percentiles p.svg
    #[arg(long, value_name = "FILE.svg")]
    pub plot_percentiles: Option<PathBuf>,

    /// Write the report as one self-contained HTML page here (no network
    /// fetches: the charts are inline SVG, no scripts): the parameters, the
    /// verdict, msgs/s and latency over time, the percentile spectrum,
    /// connect and first-byte times, failures by reason and every figure
    /// of the --json report. Example: -c 100 -d 30 --html report.html
    #[arg(long, value_name = "FILE.html")]
    pub html: Option<PathBuf>,

    /// Wait until this Unix time (seconds, fractions allowed) before the
    /// first connect, so that clients on several machines begin together.
    /// A time in the past starts at once.
    #[arg(long, value_name = "UNIX_TIME", value_parser = parse_start_at)]
    pub start_at: Option<f64>,

    /// UDP echo (RFC 862 section 2) instead of TCP: --connections sockets,
    /// each on its own source port, send --message-size datagrams (at most
    /// 65,507 bytes over IPv4, 65,527 over IPv6), --pipeline in flight per
    /// socket, closed loop or --rate. Each carries its sequence number and
    /// socket, and verifiable bytes. Counts sent, echoed, lost (not back
    /// within --echo-timeout), late, duplicated, reordered and corrupted
    /// datagrams; --messages counts datagrams sent. Datagrams under 8 bytes
    /// carry their sequence number modulo 2^(8 × size): there a second echo
    /// cannot be told from a late one, and counts as late.
    #[arg(long)]
    pub udp: bool,

    /// With --udp: the share of datagrams sent that may be lost (percent,
    /// 0 to 100) before the run fails. Corruption and duplication always fail it.
    #[arg(long, value_name = "PERCENT", allow_negative_numbers = true, value_parser = parse_percent)]
    pub max_loss: Option<f64>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Combine the --json reports of runs made at the same time (several
    /// processes or machines) into the one exact result: counts, bytes and
    /// failures summed, histograms added, throughput over the wall-clock
    /// window from the first start to the last end.
    Merge(MergeArgs),
    /// Draw the benchmark's results file (bench/results.json) as SVG
    /// charts: epoll vs poll(2) as idle connections grow, and the
    /// techniques side by side; or, with --percentiles, the latency
    /// distributions of several --json reports side by side.
    Chart(ChartArgs),
}

/// `echoloop-stress merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The `--json` reports to merge (at least one).
    #[arg(required = true, value_name = "REPORT.json")]
    pub reports: Vec<PathBuf>,
    /// Print the merged report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Which latency percentiles the report shows.
    #[arg(long, default_value = "50,90,99,99.9", value_parser = parse_percentiles)]
    pub percentiles: Percentiles,
}

/// `echoloop-stress chart`.
#[derive(Debug, clap::Args)]
pub struct ChartArgs {
    /// The benchmark's results file; with --percentiles, the --json
    /// reports to draw (one or more).
    #[arg(required = true, value_name = "FILE.json")]
    pub files: Vec<PathBuf>,
    /// Where to write: the folder for the benchmark's charts (created if
    /// missing); with --percentiles, the SVG file.
    #[arg(long, value_name = "DIR|FILE.svg")]
    pub out: PathBuf,
    /// Draw the latency by percentile of each --json report, runs side by
    /// side on one "1 in N" axis (echoloop against another server, before
    /// against after). Example: chart --percentiles before.json after.json
    /// --out cmp.svg
    #[arg(long)]
    pub percentiles: bool,
    /// With --percentiles: the legend of each report, in the order given
    /// (once per report). Default: each file's name without `.json`.
    #[arg(long = "label", value_name = "TEXT", requires = "percentiles")]
    pub labels: Vec<String>,
    /// With --percentiles: the series drawn of each report,
    /// comma-separated: rtt, rtt-uncorrected, connect, first-byte.
    #[arg(long, value_delimiter = ',', default_value = "rtt", value_parser = parse_series, requires = "percentiles")]
    pub series: Vec<Series>,
}

/// A latency series by its tag (`rtt`, `rtt-uncorrected`, `connect`,
/// `first-byte`).
fn parse_series(text: &str) -> Result<Series, String> {
    Series::ALL
        .into_iter()
        .find(|s| s.tag() == text.trim())
        .ok_or_else(|| {
            let tags: Vec<&str> = Series::ALL.iter().map(|s| s.tag()).collect();
            format!("`{text}`: not one of {}", tags.join(", "))
        })
}

/// `--percentiles`: each a percentile above 0 and at most 100, in order given.
#[derive(Debug, Clone, PartialEq)]
pub struct Percentiles(pub Vec<f64>);

/// Parses `50,90,99.9`.
fn parse_percentiles(text: &str) -> Result<Percentiles, String> {
    let mut list = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let p: f64 = item
            .parse()
            .map_err(|_| format!("`{item}` is not a number"))?;
        if !(p > 0.0 && p <= 100.0) {
            return Err(format!("`{item}`: a percentile is above 0 and at most 100"));
        }
        list.push(p);
    }
    if list.is_empty() {
        return Err("no percentile given".into());
    }
    Ok(Percentiles(list))
}

/// `--max-loss`: a percentage from 0 to 100.
fn parse_percent(text: &str) -> Result<f64, String> {
    let p: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if (0.0..=100.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("`{text}`: a percentage from 0 to 100"))
    }
}

/// `--interval`: from 0.1 s to a year (shorter intervals cost memory and
/// throughput out of proportion: see the flag's help).
fn parse_interval(text: &str) -> Result<Duration, String> {
    Bounds {
        min: Duration::from_millis(100),
        max: MAX_DURATION,
    }
    .parse(text)
}

/// `--start-at`: a Unix time in seconds, from 0 up to the year 2500.
fn parse_start_at(text: &str) -> Result<f64, String> {
    let t: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if t.is_finite() && (0.0..=16_725_225_600.0).contains(&t) {
        Ok(t)
    } else {
        Err(format!("`{text}`: a Unix time from 0 up to the year 2500"))
    }
}

/// Source addresses given with `--source-addrs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddrs(pub Vec<IpAddr>);

/// Most addresses one `--source-addrs` may expand to: far more than anyone
/// needs for ports, small enough that a typo does not eat the memory.
const MAX_SOURCE_ADDRS: u128 = 65_536;

/// Every duration flag: from 1 ms (0 would end a run, or a wait, before it
/// began) up to a year.
const DURATION: Bounds<Duration> = Bounds {
    min: Duration::from_millis(1),
    max: MAX_DURATION,
};

/// Parses a duration flag in seconds (`10`, `0.5`, `250ms`, `2s`).
fn parse_secs(text: &str) -> Result<Duration, String> {
    DURATION.parse(text)
}

/// `--message-size`: 1 byte to 1 GiB. Every byte count of the run is a
/// product of it with a count of messages, and must never wrap.
const MESSAGE_SIZE: Bounds<u64> = Bounds {
    min: 1,
    max: 1 << 30,
};

/// Parses a positive per-second rate.
fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if rate.is_finite() && rate > 0.0 && rate <= 1e9 {
        Ok(rate)
    } else {
        Err(format!(
            "`{text}`: the rate must be above 0 (and at most 1e9)"
        ))
    }
}

/// Parses `A-B` ranges and single addresses, separated by commas.
fn parse_source_addrs(text: &str) -> Result<SourceAddrs, String> {
    let mut addrs = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let parse = |s: &str| {
            s.trim()
                .parse::<IpAddr>()
                .map_err(|_| format!("`{s}` is not an IP address"))
        };
        match item.split_once('-') {
            None => addrs.push(parse(item)?),
            Some((from, to)) => match (parse(from)?, parse(to)?) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    let (a, b) = (u32::from(a), u32::from(b));
                    check_range(item, u128::from(a), u128::from(b), addrs.len())?;
                    addrs.extend((a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
                }
                (IpAddr::V6(a), IpAddr::V6(b)) => {
                    let (a, b) = (u128::from(a), u128::from(b));
                    check_range(item, a, b, addrs.len())?;
                    addrs.extend((a..=b).map(|n| IpAddr::V6(Ipv6Addr::from(n))));
                }
                _ => return Err(format!("`{item}` mixes IPv4 and IPv6")),
            },
        }
    }
    if addrs.is_empty() {
        return Err("no address given".to_string());
    }
    if addrs.len() as u128 > MAX_SOURCE_ADDRS {
        return Err(format!("more than {MAX_SOURCE_ADDRS} addresses"));
    }
    Ok(SourceAddrs(addrs))
}

/// Rejects reversed or oversized ranges before they are expanded.
fn check_range(item: &str, from: u128, to: u128, already: usize) -> Result<(), String> {
    if from > to {
        return Err(format!("`{item}`: the range runs backwards"));
    }
    // `to - from + 1` is 2^128 for the whole IPv6 space: compare without
    // adding, so nothing wraps.
    if to - from >= MAX_SOURCE_ADDRS.saturating_sub(already as u128) {
        return Err(format!("`{item}`: more than {MAX_SOURCE_ADDRS} addresses"));
    }
    Ok(())
}

/// The run length when neither `--duration` nor `--messages` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

impl Args {
    /// Resolves `--addr` to one socket address.
    pub fn resolve_addr(&self) -> Result<SocketAddr, String> {
        self.addr
            .to_socket_addrs()
            .map_err(|e| format!("resolve {}: {e}", self.addr))?
            .next()
            .ok_or_else(|| format!("resolve {}: no address", self.addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_bounds() {
        assert_eq!(parse_secs("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("1e19").is_err());
        assert!(MESSAGE_SIZE.parse("18446744073709551615").is_err());
    }

    #[test]
    fn source_ranges() {
        let SourceAddrs(v) = parse_source_addrs("127.0.0.1-127.0.0.8").expect("range");
        assert_eq!(v.len(), 8);
        assert_eq!(v[7], IpAddr::from([127, 0, 0, 8]));
        let SourceAddrs(v) = parse_source_addrs("127.0.0.1,127.0.0.5-127.0.0.6").expect("list");
        assert_eq!(v.len(), 3);
        assert!(parse_source_addrs("127.0.0.9-127.0.0.1").is_err());
        assert!(parse_source_addrs("127.0.0.1-::1").is_err());
        assert!(parse_source_addrs("10.0.0.0-10.255.255.255").is_err());
    }

    /// The whole IPv6 space as one range is refused as too many addresses:
    /// counting it once wrapped to zero and passed, and expanding it then
    /// panicked (found while fuzzing the flag values).
    #[test]
    fn a_range_of_every_address_is_refused() {
        let all = "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let err = parse_source_addrs(all).expect_err("2^128 addresses");
        assert!(err.contains("more than 65536 addresses"), "{err}");
        let err = parse_source_addrs(&format!("::1,{all}")).expect_err("and one more");
        assert!(err.contains("more than 65536 addresses"), "{err}");
    }

    #[test]
    fn flags_parse() {
        let args = Args::try_parse_from([
            "echoloop-stress",
            "--connections",
            "20",
            "--pipeline",
            "4",
            "--messages",
            "100",
            "--json",
        ])
        .expect("parse");
        assert_eq!(args.connections, 20);
        assert_eq!(args.messages, Some(100));
        assert!(Args::try_parse_from(["x", "--duration", "1", "--messages", "1"]).is_err());
        assert!(Args::try_parse_from(["x", "--connections", "0"]).is_err());
    }

    #[test]
    fn percentiles_parse() {
        let Percentiles(p) = parse_percentiles("50, 99.9,99.99").expect("list");
        assert_eq!(p, vec![50.0, 99.9, 99.99]);
        for bad in ["101", "0", "-1", "x", "", "NaN"] {
            assert!(parse_percentiles(bad).is_err(), "{bad}");
        }
        assert!(parse_percentiles("100").is_ok());
    }
}
