//! # fork_per_connection: one process per client (Unix only)
//!
//! The classic Unix server: the parent accepts; after each `accept` it calls
//! `fork`, and the child process serves that one client with the blocking
//! recv/send loop of `accept_one`, then exits. Each side closes the socket it
//! does not need: the child its copy of the listening socket, the parent its
//! copy of the client's socket (otherwise the client would never see the
//! connection close: a socket is closed when its LAST descriptor is).
//!
//! A child that has exited stays a "zombie" (a process table entry holding
//! its exit status) until its parent collects it with `wait`/`waitpid`.
//! The parent reaps with `waitpid(-1, WNOHANG)` (collect every finished
//! child, never block) each time it wakes. To wake as soon as a child exits,
//! it installs a SIGCHLD handler that does nothing; the signal interrupts
//! the parent's wait for the next client (`poll` on the listening socket
//! returns EINTR), and the loop reaps. The handler itself touches nothing,
//! which keeps it async-signal-safe. The `poll` also has a 1 s timeout, so a
//! SIGCHLD that lands just between reaping and `poll` delays the reaping by
//! at most a second instead of until the next client.
//!
//! ## When it is the right choice
//!
//! When clients must be isolated from each other: a crash, a leak or a
//! privilege change (e.g. `setuid` to the logged-in user, as sshd does) in
//! one child cannot touch the others. It costs a process per client (a fork,
//! page tables, a scheduler entry), more than a thread, and there is no
//! shared memory between clients without extra work. Windows has no `fork`:
//! there the example prints why it is unavailable and exits 0.
//!
//! ## Run it
//!
//! ```text
//! cargo run --example fork_per_connection -- 127.0.0.1:7878
//! nc 127.0.0.1 7878          # several at once; watch `ps -f --ppid PID`
//! ```
//!
//! The first line on stdout is `listening on ADDR` (port 0 picks a free
//! port). The parent runs until killed; its children exit on their own when
//! their client is done.

#[cfg(unix)]
fn main() {
    if let Err(e) = unix::run() {
        eprintln!("fork_per_connection: {e}");
        std::process::exit(1);
    }
}

#[cfg(not(unix))]
fn main() {
    eprintln!(
        "fork_per_connection: unavailable on this platform: fork(2) exists only on Unix. \
         Windows creates processes only from an executable (CreateProcess), so a \
         process per client there means passing the socket to a new process \
         (WSADuplicateSocket); see thread_per_connection for the portable model."
    );
}

#[cfg(unix)]
mod unix {
    use std::io::{self, Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    pub fn run() -> io::Result<()> {
        let addr = std::env::args()
            .nth(1)
            .unwrap_or_else(|| "127.0.0.1:7878".to_string());
        let listener = TcpListener::bind(&addr).map_err(|e| context(&format!("bind {addr}"), e))?;
        println!("listening on {}", listener.local_addr()?);
        // Nothing may sit in stdout's buffer at fork time, or both processes
        // would print it. (println! already flushed at the newline; this says
        // so explicitly.)
        io::stdout().flush()?;

        install_sigchld_waker()?;

        loop {
            reap_children();
            if !wait_readable(&listener)? {
                continue; // a child exited (EINTR) or the timeout: reap again
            }
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    // E.g. EMFILE: the connection stays in the backlog, so
                    // `poll` reports it again at once. Pause briefly rather
                    // than spin the CPU.
                    eprintln!("fork_per_connection: accept: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    continue;
                }
            };

            // SAFETY: this process is single-threaded (no thread holds a lock
            // the child would inherit locked), and the child only runs our
            // own code below and then _exit()s.
            match unsafe { libc::fork() } {
                -1 => {
                    // EAGAIN (process limit) or ENOMEM. The client is
                    // disconnected when `stream` is dropped here.
                    let e = io::Error::last_os_error();
                    eprintln!("fork_per_connection: fork: {e}; dropping {peer}");
                }
                0 => {
                    // The child. Close our copy of the listening socket: only
                    // the parent accepts.
                    drop(listener);
                    let code = match serve(stream) {
                        Ok(_) => 0,
                        Err(e) => {
                            eprintln!("fork_per_connection: {peer}: {e}");
                            1
                        }
                    };
                    // _exit, not exit: skip the parent's atexit handlers and
                    // stdio buffers, which the child inherited as copies.
                    // SAFETY: _exit never returns and is always safe to call.
                    unsafe { libc::_exit(code) };
                }
                pid => {
                    // The parent. Close its copy of the client socket: from
                    // now on only the child holds the connection.
                    drop(stream);
                    eprintln!("fork_per_connection: pid {pid} serves {peer}");
                }
            }
        }
    }

    /// The blocking echo loop of `accept_one`.
    fn serve(mut stream: TcpStream) -> io::Result<u64> {
        let mut buf = vec![0u8; 16 * 1024];
        let mut echoed = 0u64;
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(context("recv", e)),
            };
            stream
                .write_all(&buf[..n])
                .map_err(|e| context("send", e))?;
            echoed += n as u64;
        }
        stream
            .shutdown(Shutdown::Write)
            .map_err(|e| context("shutdown", e))?;
        Ok(echoed)
    }

    /// Collects every child that has exited, without blocking, so none stays
    /// a zombie.
    fn reap_children() {
        loop {
            let mut status = 0;
            // SAFETY: plain system call; `status` is a valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            // > 0: reaped one, look for more. 0: children exist, none has
            // exited. -1: ECHILD (no children at all) or EINTR.
            if pid <= 0 {
                break;
            }
        }
    }

    /// Waits up to 1 s for a client to be waiting in the backlog. Returns
    /// false on timeout or when a signal (SIGCHLD) interrupted the wait.
    fn wait_readable(listener: &TcpListener) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut pfd, 1, 1000) } {
            -1 => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(context("poll", e))
                }
            }
            0 => Ok(false),
            _ => Ok(true),
        }
    }

    extern "C" fn on_sigchld(_signal: libc::c_int) {
        // Nothing: being delivered is the whole point (it interrupts poll).
    }

    /// Installs the do-nothing SIGCHLD handler. No SA_RESTART, so that a
    /// blocking `poll` returns EINTR when a child exits. SA_NOCLDSTOP: we
    /// only care about children that exit, not ones that are stopped.
    fn install_sigchld_waker() -> io::Result<()> {
        // SAFETY: a zeroed sigaction is a valid starting point; we set the
        // handler, an empty mask and the flags before passing it.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigchld as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_NOCLDSTOP;
            if libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut()) == -1 {
                return Err(context("sigaction", io::Error::last_os_error()));
            }
        }
        Ok(())
    }

    /// Prefix an error with the name of the call that returned it.
    fn context(call: &str, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{call}: {e}"))
    }
}
