//! How both binaries write to stdout without panicking.
//!
//! `println!` panics when stdout is gone (a reader that closed its pipe:
//! `echoloop --completions zsh | head -1`; Rust ignores SIGPIPE, so the
//! write fails with EPIPE), and so does `clap_complete::generate`. Every
//! stdout write goes through [`to_stdout`] instead: what was to be printed
//! is rendered whole first, then written; a failure is one line on stderr
//! and a non-zero exit, never a panic.
//!
//! Included by each binary's `main` with `#[path]`, as `usage.rs` is.

use std::io::{self, Write};

/// Exit status of `echoloop` (and of `--help`/`--version` in both
/// binaries) when stdout cannot take what was asked for. The stress client
/// exits with its setup status instead, as for its other output files.
pub const EXIT_OUTPUT: u8 = 1;

/// Writes `bytes` to stdout and flushes; on failure says so in one line on
/// stderr, prefixed with `program`, and returns false.
#[must_use]
pub fn to_stdout(program: &str, bytes: &[u8]) -> bool {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(why) => {
            report_failure(program, &why);
            false
        }
    }
}

/// The one line for a write to stdout that failed.
pub fn report_failure(program: &str, why: &io::Error) {
    eprintln!("{program}: write to stdout: {why}");
}
