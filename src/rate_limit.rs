//! Datagrams per second per source IP, for the UDP echo: a token bucket per
//! source, in a table of fixed capacity.
//!
//! An exposed UDP echo is a classic reflector: an attacker sends datagrams
//! with a victim's address as source, and the echo goes to the victim. The
//! echo is never larger than the request (no amplification), and this
//! limiter caps what any one address receives from us: over any stretch of
//! time, at most `rate` a second plus one second's burst (`rate` again).
//!
//! # Fixed memory, and a cap that holds however the table churns
//!
//! A flood from millions of spoofed addresses must not grow memory, so the
//! table holds at most `capacity` sources. Making room must not undo the
//! cap: were any source forgotten, an attacker could spray more than
//! `capacity` spoofed sources between two bursts at a victim, push the
//! victim out, and have it come back with a fresh, full bucket every time.
//! So only a source whose bucket has **refilled to full** is ever
//! forgotten: a new source starts with a full bucket, so forgetting such a
//! one loses nothing, and a source still in debt keeps its bucket, and its
//! cap, for as long as it stays in debt.
//!
//! Which one to forget is a second-chance scan from the source seen longest
//! ago (the one likeliest to have refilled): it is forgotten if it is full
//! again, and otherwise moved to the fresh end, up to [`SCAN`] sources per
//! newcomer. When none of those is full, the newcomer gets no bucket and
//! its datagram is dropped (counted as rate-limited): that happens only
//! while the table's stalest sources are all still in debt, that is, while
//! more than `capacity` sources are each sending faster than the limit
//! allows (a one-datagram spoofed source is full again `1/rate` seconds
//! later). O(1) per datagram (a hash lookup and a move in a list; at most
//! [`SCAN`] looks for a newcomer), and a fixed amount of memory whatever
//! the flood.
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// "No neighbour" in the recency list.
const NIL: u32 = u32::MAX;

/// Most tracked sources looked at to make room for a new one.
const SCAN: usize = 8;

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

/// Token buckets for up to `capacity` sources; only a full one is evicted.
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
    /// A new source that finds no room (see the module docs) is refused.
    pub(crate) fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let i = match self.index.get(&ip) {
            Some(&i) => {
                self.unlink(i);
                i
            }
            None => match self.admit(ip, now) {
                Some(i) => i,
                None => return false,
            },
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

    /// A full bucket for a new source: a fresh slot while there is room,
    /// else that of a source whose bucket has refilled ([`Self::reclaim`]),
    /// which is forgotten; `None` if there is none. Returned unlinked.
    fn admit(&mut self, ip: IpAddr, now: Instant) -> Option<u32> {
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
            let i = self.reclaim(now)?;
            self.index.remove(&self.buckets[i as usize].ip);
            self.buckets[i as usize] = fresh;
            i
        };
        self.index.insert(ip, i);
        Some(i)
    }

    /// The second-chance scan: from the stalest, up to [`SCAN`] sources,
    /// the first whose bucket is full again (returned unlinked, still
    /// indexed); each one still in debt moves to the fresh end.
    fn reclaim(&mut self, now: Instant) -> Option<u32> {
        for _ in 0..SCAN.min(self.buckets.len()) {
            let i = self.stalest;
            self.unlink(i);
            let b = &self.buckets[i as usize];
            let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
            if b.tokens + elapsed * self.rate >= self.rate {
                return Some(i);
            }
            self.push_freshest(i);
        }
        None
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

    mod properties {
        use super::super::*;
        use proptest::prelude::*;
        use std::time::Duration;

        /// One source's bucket as the module docs define it, for every
        /// source at once (no table, no eviction): what the limiter should
        /// decide for any source it tracks.
        #[derive(Debug, Clone, Copy)]
        struct ModelBucket {
            tokens: f64,
            refilled: Instant,
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Under any datagrams from more sources than the table holds
            /// (eviction churn, table full, sources coming back), at any
            /// spacing: no source is ever echoed more than `rate` a second
            /// plus one second's burst over any window; and every datagram
            /// is decided as a plain token bucket per source would decide
            /// it, except a newcomer refused because the table is full of
            /// sources still in debt — so a source under its limit is
            /// never refused while it holds a bucket.
            #[test]
            fn never_more_than_rate_plus_burst(
                rate in 1u32..20,
                capacity in 1usize..SCAN,
                datagrams in prop::collection::vec((0u32..10, 0u64..300), 1..300),
            ) {
                let t0 = Instant::now();
                let mut limiter = RateLimiter::new(rate, capacity);
                let r = f64::from(rate);
                let mut model: HashMap<IpAddr, ModelBucket> = HashMap::new();
                let mut echoed: HashMap<IpAddr, Vec<Instant>> = HashMap::new();
                let mut now = t0;
                for (source, ms) in datagrams {
                    now += Duration::from_millis(ms);
                    let ip = super::ip(source);
                    let tracked = limiter.index.contains_key(&ip);
                    let table_full = limiter.len() == capacity;
                    let allowed = limiter.allow(ip, now);
                    prop_assert!(limiter.len() <= capacity);
                    let b = model.entry(ip).or_insert(ModelBucket { tokens: r, refilled: now });
                    let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
                    b.tokens = (b.tokens + elapsed * r).min(r);
                    b.refilled = now;
                    let model_allows = b.tokens >= 1.0;
                    if allowed {
                        prop_assert!(model_allows, "{} echoed without a token", ip);
                        b.tokens -= 1.0;
                        echoed.entry(ip).or_default().push(now);
                    } else if model_allows {
                        prop_assert!(
                            !tracked && table_full,
                            "{} refused with a token (tracked {}, table full {})",
                            ip, tracked, table_full
                        );
                        // ... and only while no tracked source has refilled
                        // (the table is smaller than one scan here).
                        for other in limiter.index.keys() {
                            let o = model[other];
                            let elapsed = now.saturating_duration_since(o.refilled).as_secs_f64();
                            prop_assert!(
                                o.tokens + elapsed * r < r,
                                "{} refused while {} could have been forgotten", ip, other
                            );
                        }
                    }
                }
                for (ip, times) in echoed {
                    for (i, first) in times.iter().enumerate() {
                        for (j, last) in times.iter().enumerate().skip(i) {
                            let window = last.duration_since(*first).as_secs_f64();
                            let count = (j - i + 1) as f64;
                            prop_assert!(
                                count <= r * window + r + 1e-9,
                                "{} echoed {} times in {} s at rate {}", ip, count, window, rate
                            );
                        }
                    }
                }
            }
        }
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

    /// The table never holds more than its capacity; room is made by
    /// forgetting the stalest source whose bucket has refilled, never one
    /// still in debt; with none to forget, a newcomer is refused.
    #[test]
    fn only_a_refilled_source_is_evicted() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2); // everyone seen at t0 is full
        let mut limiter = RateLimiter::new(1, 3);
        for n in 1..=3 {
            assert!(limiter.allow(ip(n), t0));
        }
        assert!(!limiter.allow(ip(4), t0)); // all three in debt: no room
        assert!(limiter.allow(ip(1), t1)); // 1 refilled; now the freshest
        assert!(limiter.allow(ip(4), t1)); // evicts 2, the stalest and full
        assert_eq!(limiter.len(), 3);
        assert!(!limiter.allow(ip(1), t1)); // 1 kept its (spent) bucket
        assert!(limiter.allow(ip(3), t1)); // 3 was full, not forgotten
        assert!(!limiter.allow(ip(3), t1));
        assert!(!limiter.allow(ip(2), t1)); // 2 comes back: everyone in debt
        let mut t = t1;
        for n in 5..10_000 {
            t += Duration::from_millis(100);
            limiter.allow(ip(n), t);
        }
        assert_eq!(limiter.len(), 3);
        assert_eq!(limiter.buckets.len(), 3);
    }

    /// The reflection attack on the table: between the victim's bursts, an
    /// attacker sprays ten times the table's capacity of spoofed sources
    /// (one datagram each, spread over the pause, as a real spray is). The
    /// victim still gets no more than `rate` a second plus its one burst
    /// over the whole run, and new sources keep being served.
    #[test]
    fn a_spray_of_sources_does_not_refill_the_victim() {
        const RATE: u32 = 100;
        const CAPACITY: usize = 64;
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(RATE, CAPACITY);
        let victim = IpAddr::from([10, 0, 0, 1]);
        let (mut echoed, mut spoofed_echoed) = (0u64, 0u64);
        let (cycles, cycle) = (50u32, Duration::from_millis(100));
        let mut next_spoof = 0u32;
        for c in 0..cycles {
            let start = t0 + cycle * c;
            echoed += (0..RATE).filter(|_| limiter.allow(victim, start)).count() as u64;
            let spray = 10 * CAPACITY as u32;
            for k in 1..=spray {
                let at = start + cycle * k / (spray + 1);
                next_spoof += 1;
                spoofed_echoed += u64::from(limiter.allow(ip(next_spoof), at));
            }
        }
        let window = (cycle * cycles).as_secs_f64();
        let cap = f64::from(RATE) * window + f64::from(RATE);
        assert!(
            echoed as f64 <= cap,
            "the victim got {echoed} over {window} s; the cap is {cap}"
        );
        assert!(limiter.len() <= CAPACITY);
        assert!(spoofed_echoed > 0, "new sources were never served");
    }
}
