//! What a `mio::Token` names: every socket the loop owns has one, and an
//! event is decoded through [`Source`] alone, never by arithmetic in the loop.
//!
//! Connections use their slab key as token (an event finds its connection
//! with one index). Slab keys start at 0 and never come near `usize::MAX`, so
//! the sockets there is a fixed number of take the top of the range: the
//! waker at `usize::MAX`, then the listeners below it, then the UDP sockets
//! (one per listen address), the metrics listener and its connections.

use mio::Token;

/// Most `--listen` addresses: the size of the listeners' token range.
pub const MAX_LISTENERS: usize = 256;

/// Most metrics connections open at once: the size of their token range,
/// the metrics endpoint's limit.
pub(crate) const MAX_METRICS: usize = 64;

/// The waker's token.
const WAKER: usize = usize::MAX;

/// Listener `i` is `FIRST_LISTENER - i`.
const FIRST_LISTENER: usize = WAKER - 1;

/// UDP socket `i` is `FIRST_UDP - i`.
const FIRST_UDP: usize = FIRST_LISTENER - MAX_LISTENERS;

/// The metrics listener.
const METRICS_LISTENER: usize = FIRST_UDP - MAX_LISTENERS;

/// Metrics connection `key` is `FIRST_METRICS - key`.
const FIRST_METRICS: usize = METRICS_LISTENER - 1;

/// The lowest fixed token; connection keys stay below it.
const FIRST_FIXED: usize = FIRST_METRICS - (MAX_METRICS - 1);

/// The socket a token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The waker: a [`Handle`](crate::Handle) asked for attention.
    Waker,
    /// Listener `i`, in the order of `Config::listen`.
    Listener(usize),
    /// UDP socket `i`, bound beside listener `i` (`--udp`).
    Udp(usize),
    /// The metrics listener (`--metrics`).
    MetricsListener,
    /// The metrics connection with this key (in the metrics service's own
    /// slab).
    Metrics(usize),
    /// The connection with this slab key.
    Connection(usize),
}

impl Source {
    /// The token registered for this source.
    pub(crate) fn token(self) -> Token {
        match self {
            Source::Waker => Token(WAKER),
            Source::Listener(i) => {
                debug_assert!(i < MAX_LISTENERS);
                Token(FIRST_LISTENER - i)
            }
            Source::Udp(i) => {
                debug_assert!(i < MAX_LISTENERS);
                Token(FIRST_UDP - i)
            }
            Source::MetricsListener => Token(METRICS_LISTENER),
            Source::Metrics(key) => {
                debug_assert!(key < MAX_METRICS);
                Token(FIRST_METRICS - key)
            }
            Source::Connection(key) => {
                debug_assert!(key < FIRST_FIXED);
                Token(key)
            }
        }
    }

    /// What an event's token names.
    pub(crate) fn of(token: Token) -> Source {
        match token.0 {
            WAKER => Source::Waker,
            t if t > FIRST_UDP => Source::Listener(FIRST_LISTENER - t),
            t if t > METRICS_LISTENER => Source::Udp(FIRST_UDP - t),
            METRICS_LISTENER => Source::MetricsListener,
            t if t >= FIRST_FIXED => Source::Metrics(FIRST_METRICS - t),
            key => Source::Connection(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every source decodes back to itself, and the ranges do not meet.
    #[test]
    fn tokens_round_trip() {
        for source in [
            Source::Waker,
            Source::Listener(0),
            Source::Listener(MAX_LISTENERS - 1),
            Source::Udp(0),
            Source::Udp(MAX_LISTENERS - 1),
            Source::MetricsListener,
            Source::Metrics(0),
            Source::Metrics(MAX_METRICS - 1),
            Source::Connection(0),
            Source::Connection(FIRST_FIXED - 1),
        ] {
            assert_eq!(Source::of(source.token()), source);
        }
    }
}
