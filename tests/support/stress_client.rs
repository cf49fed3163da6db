//! The real `echoloop-stress` as a child process: its command line
//! ([`StressArgs`]), the running process ([`Stress`]) and what it reported
//! ([`StressRun`], read through [`Report`]).

use std::ffi::OsStr;
use std::fmt::Display;
use std::ops::Deref;
use std::process::Command;
use std::time::Duration;

use serde_json::Value as Json;

use super::{Exit, Process, Report};

/// The stress client.
pub const STRESS: &str = env!("CARGO_BIN_EXE_echoloop-stress");

/// An `echoloop-stress` command line, flag by flag: the one way the tests
/// build one. The common flags have a method each; any other goes through
/// [`flag`](Self::flag), [`switch`](Self::switch) or [`args`](Self::args).
#[derive(Debug, Clone, Default)]
pub struct StressArgs {
    argv: Vec<String>,
}

impl StressArgs {
    /// No flags at all (for `--help`, `merge`, usage errors).
    pub fn new() -> StressArgs {
        StressArgs::default()
    }

    /// A run against `addr` (`--addr`).
    pub fn to(addr: impl Display) -> StressArgs {
        StressArgs::new().flag("--addr", addr)
    }

    /// `name value`.
    pub fn flag(mut self, name: &str, value: impl Display) -> StressArgs {
        self.argv.push(name.to_string());
        self.argv.push(value.to_string());
        self
    }

    /// `name` alone.
    pub fn switch(mut self, name: &str) -> StressArgs {
        self.argv.push(name.to_string());
        self
    }

    /// Each of `more`, as given.
    pub fn args<S: AsRef<str>>(mut self, more: impl IntoIterator<Item = S>) -> StressArgs {
        self.argv
            .extend(more.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// `--connections`.
    pub fn conns(self, n: u64) -> StressArgs {
        self.flag("--connections", n)
    }

    /// `--message-size`.
    pub fn size(self, bytes: u64) -> StressArgs {
        self.flag("--message-size", bytes)
    }

    /// `--pipeline`.
    pub fn pipeline(self, k: u64) -> StressArgs {
        self.flag("--pipeline", k)
    }

    /// `--messages`.
    pub fn messages(self, n: u64) -> StressArgs {
        self.flag("--messages", n)
    }

    /// `--duration`, in seconds.
    pub fn secs(self, secs: f64) -> StressArgs {
        self.flag("--duration", secs)
    }

    /// `--rate`, per connection.
    pub fn rate(self, per_sec: f64) -> StressArgs {
        self.flag("--rate", per_sec)
    }

    /// `--threads`.
    pub fn threads(self, n: u64) -> StressArgs {
        self.flag("--threads", n)
    }

    /// `--mode`.
    pub fn mode(self, mode: &str) -> StressArgs {
        self.flag("--mode", mode)
    }

    /// `--echo-timeout`, in seconds.
    pub fn echo_timeout(self, secs: f64) -> StressArgs {
        self.flag("--echo-timeout", secs)
    }

    /// `--json`.
    pub fn json(self) -> StressArgs {
        self.switch("--json")
    }

    /// `--udp`.
    pub fn udp(self) -> StressArgs {
        self.switch("--udp")
    }

    /// The arguments, for a [`Command`] built elsewhere (the fault lab's).
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// The command, ready to spawn.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(STRESS);
        cmd.args(self.argv.iter().map(OsStr::new));
        cmd
    }

    /// Starts it.
    #[track_caller]
    pub fn spawn(&self) -> Stress {
        Stress::spawn(&mut self.command())
    }

    /// Runs it to its exit (killing it and failing after `limit`).
    #[track_caller]
    pub fn run(&self, limit: Duration) -> StressRun {
        self.spawn().finish(limit)
    }
}

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
/// is its stdout).
#[derive(Debug)]
pub struct StressRun {
    pub exit: Exit,
}

impl StressRun {
    /// The report, typed (failing, with the output, if it is not one).
    #[track_caller]
    pub fn report(&self) -> Report {
        serde_json::from_str(&self.exit.stdout)
            .unwrap_or_else(|e| panic!("not a stress report ({e}):\n{}", self.describe()))
    }

    /// Asserts the typed report holds every field the binary wrote
    /// ([`Report::assert_mirrors`]).
    #[track_caller]
    pub fn assert_report_mirrored(&self) {
        Report::assert_mirrors(&self.exit.stdout);
    }

    /// The report as untyped JSON (failing, with the output, if it is not
    /// JSON), for the few checks of the text itself.
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
