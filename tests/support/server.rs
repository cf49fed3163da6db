//! The server under test: in-process on a thread ([`TestServer`]), or the
//! real `echoloop` binary as a child process ([`Binary`]), whose log lines
//! (stats lines among them) the test reads.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use echoloop::{Config, Handle, Server, Stats};

use super::{assert_same, read_until_closed, wait_until, Binary, Process, TIMEOUT};

/// A thread-per-connection blocking echo server on 127.0.0.1:0 (anyone's
/// RFC 862 server, not ours: what a test compares with, or checks the
/// stress client against); its threads end with the test process.
pub fn threaded_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || echo_all(stream));
        }
    });
    addr
}

/// Echoes one connection until it closes.
fn echo_all(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

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
        TestServer::run(Server::bind(config).expect("bind test server"))
    }

    /// Runs `server`, built by the test, on its own thread.
    pub fn run(server: Server) -> TestServer {
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

impl Binary {
    /// Starts the real `echoloop` with `args` (plus `--listen 127.0.0.1:0`
    /// and `RUST_LOG=info`) and waits for its "listening on" log line.
    #[track_caller]
    pub fn start(args: &[&str]) -> Binary {
        Self::start_with(Command::new(ECHOLOOP).args(args))
    }

    /// Like [`Binary::start`] with a prepared command (e.g. with a lower
    /// open-file limit, or in a network namespace).
    #[track_caller]
    pub fn start_with(cmd: &mut Command) -> Binary {
        let cmd = cmd
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info");
        let mut process = Process::spawn("echoloop", cmd);
        let line = process.stderr.wait_for("listening on");
        Binary::listening(process, &line)
    }

    /// Stops it with SIGTERM (once: a second would exit at once, with
    /// 130), asserts it exits 0, and returns its final counters line.
    #[cfg(unix)]
    #[track_caller]
    pub fn stop(&mut self) -> String {
        self.signal(libc::SIGTERM);
        let last = self.stderr.wait_for("stopped:");
        assert_eq!(self.wait_exit().code(), Some(0), "{last}");
        last
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
        self.stderr.wait_for("shutting down");
        let got = read_until_closed(&stream);
        drop(stream);
        let _ = writer.join();
        let last = self.stderr.wait_for("stopped:");
        assert_eq!(self.wait_exit().code(), Some(0));
        assert_eq!(stat(&last, "bytes_out"), got.len() as u64, "{last}");
        assert_eq!(stat(&last, "bytes_in"), got.len() as u64, "{last}");
        assert_same(&got, &sent[..got.len()]);
    }
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
        let line = server.stderr.wait_for("stats:");
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

/// Starts a thread-per-connection TCP server on 127.0.0.1:0 (anyone's
/// server, not ours) that hands each connection to `serve`; its threads
/// are detached and end with the test process.
pub fn thread_per_connection(serve: fn(TcpStream)) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream));
        }
    });
    addr
}

/// The value of the series `name` (exactly, labels included) in a
/// Prometheus exposition.
#[track_caller]
pub fn series(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {name} in:\n{text}"))
        .parse::<f64>()
        .expect("a number") as u64
}
