//! `--metrics ADDR`: Prometheus metrics and a health check over HTTP/1.1,
//! served by the same loop as the echo.
//!
//! A scrape is one short connection: read the request head, answer
//! ([`http`]), send FIN, close once the scraper has closed ([`scrape`]).
//! Metrics connections live in their own slab with their own small limit
//! ([`MAX_CONNECTIONS`]): they never count against echo clients. Nothing a
//! metrics client does can stall the echo or hold the endpoint:
//!
//! - *The loop's budget.* A metrics connection reads at most
//!   `reads_per_turn` times per turn, as an echo connection does; one cut
//!   short is remembered and served again next turn, after the others
//!   (rule 1 of [`crate::rules`]). A listener accepts a few per turn.
//! - *Bounded input.* A connection may send its request head (at most
//!   `http::MAX_HEAD`) and as much again — room for a pipelined next
//!   request, which is not answered — and is closed past it: a client
//!   streaming into the port is cut off after a few KiB.
//! - *A deadline.* Every connection is closed [`TIMEOUT`] after its accept,
//!   whatever it sends: the loop's turns are bounded, so the timers run.
//! - *A share per source.* One source IP (IPv4-mapped as IPv4) holds at
//!   most [`PER_SOURCE`] connections. A new one beyond its share closes
//!   that source's stalest; a new one into a full endpoint closes the
//!   stalest connection of the source (of the sources, if tied) holding the
//!   most. *Stalest* is the
//!   connection that sent a byte least recently, or accepted least recently
//!   if it sent none, an answered one first (it owes nothing but its
//!   close). So a flood, from one source or several, only ever pushes out
//!   its own connections: a health check from elsewhere is accepted, and,
//!   being the newest, is read and answered before the flood's next few
//!   accepts can reach it. Ranking by time rather than by bytes sent is
//!   deliberate: a flood can send more bytes than a new client has, but it
//!   cannot make its connections newer than one accepted after them.

mod exposition;
mod http;
mod process;
mod scrape;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::TcpListener;
use mio::Registry;
use slab::Slab;

use crate::admission::canonical;
use crate::logging::Throttle;
use crate::rules;
use crate::stats::Stats;
use crate::token::{Source, MAX_METRICS};
use crate::Config;

use http::Request;
use scrape::{Scrape, Step};

/// Metrics connections open at once: the size of their token range.
pub(crate) const MAX_CONNECTIONS: usize = MAX_METRICS;

/// Metrics connections one source may hold open at once: a scraper needs
/// one, a health checker one; the rest of the endpoint stays for others.
pub(crate) const PER_SOURCE: usize = MAX_CONNECTIONS / 4;

/// How long a metrics connection may take from accept to close: a scrape
/// takes milliseconds, a silent or trickling client is cut off.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts per turn on the metrics listener.
const ACCEPTS_PER_TURN: usize = 8;

/// What the metrics endpoint needs to know of the server to answer.
#[derive(Debug)]
pub(crate) struct View<'a> {
    /// Each loop's counters now, in loop order (the totals are their sum).
    pub(crate) per_loop: Vec<Stats>,
    /// The configuration in force.
    pub(crate) config: &'a Config,
    /// `--max-connections` as resolved.
    pub(crate) max_connections: usize,
    /// Shutdown has begun, or a loop is gone: `/healthz` says 503.
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
    /// Open scrapes per source that has any: the per-source share.
    per_source: HashMap<IpAddr, usize>,
    /// Reads per scrape per turn (`--reads-per-turn`, as for echo clients).
    budget: usize,
    /// Scrapes an earlier turn's budget cut short: served again this turn.
    again: Vec<usize>,
    /// Scrapes this turn's budget cut short: served again next turn.
    later: Vec<usize>,
    /// Counts accepts and reads that moved bytes: the clock that says which
    /// scrape is stalest (one that cannot tie, unlike the turn's time).
    events: u64,
    /// Rate limit for "closing a connection to make room" warnings.
    full_warnings: Throttle,
}

impl MetricsService {
    /// The service for a listener bound and registered at start-up.
    pub(crate) fn new(listener: TcpListener, addr: SocketAddr, budget: usize) -> Self {
        MetricsService {
            listener,
            addr,
            ready: false,
            scrapes: Slab::with_capacity(MAX_CONNECTIONS),
            per_source: HashMap::new(),
            budget,
            again: Vec::new(),
            later: Vec::new(),
            events: 0,
            full_warnings: Throttle::default(),
        }
    }

    /// Whether there is work without an event: connections waiting to be
    /// accepted, or scrapes cut short by their budget.
    pub(crate) fn busy(&self) -> bool {
        self.ready || self.cut_short()
    }

    /// Whether scrapes cut short by their budget wait to be served again.
    pub(crate) fn cut_short(&self) -> bool {
        !self.again.is_empty() || !self.later.is_empty()
    }

    /// Accepts scrapers, a few per turn, making room when a limit is
    /// reached (see the module docs).
    pub(crate) fn accept(&mut self, registry: &Registry, now: Instant) {
        for _ in 0..ACCEPTS_PER_TURN {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
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
            let source = canonical(peer.ip());
            self.make_room(source, now);
            let entry = self.scrapes.vacant_entry();
            let token = Source::Metrics(entry.key()).token();
            if let Err(e) = registry.register(&mut stream, token, rules::READ_INTEREST) {
                debug!("register a metrics connection: {e}");
                continue;
            }
            self.events += 1;
            entry.insert(Scrape::new(stream, source, now + TIMEOUT, self.events));
            *self.per_source.entry(source).or_insert(0) += 1;
        }
    }

    /// Before a scrape from `source` is added: if `source` holds its share,
    /// closes its stalest; if the endpoint is full, closes the stalest of
    /// the sources holding the most.
    fn make_room(&mut self, source: IpAddr, now: Instant) {
        let held = self.per_source.get(&source).copied().unwrap_or(0);
        let own = held >= PER_SOURCE;
        if !own && self.scrapes.len() < MAX_CONNECTIONS {
            return;
        }
        let most = self.per_source.values().copied().max().unwrap_or(0);
        let stalest = (self.scrapes.iter())
            .filter(|(_, s)| {
                if own {
                    s.source == source
                } else {
                    self.per_source.get(&s.source) == Some(&most)
                }
            })
            .min_by_key(|(_, s)| (!s.done, s.heard))
            .map(|(key, _)| key);
        if let Some(key) = stalest {
            if let Some(missed) = self.full_warnings.allow(now) {
                let from = self.scrapes[key].source;
                warn!(
                    "metrics {}: {} connections open, {} from {from}: closing its stalest \
                     for a new one from {source} ({missed} more since last warning)",
                    self.addr,
                    self.scrapes.len(),
                    self.per_source.get(&from).copied().unwrap_or(0),
                );
            }
            self.remove(key, "closed to make room");
        }
    }

    /// Serves scrape `key` on an event: read the head, answer, flush, close.
    /// One already queued is left for step 4: one budget per turn.
    pub(crate) fn serve(&mut self, key: usize, registry: &Registry, view: &View<'_>, now: Instant) {
        if self.scrapes.get(key).is_some_and(|s| !s.queued) {
            self.serve_one(key, registry, view, now);
        }
        // else a stale event for a scrape closed this turn, or one queued
    }

    /// Step 4: serves again the scrapes an earlier turn's budget cut short;
    /// those cut short in this turn wait for the next.
    pub(crate) fn serve_again(&mut self, registry: &Registry, view: &View<'_>, now: Instant) {
        for key in std::mem::take(&mut self.again) {
            if let Some(scrape) = self.scrapes.get_mut(key) {
                scrape.queued = false;
                self.serve_one(key, registry, view, now);
            }
        }
        self.again = std::mem::take(&mut self.later);
    }

    /// Serves scrape `key` within its budget and acts on the outcome.
    fn serve_one(&mut self, key: usize, registry: &Registry, view: &View<'_>, now: Instant) {
        let Some(scrape) = self.scrapes.get_mut(key) else {
            return;
        };
        if now >= scrape.deadline {
            return self.remove(key, "timed out");
        }
        let received = scrape.received;
        let token = Source::Metrics(key).token();
        let step = scrape.serve(token, registry, self.budget, |request| {
            answer(request, view)
        });
        if scrape.received != received {
            self.events += 1;
            scrape.heard = self.events;
        }
        match step {
            Ok(Step::Waiting) => {}
            Ok(Step::ReadAgain) => {
                scrape.queued = true;
                self.later.push(key);
            }
            Ok(Step::Close(why)) => self.remove(key, why),
            Err(e) => {
                debug!("metrics connection {key}: {e}");
                self.remove(key, "closed on error");
            }
        }
    }

    /// Closes scrape `key` and forgets it everywhere.
    fn remove(&mut self, key: usize, why: &str) {
        let scrape = self.scrapes.remove(key);
        debug!("metrics connection {key} ({}): {why}", scrape.source);
        if let Some(n) = self.per_source.get_mut(&scrape.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&scrape.source);
            }
        }
        if scrape.queued {
            self.again.retain(|&k| k != key);
            self.later.retain(|&k| k != key);
        }
    }

    /// Closes every scrape past its deadline.
    pub(crate) fn expire(&mut self, now: Instant) {
        let expired: Vec<usize> = (self.scrapes.iter())
            .filter(|(_, s)| now >= s.deadline)
            .map(|(key, _)| key)
            .collect();
        for key in expired {
            self.remove(key, "timed out");
        }
    }

    /// The nearest scrape deadline, for the poll timeout.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.scrapes.iter().map(|(_, s)| s.deadline).min()
    }
}

/// The response to a request.
fn answer(request: Request, view: &View<'_>) -> Vec<u8> {
    const TEXT: &str = "text/plain; charset=utf-8";
    match request {
        Request::Metrics { head } => {
            let body = exposition::render(&view.per_loop, &limits(view));
            http::response(
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
                head,
            )
        }
        Request::Health { head } if view.shutting_down => http::response(
            "503 Service Unavailable",
            TEXT,
            "shutting down or a loop is gone\n",
            head,
        ),
        Request::Health { head } => http::response("200 OK", TEXT, "ok\n", head),
        Request::NotFound => http::response("404 Not Found", TEXT, "not found\n", false),
        Request::MethodNotAllowed => {
            http::response("405 Method Not Allowed", TEXT, "GET or HEAD only\n", false)
        }
        Request::Malformed => http::response("400 Bad Request", TEXT, "bad request\n", false),
        Request::VersionNotSupported => http::response(
            "505 HTTP Version Not Supported",
            TEXT,
            "HTTP/1.0 or HTTP/1.1 only\n",
            false,
        ),
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
            "loops",
            "Event loops serving (--loops); each series with a loop label is one loop's.",
            view.per_loop.len() as f64,
        ),
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
