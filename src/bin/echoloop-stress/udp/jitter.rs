//! `--udp`: inter-arrival jitter, RFC 3550 section 6.4.1 (the code of its
//! appendix A.8), per socket, and the run's one figure made from them.
//!
//! For datagrams i and j arriving one after the other on a socket, with
//! transit times T = arrival − send, D(i, j) = T(j) − T(i), and the
//! estimate moves a sixteenth of the way towards |D| at each arrival:
//! J += (|D| − J) / 16. The RFC's receiver has no clock of the sender's, so
//! its transit times carry an unknown offset that D cancels; an echo
//! client sends and receives on one clock, so T is the round trip from the
//! datagram's *actual* send (never its open-loop schedule: a late send is
//! the client's delay, not the path's), and J the jitter of the round trip.
//! As in A.8, J is kept scaled by 16 in integers (ns here): no rounding
//! drifts.
//!
//! **Combined, not averaged naively.** J is a running estimate, so a
//! socket's figure is the mean of its J over every arrival that moved it
//! (its samples), and the run's is the mean over all sockets' samples
//! together: each socket's mean weighted by its sample count. That is a
//! sum and a count ([`crate::counts::UdpCounts`]'s `jitter_sum_ns` and
//! `jitter_samples`), so the loops' totals and `merge` add them up exactly,
//! and a socket that saw ten datagrams weighs a thousandth of one that saw
//! ten thousand, where a plain mean of the sockets' figures would weigh
//! them alike. The worst socket's figure is kept beside it
//! (`jitter_max_socket_ns`, a maximum, which merges as one).

use crate::counts::UdpCounts;

/// One socket's jitter estimate, and its sum over the arrivals.
#[derive(Debug, Clone, Copy, Default)]
pub struct Jitter {
    /// The last arrival's transit time, ns (`None`: no arrival yet).
    transit: Option<u64>,
    /// J × 16, in ns (A.8's scaled integer).
    scaled: u64,
    /// The sum of J over the samples, ns.
    sum: u64,
    /// Arrivals that moved J: every one after the first.
    samples: u64,
}

impl Jitter {
    /// An echo arrived `transit` ns after its datagram went out: returns
    /// J (ns) if the arrival moved it (every one after the first), for the
    /// interval's figure.
    pub fn arrive(&mut self, transit: u64) -> Option<u64> {
        let last = self.transit.replace(transit)?;
        let d = transit.abs_diff(last);
        // A.8: jitter += d - ((jitter + 8) >> 4), J scaled by 16.
        self.scaled = (self.scaled + d).saturating_sub((self.scaled + 8) >> 4);
        self.sum = self.sum.saturating_add(self.scaled >> 4);
        self.samples += 1;
        Some(self.scaled >> 4)
    }

    /// Adds this socket's figures to the run's counts.
    pub fn add_to(&self, counts: &mut UdpCounts) {
        counts.jitter_sum_ns = counts.jitter_sum_ns.saturating_add(self.sum);
        counts.jitter_samples += self.samples;
        if let Some(mean) = self.sum.checked_div(self.samples) {
            counts.jitter_max_socket_ns.0 = counts.jitter_max_socket_ns.0.max(mean);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Round trips alternating 1 ms and 21 ms: |D| is 20 ms each time, so
    /// J climbs towards 20 ms as 20 × (1 − (15/16)^k) (to A.8's integer
    /// rounding), and the figures add up as the sum and count they are.
    #[test]
    fn jitter_follows_rfc3550() {
        let mut j = Jitter::default();
        let ms = 1_000_000;
        for k in 0..200u64 {
            j.arrive(if k % 2 == 0 { ms } else { 21 * ms });
        }
        assert_eq!(j.samples, 199);
        let last = (j.scaled >> 4) as f64;
        assert!((last - 20e6).abs() < 1e3, "{last}");
        let exact: f64 = (1..=199)
            .map(|k| 20e6 * (1.0 - (15f64 / 16.0).powi(k)))
            .sum();
        let ratio = j.sum as f64 / exact;
        assert!((ratio - 1.0).abs() < 1e-3, "{ratio}");
        let mut counts = UdpCounts::default();
        j.add_to(&mut counts);
        Jitter::default().add_to(&mut counts);
        assert_eq!(counts.jitter_samples, 199);
        assert_eq!(counts.jitter_max_socket_ns.0, j.sum / 199);
    }
}
