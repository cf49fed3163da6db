//! The server under test: in-process on a thread ([`TestServer`]), or the
//! real `echoloop` binary as a child process ([`Binary`]), whose log lines
//! (stats lines among them) the test reads.

use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use echoloop::{Config, Handle, Server, Stats};

use super::{assert_same, read_until_closed, wait_until, TIMEOUT};

/// The server binary under test.
pub const ECHOLOOP: &str = env!("CARGO_BIN_EXE_echoloop");

/// A server running on its own thread, shut down when dropped.
pub struct TestServer {
    /// The first listen address.
    pub addr: SocketAddr,
    /// Every listen address.
    pub addrs: Vec<SocketAddr>,
    /// Its counters, and its shutdown.
    pub handle: Handle,
    thread: Option<JoinHandle<io::Result<Stats>>>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1:0 with the defaults, after `tweak`.
    pub fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..Config::default()
        };
        tweak(&mut config);
        let server = Server::bind(config).expect("bind test server");
        let addrs = server.local_addrs();
        let addr = addrs[0];
        let handle = server.handle();
        let thread = Some(thread::spawn(move || server.run()));
        TestServer {
            addr,
            addrs,
            handle,
            thread,
        }
    }

    /// Asks for a graceful shutdown and returns the final counters.
    #[track_caller]
    pub fn stop(mut self) -> Stats {
        self.handle.shutdown().expect("wake the loop");
        let thread = self.thread.take().unwrap();
        wait_until("server thread to finish", TIMEOUT, || thread.is_finished());
        thread
            .join()
            .expect("server thread panicked")
            .expect("server run failed")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.handle.shutdown();
            let _ = thread.join();
        }
    }
}

/// The real `echoloop` binary, started on 127.0.0.1:0 with `args`; stderr
/// (the log) is read line by line on a thread.
pub struct Binary {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every log line read so far, in order (what a wait skipped included).
    pub seen: Vec<String>,
    lines: mpsc::Receiver<String>,
}

impl Binary {
    /// Starts the binary with `args` (plus `--listen 127.0.0.1:0` and
    /// `RUST_LOG=info`) and waits for its "listening on" line.
    #[track_caller]
    pub fn start(args: &[&str]) -> Binary {
        Self::start_with(Command::new(ECHOLOOP).args(args))
    }

    /// Like [`Binary::start`] with a prepared command (e.g. with a lower
    /// open-file limit).
    #[track_caller]
    pub fn start_with(cmd: &mut Command) -> Binary {
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn echoloop");
        let lines = read_lines(child.stderr.take().unwrap());
        let mut binary = Binary {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            seen: Vec::new(),
            lines,
        };
        let line = binary.wait_for_line("listening on");
        let addr = line.rsplit("listening on ").next().unwrap().trim();
        binary.addr = addr.parse().expect("address in the listening line");
        binary
    }

    /// Waits for a log line containing `needle` and returns it.
    #[track_caller]
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no log line containing {needle:?} within {TIMEOUT:?}"),
            }
        }
    }

    /// Waits for the process to exit and returns its exit code.
    #[track_caller]
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "echoloop did not exit within {TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// After a shutdown signal, with `stream` a client that had not been
    /// reading and `writer` its sender: reads until the server closes,
    /// then asserts a graceful exit — code 0, and the client got exactly
    /// the bytes the server's final stats say it read and echoed, a prefix
    /// of `sent`.
    #[track_caller]
    pub fn assert_graceful_exit(
        &mut self,
        stream: TcpStream,
        writer: JoinHandle<usize>,
        sent: &[u8],
    ) {
        self.wait_for_line("shutting down");
        let got = read_until_closed(&stream);
        drop(stream);
        let _ = writer.join();
        let last = self.wait_for_line("stopped:");
        assert_eq!(self.wait_exit(), Some(0));
        assert_eq!(stat(&last, "bytes_out"), got.len() as u64, "{last}");
        assert_eq!(stat(&last, "bytes_in"), got.len() as u64, "{last}");
        assert_same(&got, &sent[..got.len()]);
    }

    /// Sends a signal (Unix) to the process.
    #[cfg(unix)]
    pub fn signal(&self, signal: i32) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) with a pid we spawned and still own (not reaped).
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill");
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("  [echoloop] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Parses `key=value` from a stats log line.
#[track_caller]
pub fn stat(line: &str, key: &str) -> u64 {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        .parse()
        .expect("numeric stat")
}

/// Waits (up to `limit`) for a `stats:` line of a binary started with
/// `--stats-interval` that satisfies `pred`, and returns it.
#[track_caller]
pub fn wait_for_stats(
    server: &mut Binary,
    what: &str,
    limit: Duration,
    mut pred: impl FnMut(&str) -> bool,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        // Each wait_for_line is bounded by TIMEOUT; stats lines come far
        // more often than that.
        let line = server.wait_for_line("stats:");
        if pred(&line) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}; last: {line}"
        );
    }
}

/// The real binary as a command whose open-file limit, soft and hard, is
/// `limit`: the server raises its soft limit to the hard one, so this is
/// what it gets.
#[cfg(unix)]
pub fn echoloop_with_fd_limit(limit: u64) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(ECHOLOOP);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}
