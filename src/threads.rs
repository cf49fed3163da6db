//! Running the loops: loop 0 on the caller's thread, each other loop on a
//! thread of its own, and the rule that no server runs half-alive — a loop
//! that panics or whose poll fails stops all the others, and the first such
//! failure is what [`Server::run`](crate::Server::run) returns.

use std::any::Any;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;

use log::{info, warn};

use crate::event_loop::{EventLoop, Part};
use crate::shared::Shared;
use crate::sys;

/// Runs every part's loop until all have stopped. Each loop's end is
/// watched: an error or a panic marks the server unhealthy and shuts the
/// other loops down (gracefully: their clients keep what was read).
pub(crate) fn run_loops(parts: Vec<Part>, shared: &Arc<Shared>) -> io::Result<()> {
    run_each(parts, shared, serve)
}

/// What a loop's thread runs: loop `i` serving its part to the end.
type Body = fn(usize, Part, &Arc<Shared>) -> io::Result<()>;

/// [`run_loops`] with each loop's life being `body` (the tests give one
/// that fails).
fn run_each(parts: Vec<Part>, shared: &Arc<Shared>, body: Body) -> io::Result<()> {
    let mut parts = parts.into_iter().enumerate();
    let (_, first) = parts.next().expect("a server has at least one loop");
    let mut others = Vec::new();
    for (i, part) in parts {
        let mine = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name(format!("loop {i}"))
            .spawn(move || watched(i, part, &mine, body));
        match spawned {
            Ok(thread) => others.push((i, thread)),
            Err(e) => {
                // Never half a server: stop the loops already running.
                let _ = shared.shutdown();
                shared.close_accepting();
                for (_, thread) in others {
                    let _ = thread.join();
                }
                return Err(io::Error::new(e.kind(), format!("spawn loop {i}: {e}")));
            }
        }
    }
    let mut outcome = watched(0, first, shared, body);
    for (i, thread) in others {
        let result = thread
            .join()
            .unwrap_or_else(|payload| Err(panicked(i, &*payload)));
        if outcome.is_ok() {
            outcome = result;
        }
    }
    outcome
}

/// Runs loop `i` to its end on this thread; an error or a panic stops the
/// whole server, and a panic becomes an error naming the loop and its
/// message.
fn watched(i: usize, part: Part, shared: &Arc<Shared>, body: Body) -> io::Result<()> {
    let result = panic::catch_unwind(AssertUnwindSafe(|| body(i, part, shared)))
        .unwrap_or_else(|payload| Err(panicked(i, &*payload)));
    if let Err(e) = &result {
        warn!("loop {i} stopped: {e}; stopping the server");
        shared.loop_lost();
    }
    result
}

/// Loop `i`'s life: pinned if asked, then turn after turn until it stops.
fn serve(i: usize, part: Part, shared: &Arc<Shared>) -> io::Result<()> {
    if shared.config.pin {
        match sys::pin_to_core(i) {
            Ok(Some(core)) => info!("loop {i} pinned to core {core}"),
            Ok(None) => info!("loop {i}: --pin is not supported on this OS; not pinned"),
            Err(e) => warn!("loop {i}: sched_setaffinity: {e}; not pinned"),
        }
    }
    let mut event_loop = EventLoop::new(part, Arc::clone(shared), i);
    while event_loop.turn()? {}
    Ok(())
}

/// The error a panic of loop `i` becomes, with its message.
fn panicked(i: usize, payload: &(dyn Any + Send)) -> io::Error {
    let message = (payload.downcast_ref::<&str>().copied())
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    io::Error::other(format!("loop {i} panicked: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Server};

    /// A loop that panics stops the whole server: the other loops shut
    /// down, the server is unhealthy from then on (`/healthz` 503), and the
    /// run ends with an error naming the loop and the panic's message.
    #[test]
    fn a_panicking_loop_stops_the_server_with_its_message() {
        let server = Server::bind(Config {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            loops: 3,
            ..Config::default()
        })
        .expect("bind");
        let Server { shared, parts } = server;
        fn body(i: usize, part: Part, shared: &Arc<Shared>) -> io::Result<()> {
            if i == 2 {
                panic!("injected failure");
            }
            serve(i, part, shared)
        }
        let outcome = run_each(parts, &shared, body);
        let e = outcome.expect_err("the server must fail");
        assert_eq!(e.to_string(), "loop 2 panicked: injected failure");
        assert!(shared.unhealthy());
    }
}
