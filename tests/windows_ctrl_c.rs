//! Ctrl-C on Windows: the console counterpart of the Unix SIGTERM tests in
//! `tests/shutdown.rs`. The first Ctrl-C shuts the real binary down
//! gracefully (flush, exit 0); a second one exits at once with 130.
//!
//! A console control event can only be sent to processes sharing the
//! sender's console, so the server is started in a console of its own
//! (`CREATE_NEW_CONSOLE`) and a separate helper process attaches to that
//! console and raises Ctrl-C there. The helper is this test executable run
//! again with only [`send_ctrl_c_helper`] selected: attaching the test
//! process itself to another console would take the harness's output with
//! it. Runs on Windows and under Wine (`.ci/windows.sh`).

#![cfg(windows)]

pub mod support;

use std::io::Write;
use std::os::windows::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// `CreateProcess` flag: the child gets a new console instead of ours.
const CREATE_NEW_CONSOLE: u32 = 0x0000_0010;
/// `GenerateConsoleCtrlEvent` event: Ctrl-C.
const CTRL_C_EVENT: u32 = 0;
/// Set (to a process id) only in the helper process.
const PID_VAR: &str = "ECHOLOOP_TEST_CTRL_C_PID";

type HandlerRoutine = unsafe extern "system" fn(ctrl_type: u32) -> i32;

#[link(name = "kernel32")]
extern "system" {
    fn FreeConsole() -> i32;
    fn AttachConsole(process_id: u32) -> i32;
    fn SetConsoleCtrlHandler(handler: Option<HandlerRoutine>, add: i32) -> i32;
    fn GenerateConsoleCtrlEvent(ctrl_event: u32, process_group_id: u32) -> i32;
}

/// Not a test of its own: in the helper process (the variable set), attaches
/// to the console of the process it names and raises Ctrl-C there; in a
/// normal run it does nothing.
#[test]
fn send_ctrl_c_helper() {
    let Ok(pid) = std::env::var(PID_VAR) else {
        return;
    };
    let pid: u32 = pid.parse().expect("process id");
    let last_error = std::io::Error::last_os_error;
    // SAFETY: plain kernel32 calls with no pointers; this process only exits
    // afterwards, so leaving our own console and ignoring Ctrl-C is harmless.
    unsafe {
        FreeConsole(); // fails if we had no console, which is fine
        assert_ne!(
            AttachConsole(pid),
            0,
            "AttachConsole({pid}): {}",
            last_error()
        );
        // The event goes to every process on the console, this one included.
        assert_ne!(
            SetConsoleCtrlHandler(None, 1),
            0,
            "SetConsoleCtrlHandler: {}",
            last_error()
        );
        assert_ne!(
            GenerateConsoleCtrlEvent(CTRL_C_EVENT, 0),
            0,
            "GenerateConsoleCtrlEvent: {}",
            last_error()
        );
    }
}

/// Starts the binary with `args` in a console of its own, so that Ctrl-C can
/// be sent to it alone.
#[track_caller]
fn start_in_new_console(args: &[&str]) -> Binary {
    Binary::start_with(
        Command::new(ECHOLOOP)
            .args(args)
            .creation_flags(CREATE_NEW_CONSOLE),
    )
}

/// Presses Ctrl-C in `server`'s console (by way of the helper process) and
/// returns once the event has been raised.
#[track_caller]
fn send_ctrl_c(server: &Binary) {
    let exe = std::env::current_exe().expect("test executable");
    let started = Instant::now();
    let out = Command::new(exe)
        .args([
            "send_ctrl_c_helper",
            "--exact",
            "--quiet",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PID_VAR, server.child.id().to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run the Ctrl-C helper");
    assert!(
        out.status.success(),
        "Ctrl-C helper failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("  Ctrl-C sent in {:?}", started.elapsed());
}

/// Ctrl-C to the real binary while a client that is not reading is owed a
/// full pending buffer: it shuts down gracefully, flushing what was pending
/// (the client gets exactly the bytes the server reports echoing, a prefix
/// of what it sent, and `bytes_in == bytes_out`), and exits 0.
#[test]
fn ctrl_c_flushes_and_exits_zero() {
    let mut server = start_in_new_console(&["--stats-interval", "0.05", "--shutdown-grace", "15"]);
    let stream = connect(server.addr);
    let data = payload(8, 8 << 20);
    let writer = spawn_writer(&stream, data.clone());
    server.stderr.wait_for("pending_bytes=65536");
    send_ctrl_c(&server);
    server.assert_graceful_exit(stream, writer, &data);
}

/// A second Ctrl-C during a long graceful shutdown (a client owed output
/// keeps it waiting for up to 60 s) exits at once, with code 130.
#[test]
fn second_ctrl_c_exits_at_once() {
    let mut server = start_in_new_console(&["--shutdown-grace", "60"]);
    let stream = connect(server.addr);
    let writer = spawn_writer(&stream, payload(9, 8 << 20));
    // A client that never reads or closes keeps the graceful shutdown
    // waiting (for the whole 60 s grace, were it not for the second signal).
    (&stream).write_all(b"x").ok();
    send_ctrl_c(&server);
    server.stderr.wait_for("shutting down");
    // Timed from before the helper starts, as it takes ~0.1-0.3 s under
    // Wine; still far below the 60 s grace.
    let started = Instant::now();
    send_ctrl_c(&server);
    assert_eq!(server.wait_exit().code(), Some(130));
    let took = started.elapsed();
    eprintln!("  exited {took:?} after the second Ctrl-C was started");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    drop(stream);
    let _ = writer.join();
}
