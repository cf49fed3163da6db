//! Admission control: `--deny`, `--allow` and `--max-per-source` — the
//! portable form of `WSAAccept`'s condition function: accept, judge the
//! peer's address, close at once whoever is refused, count why.

pub mod support;

use std::io::{Read, Write};

use echoloop::Stats;
use support::*;

/// Skips (saying why) where the platform hides the source address.
macro_rules! needs_distinct_sources {
    () => {
        if !sources_are_told_apart() {
            return;
        }
    };
}

/// Accepted plus refused, by every reason, is every connection attempted.
fn attempted(s: &Stats) -> u64 {
    s.accepted + s.refused + s.refused_denied + s.refused_per_source
}

/// `--deny 127.0.0.2/32`: a client from 127.0.0.2 is refused (counted as
/// denied) while one from 127.0.0.1 is served.
#[test]
fn deny_refuses_its_range_only() {
    needs_distinct_sources!();
    let server = TestServer::start(|c| c.deny = vec!["127.0.0.2/32".parse().unwrap()]);
    assert_refused(&connect_from("127.0.0.2", server.addr));
    assert_echo(&connect_from("127.0.0.1", server.addr), b"welcome");
    wait_until("both counted", TIMEOUT, || {
        attempted(&server.handle.stats()) == 2
    });
    let stats = server.stop();
    assert_eq!((stats.accepted, stats.refused_denied), (1, 1));
}

/// `--allow 127.0.0.1/32`: 127.0.0.3 is refused, 127.0.0.1 served.
#[test]
fn allow_admits_only_its_range() {
    needs_distinct_sources!();
    let server = TestServer::start(|c| c.allow = vec!["127.0.0.1/32".parse().unwrap()]);
    assert_refused(&connect_from("127.0.0.3", server.addr));
    assert_echo(&connect_from("127.0.0.1", server.addr), b"allowed");
    wait_until("both counted", TIMEOUT, || {
        attempted(&server.handle.stats()) == 2
    });
    let stats = server.stop();
    assert_eq!((stats.accepted, stats.refused_denied), (1, 1));
}

/// A `--deny` inside an `--allow` range wins: of 127.0.0.0/30 allowed and
/// 127.0.0.2 denied, 127.0.0.2 and 127.0.0.5 are refused, 127.0.0.1 and
/// 127.0.0.3 served.
#[test]
fn deny_wins_over_allow() {
    needs_distinct_sources!();
    let server = TestServer::start(|c| {
        c.allow = vec!["127.0.0.0/30".parse().unwrap()];
        c.deny = vec!["127.0.0.2/32".parse().unwrap()];
    });
    assert_refused(&connect_from("127.0.0.5", server.addr));
    assert_refused(&connect_from("127.0.0.2", server.addr));
    assert_echo(&connect_from("127.0.0.1", server.addr), b"allowed");
    assert_echo(&connect_from("127.0.0.3", server.addr), b"allowed too");
    wait_until("all counted", TIMEOUT, || {
        attempted(&server.handle.stats()) == 4
    });
    let stats = server.stop();
    assert_eq!((stats.accepted, stats.refused_denied), (2, 2));
}

/// `--max-per-source 5`: the sixth connection from one address is refused
/// (counted as per-source) while another address is served; once one of
/// the five closes, that address may connect again.
#[test]
fn max_per_source_refuses_the_sixth() {
    needs_distinct_sources!();
    let server = TestServer::start(|c| c.max_per_source = Some(5));
    let five: Vec<_> = (0..5)
        .map(|i| {
            let c = connect_from("127.0.0.4", server.addr);
            (&c).write_all(&[i]).unwrap();
            (&c).read_exact(&mut [0u8; 1]).unwrap();
            c
        })
        .collect();
    assert_refused(&connect_from("127.0.0.4", server.addr));
    assert_echo(&connect_from("127.0.0.5", server.addr), b"another address");
    let mut five = five;
    assert_echo(&five.pop().unwrap(), b"one leaves");
    wait_until("its slot freed", TIMEOUT, || {
        server.handle.stats().active == 4
    });
    assert_echo(&connect_from("127.0.0.4", server.addr), b"room again");
    wait_until("all counted", TIMEOUT, || {
        attempted(&server.handle.stats()) == 8
    });
    let stats = server.stop();
    assert_eq!((stats.accepted, stats.refused_per_source), (7, 1));
}

/// Every reason at once, through the real binary's flags: accepted plus
/// refused equals the connections attempted, each reason counted apart.
#[test]
fn accepted_plus_refused_is_every_attempt() {
    needs_distinct_sources!();
    let mut server = Binary::start(&[
        "--deny",
        "127.0.0.9",
        "--max-per-source",
        "2",
        "--max-connections",
        "3",
        "--stats-interval",
        "0.05",
    ]);
    let mut held = Vec::new();
    for ip in ["127.0.0.1", "127.0.0.1", "127.0.0.2"] {
        let c = connect_from(ip, server.addr);
        (&c).write_all(b"x").unwrap();
        (&c).read_exact(&mut [0u8; 1]).unwrap();
        held.push(c);
    }
    assert_refused(&connect_from("127.0.0.1", server.addr)); // max-connections first
    assert_refused(&connect_from("127.0.0.9", server.addr)); // denied
    drop(held.pop());
    server.stderr.wait_for(" active=2 "); // the 127.0.0.2 client's close seen
    assert_refused(&connect_from("127.0.0.1", server.addr)); // per source
    let line = server.stderr.wait_for("refused_per_source=1");
    assert_eq!(stat(&line, "accepted"), 3, "{line}");
    assert_eq!(stat(&line, "refused"), 1, "{line}");
    assert_eq!(stat(&line, "refused_denied"), 1, "{line}");
}
