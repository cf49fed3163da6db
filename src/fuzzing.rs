//! The internals the fuzz targets under `fuzz/` drive, and nothing else
//! (`fuzz/README.md` says how to run them). Built only with the `fuzzing`
//! feature and hidden from the docs: this is not an API, and it changes
//! whenever the internals do.

use std::fmt::Debug;

/// The `--metrics` request reader.
pub mod metrics {
    use super::Debug;
    use crate::metrics::http;

    /// The longest request head the reader takes before it answers 431.
    pub const MAX_HEAD: usize = http::MAX_HEAD;

    /// What the request head received so far asks for (its `Debug` form
    /// names the answer), or `None` while it is incomplete.
    pub fn parse(head: &[u8]) -> Option<impl Debug + PartialEq + Copy> {
        http::parse(head)
    }
}
