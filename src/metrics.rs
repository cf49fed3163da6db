//! `--metrics ADDR`: Prometheus metrics and a health check over HTTP/1.1,
//! served by the same loop as the echo.
//!
//! A scrape is one short connection: read the request head, answer
//! ([`http`]), send FIN, close once the scraper has closed. Metrics
//! connections live in their own slab with their own small limit
//! ([`MAX_CONNECTIONS`]): they never count against echo clients, and a
//! client that says nothing is closed after [`TIMEOUT`]. The work per turn is
//! bounded — a few accepts, one read and one write per event — so scrapers
//! cannot starve the echo.

mod exposition;
pub(crate) mod http;
mod process;

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::Registry;
use slab::Slab;

use crate::logging::Throttle;
use crate::rules;
use crate::stats::Stats;
use crate::token::Source;
use crate::Config;

use http::Request;

/// Metrics connections open at once; beyond it a new one is closed at once.
pub(crate) const MAX_CONNECTIONS: usize = 64;

/// How long a metrics connection may take from accept to close: a scrape
/// takes milliseconds, a silent or trickling client is cut off.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts per turn on the metrics listener.
const ACCEPTS_PER_TURN: usize = 8;

/// One scraper.
#[derive(Debug)]
struct Scrape {
    /// Its socket, registered under `Source::Metrics(key)`.
    stream: TcpStream,
    /// The request head so far (at most `http::MAX_HEAD` and one read).
    head: Vec<u8>,
    /// The response still to send, once the request is answered.
    out: Vec<u8>,
    /// How much of `out` is sent.
    sent: usize,
    /// The response is out and FIN sent: waiting for the scraper to close.
    done: bool,
    /// WRITABLE is registered (only while `out` is not all sent).
    write_interest: bool,
    /// Accept time + [`TIMEOUT`]: closed then, whatever its state.
    deadline: Instant,
}

/// What the metrics endpoint needs to know of the server to answer.
#[derive(Debug)]
pub(crate) struct View<'a> {
    /// The counters now.
    pub(crate) stats: Stats,
    /// The configuration in force.
    pub(crate) config: &'a Config,
    /// `--max-connections` as resolved.
    pub(crate) max_connections: usize,
    /// Shutdown has begun: `/healthz` says 503.
    pub(crate) shutting_down: bool,
}

/// The metrics listener and its connections.
#[derive(Debug)]
pub(crate) struct MetricsService {
    /// The listener, registered under `Source::MetricsListener`.
    listener: TcpListener,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Connections may be waiting (as for the echo listeners).
    pub(crate) ready: bool,
    /// Open scrapes, by key.
    scrapes: Slab<Scrape>,
    /// Rate limit for "too many metrics connections" warnings.
    refused_warnings: Throttle,
}

impl MetricsService {
    /// The service for a listener bound and registered at start-up.
    pub(crate) fn new(listener: TcpListener, addr: SocketAddr) -> Self {
        MetricsService {
            listener,
            addr,
            ready: false,
            scrapes: Slab::with_capacity(MAX_CONNECTIONS),
            refused_warnings: Throttle::default(),
        }
    }

    /// Accepts scrapers, a few per turn; over the limit, closes at once.
    pub(crate) fn accept(&mut self, registry: &Registry, now: Instant) {
        for _ in 0..ACCEPTS_PER_TURN {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.ready = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, say: wait for the next client's
                    // event rather than spin on a listener that stays ready.
                    debug!("accept on metrics {}: {e}", self.addr);
                    self.ready = false;
                    return;
                }
            };
            if self.scrapes.len() >= MAX_CONNECTIONS {
                if let Some(missed) = self.refused_warnings.allow(now) {
                    warn!(
                        "metrics {}: {MAX_CONNECTIONS} connections open, closing a new one \
                         ({missed} more since last warning)",
                        self.addr
                    );
                }
                continue; // dropped: closed at once
            }
            let entry = self.scrapes.vacant_entry();
            let mut stream = stream;
            let token = Source::Metrics(entry.key()).token();
            if let Err(e) = registry.register(&mut stream, token, rules::READ_INTEREST) {
                debug!("register a metrics connection: {e}");
                continue;
            }
            entry.insert(Scrape {
                stream,
                head: Vec::new(),
                out: Vec::new(),
                sent: 0,
                done: false,
                write_interest: false,
                deadline: now + TIMEOUT,
            });
        }
    }

    /// Serves scrape `key` on an event: read the head, answer, flush, close.
    pub(crate) fn serve(&mut self, key: usize, registry: &Registry, view: &View<'_>) {
        let Some(scrape) = self.scrapes.get_mut(key) else {
            return; // a stale event for a scrape closed this turn
        };
        match scrape.serve(key, registry, view) {
            Ok(true) => {}
            Ok(false) => {
                self.scrapes.remove(key);
            }
            Err(e) => {
                debug!("metrics connection: {e}");
                self.scrapes.remove(key);
            }
        }
    }

    /// Closes every scrape past its deadline.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.scrapes.retain(|_, scrape| now < scrape.deadline);
    }

    /// The nearest scrape deadline, for the poll timeout.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.scrapes.iter().map(|(_, s)| s.deadline).min()
    }
}

impl Scrape {
    /// One event's worth of work. `Ok(false)`: finished, close it.
    fn serve(&mut self, key: usize, registry: &Registry, view: &View<'_>) -> io::Result<bool> {
        if self.out.is_empty() && !self.done {
            match self.read_head()? {
                ReadOutcome::Closed => return Ok(false),
                ReadOutcome::Incomplete => return Ok(true),
                ReadOutcome::Complete(request) => self.out = answer(request, view),
            }
        }
        if !self.done {
            self.sent += rules::write_until_full(&self.stream, &self.out[self.sent..])?;
            let pending = self.sent < self.out.len();
            let token = Source::Metrics(key).token();
            rules::update_interest(
                registry,
                &mut self.stream,
                token,
                &mut self.write_interest,
                pending,
            )?;
            if pending {
                return Ok(true);
            }
            self.stream.shutdown(std::net::Shutdown::Write)?;
            self.done = true;
        }
        // Read what the scraper still sends (nothing, usually) until its
        // close: closing with unread input would send a reset.
        let mut sink = [0u8; 512];
        loop {
            match (&self.stream).read(&mut sink) {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until `WouldBlock`, or until the head is complete or too long.
    fn read_head(&mut self) -> io::Result<ReadOutcome> {
        let mut buf = [0u8; 2048];
        loop {
            match (&self.stream).read(&mut buf) {
                Ok(0) => return Ok(ReadOutcome::Closed),
                Ok(n) => {
                    self.head.extend_from_slice(&buf[..n]);
                    if let Some(request) = http::parse(&self.head) {
                        return Ok(ReadOutcome::Complete(request));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(ReadOutcome::Incomplete)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// How far reading a request head got.
#[derive(Debug)]
enum ReadOutcome {
    /// The scraper closed first.
    Closed,
    /// Not all there yet.
    Incomplete,
    /// The head is complete (or has told us enough).
    Complete(Request),
}

/// The response to a request.
fn answer(request: Request, view: &View<'_>) -> Vec<u8> {
    const TEXT: &str = "text/plain; charset=utf-8";
    match request {
        Request::Metrics { head } => {
            let body = exposition::render(&view.stats, &limits(view));
            http::response(
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
                head,
            )
        }
        Request::Health { head } if view.shutting_down => {
            http::response("503 Service Unavailable", TEXT, "shutting down\n", head)
        }
        Request::Health { head } => http::response("200 OK", TEXT, "ok\n", head),
        Request::NotFound => http::response("404 Not Found", TEXT, "not found\n", false),
        Request::MethodNotAllowed => {
            http::response("405 Method Not Allowed", TEXT, "GET or HEAD only\n", false)
        }
        Request::Malformed => http::response("400 Bad Request", TEXT, "bad request\n", false),
        Request::HeadTooLarge => http::response(
            "431 Request Header Fields Too Large",
            TEXT,
            "request head over 8 KiB\n",
            false,
        ),
    }
}

/// The limits in force, as gauges.
fn limits(view: &View<'_>) -> Vec<exposition::Limit> {
    let c = view.config;
    vec![
        (
            "max_connections",
            "Most echo connections open at once (--max-connections).",
            view.max_connections as f64,
        ),
        (
            "max_pending_bytes",
            "Most echoed bytes held for one peer (--max-pending).",
            c.max_pending as f64,
        ),
        (
            "send_buffer_bytes",
            "Kernel send buffer of each connection (--send-buffer); 0: autotuned.",
            c.send_buffer.map_or(0.0, |n| n as f64),
        ),
        (
            "read_buffer_bytes",
            "Size of the loop's read buffer (--read-buffer).",
            c.read_buffer as f64,
        ),
        (
            "idle_timeout_seconds",
            "Idle connections are closed after this long (--idle-timeout); 0: never.",
            c.idle_timeout.map_or(0.0, |d| d.as_secs_f64()),
        ),
        (
            "max_per_source_connections",
            "Most connections open at once from one source IP (--max-per-source); 0: no limit.",
            c.max_per_source.map_or(0.0, |n| n as f64),
        ),
        (
            "udp_rate_limit_datagrams_per_second",
            "Most UDP datagrams echoed per second to one source IP (--udp-rate); 0: no limit.",
            f64::from(c.udp_rate),
        ),
    ]
}
