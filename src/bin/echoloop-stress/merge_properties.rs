//! Property test of what `merge` relies on: histograms written by several
//! runs, each encoded into its `--json` report and decoded back, add up to
//! exactly the histogram one run of all the samples would have recorded —
//! every count at every value, so every percentile, the minimum, maximum,
//! mean and total. (The HdrHistogram claim, checked through our own
//! recorder, encoding and decoding, not taken on trust.)

use proptest::prelude::*;

use crate::json::{decode, encode};
use crate::record::{Recorder, Series};

/// A latency in nanoseconds, spread over every order of magnitude the
/// recorder covers (1 ns to an hour) and beyond it (saturated).
fn latency() -> impl Strategy<Value = u64> {
    (0u32..43, any::<u64>()).prop_map(|(bits, r)| r >> (64 - bits.max(1)))
}

proptest! {
    // Each case encodes and decodes twelve histograms: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Merge of the parts equals the histogram of the whole, for any
    /// samples split among any number of runs and series.
    #[test]
    fn merge_of_parts_is_the_histogram_of_the_whole(
        samples in prop::collection::vec((latency(), 0usize..4, 0usize..3), 0..400),
    ) {
        let mut whole = Recorder::new();
        let mut parts: Vec<Recorder> = (0..3).map(|_| Recorder::new()).collect();
        for &(ns, series, part) in &samples {
            let series = Series::ALL[series];
            whole.record(series, ns);
            parts[part].record(series, ns);
        }
        let mut merged = Recorder::new();
        for part in &parts {
            // Through the report, as `merge` reads it: encoded and decoded.
            let mut read_back = Recorder::new();
            for series in Series::ALL {
                let text = encode(part.get(series)).expect("encode");
                read_back.hists[series.index()] = decode(&text).expect("decode");
            }
            merged.add(&read_back);
        }
        for series in Series::ALL {
            let (m, w) = (merged.get(series), whole.get(series));
            prop_assert_eq!(m.len(), w.len());
            prop_assert!(m.iter_recorded().eq(w.iter_recorded()), "{}: counts differ", series.tag());
            for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
                prop_assert_eq!(m.value_at_quantile(q), w.value_at_quantile(q));
            }
            prop_assert_eq!((m.min(), m.max()), (w.min(), w.max()));
            prop_assert_eq!(m.mean().to_bits(), w.mean().to_bits());
        }
    }
}
