//! Programs under test run as child processes: the real `echoloop`, the
//! examples, `echoloop-stress`. Each one's stdout and stderr are read line
//! by line on threads of their own (so that a full pipe never blocks it),
//! and every line is echoed to the test's output with the program's name:
//! a failing test shows what its children said.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use super::{wait_until, TIMEOUT};

/// One line a child wrote.
#[derive(Debug, Clone)]
pub struct Line {
    /// When it was read, from the start of the process.
    pub at: Duration,
    /// The line, without its end.
    pub text: String,
}

/// The lines of one of a child's pipes, as they come.
#[derive(Debug)]
pub struct Lines {
    /// Fed by the thread that reads the pipe; disconnected at end of file.
    rx: Receiver<Line>,
    /// Every line received so far, in order.
    pub seen: Vec<Line>,
    /// Where in `seen` the next [`Lines::wait_for`] starts looking.
    next: usize,
    /// End of file: every process that holds the pipe has closed it.
    closed: bool,
}

impl Lines {
    fn read(pipe: impl Read + Send + 'static, name: String, started: Instant) -> Lines {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for text in BufReader::new(pipe).lines() {
                let Ok(text) = text else { break };
                eprintln!("  [{name}] {text}");
                if tx
                    .send(Line {
                        at: started.elapsed(),
                        text,
                    })
                    .is_err()
                {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
            next: 0,
            closed: false,
        }
    }

    /// Takes in the next line, waiting for it until `deadline`. False at
    /// end of file or at the deadline.
    fn receive(&mut self, deadline: Instant) -> bool {
        if self.closed {
            return false;
        }
        match self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(line) => {
                self.seen.push(line);
                true
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
        }
    }

    /// Waits (up to [`TIMEOUT`]) for the next line that contains `needle`
    /// and returns it. "Next": after the line the last wait returned; the
    /// lines in between are passed over.
    #[track_caller]
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let new = &self.seen[self.next..];
            if let Some(i) = new.iter().position(|l| l.text.contains(needle)) {
                self.next += i + 1;
                return self.seen[self.next - 1].text.clone();
            }
            self.next = self.seen.len();
            if !self.receive(deadline) {
                let when = if self.closed {
                    "before the end of the output"
                } else {
                    "within the timeout"
                };
                panic!("no line containing {needle:?} {when} ({TIMEOUT:?})");
            }
        }
    }

    /// Every line that has come so far (taking in those that arrived, with
    /// no wait).
    pub fn so_far(&mut self) -> &[Line] {
        while self.receive(Instant::now()) {}
        &self.seen
    }

    /// Whether a line so far contains `needle`.
    pub fn contains(&mut self, needle: &str) -> bool {
        self.so_far().iter().any(|l| l.text.contains(needle))
    }

    /// Waits up to `limit` for end of file; returns whether it came.
    fn wait_closed(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.receive(deadline) {}
        self.closed
    }

    /// The lines received so far, joined.
    pub fn text(&self) -> String {
        let lines: Vec<&str> = self.seen.iter().map(|l| l.text.as_str()).collect();
        lines.join("\n")
    }
}

/// A child process with its output read line by line; killed (if still
/// running) and reaped when dropped.
#[derive(Debug)]
pub struct Process {
    /// Its name in messages and in front of its echoed lines.
    pub name: String,
    pub child: Child,
    /// When it was spawned: the clock of its [`Line`]s.
    pub started: Instant,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl Process {
    /// Spawns `cmd` with stdin closed, stdout and stderr read line by line.
    #[track_caller]
    pub fn spawn(name: &str, cmd: &mut Command) -> Process {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let started = Instant::now();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        Process {
            name: name.to_string(),
            stdout: Lines::read(out, name.to_string(), started),
            stderr: Lines::read(err, name.to_string(), started),
            child,
            started,
        }
    }

    /// Waits (up to [`TIMEOUT`]) for it to exit; returns its status.
    #[track_caller]
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut status = None;
        wait_until(&format!("{} to exit", self.name), TIMEOUT, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        status.expect("exited")
    }

    /// Sends `signal` to it.
    #[cfg(unix)]
    pub fn signal(&self, signal: i32) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) with a pid we spawned and still own (not reaped).
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill");
    }

    /// Waits up to `limit` for it to exit and close its output (failing,
    /// and killing it, after that); returns what it did.
    #[track_caller]
    pub fn finish(mut self, limit: Duration) -> Exit {
        assert!(
            self.stdout.wait_closed(limit),
            "{} still running after {limit:?}",
            self.name
        );
        let status = self.wait_exit();
        let took = self.started.elapsed();
        assert!(
            self.stderr.wait_closed(TIMEOUT),
            "{}: stderr still open after its exit",
            self.name
        );
        Exit {
            status,
            stdout: self.stdout.text(),
            stderr: std::mem::take(&mut self.stderr.seen),
            took,
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a process that ran to its end did.
#[derive(Debug)]
pub struct Exit {
    pub status: ExitStatus,
    /// All it wrote on stdout.
    pub stdout: String,
    /// Its stderr lines, with when each came.
    pub stderr: Vec<Line>,
    /// From its start to its exit.
    pub took: Duration,
}

impl Exit {
    /// All it wrote on stderr.
    pub fn stderr_text(&self) -> String {
        let lines: Vec<&str> = self.stderr.iter().map(|l| l.text.as_str()).collect();
        lines.join("\n")
    }

    /// Asserts a usage error — exit status 2 and one line on stderr, not a
    /// panic — for `what` (the arguments, in messages); returns the line.
    #[track_caller]
    pub fn assert_usage_error(&self, what: &str) -> String {
        let stderr = self.stderr_text();
        assert_eq!(self.status.code(), Some(2), "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        stderr
    }
}

/// A finished helper command's stdout if it succeeded; else an error
/// naming it (`what`), its status and what it said.
pub fn succeeded(what: &str, out: std::process::Output) -> Result<String, String> {
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(format!(
        "{what}: {}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    ))
}

/// Runs a helper command (a tool the tests use, not a program under test)
/// to its end with stdin closed: [`succeeded`] of it.
pub fn run_tool(what: &str, cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    succeeded(what, out)
}

/// Runs `cmd` to its exit, which must come within [`TIMEOUT`] (for a
/// command that should stop at once: a bad flag, `--help`).
#[track_caller]
pub fn run_to_exit(cmd: &mut Command) -> Exit {
    let program = Path::new(cmd.get_program())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Process::spawn(&program, cmd).finish(TIMEOUT)
}

/// A server program — the real `echoloop`, or an example — running as a
/// child process, and the address it said it listens on. It derefs to its
/// [`Process`].
#[derive(Debug)]
pub struct Binary {
    pub process: Process,
    /// The first address it listens on.
    pub addr: SocketAddr,
}

impl Binary {
    /// `process`, listening where its `line` (`… listening on ADDR`) says.
    #[track_caller]
    pub fn listening(process: Process, line: &str) -> Binary {
        let addr = Binary::listening_addr(line);
        Binary { process, addr }
    }

    /// The address in a `… listening on ADDR` line.
    #[track_caller]
    pub fn listening_addr(line: &str) -> SocketAddr {
        line.rsplit("listening on ")
            .next()
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }
}

impl Deref for Binary {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

impl DerefMut for Binary {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// Runs `cmd` to its exit (within [`TIMEOUT`]) with its stdout a pipe
/// whose read end is closed before it starts, as after `| head -1` has
/// gone: every write it makes to stdout fails (EPIPE; Rust's runtime
/// ignores SIGPIPE), deterministically. Its stderr is read as usual.
#[cfg(unix)]
#[track_caller]
pub fn run_with_closed_stdout(cmd: &mut Command) -> Exit {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills two descriptors we then own, one each.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: both descriptors were just created and nothing else owns them.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    let program = Path::new(cmd.get_program())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let started = Instant::now();
    let err = child.stderr.take().expect("piped stderr");
    let mut stderr = Lines::read(err, program.clone(), started);
    let mut status = None;
    wait_until(&format!("{program} to exit"), TIMEOUT, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    let took = started.elapsed();
    assert!(stderr.wait_closed(TIMEOUT), "{program}: stderr still open");
    Exit {
        status: status.expect("exited"),
        stdout: String::new(),
        stderr: stderr.seen,
        took,
    }
}
