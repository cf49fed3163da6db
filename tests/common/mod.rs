//! Helpers shared by the integration tests: start a server on 127.0.0.1:0
//! (in-process or the real binary), connect, echo, and wait on conditions
//! with deadlines instead of sleeping.

#![allow(dead_code)] // each test file uses a different subset

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use echoloop::{Config, Handle, Server, Stats};

/// How long any single wait in a test may take before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A server running on its own thread, shut down when dropped.
pub struct TestServer {
    /// The first listen address.
    pub addr: SocketAddr,
    /// Every listen address.
    pub addrs: Vec<SocketAddr>,
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

    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    /// Asks for a graceful shutdown and returns the final counters.
    #[track_caller]
    pub fn stop(mut self) -> Stats {
        self.handle.shutdown().expect("wake the loop");
        let thread = self.thread.take().unwrap();
        wait_until("server thread to finish", || thread.is_finished());
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

/// Connects with read and write timeouts, so a hung server fails the test
/// instead of hanging it.
#[track_caller]
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to test server");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Polls `cond` until it holds, failing after [`TIMEOUT`]. The deadline is
/// the synchronisation; the short nap between checks only saves CPU.
#[track_caller]
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// Deterministic, non-repeating-looking bytes (all 256 values, NULs
/// included) for connection `seed`.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Sends `data` from a writer thread while this thread reads, then
/// half-closes; asserts the echo is byte-exact and followed by end of stream.
#[track_caller]
pub fn assert_echo(stream: &TcpStream, data: &[u8]) {
    let got = echo_all(stream, data);
    assert_same(&got, data);
}

/// Sends `data` (writer thread), shuts down the write side, and returns
/// everything read until end of stream.
pub fn echo_all(stream: &TcpStream, data: &[u8]) -> Vec<u8> {
    let mut writer = stream.try_clone().unwrap();
    let owned = data.to_vec();
    let sender = thread::spawn(move || {
        writer.write_all(&owned).expect("write to server");
        writer.shutdown(Shutdown::Write).expect("shutdown(Write)");
    });
    let mut got = Vec::with_capacity(data.len());
    (&*stream).read_to_end(&mut got).expect("read echo");
    sender.join().expect("writer thread");
    got
}

/// Asserts two byte strings are equal, reporting the first difference
/// instead of dumping megabytes.
#[track_caller]
pub fn assert_same(got: &[u8], want: &[u8]) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "echo differs: got {} bytes, want {}; first differing byte at {:?}",
            got.len(),
            want.len(),
            first
        );
    }
}

/// Reads until end of stream or an error (a reset counts as the end);
/// returns what arrived.
pub fn read_until_closed(stream: &TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                panic!("server did not close within {TIMEOUT:?}")
            }
            Err(_) => return got,
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
        Self::start_with(Command::new(env!("CARGO_BIN_EXE_echoloop")).args(args))
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
        assert_eq!(stat_field(&last, "bytes_out"), got.len() as u64, "{last}");
        assert_eq!(stat_field(&last, "bytes_in"), got.len() as u64, "{last}");
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
pub fn stat_field(line: &str, key: &str) -> u64 {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        .parse()
        .expect("numeric stat")
}

/// Writes `data` on a clone of `stream` from a new thread; returns the
/// thread, which yields how many bytes it wrote before an error (if any).
pub fn spawn_writer(stream: &TcpStream, data: Vec<u8>) -> JoinHandle<usize> {
    let mut writer = stream.try_clone().unwrap();
    thread::spawn(move || {
        let mut sent = 0;
        for chunk in data.chunks(16 * 1024) {
            if writer.write_all(chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    })
}

/// The real binary as a command whose open-file limit, soft and hard, is
/// `limit`: the server raises its soft limit to the hard one, so this is
/// what it gets.
#[cfg(unix)]
pub fn echoloop_with_fd_limit(limit: u64) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_echoloop"));
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

/// utime + stime of a process, in clock ticks (1/100 s), from /proc.
#[cfg(target_os = "linux")]
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, the 12th and 13th after it.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}
