//! Names for the platform switches the code tests more than once, so each
//! `cfg` says what it means and the condition is written here only.
//!
//! `linux_batch`: Linux with mio's epoll backend, where UDP goes through
//! `recvmmsg`/`sendmmsg` and GSO (`src/mmsg.rs`). mio's forced `poll(2)`
//! backend (`--cfg mio_unsupported_force_poll_poll`) takes the portable path
//! instead, so CI runs both on one machine.

/// `pub`: the fuzz package's build script (fuzz/build.rs) runs it too.
pub fn main() {
    cfg_aliases::cfg_aliases! {
        linux_batch: { all(target_os = "linux", not(mio_unsupported_force_poll_poll)) },
    }
}
