//! Datagrams per second per source IP, for the UDP echo: a token bucket per
//! source, in a table of fixed capacity.
//!
//! An exposed UDP echo is a classic reflector: an attacker sends datagrams
//! with a victim's address as source, and the echo goes to the victim. The
//! echo is never larger than the request (no amplification), and this
//! limiter caps what any one address receives from us. A flood from millions
//! of spoofed addresses must not grow memory either, so the table holds at
//! most `capacity` sources and a new source evicts the one seen longest ago:
//! O(1) per datagram (a hash lookup and a move to the back of a list), and a
//! fixed amount of memory whatever the flood.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// "No neighbour" in the recency list.
const NIL: u32 = u32::MAX;

/// One source's bucket, and its place in the recency list.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Whose bucket this is (to unmap it when evicted).
    ip: IpAddr,
    /// Datagrams it may still send now; refills at `rate` per second up to
    /// `rate` (one second's worth of burst).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    refilled: Instant,
    /// The source seen just before this one (towards the stalest).
    prev: u32,
    /// The source seen just after this one (towards the freshest).
    next: u32,
}

/// Token buckets for up to `capacity` sources, stalest evicted first.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// Datagrams per second each source may send (and its burst).
    rate: f64,
    /// Most sources tracked at once.
    capacity: usize,
    /// Where each tracked source's bucket is.
    index: HashMap<IpAddr, u32>,
    /// The buckets; never more than `capacity`.
    buckets: Vec<Bucket>,
    /// Seen longest ago: the next to be evicted.
    stalest: u32,
    /// Seen most recently.
    freshest: u32,
}

impl RateLimiter {
    /// A limiter letting each source send `rate` datagrams per second,
    /// tracking at most `capacity` sources.
    pub(crate) fn new(rate: u32, capacity: usize) -> Self {
        RateLimiter {
            rate: f64::from(rate),
            capacity: capacity.clamp(1, NIL as usize),
            index: HashMap::new(),
            buckets: Vec::new(),
            stalest: NIL,
            freshest: NIL,
        }
    }

    /// Whether a datagram from `ip` may be echoed now; takes its token.
    pub(crate) fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let i = match self.index.get(&ip) {
            Some(&i) => {
                self.unlink(i);
                i
            }
            None => self.admit(ip, now),
        };
        self.push_freshest(i);
        let bucket = &mut self.buckets[i as usize];
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.rate);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Sources tracked now (at most the capacity).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.index.len()
    }

    /// A bucket for a new source: a fresh slot while there is room, else
    /// the stalest source's, which is forgotten. Returned unlinked.
    fn admit(&mut self, ip: IpAddr, now: Instant) -> u32 {
        let fresh = Bucket {
            ip,
            tokens: self.rate,
            refilled: now,
            prev: NIL,
            next: NIL,
        };
        let i = if self.buckets.len() < self.capacity {
            self.buckets.push(fresh);
            (self.buckets.len() - 1) as u32
        } else {
            let i = self.stalest;
            self.unlink(i);
            self.index.remove(&self.buckets[i as usize].ip);
            self.buckets[i as usize] = fresh;
            i
        };
        self.index.insert(ip, i);
        i
    }

    fn unlink(&mut self, i: u32) {
        let Bucket { prev, next, .. } = self.buckets[i as usize];
        match prev {
            NIL => self.stalest = next,
            p => self.buckets[p as usize].next = next,
        }
        match next {
            NIL => self.freshest = prev,
            n => self.buckets[n as usize].prev = prev,
        }
    }

    fn push_freshest(&mut self, i: u32) {
        let old = self.freshest;
        let bucket = &mut self.buckets[i as usize];
        bucket.prev = old;
        bucket.next = NIL;
        match old {
            NIL => self.stalest = i,
            o => self.buckets[o as usize].next = i,
        }
        self.freshest = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from((0x7f00_0000 | n).to_be_bytes())
    }

    /// A source gets its burst, then `rate` per second; another source is
    /// not affected by the first's excess.
    #[test]
    fn buckets_refill_at_the_rate() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(10, 100);
        let passed = (0..100).filter(|_| limiter.allow(ip(1), t0)).count();
        assert_eq!(passed, 10);
        assert!(limiter.allow(ip(2), t0));
        assert!(!limiter.allow(ip(1), t0 + Duration::from_millis(50)));
        assert!(limiter.allow(ip(1), t0 + Duration::from_millis(150)));
    }

    /// The table never holds more than its capacity, and the source evicted
    /// is the one seen longest ago.
    #[test]
    fn the_stalest_source_is_evicted() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(1, 3);
        for n in 1..=3 {
            assert!(limiter.allow(ip(n), t0));
        }
        assert!(!limiter.allow(ip(1), t0)); // 1 is now the freshest
        assert!(limiter.allow(ip(4), t0)); // evicts 2, the stalest
        assert_eq!(limiter.len(), 3);
        assert!(!limiter.allow(ip(3), t0)); // 3 kept its empty bucket
        assert!(limiter.allow(ip(2), t0)); // 2 was forgotten: a fresh bucket
        for n in 5..10_000 {
            limiter.allow(ip(n), t0);
        }
        assert_eq!(limiter.len(), 3);
        assert_eq!(limiter.buckets.len(), 3);
    }
}
