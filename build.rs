//! Names for the platform switches the code tests more than once, so each
//! `cfg` says what it means and the condition is written here only.
//!
//! `linux_batch`: Linux with mio's epoll backend, where UDP goes through
//! `recvmmsg`/`sendmmsg` and GSO (`src/mmsg.rs`). mio's forced `poll(2)`
//! backend (`--cfg mio_unsupported_force_poll_poll`) takes the portable path
//! instead, so CI runs both on one machine.
//!
//! `reuseport_steering`: Linux with epoll, where each loop binds its own
//! listener with `SO_REUSEPORT` and a BPF program steers clients by source
//! (`src/steer.rs`); elsewhere, and on the forced `poll(2)` backend, loop 0
//! hands accepted clients to the others.

fn main() {
    cfg_aliases::cfg_aliases! {
        linux_batch: { all(target_os = "linux", not(mio_unsupported_force_poll_poll)) },
        reuseport_steering: { all(target_os = "linux", not(mio_unsupported_force_poll_poll)) },
    }
}
