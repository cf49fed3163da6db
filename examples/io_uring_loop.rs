//! # io_uring_loop: the completion model on Linux (io_uring)
//!
//! One thread, one io_uring. Nothing here waits for a socket to become
//! *ready*: the loop hands the kernel whole operations ("accept clients on
//! this listener", "receive on this socket", "send these bytes") as
//! submission queue entries (SQEs), sleeps in one `io_uring_enter` until
//! some have finished, and reads their results as completion queue entries
//! (CQEs). `minimal_loop` is the same echo server in the readiness model;
//! `iocp_loop` is this model on Windows. `docs/guide.md` §5 compares them.
//!
//! What it shows, and the kernel each feature needs (the program checks
//! them at start):
//! * **Multishot accept** (Linux 5.19): one SQE on the listener yields a CQE
//!   per client, for as long as it stays armed; when a CQE comes without
//!   `IORING_CQE_F_MORE` the request has ended and is submitted again.
//! * **A provided buffer ring** (5.19) and **multishot receive** (6.0): the
//!   loop gives the kernel a ring of buffers up front; a receive names a
//!   buffer *group*, not a buffer, and the kernel takes one from the ring
//!   only when data has actually arrived. An idle client therefore pins no
//!   buffer, as in the readiness model, where a buffer is chosen only once
//!   a socket is readable. (A plain completion receive must name its buffer
//!   when it is submitted, and that buffer belongs to the kernel, unusable
//!   and immovable, until the receive completes: an idle client pins it for
//!   as long as it stays idle.)
//! * **Buffers owned by the kernel.** A buffer the kernel took is ours again
//!   when its CQE arrives; we then *send* from it, and during that send the
//!   kernel reads it, so it goes back to the ring only when the send has
//!   completed. No buffer is ever moved or freed while an operation uses it:
//!   they live in one allocation made at start and freed after the ring.
//! * **Completions on our schedule** (6.1, `IORING_SETUP_DEFER_TASKRUN`):
//!   the kernel finishes receives (picks a buffer, copies the data, posts
//!   the CQE) only inside our `io_uring_enter`, after it has taken the SQEs
//!   we submit, instead of interrupting the loop whenever data arrives. So
//!   once we have read the CQ we know exactly which buffers are out.
//! * **`ENOBUFS`**: when every buffer is out, a multishot receive ends with
//!   `-ENOBUFS` (the data stays in the socket). The kernel picks a buffer
//!   before it reads, so a receive submitted while the ring is dry fails
//!   even if its client has sent nothing yet. The connection waits in a
//!   queue; after each batch of CQEs, as many as there are free buffers are
//!   re-armed, oldest first. `--buffers 4` makes that happen with a few
//!   busy clients.
//! * **Partial sends**: a send may complete with fewer bytes than asked; the
//!   rest is submitted again. One send in flight per connection keeps the
//!   echo in order.
//! * **Backpressure**: a client that sends without reading would otherwise
//!   collect every buffer of the ring and starve the others. A connection
//!   holding `MAX_HELD` buffers (at most half the ring) has its receive
//!   cancelled (`IORING_OP_ASYNC_CANCEL`) and re-armed once all it holds has
//!   been echoed; meanwhile its data waits in the kernel and TCP flow
//!   control slows the sender.
//! * **Half-close and errors**: a receive of 0 bytes is the client's FIN;
//!   once everything is echoed the loop submits `shutdown(SHUT_WR)` and then
//!   closes. Any error ends that connection only; a connection is freed
//!   only after its last operation has completed, because until then the
//!   kernel may still use its socket and buffers.
//!
//! Where the kernel refuses io_uring (older than 6.1, a container's seccomp
//! profile, `kernel.io_uring_disabled`), it prints one line saying so and
//! exits with status 1; on other systems it says it is Linux only.
//!
//! ## When it is the right choice
//!
//! Linux 6.1 or later, many connections, and a wish to batch system calls:
//! one `io_uring_enter` submits and reaps any number of operations. Its
//! interface is larger than epoll's and still changing, hardened systems
//! often disable it, and every buffer handed to the kernel is a lifetime to
//! get right by hand (the `unsafe` blocks below). Measure before choosing it
//! over epoll; `docs/guide.md` §6 compares them.
//!
//! ## Run it
//!
//! ```text
//! cargo run --example io_uring_loop -- 127.0.0.1:7878
//! cargo run --example io_uring_loop -- 127.0.0.1:7878 --buffers 4 --buffer-size 512
//! nc 127.0.0.1 7878
//! ```
//!
//! `--buffers N`: buffers in the ring (a power of two, 1 to 32768, default
//! 256); `--buffer-size BYTES`: the size of each (default 16384). The first
//! line on stdout is `listening on ADDR` (port 0 picks a free port). It runs
//! until killed.

#[cfg(target_os = "linux")]
fn main() {
    if let Err(msg) = uring::run() {
        eprintln!("io_uring_loop: {msg}");
        std::process::exit(1);
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!(
        "io_uring_loop: Linux only: io_uring is a Linux kernel interface \
         (on Windows, iocp_loop shows the completion model)"
    );
    std::process::exit(1);
}

#[cfg(target_os = "linux")]
mod uring {
    use std::alloc::{self, Layout};
    use std::collections::VecDeque;
    use std::io;
    use std::net::TcpListener;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::atomic::{AtomicU16, Ordering};

    use io_uring::types::{BufRingEntry, Fd, Timespec};
    use io_uring::{cqueue, opcode, squeue, IoUring, Probe};
    use slab::Slab;

    /// Submission queue size: how many operations one `io_uring_enter` can
    /// take at most (more wait in `Server::queued`).
    const SQ_ENTRIES: u32 = 256;
    /// Completion queue size. Multishot operations post many CQEs per SQE;
    /// a CQ that overflows is buffered by the kernel (IORING_FEAT_NODROP),
    /// slower but lossless.
    const CQ_ENTRIES: u32 = 4096;
    /// Our one buffer group (a ring could hold several, e.g. per size).
    const BGID: u16 = 0;
    /// At most this many buffers held by one connection (and at most half
    /// the ring): see "Backpressure" in the module doc.
    const MAX_HELD: usize = 8;
    /// Listen backlog (the kernel caps it at `net.core.somaxconn`, 4096 by
    /// default): see `listen`.
    const BACKLOG: i32 = 4096;
    /// How long to wait before accepting again after the process ran out of
    /// descriptors: an accept re-armed at once would fail again at once.
    static ACCEPT_BACKOFF: Timespec = Timespec::new().nsec(100_000_000);

    // user_data: which operation a CQE belongs to. Connection operations
    // carry their slab key and a kind in the low bits.
    const ACCEPT: u64 = u64::MAX;
    const ACCEPT_RETRY: u64 = u64::MAX - 1;
    const RECV: u64 = 0;
    const SEND: u64 = 1;
    const SHUTDOWN: u64 = 2;
    const CANCEL: u64 = 3;
    const KIND_BITS: u32 = 2;

    fn tag(key: usize, kind: u64) -> u64 {
        (key as u64) << KIND_BITS | kind
    }

    pub fn run() -> Result<(), String> {
        let (addr, buffers, buffer_size) = parse_args()?;
        let bufs = BufRing::new(buffers, buffer_size).map_err(|e| e.to_string())?;
        let mut ring = open_ring()?;
        bufs.register(&ring)?;
        check_multishot_recv()?;

        let listener = listen(&addr)?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        println!("listening on {local}");
        eprintln!(
            "io_uring_loop: {buffers} buffers of {buffer_size} bytes in the ring, \
             at most {} per connection",
            MAX_HELD.min(buffers as usize / 2).max(1)
        );

        let mut server = Server::new(listener.as_raw_fd(), bufs);
        let result = serve(&mut server, &mut ring);
        // The ring first (closing it cancels every operation), the buffers
        // after: the kernel may write into them for as long as it lives.
        drop(ring);
        drop(server);
        result
    }

    /// The loop: submit what is queued, wait for completions, handle them.
    fn serve(server: &mut Server, ring: &mut IoUring) -> Result<(), String> {
        server.arm_accept();
        let mut batch: Vec<cqueue::Entry> = Vec::with_capacity(CQ_ENTRIES as usize);
        loop {
            server.submit_queued(ring).map_err(|e| e.to_string())?;
            // io_uring_enter(to_submit, min_complete = 1, GETEVENTS): hand
            // the kernel what was queued, sleep until one CQE is there. Or,
            // when wake_starved must count again, only submit: min_complete
            // = 0, no GETEVENTS.
            let want = if server.recount { 0 } else { 1 };
            match ring.submit_and_wait(want) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The CQ is full and the kernel cannot buffer more: reap first.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => return Err(context("io_uring_enter", e).to_string()),
            }
            batch.clear();
            batch.extend(ring.completion());
            for cqe in &batch {
                server.complete(cqe);
            }
            server.wake_starved();
        }
    }

    /// `ADDR [--buffers N] [--buffer-size BYTES]`.
    fn parse_args() -> Result<(String, u16, usize), String> {
        let mut args = std::env::args().skip(1);
        let mut addr = None;
        let (mut buffers, mut size) = (256u16, 16 * 1024usize);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                let v = args.next().ok_or(format!("{name} needs a value"))?;
                v.parse::<usize>()
                    .map_err(|_| format!("{name}: not a number: {v:?}"))
            };
            match arg.as_str() {
                "--buffers" => match value("--buffers")? {
                    n @ 1..=32768 if n.is_power_of_two() => buffers = n as u16,
                    n => return Err(format!("--buffers must be a power of two, 1 to 32768: {n}")),
                },
                "--buffer-size" => match value("--buffer-size")? {
                    n @ 1..=1_048_576 => size = n,
                    n => return Err(format!("--buffer-size must be 1 to 1048576: {n}")),
                },
                a if a.starts_with('-') => return Err(format!("unknown option {a:?}")),
                a if addr.is_none() => addr = Some(a.to_string()),
                a => return Err(format!("unexpected argument {a:?}")),
            }
        }
        Ok((
            addr.unwrap_or_else(|| "127.0.0.1:7878".into()),
            buffers,
            size,
        ))
    }

    /// socket + bind + listen, as in accept_one (std's TcpListener), then
    /// listen again with a backlog of BACKLOG instead of std's 128: on a
    /// listening socket, listen(2) only changes the backlog.
    ///
    /// The backlog holds the connections the kernel has completed and our
    /// accept has not taken yet. Under load the accept's turn comes late:
    /// the kernel runs it after the receives that were ready before it.
    /// A burst beyond the backlog is not refused: the kernel drops the
    /// client's last handshake packet, and then its data, while the client
    /// already counts itself connected. It resends after 0.2 s, 0.4 s,
    /// 0.8 s..., so its first echo comes seconds late, and once the kernel
    /// has given up on the half-open connection, the resent data meets a
    /// reset.
    fn listen(addr: &str) -> Result<TcpListener, String> {
        let listener =
            TcpListener::bind(addr).map_err(|e| context(&format!("bind {addr}"), e).to_string())?;
        // SAFETY: plain system call on a socket `listener` owns.
        if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
            return Err(context("listen", io::Error::last_os_error()).to_string());
        }
        Ok(listener)
    }

    /// io_uring_setup, and a probe of the operations we use. Every refusal
    /// is one line starting "io_uring unavailable:".
    fn open_ring() -> Result<IoUring, String> {
        let ring = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            // Only this thread submits (SINGLE_ISSUER, which DEFER_TASKRUN
            // requires), and the kernel completes operations only when it
            // enters io_uring_enter with GETEVENTS: see the module doc.
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(SQ_ENTRIES)
            .map_err(|e| {
                let why = match e.raw_os_error() {
                    Some(libc::ENOSYS) => {
                        "this kernel has no io_uring (before 5.1, or built \
                         without CONFIG_IO_URING), or a seccomp filter hides it"
                    }
                    Some(libc::EPERM) => {
                        "io_uring is disabled (sysctl kernel.io_uring_disabled \
                         = 2, or = 1 and this user is not in kernel.io_uring_group) or blocked \
                         by a seccomp profile"
                    }
                    Some(libc::EINVAL) => {
                        "this kernel's io_uring is too old \
                         (IORING_SETUP_DEFER_TASKRUN needs 6.1)"
                    }
                    Some(libc::ENOMEM) => {
                        "no memory for the rings (before 5.12 they count \
                         against RLIMIT_MEMLOCK)"
                    }
                    _ => "io_uring_setup failed",
                };
                format!("io_uring unavailable: io_uring_setup: {e}: {why}")
            })?;
        // IORING_REGISTER_PROBE (5.6): which opcodes this kernel knows.
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe).map_err(|e| {
            format!("io_uring unavailable: IORING_REGISTER_PROBE: {e} (needs Linux 5.6)")
        })?;
        let needed = [
            (opcode::AcceptMulti::CODE, "accept (5.5)"),
            (opcode::RecvMulti::CODE, "recv (5.6)"),
            (opcode::Send::CODE, "send (5.6)"),
            (opcode::Shutdown::CODE, "shutdown (5.11)"),
            (opcode::AsyncCancel::CODE, "async cancel (5.5)"),
            (opcode::Timeout::CODE, "timeout (5.4)"),
        ];
        for (code, name) in needed {
            if !probe.is_supported(code) {
                return Err(format!("io_uring unavailable: the kernel lacks {name}"));
            }
        }
        Ok(ring)
    }

    /// Multishot receive is a flag (IORING_RECV_MULTISHOT in the SQE's
    /// ioprio), not an opcode, so the probe cannot see it: a kernel before
    /// 6.0 fails each such receive with EINVAL. Check the version instead.
    fn check_multishot_recv() -> Result<(), String> {
        // SAFETY: uname fills the struct we pass; zeroed is a valid start.
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: `uts` is a valid, writable utsname.
        if unsafe { libc::uname(&mut uts) } != 0 {
            return Err(context("uname", io::Error::last_os_error()).to_string());
        }
        // SAFETY: uname NUL-terminates `release`.
        let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
        let release = release.to_string_lossy();
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if (major, minor) < (6, 0) {
            return Err(format!(
                "io_uring unavailable: multishot recv needs Linux 6.0, this kernel is {release}"
            ));
        }
        Ok(())
    }

    /// A provided buffer ring: `count` buffers of `size` bytes, and the ring
    /// of `io_uring_buf` entries through which we hand them to the kernel.
    /// We write entries at the tail and advance it; the kernel takes them
    /// from the head, one per receive that has data.
    struct BufRing {
        /// The ring entries: page-aligned, shared with the kernel. The tail
        /// (a u16) overlays the last field of entry 0.
        entries: *mut BufRingEntry,
        /// How `entries` was allocated, to free it.
        entries_layout: Layout,
        /// The buffers, one allocation, never moved until after the ring is
        /// gone: the kernel writes into them at any time between our handing
        /// them over and the CQE that hands them back.
        data: *mut u8,
        /// How `data` was allocated, to free it.
        data_layout: Layout,
        /// Buffers (and ring entries): a power of two, so that `tail & (count
        /// - 1)` is an entry's index.
        count: u16,
        /// Bytes per buffer: the most one receive CQE can bring.
        size: usize,
        /// Our copy of the tail: we are its only writer.
        tail: u16,
    }

    impl BufRing {
        fn new(count: u16, size: usize) -> io::Result<BufRing> {
            let entries_layout = Layout::from_size_align(
                usize::from(count) * std::mem::size_of::<BufRingEntry>(),
                4096, // the kernel wants the ring page-aligned
            )
            .map_err(|_| io::ErrorKind::InvalidInput)?;
            let data_layout = Layout::from_size_align(usize::from(count) * size, 64)
                .map_err(|_| io::ErrorKind::InvalidInput)?;
            // SAFETY: both layouts have a non-zero size (count, size >= 1).
            let (entries, data) = unsafe {
                (
                    alloc::alloc_zeroed(entries_layout).cast::<BufRingEntry>(),
                    alloc::alloc(data_layout),
                )
            };
            if entries.is_null() || data.is_null() {
                return Err(io::ErrorKind::OutOfMemory.into());
            }
            let mut ring = BufRing {
                entries,
                entries_layout,
                data,
                data_layout,
                count,
                size,
                tail: 0,
            };
            for bid in 0..count {
                ring.give_back(bid);
            }
            Ok(ring)
        }

        /// IORING_REGISTER_PBUF_RING (5.19): tell the kernel where the ring is.
        fn register(&self, ring: &IoUring) -> Result<(), String> {
            // SAFETY: the entries stay allocated, at this address, until
            // `self` is dropped, which `run` arranges to happen after the
            // ring (and so after the kernel's last use of them).
            unsafe {
                ring.submitter().register_buf_ring_with_flags(
                    self.entries as u64,
                    self.count,
                    BGID,
                    0,
                )
            }
            .map_err(|e| {
                format!("io_uring unavailable: IORING_REGISTER_PBUF_RING: {e} (needs Linux 5.19)")
            })
        }

        /// Hands buffer `bid` (back) to the kernel: fill the entry at the
        /// tail, then publish the new tail with a release store, so that the
        /// kernel sees the entry complete before it sees the tail move.
        fn give_back(&mut self, bid: u16) {
            let index = usize::from(self.tail & (self.count - 1));
            // SAFETY: `index` < count; the kernel reads only the entries
            // between head and tail, and this one is at the tail, so it is
            // ours. The setters do not touch entry 0's tail field.
            let entry = unsafe { &mut *self.entries.add(index) };
            entry.set_addr(self.buffer(bid) as u64);
            entry.set_len(self.size as u32);
            entry.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
            // SAFETY: the tail is a u16 inside our allocation; AtomicU16 has
            // the layout of u16, and the kernel reads it with an acquire load.
            unsafe {
                let tail = BufRingEntry::tail(self.entries) as *const AtomicU16;
                (*tail).store(self.tail, Ordering::Release);
            }
        }

        fn buffer(&self, bid: u16) -> *mut u8 {
            // SAFETY: bid < count, so the offset is inside `data`.
            unsafe { self.data.add(usize::from(bid) * self.size) }
        }
    }

    impl Drop for BufRing {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with exactly these layouts.
            unsafe {
                alloc::dealloc(self.entries.cast(), self.entries_layout);
                alloc::dealloc(self.data, self.data_layout);
            }
        }
    }

    /// Where a connection's multishot receive stands.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Recv {
        /// Armed: the kernel will post a CQE whenever data arrives.
        Armed,
        /// We asked the kernel to cancel it (MAX_HELD, or closing).
        Cancelling,
        /// It ended with ENOBUFS: waiting in `Server::starved` for a buffer.
        Starved,
        /// Stopped at MAX_HELD: re-armed when all it holds is echoed.
        Paused,
        /// The client's FIN (or an error): never again.
        Done,
    }

    /// One received chunk waiting to be echoed: it holds buffer `bid`.
    struct Chunk {
        /// The buffer's id in the ring: where the bytes are, and what to
        /// give back once they are sent.
        bid: u16,
        /// Bytes received into it.
        len: usize,
    }

    struct Conn {
        /// The socket, closed when the connection is freed (after its last
        /// operation has completed: until then the kernel may use it).
        fd: OwnedFd,
        /// Whether data may arrive now, and if not, what re-arms it.
        recv: Recv,
        /// Received chunks not yet fully echoed, oldest first.
        out: VecDeque<Chunk>,
        /// Bytes of `out.front()` already sent (after a partial send).
        sent: usize,
        /// A send is in the kernel. One at a time keeps the echo in order.
        sending: bool,
        /// The client sent FIN.
        eof: bool,
        /// Finished: shut down after a complete echo, or failed. Freed as
        /// soon as `in_flight` is 0.
        over: bool,
        /// Operations submitted whose last CQE has not arrived yet.
        in_flight: u32,
    }

    struct Server {
        /// The listening socket (owned by `run`), for re-arming the accept.
        listener: RawFd,
        /// Connections by slab key, the key being in each operation's
        /// user_data.
        conns: Slab<Conn>,
        /// The provided buffers every receive draws from.
        bufs: BufRing,
        /// Buffers one connection may hold: MAX_HELD, at most half the ring.
        max_held: usize,
        /// SQEs not yet in the submission queue (it was full).
        queued: VecDeque<squeue::Entry>,
        /// Connections whose receive ended with ENOBUFS, oldest first.
        starved: VecDeque<usize>,
        /// `wake_starved` re-armed receives that may take no buffer, and
        /// connections still wait: the loop submits without sleeping, so
        /// that it counts the free buffers again at once.
        recount: bool,
        /// Buffers the kernel handed us (in CQEs) and we have not given
        /// back: once every CQE is read, the ring holds `count - held`.
        held: usize,
        /// How often the ring ran dry (ENOBUFS), for the log.
        enobufs: u64,
        /// How many sends completed short, for the log.
        partial_sends: u64,
    }

    impl Server {
        fn new(listener: RawFd, bufs: BufRing) -> Server {
            let max_held = MAX_HELD.min(usize::from(bufs.count) / 2).max(1);
            Server {
                listener,
                conns: Slab::new(),
                bufs,
                max_held,
                queued: VecDeque::new(),
                starved: VecDeque::new(),
                recount: false,
                held: 0,
                enobufs: 0,
                partial_sends: 0,
            }
        }

        /// Moves queued SQEs into the submission queue; when it fills up,
        /// submits (io_uring_enter without waiting) to make room.
        fn submit_queued(&mut self, ring: &mut IoUring) -> io::Result<()> {
            while !self.queued.is_empty() {
                {
                    let mut sq = ring.submission();
                    while let Some(sqe) = self.queued.front() {
                        // SAFETY: every pointer in our SQEs (buffers in
                        // `bufs`, the static backoff) stays valid until the
                        // operation completes; see BufRing and Conn.
                        if unsafe { sq.push(sqe) }.is_err() {
                            break; // full
                        }
                        self.queued.pop_front();
                    }
                }
                if !self.queued.is_empty() {
                    ring.submit().map_err(|e| context("io_uring_enter", e))?;
                }
            }
            Ok(())
        }

        /// accept4(listener, SOCK_CLOEXEC), multishot: one CQE per client.
        fn arm_accept(&mut self) {
            let sqe = opcode::AcceptMulti::new(Fd(self.listener))
                .flags(libc::SOCK_CLOEXEC)
                .build()
                .user_data(ACCEPT);
            self.queued.push_back(sqe);
        }

        /// Dispatches one CQE to its handler.
        fn complete(&mut self, cqe: &cqueue::Entry) {
            let (data, res, flags) = (cqe.user_data(), cqe.result(), cqe.flags());
            match data {
                ACCEPT => self.on_accept(res, flags),
                ACCEPT_RETRY => self.arm_accept(),
                _ => {
                    let key = (data >> KIND_BITS) as usize;
                    match data & ((1 << KIND_BITS) - 1) {
                        RECV => self.on_recv(key, res, flags),
                        SEND => self.on_send(key, res),
                        SHUTDOWN => self.on_shutdown(key, res),
                        _ => self.op_done(key), // CANCEL: its result does not matter
                    }
                    self.free_if_over(key);
                }
            }
        }

        fn on_accept(&mut self, res: i32, flags: u32) {
            if res >= 0 {
                // SAFETY: a successful accept CQE carries a new descriptor
                // that nobody else owns.
                let fd = unsafe { OwnedFd::from_raw_fd(res) };
                let key = self.conns.insert(Conn {
                    fd,
                    recv: Recv::Done,
                    out: VecDeque::new(),
                    sent: 0,
                    sending: false,
                    eof: false,
                    over: false,
                    in_flight: 0,
                });
                self.arm_recv(key);
            } else {
                // ECONNABORTED (the client gave up first), EMFILE, ENFILE...
                // The listener stays; only this attempt failed.
                eprintln!("io_uring_loop: accept: {}", errno(res));
            }
            if !cqueue::more(flags) {
                // The multishot accept has ended (an error ends it). Out of
                // descriptors or memory, re-arming at once would fail at once:
                // wait first, with an io_uring timeout, not a sleep.
                if [-libc::EMFILE, -libc::ENFILE, -libc::ENOBUFS, -libc::ENOMEM].contains(&res) {
                    let sqe = opcode::Timeout::new(&ACCEPT_BACKOFF)
                        .build()
                        .user_data(ACCEPT_RETRY);
                    self.queued.push_back(sqe);
                } else {
                    self.arm_accept();
                }
            }
        }

        /// recv(fd, <a buffer from group BGID>, MSG_NOSIGNAL), multishot.
        fn arm_recv(&mut self, key: usize) {
            let conn = &mut self.conns[key];
            let sqe = opcode::RecvMulti::new(Fd(conn.fd.as_raw_fd()), BGID)
                .build()
                .user_data(tag(key, RECV));
            conn.recv = Recv::Armed;
            conn.in_flight += 1;
            self.queued.push_back(sqe);
        }

        /// A receive CQE: data in a buffer of the ring, the FIN, or an error.
        fn on_recv(&mut self, key: usize, res: i32, flags: u32) {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if let Some(bid) = cqueue::buffer_select(flags) {
                // The kernel took buffer `bid` for this CQE: it is ours now,
                // until we give it back.
                self.held += 1;
                if res > 0 && !conn.over {
                    let len = res as usize;
                    conn.out.push_back(Chunk { bid, len });
                    if conn.out.len() >= self.max_held && conn.recv == Recv::Armed {
                        self.cancel_recv(key); // backpressure
                    }
                    self.send_next(key); // it goes back after its echo is sent
                } else {
                    self.return_buffer(bid); // nothing in it, or closing
                }
            }
            match res {
                0 => self.conns[key].eof = true, // the client's FIN
                e if e == -libc::ENOBUFS => self.ran_dry(),
                e if e == -libc::ECANCELED => {} // we asked for it
                e if e < 0 => self.fail(key, "recv", e),
                _ => {}
            }
            if !cqueue::more(flags) {
                self.op_done(key);
                self.recv_ended(key, res);
            }
        }

        fn ran_dry(&mut self) {
            self.enobufs += 1;
            if self.enobufs.is_power_of_two() {
                eprintln!(
                    "io_uring_loop: recv: ENOBUFS: the buffer ring ran dry ({} times so \
                     far); the connection waits for a buffer to come back",
                    self.enobufs
                );
            }
        }

        /// The multishot receive has ended: decide what happens next.
        fn recv_ended(&mut self, key: usize, res: i32) {
            let max_held = self.max_held;
            let conn = &mut self.conns[key];
            conn.recv = if conn.over || conn.eof {
                Recv::Done
            } else if res == -libc::ENOBUFS {
                self.starved.push_back(key); // see wake_starved
                Recv::Starved
            } else if !conn.out.is_empty()
                && (res == -libc::ECANCELED || conn.out.len() >= max_held)
            {
                Recv::Paused // on_send re-arms it once `out` is empty
            } else {
                // Ended for another reason (e.g. the CQ overflowed): re-arm.
                self.arm_recv(key);
                return;
            };
            self.finish_if_echoed(key);
        }

        /// IORING_OP_ASYNC_CANCEL of this connection's multishot receive.
        fn cancel_recv(&mut self, key: usize) {
            let conn = &mut self.conns[key];
            conn.recv = Recv::Cancelling;
            conn.in_flight += 1;
            let sqe = opcode::AsyncCancel::new(tag(key, RECV))
                .build()
                .user_data(tag(key, CANCEL));
            self.queued.push_back(sqe);
        }

        /// send(fd, the rest of the oldest chunk, MSG_NOSIGNAL), unless a
        /// send is already in flight.
        fn send_next(&mut self, key: usize) {
            let conn = &mut self.conns[key];
            let Some(chunk) = conn.out.front() else {
                return;
            };
            if conn.sending || conn.over {
                return;
            }
            // SAFETY (of the pointer, used by the kernel): the buffer is
            // ours (its receive completed) and goes back to the ring only
            // after this send's CQE; `bufs.data` never moves.
            let ptr = unsafe { self.bufs.buffer(chunk.bid).add(conn.sent) };
            let len = (chunk.len - conn.sent) as u32;
            let sqe = opcode::Send::new(Fd(conn.fd.as_raw_fd()), ptr, len)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(tag(key, SEND));
            conn.sending = true;
            conn.in_flight += 1;
            self.queued.push_back(sqe);
        }

        /// A send CQE: how many bytes the kernel took, or an error.
        fn on_send(&mut self, key: usize, res: i32) {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            conn.sending = false;
            self.op_done(key);
            if res <= 0 {
                // EPIPE, ECONNRESET: the client is gone. (0 cannot happen
                // for a non-empty send; treat it as an error, not a loop.)
                let e = if res == 0 { -libc::EIO } else { res };
                return self.fail(key, "send", e);
            }
            let conn = &mut self.conns[key];
            conn.sent += res as usize;
            let done = conn
                .out
                .front()
                .filter(|c| c.len == conn.sent)
                .map(|c| c.bid);
            if let Some(bid) = done {
                // This chunk is all sent: the kernel no longer reads its
                // buffer, which goes back to the ring.
                conn.out.pop_front();
                conn.sent = 0;
                self.return_buffer(bid);
            } else {
                self.partial_send(res);
            }
            self.send_next(key);
            let conn = &mut self.conns[key];
            if conn.out.is_empty() && conn.recv == Recv::Paused {
                self.arm_recv(key);
            }
            self.finish_if_echoed(key);
        }

        /// The kernel took only `res` bytes (its send buffer had less room
        /// than asked); send_next submits the rest, from where it stopped.
        fn partial_send(&mut self, res: i32) {
            self.partial_sends += 1;
            if self.partial_sends.is_power_of_two() {
                eprintln!(
                    "io_uring_loop: send: partial send of {res} bytes, the rest follows \
                     ({} partial sends so far)",
                    self.partial_sends
                );
            }
        }

        fn return_buffer(&mut self, bid: u16) {
            self.held -= 1;
            self.bufs.give_back(bid);
        }

        /// After each batch of CQEs: re-arm as many starved connections,
        /// oldest first, as the ring has free buffers.
        ///
        /// `count - held` is that number because the kernel takes buffers
        /// only inside io_uring_enter (DEFER_TASKRUN) and we have just read
        /// every CQE it posted there; and the re-arms are issued when they
        /// are submitted, before the kernel serves receives armed earlier,
        /// so they get the free buffers. (Without DEFER_TASKRUN the kernel
        /// takes buffers while we work, so the count runs high; each extra
        /// re-arm fails at once with one more ENOBUFS CQE, the CQ fills, and
        /// the next count is further off still.)
        ///
        /// A re-armed receive takes a buffer only if data is waiting. One
        /// that failed before its client sent anything (a receive armed on
        /// a new connection while the ring is dry fails at once: the kernel
        /// picks the buffer before it reads) just waits and takes none. If
        /// connections are still starved, the loop counts again before it
        /// sleeps (`recount`); otherwise a free buffer could wait for a CQE
        /// that never comes, and the client behind it for its echo.
        fn wake_starved(&mut self) {
            let mut free = usize::from(self.bufs.count) - self.held;
            let mut rearmed = false;
            while free > 0 {
                let Some(key) = self.starved.pop_front() else {
                    break;
                };
                // The key may have been freed (and even reused) meanwhile.
                match self.conns.get(key) {
                    Some(c) if c.recv == Recv::Starved && !c.over => {
                        self.arm_recv(key);
                        free -= 1;
                        rearmed = true;
                    }
                    _ => continue,
                }
            }
            self.recount = rearmed && !self.starved.is_empty();
        }

        /// After the client's FIN, once all is echoed: shutdown(SHUT_WR).
        fn finish_if_echoed(&mut self, key: usize) {
            let conn = &mut self.conns[key];
            if conn.eof && conn.recv == Recv::Done && conn.out.is_empty() && !conn.over {
                conn.over = true; // nothing more to do but the FIN
                conn.in_flight += 1;
                let sqe = opcode::Shutdown::new(Fd(conn.fd.as_raw_fd()), libc::SHUT_WR)
                    .build()
                    .user_data(tag(key, SHUTDOWN));
                self.queued.push_back(sqe);
            }
        }

        fn on_shutdown(&mut self, key: usize, res: i32) {
            self.op_done(key);
            if res < 0 {
                // ENOTCONN: the client reset meanwhile. Close all the same.
                eprintln!("io_uring_loop: connection {key}: shutdown: {}", errno(res));
            }
        }

        /// An error on this connection: log it, stop its receive, and let
        /// `free_if_over` close it once its operations have completed.
        fn fail(&mut self, key: usize, call: &str, res: i32) {
            eprintln!("io_uring_loop: connection {key}: {call}: {}", errno(res));
            let conn = &mut self.conns[key];
            conn.over = true;
            // shutdown(SHUT_RDWR) at once, not through the ring: a send
            // still in flight then fails promptly instead of waiting for a
            // peer that may never read. (ENOTCONN after a reset: harmless.)
            // SAFETY: plain system call on a descriptor we own.
            unsafe { libc::shutdown(conn.fd.as_raw_fd(), libc::SHUT_RDWR) };
            if conn.recv == Recv::Armed {
                self.cancel_recv(key);
            }
        }

        fn op_done(&mut self, key: usize) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.in_flight -= 1;
            }
        }

        /// Frees a finished connection whose last operation has completed:
        /// its buffers go back to the ring, and dropping the fd closes it.
        fn free_if_over(&mut self, key: usize) {
            match self.conns.get(key) {
                Some(c) if c.over && c.in_flight == 0 => {}
                _ => return,
            }
            let conn = self.conns.remove(key);
            for chunk in conn.out {
                self.return_buffer(chunk.bid);
            }
            // close(fd): `conn.fd` is dropped here.
        }
    }

    /// A negative CQE result as an error: "Connection reset by peer (os
    /// error 104)".
    fn errno(res: i32) -> io::Error {
        io::Error::from_raw_os_error(-res)
    }

    /// Prefix an error with the name of the call that returned it.
    fn context(call: &str, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{call}: {e}"))
    }
}
