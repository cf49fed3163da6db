//! Back-pressure: a peer that does not read cannot make the server hold
//! more than `--max-pending` bytes for it; its own writes block instead.

pub mod support;

use std::io::Read;
use std::thread;
use std::time::Duration;

use support::*;

/// A writer thread pushes 32 MiB while the reader waits. The server's
/// pending output fills to exactly the cap and stays there (the writer
/// blocks on TCP flow control instead); once the reader starts, all 32 MiB
/// come back in order and the pending output drains to zero.
#[test]
fn slow_reader_gets_everything_while_pending_stays_at_cap() {
    const CAP: usize = 64 * 1024;
    const TOTAL: usize = 32 << 20;
    let server = TestServer::start(|c| c.max_pending = CAP);
    let stream = connect(server.addr);
    let data = payload(11, TOTAL);
    let writer = spawn_writer(&stream, data.clone());

    wait_until("pending output to reach the cap", TIMEOUT, || {
        server.handle.stats().pending_bytes == CAP as u64
    });
    // While nobody reads, the pending output never passes the cap, and the
    // server has read far less than was offered: the writer is blocked.
    // (An observation window of 50 samples, 2 ms apart: not a sync point.)
    for _ in 0..50 {
        let stats = server.handle.stats();
        assert!(stats.pending_bytes <= CAP as u64, "{stats}");
        thread::sleep(Duration::from_millis(2));
    }
    let stats = server.handle.stats();
    assert!(
        stats.bytes_in < TOTAL as u64,
        "server read everything without a reader: {stats}"
    );
    assert!(
        !writer.is_finished(),
        "writer should be blocked by flow control"
    );

    let mut got = Vec::with_capacity(TOTAL);
    (&stream).take(TOTAL as u64).read_to_end(&mut got).unwrap();
    assert_eq!(writer.join().unwrap(), TOTAL);
    assert_same(&got, &data);
    wait_until("pending output to drain", TIMEOUT, || {
        server.handle.stats().pending_bytes == 0
    });
}
