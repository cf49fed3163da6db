//! What an operator can tune: [`Config`], plain values with production
//! defaults (each defined once, in [`Config::default`]), and the bounds each
//! must stay within.
//!
//! The library does not care how a setting was spelled: the `echoloop`
//! binary's command line (`src/bin/echoloop/cli.rs`) turns flags into a
//! `Config`, reading its defaults and bounds from here.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::units::{Bounds, MAX_DURATION};

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
    /// `SO_SNDBUF` of every accepted connection (set on the listener; they
    /// inherit it). `None` (the default) leaves the kernel's autotuning,
    /// the best for throughput. A peer that stops reading can park this
    /// much in the kernel on top of `max_pending` in the server; under
    /// autotuning that is up to `tcp_wmem`'s maximum on Linux (4 MiB by
    /// default), so a few thousand slow readers can fill the kernel's TCP
    /// memory (`tcp_mem`), past which it drops segments for every
    /// connection. A fixed size bounds it; the kernel may round it (Linux
    /// doubles it for its bookkeeping).
    pub send_buffer: Option<usize>,
    /// Size of the one read buffer the loop owns and lends to every
    /// connection in turn. Large enough for bulk streams (a 4 KiB buffer
    /// makes 16 KiB messages several times slower); it costs memory once,
    /// not per connection.
    pub read_buffer: usize,
    /// Close connections that have had no traffic for this long. `None`
    /// (the default) keeps idle connections forever, as RFC 862 allows.
    pub idle_timeout: Option<Duration>,
    /// Reap a connection whose peer has vanished — powered off, unplugged,
    /// cut off by a partition that never heals — this long after it last
    /// answered: TCP keepalive probes for an idle connection, and on Linux
    /// `TCP_USER_TIMEOUT` for one whose echo goes unacknowledged. Such a
    /// peer sends no FIN and no reset, so without this TCP never notices it
    /// (the OS's keepalive, when a program turns it on with no settings,
    /// waits two hours), and each one holds a slot and a descriptor. Whole
    /// seconds within [`Config::TCP_KEEPALIVE`]; `None` (the default) leaves
    /// TCP alone. Reaped connections are counted as `vanished`.
    pub tcp_keepalive: Option<Duration>,
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
    /// Serve UDP echo (RFC 862 section 2) too, on every listen address, on
    /// the same port as TCP.
    pub udp: bool,
    /// Most UDP datagrams echoed per second to one source IP (0: no limit):
    /// an open UDP echo is a reflector for spoofed-source floods, and this
    /// caps what any one victim receives from us. The default, 1,000 a
    /// second, is ten times what a latency probe sends and far above an
    /// interactive user, while a reflected flood gets at most 1,000
    /// datagrams (no larger than the spoofed requests) per victim. Load
    /// tests from one host set it to 0.
    pub udp_rate: u32,
    /// Serve Prometheus metrics (`/metrics`) and a health check (`/healthz`)
    /// over HTTP on this address, from the same loop; `None`: off.
    pub metrics: Option<SocketAddr>,
    /// When not empty, only clients from these ranges are served, over TCP
    /// and UDP; the others are accepted and closed at once (counted as
    /// `refused_denied`), or their datagrams dropped (`udp_dropped_denied`).
    /// IPv4-mapped ranges (`::ffff:a.b.c.d/N`) mean their IPv4 range, and a
    /// range holding the whole mapped block (`::/0`) every IPv4 client too
    /// (the admission module's docs say why).
    pub allow: Vec<IpNet>,
    /// Clients from these ranges are never served, over TCP and UDP (wins
    /// over `allow`; the same forms as `allow`).
    pub deny: Vec<IpNet>,
    /// Most TCP connections open at once from one source IP (`None`: no
    /// limit). Opt-in: many clients behind one NAT or load balancer share an
    /// IP. UDP has no connections: its per-source limit is `udp_rate`, and
    /// with `udp` on, `udp_rate` 0 and this set together are refused.
    pub max_per_source: Option<usize>,
    /// Addresses to serve echo over TLS on (the `tls` feature), beside the
    /// plain `listen` ones: TCP only, with the certificate of `tls`.
    #[cfg(feature = "tls")]
    pub tls_listen: Vec<SocketAddr>,
    /// The TLS server configuration for `tls_listen`: certificate, key,
    /// client verification, resumption. Built once, before anything is
    /// bound ([`crate::tls::server_config`]), and shared by every loop.
    #[cfg(feature = "tls")]
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// How long a TLS client has from accept to a finished handshake;
    /// past it the connection is closed and counted
    /// (`tls_handshake_failures_total{reason="timeout"}`), however slowly
    /// it was still sending.
    #[cfg(feature = "tls")]
    pub tls_handshake_timeout: Duration,
    /// Event loops, each on its own thread with its own poll, connections,
    /// buffers and counters; a client is served by the loop its source
    /// address hashes to (how, per platform: [`Server`](crate::Server)'s
    /// `# Loops`). 1 (the default) is the single loop.
    pub loops: usize,
    /// Pin loop `i` to the `i`-th core this process may run on (Linux; a
    /// log line says it is ignored elsewhere).
    pub pin: bool,
    /// Balancers that relay clients with a PROXY protocol header (v1 or
    /// v2): a connection from these ranges must begin with one, and the
    /// client it names is the one judged by `allow`, `deny` and
    /// `max_per_source`, and logged. From anywhere else no header is
    /// looked for. Empty (the default): none.
    pub proxy_protocol: Vec<IpNet>,
    /// How long a balancer's connection may take to deliver its whole PROXY
    /// header before it is closed (counted as `proxy_timeout`). A balancer
    /// sends it with the connection's first bytes; a slow header is a
    /// client holding a slot while nobody can judge it.
    pub proxy_header_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![DEFAULT_LISTEN
                .parse()
                .expect("DEFAULT_LISTEN is a valid address")],
            max_connections: None,
            max_pending: 64 * 1024,
            send_buffer: None,
            read_buffer: 64 * 1024,
            idle_timeout: None,
            tcp_keepalive: None,
            shutdown_grace: Duration::from_secs(5),
            stats_interval: None,
            nodelay: true,
            reads_per_turn: 16,
            accepts_per_turn: 128,
            backlog: 4096,
            udp: false,
            udp_rate: 1000,
            metrics: None,
            allow: Vec::new(),
            deny: Vec::new(),
            max_per_source: None,
            #[cfg(feature = "tls")]
            tls_listen: Vec::new(),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_handshake_timeout: Duration::from_secs(10),
            loops: 1,
            pin: false,
            proxy_protocol: Vec::new(),
            proxy_header_timeout: Duration::from_secs(3),
        }
    }
}

impl Config {
    /// `--idle-timeout`: below 10 ms every connection would expire between
    /// two turns of the loop.
    pub const IDLE_TIMEOUT: Bounds<Duration> = Bounds {
        min: Duration::from_millis(10),
        max: MAX_DURATION,
    };
    /// `--stats-interval`: below 10 ms the log line is all the loop does.
    pub const STATS_INTERVAL: Bounds<Duration> = Bounds {
        min: Duration::from_millis(10),
        max: MAX_DURATION,
    };
    /// `--shutdown-grace`: 0 closes at once, without flushing.
    pub const SHUTDOWN_GRACE: Bounds<Duration> = Bounds {
        min: Duration::ZERO,
        max: MAX_DURATION,
    };
    /// `--max-pending`: pending output grows with the bytes actually owed,
    /// so a large cap costs nothing until a peer stops reading; past 1 GiB
    /// one such peer would hold more than most machines should give it.
    pub const MAX_PENDING: Bounds<u64> = Bounds {
        min: 1,
        max: 1 << 30,
    };
    /// `--send-buffer`: below a few KiB the kernel raises it anyway, and
    /// past 1 GiB it would only let a slow reader park more in the kernel.
    pub const SEND_BUFFER: Bounds<u64> = Bounds {
        min: 1024,
        max: 1 << 30,
    };
    /// `--read-buffer`: allocated once at start; past 64 MiB a read is no
    /// faster, only a bigger allocation.
    pub const READ_BUFFER: Bounds<u64> = Bounds {
        min: 1,
        max: 64 << 20,
    };
    /// `--backlog`: 0 leaves no room for even a short connect burst.
    pub const BACKLOG: Bounds<u64> = Bounds {
        min: 1,
        max: i32::MAX as u64,
    };
    /// `--tcp-keepalive`, in whole seconds: the options count in seconds, one
    /// probe after 1 s idle and 1 s to answer it is the least; the idle time
    /// before the first probe is about half the bound, and Linux takes at
    /// most 32,767 s there (`TCP_KEEPIDLE`).
    pub const TCP_KEEPALIVE: Bounds<u64> = Bounds {
        min: 2,
        max: 65_000,
    };
    /// `--udp-rate`: 0 is no limit; a billion a second is more than any
    /// socket carries.
    pub const UDP_RATE: Bounds<u64> = Bounds {
        min: 0,
        max: 1_000_000_000,
    };
    /// `--tls-handshake-timeout`: below 10 ms no handshake finishes, even
    /// on loopback.
    pub const TLS_HANDSHAKE_TIMEOUT: Bounds<Duration> = Bounds {
        min: Duration::from_millis(10),
        max: MAX_DURATION,
    };
    /// `--loops`: past 1,024 threads a loop each would serve no one faster
    /// on any machine this runs on, only cost memory and wake-ups.
    pub const LOOPS: Bounds<u64> = Bounds { min: 1, max: 1024 };
    /// Per-turn budgets: at 0 a connection or listener would never be served.
    pub const PER_TURN: Bounds<u64> = Bounds {
        min: 1,
        max: 1 << 20,
    };

    /// Every TCP address listened on: `listen`, then `tls_listen`.
    pub fn tcp_listen(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let tls: &[SocketAddr] = {
            #[cfg(feature = "tls")]
            {
                &self.tls_listen
            }
            #[cfg(not(feature = "tls"))]
            {
                &[]
            }
        };
        self.listen.iter().chain(tls).copied()
    }

    /// How many TCP listeners: plain and TLS.
    fn listeners(&self) -> usize {
        self.tcp_listen().count()
    }

    /// Checks every setting against its bounds: the same ones the command
    /// line enforces, so a configuration built in code cannot hand the loop
    /// a value that would overflow a deadline or an allocation. The error
    /// names the field.
    pub fn validate(&self) -> Result<(), String> {
        let secs = |name: &str, b: Bounds<Duration>, v: Option<Duration>| match v {
            Some(v) => b.check(v).map(drop).map_err(|why| format!("{name} {why}")),
            None => Ok(()),
        };
        let count = |name: &str, b: Bounds<u64>, v: usize| {
            b.check(u64::try_from(v).unwrap_or(u64::MAX))
                .map(drop)
                .map_err(|why| format!("{name} {why}"))
        };
        if self.listeners() == 0 {
            return Err("no address to listen on".into());
        }
        #[cfg(feature = "tls")]
        {
            if !self.tls_listen.is_empty() && self.tls.is_none() {
                return Err("tls_listen needs a certificate and key (tls)".into());
            }
            let timeout = Some(self.tls_handshake_timeout);
            secs(
                "tls_handshake_timeout",
                Self::TLS_HANDSHAKE_TIMEOUT,
                timeout,
            )?;
        }
        if self.listeners() > crate::token::MAX_LISTENERS {
            return Err(format!(
                "listen: at most {} addresses",
                crate::token::MAX_LISTENERS
            ));
        }
        secs("idle_timeout", Self::IDLE_TIMEOUT, self.idle_timeout)?;
        secs(
            "proxy_header_timeout",
            Self::IDLE_TIMEOUT,
            Some(self.proxy_header_timeout),
        )?;
        secs("stats_interval", Self::STATS_INTERVAL, self.stats_interval)?;
        secs(
            "shutdown_grace",
            Self::SHUTDOWN_GRACE,
            Some(self.shutdown_grace),
        )?;
        count("max_pending", Self::MAX_PENDING, self.max_pending)?;
        if let Some(size) = self.send_buffer {
            count("send_buffer", Self::SEND_BUFFER, size)?;
        }
        count("read_buffer", Self::READ_BUFFER, self.read_buffer)?;
        count("backlog", Self::BACKLOG, self.backlog as usize)?;
        if let Some(after) = self.tcp_keepalive {
            if crate::sys::Keepalive::new(after).is_none() {
                return Err(format!(
                    "tcp_keepalive {after:?}: not a whole number of seconds from {} to {}",
                    Self::TCP_KEEPALIVE.min,
                    Self::TCP_KEEPALIVE.max
                ));
            }
        }
        count("reads_per_turn", Self::PER_TURN, self.reads_per_turn)?;
        count("accepts_per_turn", Self::PER_TURN, self.accepts_per_turn)?;
        count("udp_rate", Self::UDP_RATE, self.udp_rate as usize)?;
        count("loops", Self::LOOPS, self.loops)?;
        if self.max_per_source == Some(0) {
            return Err("max_per_source must be at least 1".into());
        }
        if self.udp && self.udp_rate == 0 && self.max_per_source.is_some() {
            // The one rule UDP cannot take: it counts connections.
            return Err(
                "max_per_source counts TCP connections, and udp_rate 0 leaves UDP with \
                 no per-source limit: set udp_rate, or drop max_per_source"
                    .into(),
            );
        }
        if let Some(metrics) = self.metrics {
            if metrics.port() != 0 && self.tcp_listen().any(|a| a == metrics) {
                return Err(format!("metrics {metrics} is also a listen address"));
            }
        }
        if self.max_connections == Some(0) {
            return Err("max_connections must be at least 1".into());
        }
        Ok(())
    }
}
