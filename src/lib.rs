//! echoloop: a TCP and UDP echo server (RFC 862) whose whole work is done by
//! one readiness loop on one thread (or, with `Config::loops`, by several
//! such loops, shared-nothing, one per core) — and a reference for how such
//! a loop is built.
//!
//! ```no_run
//! use echoloop::{Config, Server};
//!
//! let mut config = Config::default();
//! config.listen = vec!["127.0.0.1:0".parse().unwrap()];
//! let server = Server::bind(config)?;
//! println!("echoing on {:?}", server.local_addrs());
//! let handle = server.handle(); // stop it from another thread: handle.shutdown()
//! let final_stats = server.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Layout
//!
//! - `server.rs` — [`Server`] (bind, or take listeners bound elsewhere, then
//!   run) and [`Handle`] (stop it, read its counters); the error policy.
//!   Start reading here.
//! - `event_loop.rs` — the loop: the numbered steps of one turn
//!   (`EventLoop::turn`), serving and closing connections; `accept.rs` and
//!   `shutdown.rs` beside it take clients in and wind the loop down, and
//!   `part.rs` is what one loop owns alone (its poll, sockets, read buffer,
//!   the writer of its counters).
//! - `shared.rs` — what every loop and [`Handle`] share: configuration,
//!   shutdown flag, each loop's waker, a reader of each loop's counters,
//!   the `--max-connections` count, the hand-off queues.
//! - `threads.rs` — `--loops`: loop 0 on the caller's thread, the others
//!   on their own; a loop that fails stops them all. `steer.rs` — which
//!   loop serves a source address, and the BPF program that makes Linux
//!   steer by it (the server's `# Loops` says which platform does what).
//! - `rules.rs` — the rules of the readiness technique ([`rules`]), shared
//!   with the stress client: drain, hints, write interest, the epoll shortcut.
//! - `connection.rs` — one client: its transport, what we know of its
//!   readiness, the echo. Knows nothing of the loop but a `Registry`.
//! - `transport.rs` — the seam every connection's bytes pass through
//!   ([`transport::Transport`]): plain TCP or TLS, and the one place that
//!   says whether a short read proves the socket drained.
//! - `tls.rs` (the `tls` feature) — TLS through the seam: the server's
//!   certificate and key, and the rustls transport ([`tls`]).
//! - `pending.rs` — the echo a connection still owes, and the buffer pool.
//! - `admission.rs` — who may be served: `--allow`, `--deny` (TCP and
//!   UDP), `--max-per-source`.
//! - `udp.rs` (and `udp/batch.rs` on Linux's epoll, `udp/portable.rs`
//!   elsewhere) — UDP echo on the same loop;
//!   `rate_limit.rs` — its per-source token buckets; `mmsg.rs` (Linux) —
//!   many datagrams per system call, shared with the stress client.
//! - `metrics.rs` (`metrics/`) — the HTTP endpoint for Prometheus and
//!   health checks, served by the loop.
//! - `idle.rs` — the idle timer: connections in last-activity order.
//! - `token.rs` — what each `mio::Token` names.
//! - `config.rs` — [`Config`]: settings, defaults and bounds; `units.rs` —
//!   parsing seconds and byte counts ([`units`]).
//! - `stats.rs` — the counters ([`Stats`]), from one list; one slot per
//!   loop, with one writer.
//! - `logging.rs` — rate-limited warnings, peer names for debug lines.
//! - `sys.rs` — the few facts that differ between operating systems, behind
//!   `cfg` in one place.
//! - `fuzzing.rs` — with the `fuzzing` feature only: the internals the fuzz
//!   targets under `fuzz/` drive, and nothing else.
//! - `bin/echoloop/` — the server binary: flags, signals, exit codes.
//! - `bin/echoloop-stress/` — the stress client, built on the same rules.
//!
//! The library alone needs mio, slab, log, socket2 and ipnet (and rlimit and
//! libc on Unix): depend on it with `default-features = false` to leave out the
//! binaries' command-line, logging and histogram crates, and TLS (the `tls`
//! feature: rustls, ring, rcgen).
//!
//! # How the loop works
//!
//! Every socket is non-blocking and registered with one [`mio::Poll`]: the
//! listeners and the waker under reserved tokens, each connection under its
//! key in a [`slab::Slab`], which is its `Token` — so an event finds its
//! connection with one index, no map. Each turn waits for events or the
//! nearest deadline, serves what is ready, accepts, comes back to whoever
//! its budget cut short, and runs the timers: the steps are written out once,
//! in `EventLoop::turn` (`src/event_loop.rs`), and the rules they follow in
//! [`rules`]. Three properties keep it fair and bounded:
//!
//! - *Budgets.* One connection reads at most `reads_per_turn` times per turn
//!   and a listener accepts at most `accepts_per_turn`; whoever is cut short
//!   is remembered and served next turn, after everyone else.
//! - *Back-pressure.* Pending output per connection is capped
//!   (`--max-pending`). At the cap the loop stops reading that peer, so its
//!   own sends block on TCP flow control. Memory is bounded by connections ×
//!   cap, whatever clients do; an idle connection owns no buffer at all.
//! - *No spinning.* Every wake-up either moves bytes or is cheap to ignore;
//!   an accept that fails for lack of descriptors pauses accepting instead of
//!   retrying at once.
//!
//! # Portability
//!
//! | OS | mio's mechanism | notes |
//! |----|-----------------|-------|
//! | Linux, Android | `epoll`, edge-triggered | a short read/write proves the socket drained/full ([`rules::SHORT_IO_MEANS_DRAINED`]); `EPOLLPRI` flags urgent data; `SIOCOUTQ` tells what the peer acknowledged |
//! | macOS, BSDs | `kqueue` (`EV_CLEAR`) | built, not tested in CI |
//! | Windows | AFD poll requests on an I/O completion port | re-arms only after `WouldBlock` (or `reregister`) |
//! | any Unix, forced | `poll(2)` (`RUSTFLAGS="--cfg mio_unsupported_force_poll_poll"`) | O(registered) per call; re-arms only after `WouldBlock` |
//!
//! - **Descriptors.** On Unix the soft open-file limit is raised to the hard
//!   limit at start ([`raise_fd_limit`]) and `--max-connections` defaults to
//!   it minus headroom. Windows has no such limit; the default is fixed.
//! - **Keepalive.** `--tcp-keepalive SECS` sets `SO_KEEPALIVE` with the idle
//!   time everywhere, the probe interval and count where the OS has them
//!   (Linux, BSDs, macOS, Windows 10 1709+; older Windows probes 10 times),
//!   and `TCP_USER_TIMEOUT` on Linux and Android only, so elsewhere a peer
//!   that vanishes while owed output is reaped by the OS's retransmission
//!   limit instead. A reaped connection fails with `ETIMEDOUT` (Windows may
//!   say `WSAENETRESET`) and is counted as `vanished`.
//! - **Shutdown.** Where the OS reports what a peer has acknowledged (Linux),
//!   a quiet peer that has everything is closed at once; elsewhere shutdown
//!   waits for its FIN or the end of the grace period.
//! - **Loops.** With `Config::loops` above 1, Linux's epoll build gives each
//!   loop its own `SO_REUSEPORT` listener and the kernel steers clients by
//!   source address; everywhere else (and on forced `poll(2)`) loop 0
//!   accepts and hands clients off, and serves UDP alone ([`Server`]'s
//!   `# Loops`).
//! - **Signals.** The binary stops gracefully on Ctrl-C, SIGTERM and SIGHUP
//!   (Unix) or console control events (Windows), via the `ctrlc` crate and
//!   [`Handle::shutdown`], which wakes the loop through a [`mio::Waker`].

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod admission;
pub mod config;
mod connection;
mod event_loop;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod idle;
mod logging;
mod metrics;
#[cfg(target_os = "linux")]
// Linux's, whatever mio's backend: the server and the stress client batch
// with it on epoll only, but a caller (the tests) may send GSO anywhere.
#[cfg_attr(not(linux_batch), allow(dead_code))]
pub mod mmsg;
mod pending;
pub mod proxy;
mod rate_limit;
pub mod rules;
mod server;
mod shared;
pub mod stats;
mod steer;
mod sys;
mod threads;
#[cfg(feature = "tls")]
pub mod tls;
mod token;
pub mod transport;
mod udp;
pub mod units;

pub use config::Config;
pub use server::{Handle, Server, ACCEPT_BACKOFF};
pub use stats::Stats;
pub use sys::raise_fd_limit;
