//! # iocp_loop: the completion model on Windows (IOCP and AcceptEx)
//!
//! The Winsock page's high-performance server: an I/O completion port
//! (IOCP), several `AcceptEx` calls outstanding on sockets created
//! beforehand, overlapped `WSARecv`/`WSASend`, and worker threads that wait
//! in `GetQueuedCompletionStatusEx` and are handed finished operations.
//! Nothing waits for a socket to be *ready*: every operation is started, and
//! its completion says what happened. `minimal_loop` is the same echo
//! server in the readiness model (mio, which on Windows itself runs on an
//! IOCP, see `docs/guide.md` §5); `io_uring_loop` is this model on Linux.
//!
//! What it shows:
//! * **One `Box<Conn>` per connection, owned by the kernel while an
//!   operation is outstanding.** Starting `WSARecv` hands the kernel a
//!   pointer to the connection's `OVERLAPPED` and to its buffer; the kernel
//!   writes the data and the result there *later*, from another context.
//!   So that memory must neither move (a `Vec` that grows, a value on a
//!   stack that returns) nor be freed (a drop, a close that does not wait)
//!   until the completion has been dequeued. The code makes that ownership
//!   explicit: `Box::into_raw` when an operation starts (we keep no
//!   reference), `Box::from_raw` when its completion arrives. The
//!   `OVERLAPPED` is the first field of the `#[repr(C)]` `Conn`, so the
//!   pointer the completion returns is also the pointer to the `Conn`.
//! * **One operation per connection at a time** (receive, then send the echo,
//!   then receive again): whichever worker dequeues a completion owns that
//!   connection until it starts the next operation, so no lock is needed.
//!   It also bounds memory: a client that does not read is not read from.
//! * **`AcceptEx` with `dwReceiveDataLength` 0.** With a receive buffer,
//!   `AcceptEx` completes only once the client has *sent* something, so
//!   clients that connect and stay silent (a port scanner, or an attack)
//!   hold every posted accept and the server stops accepting; the remedy
//!   then is polling `getsockopt(SO_CONNECT_TIME)` on each pending socket and
//!   closing those connected too long without data. With 0 it completes
//!   when the handshake is done, and the first receive is an ordinary
//!   `WSARecv`. The function itself is fetched with
//!   `WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER, WSAID_ACCEPTEX)`: it is a
//!   Microsoft extension, provided per transport, and the `AcceptEx` export
//!   of mswsock.dll only forwards to the default provider's.
//! * **`SO_UPDATE_ACCEPT_CONTEXT`**: the accepted socket does not inherit the
//!   listener's properties until this is set; without it `getpeername`,
//!   `getsockname` and `shutdown` fail with `WSAENOTCONN`.
//! * **Partial sends** are sent again from where they stopped, **graceful
//!   close** is `shutdown(SD_SEND)` after the last echo once the client's
//!   FIN has arrived (a receive of 0 bytes), then `closesocket`, and **any
//!   error** closes that connection only, logged with the call that failed.
//!
//! An idle client holds its posted `WSARecv`, and so its 16 KiB buffer,
//! locked for as long as it stays idle (`docs/guide.md` §5 compares this with
//! readiness and io_uring's provided buffers; the usual workaround posts
//! zero-byte receives).
//!
//! On other systems it prints that it is Windows only and exits with status
//! 1.
//!
//! ## When it is the right choice
//!
//! Windows servers that must use every core: the port hands completions to
//! a small pool of threads, wakes the most recently active one first (its
//! cache is warm) and keeps at most `NumberOfConcurrentThreads` running.
//! The cost is the code's shape: every buffer is a lifetime you manage by
//! hand against the kernel, which is why portable programs use mio or a
//! runtime on top.
//!
//! ## Run it
//!
//! ```text
//! cargo run --example iocp_loop -- 127.0.0.1:7878 --threads 2 --accepts 16
//! ```
//!
//! `--threads N`: worker threads (default 2); `--accepts N`: `AcceptEx`
//! calls kept outstanding (default 16). The first line on stdout is
//! `listening on ADDR` (port 0 picks a free port). It runs until killed.

#[cfg(windows)]
fn main() {
    if let Err(e) = iocp::run() {
        eprintln!("iocp_loop: {e}");
        std::process::exit(1);
    }
}

#[cfg(not(windows))]
fn main() {
    eprintln!(
        "iocp_loop: Windows only: I/O completion ports and AcceptEx are Windows \
         interfaces (on Linux, io_uring_loop shows the completion model)"
    );
    std::process::exit(1);
}

#[cfg(windows)]
mod iocp {
    use std::ffi::c_void;
    use std::io;
    use std::mem::{self, ManuallyDrop};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::os::windows::io::{AsRawSocket, FromRawSocket};
    use std::ptr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread;

    use windows_sys::Win32::Foundation::{
        GetLastError, FALSE, HANDLE, INVALID_HANDLE_VALUE, WAIT_TIMEOUT,
    };
    use windows_sys::Win32::Networking::WinSock::{
        closesocket, setsockopt, shutdown, WSAGetLastError, WSAGetOverlappedResult, WSAIoctl,
        WSARecv, WSASend, WSASocketW, AF_INET, AF_INET6, INVALID_SOCKET, IPPROTO_TCP,
        LPFN_ACCEPTEX, SD_SEND, SIO_GET_EXTENSION_FUNCTION_POINTER, SOCKADDR_IN6, SOCKET,
        SOCKET_ERROR, SOCK_STREAM, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, WSABUF, WSAID_ACCEPTEX,
        WSA_FLAG_NO_HANDLE_INHERIT, WSA_FLAG_OVERLAPPED, WSA_IO_PENDING,
    };
    use windows_sys::Win32::System::IO::{
        CreateIoCompletionPort, GetQueuedCompletionStatusEx, OVERLAPPED, OVERLAPPED_ENTRY,
    };

    /// Each connection's buffer: what one receive may bring, and what one
    /// send echoes.
    const BUF_SIZE: usize = 16 * 1024;
    /// What `AcceptEx` needs per address it writes (local, remote): the
    /// largest sockaddr plus 16 bytes, as its documentation requires.
    const ADDR_LEN: u32 = (mem::size_of::<SOCKADDR_IN6>() + 16) as u32;
    /// Completions dequeued per `GetQueuedCompletionStatusEx` call.
    const BATCH: usize = 64;
    /// A worker wakes at least this often (ms) to re-post accepts that could
    /// not be posted before (out of sockets or memory).
    const WAKE_MS: u32 = 1000;

    /// What every worker shares. Read-only after start, except the count.
    struct Shared {
        /// The completion port every socket is associated with.
        port: HANDLE,
        /// The listening socket (owned by `run`): AcceptEx's first argument.
        listener: SOCKET,
        /// AF_INET or AF_INET6, as the listener: accept sockets must match.
        family: i32,
        /// The provider's AcceptEx, from WSAIoctl.
        accept_ex: AcceptExFn,
        /// How many `AcceptEx` calls to keep outstanding, and how many are.
        accepts_wanted: usize,
        /// (Atomic: every worker re-posts.)
        accepts_posted: AtomicUsize,
    }

    // SAFETY: a completion port handle and a socket may be used from any
    // thread; that is what a completion port is for. Nothing here is mutated
    // except through the atomic.
    unsafe impl Send for Shared {}
    // SAFETY: as above.
    unsafe impl Sync for Shared {}

    type AcceptExFn = unsafe extern "system" fn(
        SOCKET,
        SOCKET,
        *mut c_void,
        u32,
        u32,
        u32,
        *mut u32,
        *mut OVERLAPPED,
    ) -> i32;

    /// The operation a `Conn` is handed to the kernel for.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Op {
        Accept,
        Recv,
        Send,
    }

    /// One connection (or one pending accept), and the memory the kernel
    /// writes while its operation is outstanding.
    #[repr(C)]
    struct Conn {
        /// First, so that the `*mut OVERLAPPED` a completion returns is a
        /// `*mut Conn` too. Zeroed before each operation.
        overlapped: OVERLAPPED,
        /// The client's socket (for a pending accept: the one it accepts
        /// into), closed when the Conn is dropped.
        socket: SOCKET,
        /// What the outstanding operation is, so its completion knows.
        op: Op,
        /// Accept: AcceptEx writes both addresses here. Recv: the data.
        /// Send: the bytes to echo, `buf[sent..len]`.
        buf: [u8; BUF_SIZE],
        /// Bytes received into `buf`, to echo.
        len: usize,
        /// Of those, bytes already sent (a send may complete short).
        sent: usize,
        /// The client's address, for the log.
        peer: Option<SocketAddr>,
    }

    impl Drop for Conn {
        fn drop(&mut self) {
            // closesocket. Safe only because no operation is outstanding:
            // whoever holds the Box holds the connection.
            // SAFETY: our own socket, closed once.
            unsafe { closesocket(self.socket) };
        }
    }

    pub fn run() -> io::Result<()> {
        let (addr, threads, accepts) = parse_args()?;

        // WSAStartup, socket(WSA_FLAG_OVERLAPPED), bind, listen: std's
        // TcpListener does all four (see accept_one); its sockets are
        // created overlapped, which is what a completion port needs.
        let listener = TcpListener::bind(&addr).map_err(|e| context(&format!("bind {addr}"), e))?;
        let local = listener.local_addr()?;
        let family = if local.is_ipv4() { AF_INET } else { AF_INET6 };
        let socket = listener.as_raw_socket() as SOCKET;

        // CreateIoCompletionPort(INVALID_HANDLE_VALUE): a new port. Its last
        // argument, NumberOfConcurrentThreads, is how many threads it lets
        // run at once (0: one per processor); extra workers wait.
        // SAFETY: plain call; INVALID_HANDLE_VALUE asks for a new port.
        let port = unsafe { CreateIoCompletionPort(INVALID_HANDLE_VALUE, ptr::null_mut(), 0, 0) };
        if port.is_null() {
            return Err(context(
                "CreateIoCompletionPort",
                io::Error::last_os_error(),
            ));
        }
        associate(port, socket).map_err(|e| context("CreateIoCompletionPort(listener)", e))?;
        let accept_ex = load_accept_ex(socket)?;

        let shared = Arc::new(Shared {
            port,
            listener: socket,
            family: i32::from(family),
            accept_ex,
            accepts_wanted: accepts,
            accepts_posted: AtomicUsize::new(0),
        });
        top_up_accepts(&shared);
        if shared.accepts_posted.load(Ordering::SeqCst) == 0 {
            return Err(io::Error::other("AcceptEx: not one accept could be posted"));
        }
        println!("listening on {local}");

        let workers: Vec<_> = (0..threads)
            .map(|i| {
                let shared = Arc::clone(&shared);
                thread::Builder::new()
                    .name(format!("iocp worker {i}"))
                    .spawn(move || worker(&shared))
            })
            .collect::<io::Result<_>>()
            .map_err(|e| context("spawn", e))?;
        for w in workers {
            if let Ok(Err(e)) = w.join() {
                eprintln!("iocp_loop: worker: {e}");
            }
        }
        drop(listener);
        Err(io::Error::other("every worker thread has stopped"))
    }

    /// `ADDR [--threads N] [--accepts N]`.
    fn parse_args() -> io::Result<(String, usize, usize)> {
        let bad = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        let mut args = std::env::args().skip(1);
        let (mut addr, mut threads, mut accepts) = (None, 2, 16);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| -> io::Result<usize> {
                let v = args
                    .next()
                    .ok_or_else(|| bad(format!("{name} needs a value")))?;
                match v.parse::<usize>() {
                    Ok(n) if (1..=1024).contains(&n) => Ok(n),
                    _ => Err(bad(format!("{name} must be 1 to 1024, got {v:?}"))),
                }
            };
            match arg.as_str() {
                "--threads" => threads = value("--threads")?,
                "--accepts" => accepts = value("--accepts")?,
                a if a.starts_with('-') => return Err(bad(format!("unknown option {a:?}"))),
                a if addr.is_none() => addr = Some(a.to_string()),
                a => return Err(bad(format!("unexpected argument {a:?}"))),
            }
        }
        Ok((
            addr.unwrap_or_else(|| "127.0.0.1:7878".into()),
            threads,
            accepts,
        ))
    }

    /// CreateIoCompletionPort(socket, port): from now on every overlapped
    /// operation on `socket` completes to `port`.
    fn associate(port: HANDLE, socket: SOCKET) -> io::Result<()> {
        // SAFETY: plain call on our own handles.
        let r = unsafe { CreateIoCompletionPort(socket as HANDLE, port, 0, 0) };
        if r.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER, WSAID_ACCEPTEX): the
    /// listener's provider's AcceptEx.
    fn load_accept_ex(listener: SOCKET) -> io::Result<AcceptExFn> {
        let guid = WSAID_ACCEPTEX;
        let mut f: LPFN_ACCEPTEX = None;
        let mut bytes = 0u32;
        // SAFETY: in and out buffers are valid for the sizes given; no
        // OVERLAPPED, so the call completes before it returns.
        let r = unsafe {
            WSAIoctl(
                listener,
                SIO_GET_EXTENSION_FUNCTION_POINTER,
                ptr::addr_of!(guid).cast(),
                mem::size_of_val(&guid) as u32,
                ptr::addr_of_mut!(f).cast(),
                mem::size_of_val(&f) as u32,
                &mut bytes,
                ptr::null_mut(),
                None,
            )
        };
        if r == SOCKET_ERROR {
            return Err(context(
                "WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER)",
                wsa_error(),
            ));
        }
        f.ok_or_else(|| io::Error::other("WSAIoctl returned no AcceptEx"))
    }

    /// Posts `AcceptEx` calls until `accepts_wanted` are outstanding. A
    /// failure (out of sockets or memory) is logged; a worker tries again
    /// after its next completion, or within WAKE_MS.
    fn top_up_accepts(shared: &Shared) {
        loop {
            let n = shared.accepts_posted.load(Ordering::SeqCst);
            if n >= shared.accepts_wanted {
                return;
            }
            let next = n + 1;
            let swapped =
                shared
                    .accepts_posted
                    .compare_exchange(n, next, Ordering::SeqCst, Ordering::SeqCst);
            if swapped.is_err() {
                continue; // another worker posted one meanwhile
            }
            if let Err(e) = post_accept(shared) {
                shared.accepts_posted.fetch_sub(1, Ordering::SeqCst);
                eprintln!("iocp_loop: {e}");
                return;
            }
        }
    }

    /// WSASocketW (the socket the next client will be accepted into), then
    /// AcceptEx(listener, that socket, dwReceiveDataLength = 0).
    fn post_accept(shared: &Shared) -> io::Result<()> {
        let flags = WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT;
        // SAFETY: plain call; no protocol info, no group.
        let socket = unsafe {
            WSASocketW(
                shared.family,
                SOCK_STREAM,
                IPPROTO_TCP,
                ptr::null(),
                0,
                flags,
            )
        };
        if socket == INVALID_SOCKET {
            return Err(context("WSASocketW", wsa_error()));
        }
        let conn = Box::new(Conn {
            overlapped: OVERLAPPED::default(),
            socket,
            op: Op::Accept,
            buf: [0; BUF_SIZE],
            len: 0,
            sent: 0,
            peer: None,
        });
        let conn = Box::into_raw(conn); // the kernel's now, until the completion
        let mut bytes = 0u32;
        // SAFETY: `conn` stays allocated and unmoved until its completion
        // is dequeued (we hold no reference to it meanwhile); `buf` has room
        // for both addresses (2 * ADDR_LEN < BUF_SIZE).
        let ok = unsafe {
            (shared.accept_ex)(
                shared.listener,
                socket,
                (*conn).buf.as_mut_ptr().cast(),
                0, // dwReceiveDataLength: complete at the handshake (module doc)
                ADDR_LEN,
                ADDR_LEN,
                &mut bytes,
                ptr::addr_of_mut!((*conn).overlapped),
            )
        };
        started(ok != FALSE, conn).map_err(|e| context("AcceptEx", e))
    }

    /// After starting an overlapped operation: succeeded at once (TRUE or
    /// 0; its completion is queued all the same) or pending (WSA_IO_PENDING)
    /// means the kernel owns `conn` until the completion. Any other error
    /// means no completion will ever come: take `conn` back and drop it,
    /// which closes its socket.
    fn started(ok: bool, conn: *mut Conn) -> io::Result<()> {
        if ok {
            return Ok(());
        }
        let e = wsa_error();
        if e.raw_os_error() == Some(WSA_IO_PENDING) {
            return Ok(());
        }
        // SAFETY: the operation did not start, so nothing else refers to
        // `conn`; it came from Box::into_raw.
        drop(unsafe { Box::from_raw(conn) });
        Err(e)
    }

    /// A worker: dequeue completions, and for each take the connection back
    /// and start its next operation.
    fn worker(shared: &Shared) -> io::Result<()> {
        let mut entries = [OVERLAPPED_ENTRY::default(); BATCH];
        loop {
            let mut n = 0u32;
            // GetQueuedCompletionStatusEx: up to BATCH completions per call,
            // waiting at most WAKE_MS for the first.
            // SAFETY: `entries` has room for BATCH entries.
            let ok = unsafe {
                GetQueuedCompletionStatusEx(
                    shared.port,
                    entries.as_mut_ptr(),
                    BATCH as u32,
                    &mut n,
                    WAKE_MS,
                    FALSE,
                )
            };
            if ok == FALSE {
                // Only a TRUE return makes `n` meaningful: on a timeout Wine
                // leaves 1 there, and the stale entry would be a completion
                // taken twice (a double free).
                n = 0;
                // SAFETY: plain call.
                match unsafe { GetLastError() } {
                    WAIT_TIMEOUT => {}
                    e => {
                        return Err(context(
                            "GetQueuedCompletionStatusEx",
                            io::Error::from_raw_os_error(e as i32),
                        ))
                    }
                }
            }
            for entry in &entries[..n as usize] {
                // SAFETY: every OVERLAPPED we hand out is the first field of
                // a Box<Conn> given up with Box::into_raw; its completion is
                // dequeued exactly once, so we take it back exactly once.
                let conn = unsafe { Box::from_raw(entry.lpOverlapped.cast::<Conn>()) };
                complete(shared, conn);
            }
            top_up_accepts(shared);
        }
    }

    /// What a completion reports: WSAGetOverlappedResult reads the status
    /// the kernel left in the OVERLAPPED and returns the Winsock error
    /// (WSAECONNRESET) rather than the NTSTATUS, or the bytes transferred.
    fn outcome(socket: SOCKET, conn: &Conn) -> io::Result<usize> {
        let (mut bytes, mut flags) = (0u32, 0u32);
        // SAFETY: the operation has completed; no wait.
        let ok = unsafe {
            WSAGetOverlappedResult(socket, &conn.overlapped, &mut bytes, FALSE, &mut flags)
        };
        if ok == FALSE {
            return Err(wsa_error());
        }
        Ok(bytes as usize)
    }

    fn complete(shared: &Shared, conn: Box<Conn>) {
        match conn.op {
            Op::Accept => {
                shared.accepts_posted.fetch_sub(1, Ordering::SeqCst);
                // An AcceptEx result is read through the listening socket.
                match outcome(shared.listener, &conn) {
                    Ok(_) => accepted(shared, conn),
                    Err(e) => eprintln!("iocp_loop: AcceptEx: {e}"), // dropped: closed
                }
            }
            Op::Recv => match outcome(conn.socket, &conn) {
                Ok(0) => finish(conn),
                Ok(n) => {
                    let mut conn = conn;
                    (conn.len, conn.sent) = (n, 0);
                    post_send(conn);
                }
                Err(e) => log(&conn, "WSARecv", &e),
            },
            Op::Send => match outcome(conn.socket, &conn) {
                Ok(n) => {
                    let mut conn = conn;
                    conn.sent += n;
                    if conn.sent < conn.len {
                        post_send(conn); // a partial send: the rest
                    } else {
                        post_recv(conn);
                    }
                }
                Err(e) => log(&conn, "WSASend", &e),
            },
        }
    }

    /// A client is connected into `conn.socket`: make it a full socket,
    /// attach it to the port, and start receiving.
    fn accepted(shared: &Shared, mut conn: Box<Conn>) {
        // setsockopt(SO_UPDATE_ACCEPT_CONTEXT, the listener).
        let listener = shared.listener;
        // SAFETY: the option value is a SOCKET, of the size given.
        let r = unsafe {
            setsockopt(
                conn.socket,
                SOL_SOCKET,
                SO_UPDATE_ACCEPT_CONTEXT,
                ptr::addr_of!(listener).cast(),
                mem::size_of::<SOCKET>() as i32,
            )
        };
        if r == SOCKET_ERROR {
            return log(&conn, "setsockopt(SO_UPDATE_ACCEPT_CONTEXT)", &wsa_error());
        }
        conn.peer = peer_addr(conn.socket);
        if let Err(e) = associate(shared.port, conn.socket) {
            return log(&conn, "CreateIoCompletionPort", &e);
        }
        post_recv(conn);
    }

    /// getpeername, through std for the address conversion (it works only
    /// after SO_UPDATE_ACCEPT_CONTEXT). The TcpStream must not close the
    /// socket, hence ManuallyDrop.
    fn peer_addr(socket: SOCKET) -> Option<SocketAddr> {
        // SAFETY: a valid socket we own; ManuallyDrop keeps std from
        // closing it.
        let stream = ManuallyDrop::new(unsafe { TcpStream::from_raw_socket(socket as _) });
        stream.peer_addr().ok()
    }

    /// WSARecv(socket, [buf], overlapped): up to BUF_SIZE bytes.
    fn post_recv(mut conn: Box<Conn>) {
        conn.op = Op::Recv;
        conn.overlapped = OVERLAPPED::default();
        let socket = conn.socket;
        let mut flags = 0u32;
        let conn = Box::into_raw(conn); // the kernel's now, until the completion
                                        // SAFETY: as in post_accept: `conn` (OVERLAPPED and buffer) stays
                                        // allocated and unmoved until its completion is dequeued. The WSABUF
                                        // itself may live on our stack: Winsock copies it before WSARecv
                                        // returns; the bytes it points to may not. lpNumberOfBytesRecvd is
                                        // null, as advised for overlapped calls.
        let r = unsafe {
            let wsabuf = WSABUF {
                len: BUF_SIZE as u32,
                buf: (*conn).buf.as_mut_ptr(),
            };
            WSARecv(
                socket,
                &wsabuf,
                1,
                ptr::null_mut(),
                &mut flags,
                ptr::addr_of_mut!((*conn).overlapped),
                None,
            )
        };
        if let Err(e) = started(r != SOCKET_ERROR, conn) {
            eprintln!("iocp_loop: WSARecv: {e}");
        }
    }

    /// WSASend(socket, [buf[sent..len]], overlapped).
    fn post_send(mut conn: Box<Conn>) {
        conn.op = Op::Send;
        conn.overlapped = OVERLAPPED::default();
        let (socket, sent, len) = (conn.socket, conn.sent, conn.len);
        let conn = Box::into_raw(conn); // the kernel's now, until the completion
                                        // SAFETY: as in post_recv; sent < len <= BUF_SIZE.
        let r = unsafe {
            let wsabuf = WSABUF {
                len: (len - sent) as u32,
                buf: (*conn).buf.as_mut_ptr().add(sent),
            };
            WSASend(
                socket,
                &wsabuf,
                1,
                ptr::null_mut(),
                0,
                ptr::addr_of_mut!((*conn).overlapped),
                None,
            )
        };
        if let Err(e) = started(r != SOCKET_ERROR, conn) {
            eprintln!("iocp_loop: WSASend: {e}");
        }
    }

    /// The client's FIN, and everything it sent has been echoed (its send
    /// completed before this receive was posted): shutdown(SD_SEND), our
    /// FIN, then closesocket when `conn` is dropped.
    fn finish(conn: Box<Conn>) {
        // SAFETY: plain call on our socket.
        if unsafe { shutdown(conn.socket, SD_SEND) } == SOCKET_ERROR {
            log(&conn, "shutdown(SD_SEND)", &wsa_error());
        }
    }

    /// Logs a connection's error; the caller then drops `conn`, closing it.
    fn log(conn: &Conn, call: &str, e: &io::Error) {
        match conn.peer {
            Some(peer) => eprintln!("iocp_loop: {peer}: {call}: {e}"),
            None => eprintln!("iocp_loop: {call}: {e}"),
        }
    }

    /// WSAGetLastError, as an io::Error ("... (os error 10054)").
    fn wsa_error() -> io::Error {
        // SAFETY: plain call.
        io::Error::from_raw_os_error(unsafe { WSAGetLastError() })
    }

    /// Prefix an error with the name of the call that returned it.
    fn context(call: &str, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{call}: {e}"))
    }
}
