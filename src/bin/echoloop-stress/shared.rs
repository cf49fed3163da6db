//! What every loop of a run agrees on with the others and with the main
//! thread, whichever transport it drives: the state they share, what a loop
//! hands back, the waker's token, and the timing constants of the loop core
//! (`engine.rs`). Neither engine owns it; both, the status line, the
//! interval writer and the run use it.

use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use mio::Token;

use crate::counts::{Counts, Samples};
use crate::record::Timeline;

/// The token of a loop's `mio::Waker` (Ctrl-C); sockets use their index,
/// which never gets this high.
pub const WAKER: Token = Token(usize::MAX);

/// How often a loop folds its latencies into the shared histogram that the
/// status line reads (and publishes its counters).
pub const PUBLISH_EVERY_NS: u64 = 250_000_000;

/// Open loop: how early a message may go out. `poll` sleeps in whole
/// milliseconds (mio rounds up), so waiting for the exact send time would
/// send up to 1 ms late and add that to the latency. We wake up to 1 ms
/// before, send what is due by then, and time an early message from its
/// real send time (a late one, always from its schedule).
pub const LOOKAHEAD_NS: u64 = 1_000_000;

/// What the loops share with the main thread.
#[derive(Debug)]
pub struct Shared {
    /// Set by Ctrl-C: every loop stops at its next turn.
    pub stop: AtomicBool,
    /// Every loop's recordings, by interval and in total; the status line
    /// reads its p99, the interval log and the plot its intervals, the
    /// final report its total.
    pub timeline: Mutex<Timeline>,
}

impl Shared {
    /// Nothing stopped, nothing recorded yet, for `loops` loops.
    pub fn new(loops: usize) -> Self {
        Shared {
            stop: AtomicBool::new(false),
            timeline: Mutex::new(Timeline::new(loops)),
        }
    }
}

/// What a loop hands back when it ends.
#[derive(Debug)]
pub struct Outcome {
    /// Its counts.
    pub counts: Counts,
    /// `--warmup`: its counts when the warm-up ended.
    pub warmup: Option<Counts>,
    /// `--stages`: messages echoed in each stage.
    pub stages: Vec<u64>,
    /// The first error of each kind it saw.
    pub samples: Samples,
    /// Whether Ctrl-C ended it.
    pub interrupted: bool,
}
