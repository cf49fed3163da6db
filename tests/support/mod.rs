//! The one helper module of the integration tests. Each test file declares
//! it once (`pub mod support;`) and takes what it needs (`use support::*;`).
//!
//! - [`server`]: the server under test — in-process ([`TestServer`]) or the
//!   real binary ([`Binary`]) — and its `key=value` stats lines;
//! - [`process`]: programs run as child processes, their output read line
//!   by line;
//! - [`bytes`]: connecting, each client's verifiable byte stream, and the
//!   checks on what comes back;
//! - [`measure`]: facts about a process from `/proc`, and round-trip
//!   summaries;
//! - [`stress_client`]: the real `echoloop-stress`, its command lines and
//!   its run;
//! - [`stress_report`]: its `--json` report, typed;
//! - [`fleet`]: hundreds of non-blocking clients on one thread;
//! - [`netns`]: the fault lab, a network namespace whose loopback the test
//!   breaks (Linux);
//! - [`tls`]: certificates made by the tests, a rustls client, and
//!   Python's `ssl` client (`tls_client.py`);
//! - [`tools`]: the programs some tests run besides ours, installed when
//!   missing, and the rule for one that cannot be had;
//! - [`browser`]: a page rendered by headless Chromium, its screenshot
//!   decoded (Linux).
//!
//! Every wait has a deadline; none is a sleep.

#[cfg(target_os = "linux")]
pub mod browser;
pub mod bytes;
pub mod fleet;
pub mod measure;
#[cfg(target_os = "linux")]
pub mod netns;
pub mod process;
pub mod server;
pub mod stress_client;
pub mod stress_report;
pub mod tls;
pub mod tools;

pub use bytes::*;
pub use measure::*;
pub use process::*;
pub use server::*;
pub use stress_client::*;
pub use stress_report::Report;

use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Polls `cond` until it holds, failing after `limit` ([`TIMEOUT`] for
/// most waits). The deadline is the synchronisation; the short nap between
/// checks only saves CPU.
#[track_caller]
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(2));
    }
}

/// Runs the heavy scenarios of one test binary one at a time: each loads the
/// 2 cores of a CI machine on its own, and their timing and memory bounds
/// mean something only if they do not share the machine with each other.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
