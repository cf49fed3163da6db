//! The real `echoloop-stress` as a child process, and its JSON report.

use std::ops::Deref;
use std::process::Command;
use std::time::Duration;

use serde_json::Value as Json;

use super::{Exit, Process};

/// The stress client.
pub const STRESS: &str = env!("CARGO_BIN_EXE_echoloop-stress");

/// A running `echoloop-stress` (a [`Process`]: its status lines on stderr
/// are collected as it runs).
#[derive(Debug)]
pub struct Stress {
    pub process: Process,
}

impl Stress {
    /// Starts `cmd`, an `echoloop-stress` command line.
    #[track_caller]
    pub fn spawn(cmd: &mut Command) -> Stress {
        Stress {
            process: Process::spawn("echoloop-stress", cmd),
        }
    }

    /// Waits for it to exit (killing it and failing after `limit`).
    #[track_caller]
    pub fn finish(self, limit: Duration) -> StressRun {
        StressRun {
            exit: self.process.finish(limit),
        }
    }
}

impl Deref for Stress {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

/// What one run of `echoloop-stress --json` did: its [`Exit`] (the report
/// is its stdout), with the report's fields read on demand.
#[derive(Debug)]
pub struct StressRun {
    pub exit: Exit,
}

impl StressRun {
    /// A top-level field of the report as written (a number, `null`,
    /// `true`/`false`, or a string without its quotes).
    #[track_caller]
    pub fn field(&self, key: &str) -> &str {
        json_field(&self.exit.stdout, key)
    }

    /// A top-level number of the report (`messages`, `bytes`, …).
    #[track_caller]
    pub fn u64(&self, key: &str) -> u64 {
        let v = self.field(key);
        v.parse()
            .unwrap_or_else(|_| panic!("{key} = {v:?} is not an integer"))
    }

    /// A top-level or nested float: `f64("mib_per_sec")`,
    /// `f64("connect_latency_us.p99")`.
    #[track_caller]
    pub fn f64(&self, path: &str) -> f64 {
        let report = self.exit.stdout.as_str();
        let (scope, key) = match path.split_once('.') {
            Some((object, key)) => {
                let start = report
                    .find(&format!("\"{object}\": {{"))
                    .unwrap_or_else(|| panic!("no {object} object in\n{report}"));
                let rest = &report[start..];
                (&rest[..rest.find('}').unwrap_or(rest.len())], key)
            }
            None => (report, path),
        };
        let v = json_field(scope, key);
        v.parse()
            .unwrap_or_else(|_| panic!("{path} = {v:?} is not a number"))
    }

    /// The report, parsed (failing, with the output, if it is not JSON).
    #[track_caller]
    pub fn json(&self) -> Json {
        serde_json::from_str(&self.exit.stdout)
            .unwrap_or_else(|e| panic!("report is not JSON ({e}):\n{}", self.describe()))
    }

    /// Asserts the exit status, showing the output if it differs.
    #[track_caller]
    pub fn assert_exit(&self, code: i32) {
        assert_eq!(self.status.code(), Some(code), "{}", self.describe());
    }

    /// The exit code and the whole output, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "exit {:?} after {:?}\n{}\n{}",
            self.status.code(),
            self.took,
            self.stdout,
            self.stderr_text()
        )
    }
}

impl Deref for StressRun {
    type Target = Exit;
    fn deref(&self) -> &Exit {
        &self.exit
    }
}

/// The value of `"key": value` in `json` (the first one).
#[track_caller]
fn json_field<'a>(json: &'a str, key: &str) -> &'a str {
    let needle = format!("\"{key}\": ");
    let start = json
        .find(&needle)
        .unwrap_or_else(|| panic!("no {key:?} in report:\n{json}"))
        + needle.len();
    let rest = &json[start..];
    let end = rest.find([',', '\n', '}']).unwrap_or(rest.len());
    rest[..end].trim().trim_matches('"')
}

/// Reading a parsed report's values, failing the test with what was there
/// instead when a value is not of the kind asked for.
pub trait Field {
    /// A number.
    fn f64(&self) -> f64;
    /// A non-negative whole number.
    fn u64(&self) -> u64;
    /// A string.
    fn str(&self) -> &str;
}

impl Field for Json {
    #[track_caller]
    fn f64(&self) -> f64 {
        self.as_f64()
            .unwrap_or_else(|| panic!("{self} is not a number"))
    }

    #[track_caller]
    fn u64(&self) -> u64 {
        self.as_u64()
            .unwrap_or_else(|| panic!("{self} is not a count"))
    }

    #[track_caller]
    fn str(&self) -> &str {
        self.as_str()
            .unwrap_or_else(|| panic!("{self} is not a string"))
    }
}
