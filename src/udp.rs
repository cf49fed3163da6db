//! UDP echo (RFC 862 section 2): each datagram received is sent back, as one
//! datagram of the same bytes, to its source — on the same loop as TCP.
//!
//! A UDP socket is registered for READABLE only. On readiness the loop
//! receives until `WouldBlock` (or, on Linux's epoll, a short batch) within a
//! per-turn budget, remembering the socket is still ready when the budget
//! stops it, exactly as the TCP side does (rule 1 of [`crate::rules`]). Each
//! datagram goes straight back with `send_to`; when that would block, the
//! datagram is dropped and counted: UDP promises nothing, and a queue per
//! peer would be unbounded memory. Nothing ever waits for WRITABLE.
//!
//! Every datagram passes `--allow`/`--deny` first (the same
//! [`Rules`](crate::admission) TCP applies at accept; a denied datagram is
//! dropped and counted as `udp_dropped_denied`), then the per-source rate
//! limit ([`crate::rate_limit`]); the echo is never larger than the request.
//!
//! What each OS reports on the socket:
//! - Linux and the BSDs do not report ICMP errors (port unreachable) on an
//!   unconnected socket, unless asked (`IP_RECVERR`): a send to a closed
//!   port simply vanishes.
//! - Windows reports a port unreachable caused by an earlier `sendto` as
//!   `WSAECONNRESET` from the next `recvfrom` (`SIO_UDP_CONNRESET` would turn
//!   that off); mio gives it as `ConnectionReset`.
//!
//! Either way such an error is about one earlier datagram, not the socket:
//! it is counted (`udp_errors`) and service goes on.
//!
//! On Linux's epoll, datagrams are received and sent in batches (`recvmmsg`
//! and `sendmmsg`, `udp/batch.rs`): one system call for up to 32 messages
//! each way instead of one per datagram, and the replies to one source of
//! one size share one GSO message. Where the kernel has GRO, a GSO train
//! is received whole, as one message with its segment size, and goes back
//! as one ([`crate::mmsg`] explains all three). Rules, rate limit and
//! counters still see every datagram of a train. Elsewhere
//! — and on Linux with mio's forced `poll(2)` backend, so that CI runs the
//! portable path too — one `recv_from` and one `send_to` per datagram
//! (`udp/portable.rs`). The two files offer the same functions; the switch
//! between them (`linux_batch`, named in `build.rs`) is written once, here.

#[cfg(linux_batch)]
mod batch;
#[cfg(not(linux_batch))]
mod portable;

/// This platform's receive-and-echo calls: `batch.rs` and `portable.rs`
/// offer the same `Buffers` and `serve`.
#[cfg(linux_batch)]
use batch as platform;
#[cfg(not(linux_batch))]
use portable as platform;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::warn;
use mio::net::UdpSocket;

use crate::admission::Rules;
use crate::logging::Throttle;
use crate::rate_limit::RateLimiter;
use crate::stats::{Counter, Counters};

/// Datagrams one socket may receive per loop turn before the loop moves on
/// (it comes back next turn): a flood cannot starve the TCP clients.
const DATAGRAMS_PER_TURN: usize = 256;

/// Sources the rate limiter tracks at once: a spoofed-source flood replaces
/// sources whose allowance has refilled, so its memory (about 64 bytes a
/// source) stays fixed.
const RATE_SOURCES: usize = 16 * 1024;

/// How long a socket rests after an unexpected receive error, so a
/// persistent one cannot spin the loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// One bound UDP socket.
#[derive(Debug)]
pub(crate) struct Udp {
    /// The socket, registered under `Source::Udp(its index)`.
    pub(crate) socket: UdpSocket,
    /// Where it is bound (the TCP listener's port).
    pub(crate) addr: SocketAddr,
    /// Datagrams may be waiting: set by its event, cleared by `WouldBlock`,
    /// kept when the per-turn budget stops us first.
    pub(crate) ready: bool,
    /// After an unexpected error, when to try again.
    resting_until: Option<Instant>,
}

impl Udp {
    /// A socket just bound and registered; on Linux's epoll, set up for
    /// GRO where the kernel has it (`udp/batch.rs`).
    pub(crate) fn new(socket: UdpSocket, addr: SocketAddr) -> Self {
        #[cfg(linux_batch)]
        batch::prepare(&socket);
        Udp {
            socket,
            addr,
            ready: false,
            resting_until: None,
        }
    }
}

/// What every UDP socket shares: the receive buffers and the [`Policy`].
#[derive(Debug)]
pub(crate) struct UdpEcho {
    /// The receive and send buffers of this platform's path.
    buffers: platform::Buffers,
    /// What may be echoed, and how each outcome is counted.
    policy: Policy,
}

/// The admission rules and the rate limit, and the counting and warning of
/// what became of each datagram.
#[derive(Debug)]
pub(crate) struct Policy {
    /// `--allow` and `--deny`: the check TCP makes at accept.
    rules: Rules,
    /// `--udp-rate`; `None` when unlimited.
    limiter: Option<RateLimiter>,
    /// Rate limit for "dropped" warnings (denied, rate-limited).
    dropped_warnings: Throttle,
    /// Rate limit for error warnings.
    error_warnings: Throttle,
}

impl Udp {
    /// Whether this socket may be served now (ready, and not resting after
    /// an error); a socket whose rest is over is ready again.
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        if self.resting_until.is_some_and(|until| now >= until) {
            self.resting_until = None;
            self.ready = true;
        }
        self.ready && self.resting_until.is_none()
    }

    /// When a resting socket may be served again, for the poll timeout.
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        self.resting_until
    }
}

impl UdpEcho {
    /// Shared state for UDP echo under `rules`, at `rate` datagrams per
    /// second per source (0: unlimited).
    pub(crate) fn new(rules: Rules, rate: u32) -> Self {
        UdpEcho {
            buffers: platform::Buffers::new(),
            policy: Policy {
                rules,
                limiter: (rate > 0).then(|| RateLimiter::new(rate, RATE_SOURCES)),
                dropped_warnings: Throttle::default(),
                error_warnings: Throttle::default(),
            },
        }
    }

    /// Receives and echoes on `udp` until `WouldBlock` or the budget.
    pub(crate) fn serve(&mut self, udp: &mut Udp, counters: &Counters, now: Instant) {
        let result = platform::serve(&mut self.buffers, &mut self.policy, udp, counters, now);
        if let Err(e) = result {
            counters.add(Counter::UdpErrors, 1);
            udp.resting_until = Some(now + ERROR_BACKOFF);
            if let Some(missed) = self.policy.error_warnings.allow(now) {
                warn!(
                    "recvfrom on udp {}: {e} (resting {ERROR_BACKOFF:?}; {missed} more since \
                     last warning)",
                    udp.addr
                );
            }
        }
    }
}

impl Policy {
    /// Counts `datagrams` received from `src` in `bytes` (one, or a GRO
    /// train's) and checks each against the rules and the rate limit, in
    /// order: how many of them, from the first, may be echoed. The rest are
    /// dropped (counted and warned about here): all of them if `src` is
    /// denied, those over its `--udp-rate` allowance if limited.
    fn admit(
        &mut self,
        src: SocketAddr,
        bytes: usize,
        datagrams: usize,
        counters: &Counters,
        now: Instant,
    ) -> usize {
        counters.add(Counter::UdpDatagramsIn, datagrams as u64);
        counters.add(Counter::UdpBytesIn, bytes as u64);
        let (admitted, counter, why) = if !self.rules.permits(src.ip()) {
            (0, Counter::UdpDroppedDenied, "--allow/--deny")
        } else if let Some(limiter) = self.limiter.as_mut() {
            let allowed = (0..datagrams)
                .take_while(|_| limiter.allow(src.ip(), now))
                .count();
            (allowed, Counter::UdpDroppedRateLimited, "over --udp-rate")
        } else {
            return datagrams;
        };
        let dropped = datagrams - admitted;
        if dropped > 0 {
            counters.add(counter, dropped as u64);
            if let Some(missed) = self.dropped_warnings.allow(now) {
                warn!(
                    "udp: dropped {dropped} of {datagrams} datagram(s) from {} ({why}); {missed} \
                     more drops since last warning",
                    src.ip()
                );
            }
        }
        admitted
    }

    /// Counts what became of one echo of `datagrams` in `bytes` to `dst`
    /// (one send: a datagram, or a GSO message of several).
    fn account_send(
        &mut self,
        sent: io::Result<()>,
        datagrams: usize,
        bytes: usize,
        dst: Option<SocketAddr>,
        counters: &Counters,
        now: Instant,
    ) {
        let datagrams = datagrams as u64;
        match sent {
            Ok(()) => {
                counters.add(Counter::UdpDatagramsOut, datagrams);
                counters.add(Counter::UdpBytesOut, bytes as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                counters.add(Counter::UdpDroppedWouldBlock, datagrams);
            }
            Err(e) => {
                counters.add(Counter::UdpErrors, datagrams);
                if let Some(missed) = self.error_warnings.allow(now) {
                    let dst = dst.map_or_else(|| "?".to_string(), |d| d.to_string());
                    warn!("sendto {dst}: {e} ({missed} more errors since last warning)");
                }
            }
        }
    }
}

/// Whether a receive error reports what happened to an earlier datagram
/// (an ICMP error; Windows' `WSAECONNRESET`), not a problem of the socket.
fn is_peer_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}
