//! echoloop: a TCP echo server (RFC 862) whose whole work is done by one
//! readiness loop on one thread — and a reference for how such a loop is
//! built.
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
//! - `server.rs` — the event loop: [`Server`] (bind, then run), [`Handle`]
//!   (stop it, read its counters), and the numbered steps of one turn. Start
//!   reading here.
//! - `connection.rs` — one client: its socket, the echo it still owes, what we
//!   know of its readiness. Knows nothing of the loop but a `Registry`.
//! - `idle.rs` — the idle timer: connections in last-activity order.
//! - `config.rs` — [`Config`] (the library's settings) and [`Cli`] (the flags
//!   that set them).
//! - `stats.rs` — the counters ([`Stats`]).
//! - `sys.rs` — the few facts that differ between operating systems, behind
//!   `cfg` in one place.
//! - `main.rs` — the binary: parse flags, install signal handlers, run, map
//!   the result to an exit code.
//! - `bin/echoloop-stress/` — the stress client, built on the same technique.
//!
//! # How the loop works
//!
//! Every socket is non-blocking and registered with one [`mio::Poll`]: the
//! listeners under reserved tokens, each connection under its key in a
//! [`slab::Slab`], which is its `Token` — so an event finds its connection
//! with one index, no map. A turn of the loop:
//!
//! 1. **Wait.** `poll` blocks until some socket is ready or the nearest
//!    deadline (idle timeout, accept back-off, stats, shutdown) is due.
//! 2. **Serve what is ready.** For each connection event: flush what we
//!    already owe the peer, then read into the loop's one read buffer until
//!    `WouldBlock` and write each chunk straight back. What the socket does
//!    not take now is copied into that connection's pending output, and only
//!    then does it ask for WRITABLE events. A read of 0 bytes is the peer's
//!    end of stream: once everything is echoed, close.
//! 3. **Accept** until `WouldBlock`.
//! 4. **Come back** to connections whose per-turn budget ran out.
//! 5. **Timers**: close idle connections, resume accepting, log stats,
//!    progress a shutdown.
//!
//! Three rules keep it fair and bounded:
//!
//! - *Budgets.* One connection reads at most `reads_per_turn` times per turn
//!   and a listener accepts at most `accepts_per_turn`; whoever is cut short
//!   is remembered (readiness is edge-triggered: no second event comes for
//!   data already there) and served next turn, after everyone else.
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
//! | Linux, Android | `epoll`, edge-triggered | a short read/write proves the socket drained/full |
//! | macOS, BSDs | `kqueue` (`EV_CLEAR`) | built, not tested in CI |
//! | Windows | AFD poll requests on an I/O completion port | re-arms only after `WouldBlock` |
//! | any Unix, forced | `poll(2)` (`RUSTFLAGS="--cfg mio_unsupported_force_poll_poll"`) | O(registered) per call; re-arms only after `WouldBlock` |
//!
//! The rules the code follows everywhere:
//!
//! - **Events are hints.** A readable event may be spurious (mio's Windows
//!   backend reports a writable event after a read hits `WouldBlock`, mio
//!   issue #1963; an event may also name a connection closed earlier in
//!   the same batch, whose key is then vacant; a key freed there is reused
//!   only in the accept step, after every event was dispatched). Serving a connection that has
//!   nothing to do costs one `WouldBlock` at most, and nothing at all for a
//!   writable event with no pending output.
//! - **Drain until `WouldBlock`.** Edge-triggered readiness reports changes,
//!   not levels: stop reading early and the data left behind raises no new
//!   event. The loop either drains, or remembers that it did not.
//! - **Closed and error flags are hints too**: the next read or write tells
//!   what really happened, and that call's error is what gets logged.
//! - **The short-I/O shortcut is epoll's alone.** On epoll a read that
//!   returns fewer bytes than asked for means the socket is empty, so the read
//!   that would only say `WouldBlock` is skipped — one syscall in three on a
//!   ping-pong. Windows and `poll(2)` re-arm interest only when a call returns
//!   `WouldBlock`, so there the loop always drains to it. See
//!   `sys::SHORT_IO_MEANS_DRAINED`.
//! - **Descriptors.** On Unix the soft open-file limit is raised to the hard
//!   limit at start ([`raise_fd_limit`]) and `--max-connections` defaults to
//!   it minus headroom. Windows has no such limit; the default is fixed.
//! - **Signals.** The binary stops gracefully on Ctrl-C and SIGTERM (Unix) or
//!   console control events (Windows), via the `ctrlc` crate and
//!   [`Handle::shutdown`], which wakes the loop through a [`mio::Waker`].

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod config;
mod connection;
mod idle;
mod server;
pub mod stats;
mod sys;
pub mod units;

pub use config::{Cli, Config};
pub use server::{Handle, Server, ACCEPT_BACKOFF};
pub use stats::Stats;
pub use sys::{raise_fd_limit, READ_INTEREST};
