//! The C reference servers of `bench/reference/`, which `bench/run.py`
//! measures echoloop against: built with the system's C compiler, as the
//! script builds them, and checked to be correct echo servers — a
//! reference that dropped or reordered bytes would make any comparison with
//! it meaningless. See docs/benchmarks.md.

#![cfg(target_os = "linux")]

pub mod support;

use std::io::Write;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use support::{assert_echo, connect, payload, TIMEOUT};

/// Compiles `src` into `exe` with `cc`, warnings as errors.
fn build(cc: &str, src: &Path, exe: &Path) {
    let out = Command::new(cc)
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(exe)
        .arg(src)
        .output()
        .expect("run the C compiler");
    assert!(
        out.status.success(),
        "{cc} {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A reference server, killed when dropped.
struct Reference {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds `bench/reference/NAME.c` (cc, else gcc) and starts it on
/// 127.0.0.1:0; None, after saying why, when there is no C compiler (a
/// failure under CI, which has one).
fn reference(name: &str) -> Option<Reference> {
    reference_with(name, &[])
}

/// [`reference`], started with `args` before its address.
fn reference_with(name: &str, args: &[&str]) -> Option<Reference> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("bench/reference/{name}.c"));
    let exe = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let Some(cc) = ["cc", "gcc"]
        .into_iter()
        .find(|cc| Command::new(cc).arg("--version").output().is_ok())
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no C compiler (cc, gcc) under CI"
        );
        eprintln!(
            "SKIPPED: no C compiler (cc or gcc) to build {}",
            src.display()
        );
        return None;
    };
    // Built once per test binary: the tests run in parallel, and writing an
    // executable another test is running fails (ETXTBSY).
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !built.iter().any(|b| b == name) {
        build(cc, &src, &exe);
        built.push(name.to_string());
    }
    drop(built);
    let mut child = Command::new(&exe)
        .args(args)
        .arg("127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the reference server");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .expect("read its first line");
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{name} printed {first:?}"));
    let addr = addr
        .trim()
        .parse()
        .expect("an address after `listening on`");
    Some(Reference { child, addr })
}

/// epoll_echo echoes 1 byte to 16 MiB byte-exact, each followed by the
/// close that answers the client's half-close: the large ones fill both
/// socket buffers, so the partial-write path (keep the rest, wait for
/// EPOLLOUT, resume reading) carries most of the bytes.
#[test]
fn epoll_echo_is_byte_exact_from_1_byte_to_16_mib() {
    let Some(server) = reference("epoll_echo") else {
        return;
    };
    for (i, len) in [1, 4096, 64 * 1024 + 1, 1 << 20, 16 << 20]
        .into_iter()
        .enumerate()
    {
        assert_echo(&connect(server.addr), &payload(i, len));
    }
}

/// 100 clients at once each get their own bytes back, while clients that
/// reset with data unread come and go: a reset closes only that connection.
#[test]
fn epoll_echo_serves_100_clients_while_others_reset() {
    let Some(server) = reference("epoll_echo") else {
        return;
    };
    let addr = server.addr;
    let clients: Vec<_> = (0..100usize)
        .map(|i| thread::spawn(move || assert_echo(&connect(addr), &payload(i, 200_000))))
        .collect();
    for _ in 0..20 {
        let rude = connect(addr);
        (&rude).write_all(&[7; 100_000]).expect("write");
        // SO_LINGER 0: the close below sends a reset, not a FIN
        socket2::SockRef::from(&rude)
            .set_linger(Some(Duration::ZERO))
            .expect("linger 0");
    }
    for c in clients {
        c.join().expect("client");
    }
    assert_echo(&connect(addr), b"still serving");
}

/// udp_echo sends each datagram back whole, empty and 65,507 bytes
/// included, to the address it came from, for 100 sockets at once.
#[test]
fn udp_echo_returns_each_datagram_to_its_source() {
    let Some(server) = reference("udp_echo") else {
        return;
    };
    let socket = |_| {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        s
    };
    let one = socket(0);
    let mut buf = vec![0; 70_000];
    for (i, len) in [0, 1, 1400, 65_507].into_iter().enumerate() {
        let sent = payload(i, len);
        one.send_to(&sent, server.addr).expect("send_to");
        let (n, from) = one.recv_from(&mut buf).expect("echo");
        assert_eq!(
            (&buf[..n], from),
            (&sent[..], server.addr),
            "datagram of {len} bytes"
        );
    }
    let many: Vec<UdpSocket> = (0..100).map(socket).collect();
    for (i, s) in many.iter().enumerate() {
        s.send_to(&payload(100 + i, 512), server.addr)
            .expect("send_to");
    }
    for (i, s) in many.iter().enumerate() {
        let (n, _) = s.recv_from(&mut buf).expect("echo");
        assert_eq!(&buf[..n], &payload(100 + i, 512)[..], "socket {i}");
    }
}

/// udp_echo --buffers: with the socket buffers echoloop asks for (4 MiB) it
/// serves as before; a size that is not one is a usage error (exit 2, one
/// line naming the flag).
#[test]
fn udp_echo_takes_socket_buffers_and_refuses_a_bad_size() {
    let Some(server) = reference_with("udp_echo", &["--buffers", "4194304"]) else {
        return;
    };
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let sent = payload(7, 1400);
    socket.send_to(&sent, server.addr).expect("send_to");
    let mut buf = vec![0; 2048];
    let (n, from) = socket.recv_from(&mut buf).expect("echo");
    assert_eq!((&buf[..n], from), (&sent[..], server.addr));
    let exe = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("udp_echo");
    let out = Command::new(exe)
        .args(["--buffers", "lots", "127.0.0.1:0"])
        .output()
        .expect("run udp_echo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--buffers"), "{stderr}");
}
