//! The command line: every flag, its default (read from
//! [`Config::default`], never restated) and its bounds (the library's, so a
//! flag and a `Config` built in code are checked alike). Every flag can also
//! come from an `ECHOLOOP_…` environment variable, as containers and
//! systemd units configure services; a flag given wins. The man page and
//! the shell completions are generated from this same definition
//! (`--man`, `--completions SHELL`).

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::Parser;
use echoloop::config::DEFAULT_LISTEN;
use echoloop::Config;
use ipnet::IpNet;

/// echoloop: a TCP and UDP echo server (RFC 862) on single-threaded
/// readiness loops (one by default, --loops for more). Every byte a TCP client sends comes back, in order, until
/// it closes; with --udp, every datagram goes back to its source.
///
/// Signals: Ctrl-C (SIGINT), SIGTERM and SIGHUP start a graceful shutdown; a
/// second one exits at once (status 130). SIGHUP is left ignored when it was
/// ignored at start, as under `nohup`.
///
/// Every flag can also be set from the environment variable named in its
/// description: lists comma-separated (spaces around the commas ignored),
/// on/off flags as true/false, yes/no, on/off or 1/0 (any case). A flag
/// given on the command line wins over its variable; the server logs the
/// admission rules (--allow, --deny, --max-per-source) in force at start.
///
/// Logging: RUST_LOG=debug shows one line per connection event.
#[derive(Debug, Parser)]
#[command(version, allow_negative_numbers = true)]
pub struct Cli {
    /// Address to listen on (host names are resolved, and every address
    /// they resolve to is listened on); repeat for several. IPv6 sockets
    /// are IPv6-only: `[::]:7` alone serves no IPv4 client; for both
    /// families give `0.0.0.0:7` and `[::]:7`.
    #[arg(long = "listen", env = "ECHOLOOP_LISTEN", value_delimiter = ',', value_name = "ADDR",
          default_value = DEFAULT_LISTEN, value_parser = resolve)]
    pub listen: Vec<Resolved>,

    /// Address to serve echo over TLS on (TLS 1.2 and 1.3, TCP only),
    /// beside any --listen; repeat for several. Needs --tls-cert and
    /// --tls-key, or --tls-self-signed.
    #[arg(long = "tls-listen", env = "ECHOLOOP_TLS_LISTEN", value_delimiter = ',',
          value_name = "ADDR", value_parser = resolve)]
    pub tls_listen: Vec<Resolved>,

    /// The TLS certificate chain, PEM, end-entity certificate first.
    #[arg(
        long,
        env = "ECHOLOOP_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key",
        requires = "tls_listen"
    )]
    pub tls_cert: Option<String>,

    /// The TLS private key, PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC); it must
    /// match --tls-cert.
    #[arg(
        long,
        env = "ECHOLOOP_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<String>,

    /// Make a self-signed certificate at start for the --tls-listen
    /// addresses (and localhost), with a fresh ECDSA P-256 key, and log its
    /// SHA-256 fingerprint; no files needed.
    #[arg(long, env = "ECHOLOOP_TLS_SELF_SIGNED", value_parser = parse_switch,
          conflicts_with = "tls_cert", requires = "tls_listen")]
    pub tls_self_signed: bool,

    /// Mutual TLS: require every TLS client to present a certificate signed
    /// by a CA in this PEM file.
    #[arg(
        long,
        env = "ECHOLOOP_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_listen"
    )]
    pub tls_client_ca: Option<String>,

    /// Seconds a TLS client has from connect to a finished handshake; then
    /// it is closed and counted, however slowly it was still sending.
    #[arg(long, env = "ECHOLOOP_TLS_HANDSHAKE_TIMEOUT", value_name = "SECS",
          default_value_t = Secs(Config::default().tls_handshake_timeout),
          value_parser = |s: &str| Config::TLS_HANDSHAKE_TIMEOUT.parse(s).map(Secs))]
    pub tls_handshake_timeout: Secs,

    /// Most connections open at once; beyond it new clients are closed at
    /// once and counted as refused. Default: open-file limit minus 64 (at
    /// most 1,048,576); 16,384 on Windows, which has no such limit.
    #[arg(long, env = "ECHOLOOP_MAX_CONNECTIONS", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,

    /// Most echoed bytes held for a peer that is not reading; at the cap
    /// the server stops reading from it. Each read takes at most this much,
    /// so a cap below --read-buffer also slows prompt readers. Memory
    /// follows the bytes actually held, up to this cap (at most 1 GiB).
    #[arg(long, env = "ECHOLOOP_MAX_PENDING", value_name = "BYTES", default_value_t = Config::default().max_pending,
          value_parser = |s: &str| Config::MAX_PENDING.parse_usize(s))]
    pub max_pending: usize,

    /// Kernel send buffer of each connection (SO_SNDBUF), 1 KiB to 1 GiB.
    /// A peer that stops reading can hold this much in the kernel besides
    /// --max-pending in the server. Default: the kernel's autotuning (up to
    /// 4 MiB per connection on Linux), fastest, but thousands of slow
    /// readers can then exhaust the kernel's TCP memory.
    #[arg(long, env = "ECHOLOOP_SEND_BUFFER", value_name = "BYTES",
          value_parser = |s: &str| Config::SEND_BUFFER.parse_usize(s))]
    pub send_buffer: Option<usize>,

    /// Size of the loop's single read buffer (at most 64 MiB).
    #[arg(long, env = "ECHOLOOP_READ_BUFFER", value_name = "BYTES", default_value_t = Config::default().read_buffer,
          value_parser = |s: &str| Config::READ_BUFFER.parse_usize(s))]
    pub read_buffer: usize,

    /// Close connections idle for this many seconds (fractions allowed,
    /// 0.01 up to a year). Default: never.
    #[arg(long, env = "ECHOLOOP_IDLE_TIMEOUT", value_name = "SECS", value_parser = |s: &str| Config::IDLE_TIMEOUT.parse(s))]
    pub idle_timeout: Option<Duration>,

    /// Reap connections whose peer vanished without a FIN or reset (power
    /// loss, a dead link) this many seconds after it last answered:
    /// keepalive probes from half of it idle, and on Linux TCP_USER_TIMEOUT
    /// for unacknowledged echo. Counted as vanished. Whole seconds, 2 to
    /// 65000. Default: off, and TCP never notices such a peer (the OS's
    /// keepalive default is two hours, and off unless asked for).
    #[arg(long, env = "ECHOLOOP_TCP_KEEPALIVE", value_name = "SECS", value_parser = parse_keepalive)]
    pub tcp_keepalive: Option<Duration>,

    /// On Ctrl-C/SIGTERM, seconds to keep flushing pending echoes before
    /// closing everything (0 closes at once).
    #[arg(long, env = "ECHOLOOP_SHUTDOWN_GRACE", value_name = "SECS", default_value_t = Secs(Config::default().shutdown_grace),
          value_parser = |s: &str| Config::SHUTDOWN_GRACE.parse(s).map(Secs))]
    pub shutdown_grace: Secs,

    /// Log the counters every this many seconds (at least 0.01). Default:
    /// only at exit.
    #[arg(long, env = "ECHOLOOP_STATS_INTERVAL", value_name = "SECS", value_parser = |s: &str| Config::STATS_INTERVAL.parse(s))]
    pub stats_interval: Option<Duration>,

    /// Listen backlog: connections the kernel queues for us before we
    /// accept them (at least 1; capped by the kernel, e.g.
    /// net.core.somaxconn).
    #[arg(long, env = "ECHOLOOP_BACKLOG", value_name = "N", default_value_t = Config::default().backlog,
          value_parser = |s: &str| Config::BACKLOG.parse(s).map(|n| n as u32))]
    pub backlog: u32,

    /// Leave Nagle's algorithm on (do not set TCP_NODELAY).
    #[arg(long, env = "ECHOLOOP_NO_NODELAY", value_parser = parse_switch)]
    pub no_nodelay: bool,

    /// Serve UDP echo too (RFC 862 section 2: each datagram back to its
    /// source), on every --listen address, same port as TCP.
    #[arg(long, env = "ECHOLOOP_UDP", value_parser = parse_switch)]
    pub udp: bool,

    /// Most UDP datagrams echoed per second to one source IP; over it they
    /// are dropped and counted. It caps what a spoofed-source flood can
    /// reflect at any one victim. 0: no limit (load tests from one host).
    #[arg(long, env = "ECHOLOOP_UDP_RATE", value_name = "N", default_value_t = Config::default().udp_rate,
          value_parser = |s: &str| Config::UDP_RATE.parse(s).map(|n| n as u32))]
    pub udp_rate: u32,

    /// Serve Prometheus metrics (GET /metrics) and a health check (GET
    /// /healthz: 200 while serving, 503 once shutdown began or a loop is
    /// gone) over HTTP on this address, from loop 0. Default: off. --allow, --deny and
    /// --max-per-source do NOT apply to it: it is an operator's port, to
    /// bind to a private address or firewall.
    #[arg(long, env = "ECHOLOOP_METRICS", value_name = "ADDR", value_parser = resolve_one)]
    pub metrics: Option<SocketAddr>,

    /// Serve only clients from this range, TCP and UDP (CIDR, e.g.
    /// 10.0.0.0/8 or ::1/128; a bare address is one host); repeat for
    /// several. Other connections are closed at once and counted as denied,
    /// other datagrams dropped and counted (the --metrics port excepted).
    /// ::ffff:a.b.c.d/N means a.b.c.d/(N-96); a range holding all of
    /// ::ffff:0:0/96 (such as ::/0) holds every IPv4 client too. Default:
    /// everyone.
    #[arg(long, env = "ECHOLOOP_ALLOW", value_delimiter = ',', value_name = "CIDR",
          value_parser = parse_net)]
    pub allow: Vec<IpNet>,

    /// Never serve clients from this range, TCP and UDP (wins over
    /// --allow; the same forms); repeat for several.
    #[arg(long, env = "ECHOLOOP_DENY", value_delimiter = ',', value_name = "CIDR",
          value_parser = parse_net)]
    pub deny: Vec<IpNet>,

    /// At most this many TCP connections open at once from one source IP;
    /// more are closed at once and counted. Opt-in: it hurts the many
    /// clients behind one NAT or load balancer, which all share an address.
    /// UDP's per-source limit is --udp-rate (with --udp, not 0 beside this).
    #[arg(long, env = "ECHOLOOP_MAX_PER_SOURCE", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_per_source: Option<u64>,

    /// Event loops to run, each a thread with its own connections, buffers
    /// and counters (1 to 1024, or `auto`: the cores this process may run
    /// on). A client is served by the loop its source IP hashes to, so
    /// --max-per-source and --udp-rate stay exact; --max-connections is the
    /// total. On Linux each loop has its own SO_REUSEPORT listener (and UDP
    /// socket) and the kernel steers by source; elsewhere (Windows, macOS,
    /// the BSDs) loop 0 accepts and hands each client to its loop, and UDP
    /// is served by loop 0 alone. All clients from one IP share one loop.
    #[arg(long, env = "ECHOLOOP_LOOPS", value_name = "N|auto", default_value = "1",
          value_parser = parse_loops)]
    pub loops: usize,

    /// Pin loop i to the i-th core this process may run on (Linux; ignored
    /// elsewhere, with a log line).
    #[arg(long, env = "ECHOLOOP_PIN", value_parser = parse_switch)]
    pub pin: bool,
    /// Balancers that send a PROXY protocol header (HAProxy's v1 or v2,
    /// detected) before each relayed connection (CIDR; repeat for
    /// several). A connection from these must begin with one, and the
    /// client it names is the one --allow, --deny, --max-per-source and the
    /// logs see; v2 LOCAL (the balancer's health checks) and headers with
    /// no usable address are served as the balancer. A header malformed,
    /// oversized or not complete within --proxy-header-timeout closes the
    /// connection; none of its bytes is echoed. From anywhere else no
    /// header is looked for. Default: none.
    #[arg(long, env = "ECHOLOOP_PROXY_PROTOCOL", value_delimiter = ',', value_name = "CIDR",
          value_parser = parse_net)]
    pub proxy_protocol: Vec<IpNet>,

    /// Seconds a --proxy-protocol balancer has to deliver a connection's
    /// whole header (0.01 up to a year).
    #[arg(long, env = "ECHOLOOP_PROXY_HEADER_TIMEOUT", value_name = "SECS",
          default_value_t = Secs(Config::default().proxy_header_timeout),
          value_parser = |s: &str| Config::IDLE_TIMEOUT.parse(s).map(Secs))]
    pub proxy_header_timeout: Secs,

    /// Instead of serving: ask the --metrics address (on loopback when it
    /// is 0.0.0.0 or [::]) for GET /healthz and exit 0 if it answers 200,
    /// 1 otherwise. The container image's HEALTHCHECK: an image with no
    /// shell or curl runs this.
    #[arg(long, requires = "metrics")]
    pub health_check: bool,

    /// Print the man page (roff) for this command line and exit:
    /// `echoloop --man > echoloop.1`.
    #[arg(long, exclusive = true)]
    pub man: bool,

    /// Print a completion script for SHELL and exit, e.g. `echoloop
    /// --completions bash > /etc/bash_completion.d/echoloop`.
    #[arg(long, value_name = "SHELL", exclusive = true)]
    pub completions: Option<clap_complete::Shell>,
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

/// Parses an on/off flag's value, as its environment variable gives it
/// (the flag itself takes none). clap's `BoolishValueParser` accepts the
/// same words but its error does not list them.
fn parse_switch(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err("expected true/false, yes/no, on/off or 1/0".to_string()),
    }
}

/// Parses `--loops`: a count within the library's bounds, or `auto`.
fn parse_loops(text: &str) -> Result<usize, String> {
    if text.trim().eq_ignore_ascii_case("auto") {
        return Ok(std::thread::available_parallelism().map_or(1, |n| n.get()));
    }
    Config::LOOPS.parse(text).map(|n| n as usize)
}

/// Parses a CIDR range; a bare address is the one host.
fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{text}` is not an IPv4 or IPv6 range (CIDR) or address"))
}

/// Resolves an address to its first socket address.
fn resolve_one(text: &str) -> Result<SocketAddr, String> {
    resolve(text).map(|r| r.0[0])
}

/// The socket addresses one `--listen` value resolved to.
#[derive(Debug, Clone)]
pub struct Resolved(pub Vec<SocketAddr>);

/// Resolves `host:port` (or a literal address) to every address it names.
fn resolve(text: &str) -> Result<Resolved, String> {
    let text = text.trim();
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

/// Where the server's TLS certificate comes from.
#[derive(Debug)]
pub enum Identity {
    /// `--tls-cert` and `--tls-key`.
    Files {
        /// The certificate chain's PEM file.
        cert: String,
        /// The private key's PEM file.
        key: String,
    },
    /// `--tls-self-signed`.
    SelfSigned,
}

/// The TLS flags, checked together: what [`Cli::into_config`] leaves for
/// start-up to load (files are read there, after the flags are known good).
#[derive(Debug)]
pub struct TlsFlags {
    /// The certificate and key.
    pub identity: Identity,
    /// `--tls-client-ca`.
    pub client_ca: Option<String>,
}

impl Cli {
    /// The TLS flags, if --tls-listen is given; an error (a usage error)
    /// when it has no certificate.
    pub fn tls_flags(&self) -> Result<Option<TlsFlags>, String> {
        if self.tls_listen.is_empty() {
            return Ok(None);
        }
        let identity = match (&self.tls_cert, &self.tls_key, self.tls_self_signed) {
            (Some(cert), Some(key), false) => Identity::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            (None, None, true) => Identity::SelfSigned,
            _ => {
                return Err(
                    "--tls-listen needs --tls-cert and --tls-key, or --tls-self-signed".to_string(),
                )
            }
        };
        Ok(Some(TlsFlags {
            identity,
            client_ca: self.tls_client_ca.clone(),
        }))
    }

    /// The library configuration these flags describe (the TLS server
    /// configuration is loaded apart: [`Cli::tls_flags`]).
    pub fn into_config(self) -> Config {
        Config {
            listen: self.listen.into_iter().flat_map(|r| r.0).collect(),
            tls_listen: self.tls_listen.into_iter().flat_map(|r| r.0).collect(),
            tls_handshake_timeout: self.tls_handshake_timeout.0,
            max_connections: self
                .max_connections
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            max_pending: self.max_pending,
            send_buffer: self.send_buffer,
            read_buffer: self.read_buffer,
            idle_timeout: self.idle_timeout,
            tcp_keepalive: self.tcp_keepalive,
            shutdown_grace: self.shutdown_grace.0,
            stats_interval: self.stats_interval,
            nodelay: !self.no_nodelay,
            backlog: self.backlog,
            udp: self.udp,
            udp_rate: self.udp_rate,
            metrics: self.metrics,
            allow: self.allow,
            deny: self.deny,
            max_per_source: self
                .max_per_source
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            loops: self.loops,
            pin: self.pin,
            proxy_protocol: self.proxy_protocol,
            proxy_header_timeout: self.proxy_header_timeout.0,
            ..Config::default()
        }
    }
}
