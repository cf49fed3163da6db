//! Seeded random interleavings (scenario 6 of `docs/hostile.md`). Each round draws a
//! server configuration and a few hundred client scripts from one seed —
//! write sizes, read pacing, pipelining depth, start delay, and how each
//! client ends (half-close and read everything, reset at some point, half-
//! close and vanish, or half-close at once) — runs them all at once against
//! an in-process server, and checks every stream byte for byte.
//!
//! The seed is printed at the start and, for a failing round, with the
//! command that replays it:
//!
//! ```text
//! ECHOLOOP_SEED=<seed> ECHOLOOP_ROUNDS=1 cargo test --test random -- --nocapture
//! ```
//!
//! A seed fixes the scripts and the configuration, not the kernel's
//! scheduling, so a replay re-runs the same scenario rather than the exact
//! same interleaving. Without `ECHOLOOP_SEED` the seed comes from the clock,
//! so every run explores new cases.

pub mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::fleet::Fleet;
use support::*;

/// Rounds per run unless `ECHOLOOP_ROUNDS` says otherwise.
const DEFAULT_ROUNDS: usize = 8;

/// How a client's stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Send everything, half-close, read the whole echo and the end of
    /// stream: the echo must equal what was sent.
    Clean,
    /// Reset (SO_LINGER 0) once this many bytes are sent.
    Reset(u64),
    /// Half-close after this many bytes, then close without reading the
    /// rest (an RST if echo is still unread).
    Vanish(u64),
}

/// One client's script.
#[derive(Debug, Clone)]
struct Script {
    total: u64,
    write_size: (usize, usize),
    read_size: (usize, usize),
    window: u64,
    /// Read pacing: `burst` bytes, then a pause of `pause`.
    burst: u64,
    pause: Duration,
    start: Duration,
    end: End,
}

/// A size range `(lo, hi)` with `hi` from a spread of scales.
fn size_range(rng: &mut Rng) -> (usize, usize) {
    let hi = rng.pick(&[1, 3, 16, 512, 1460, 4096, 65536, 200_000]);
    (rng.range(1, hi), hi)
}

fn script(rng: &mut Rng, per_conn_max: u64, aborts: bool) -> Script {
    let total = match rng.range(0, 9) {
        0 => 0,
        1 | 2 => rng.range(1, 64) as u64,
        3..=5 => rng.range(64, 4096) as u64,
        _ => rng.range(4096, per_conn_max.max(4096) as usize) as u64,
    }
    .min(per_conn_max);
    let mut window = rng.pick(&[1, 7, 512, 4096, 65536, u64::MAX]);
    // Bound the round trips a small window costs.
    window = window.max(total / 200);
    let (mut burst, pause) = if rng.chance(40) {
        (
            rng.pick(&[1, 100, 4096, 65536]),
            Duration::from_millis(rng.range(1, 20) as u64),
        )
    } else {
        (u64::MAX, Duration::ZERO)
    };
    // Bound how long the pacing makes the client take (~1 s).
    if burst != u64::MAX && total / burst * (pause.as_millis() as u64) > 1000 {
        burst = u64::MAX;
    }
    let end = match rng.range(0, 9) {
        _ if !aborts => End::Clean,
        0..=5 => End::Clean,
        6 | 7 => End::Reset(rng.range(0, total as usize) as u64),
        _ => End::Vanish(rng.range(0, total as usize) as u64),
    };
    Script {
        total,
        write_size: size_range(rng),
        read_size: size_range(rng),
        window,
        burst,
        pause,
        start: Duration::from_millis(if rng.chance(30) {
            rng.range(0, 200) as u64
        } else {
            0
        }),
        end,
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

/// Randomized rounds: every stream's echo is byte-exact — whole for the
/// clients that end cleanly, a verified prefix for those that reset or
/// vanish — and the server ends every round with no connection, no pending
/// output, every connection counted as closed by peer or errored, and
/// byte counts consistent with what the clients saw (exactly equal when no
/// client aborted).
#[test]
fn random_interleavings_echo_byte_exact() {
    let master = env_u64("ECHOLOOP_SEED").unwrap_or_else(|| {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        t.as_secs() ^ u64::from(t.subsec_nanos()) << 20
    });
    let rounds = env_u64("ECHOLOOP_ROUNDS").map_or(DEFAULT_ROUNDS, |n| n as usize);
    eprintln!("random: seed {master}, {rounds} rounds (replay: ECHOLOOP_SEED={master})");
    let mut seeds = Rng::new(master ^ 0xA5A5_5A5A);
    let started = Instant::now();
    let mut totals = (0u64, 0u64, 0usize);
    for round in 0..rounds {
        let seed = if round == 0 { master } else { seeds.next_u64() };
        match std::panic::catch_unwind(|| run_round(seed)) {
            Ok((sent, verified, conns)) => {
                totals.0 += sent;
                totals.1 += verified;
                totals.2 += conns;
            }
            Err(panic) => {
                eprintln!(
                    "random: round {round} FAILED with seed {seed}; replay it with\n  \
                     ECHOLOOP_SEED={seed} ECHOLOOP_ROUNDS=1 cargo test --test random -- --nocapture"
                );
                std::panic::resume_unwind(panic);
            }
        }
    }
    eprintln!(
        "random: {rounds} rounds, {} connections, {} bytes sent, {} echoed bytes verified, in {:?}",
        totals.2,
        totals.0,
        totals.1,
        started.elapsed()
    );
}

/// One round; returns (bytes sent, echoed bytes verified, connections).
fn run_round(seed: u64) -> (u64, u64, usize) {
    let round = Round::draw(seed);
    let server = TestServer::start(|c| {
        c.idle_timeout = round.idle_timeout;
        c.max_pending = round.max_pending;
        c.read_buffer = round.read_buffer;
        c.reads_per_turn = round.reads_per_turn;
        c.accepts_per_turn = round.accepts_per_turn;
    });
    let started = Instant::now();
    let fleet = drive(&round, server.addr);
    let took = started.elapsed();
    let seen = check_every_stream(&round, &fleet);
    wait_until("every connection closed", TIMEOUT, || {
        server.handle.stats().active == 0
    });
    let stats = server.stop();
    eprintln!(
        "random: seed {seed}: max_pending {} read_buffer {} reads_per_turn {} accepts_per_turn {} \
         idle_timeout {:?}: {} clients ({} clean, {} reset or vanished), {} bytes sent, {} echoed \
         and verified, in {took:?}; {stats}",
        round.max_pending,
        round.read_buffer,
        round.reads_per_turn,
        round.accepts_per_turn,
        round.idle_timeout,
        round.scripts.len(),
        seen.clean,
        seen.aborted,
        seen.sent,
        seen.received,
    );
    check_server_counts(&round, &stats, &seen);
    (seen.sent, seen.received, round.scripts.len())
}

/// A round drawn from its seed: the server's configuration and every
/// client's script.
#[derive(Debug)]
struct Round {
    seed: u64,
    max_pending: usize,
    read_buffer: usize,
    reads_per_turn: usize,
    accepts_per_turn: usize,
    idle_timeout: Option<Duration>,
    scripts: Vec<Script>,
}

impl Round {
    fn draw(seed: u64) -> Round {
        let mut rng = Rng::new(seed);
        // Small caps and buffers make partial reads and writes, pending
        // output and back-pressure the common case rather than the exception.
        let max_pending = rng.pick(&[1, 7, 1000, 4096, 65536]);
        let read_buffer = rng.pick(&[1, 13, 1024, 16384, 65536]);
        let reads_per_turn = rng.pick(&[1, 2, 16]);
        let accepts_per_turn = rng.pick(&[1, 8, 128]);
        // Long enough never to fire; exercises the idle queue's bookkeeping.
        let idle_timeout = rng.chance(50).then_some(Duration::from_secs(60));
        let conns = rng.range(50, 300);
        // The server moves at most min(cap, buffer) bytes per read: bound
        // the round's bytes by that, so a round takes about a second in
        // debug builds.
        let chunk = max_pending.min(read_buffer) as u64;
        let budget = (chunk * 20_000).min(16 << 20);
        // One round in three has no aborting client, so the server's byte
        // counts can be checked for exact equality with what was sent.
        let aborts = rng.range(0, 2) > 0;
        let scripts = (0..conns)
            .map(|_| script(&mut rng, (budget / conns as u64).max(1), aborts))
            .collect();
        Round {
            seed,
            max_pending,
            read_buffer,
            reads_per_turn,
            accepts_per_turn,
            idle_timeout,
            scripts,
        }
    }
}

/// Connects a client per script and plays the scripts until every client
/// is closed.
fn drive(round: &Round, addr: std::net::SocketAddr) -> Fleet {
    let started = Instant::now();
    let mut fleet = Fleet::new();
    fleet.tick = Duration::from_millis(1); // the read pacing's resolution
    for (id, s) in round.scripts.iter().enumerate() {
        let p = fleet.connect(addr, id, None);
        let peer = &mut fleet.peers[p];
        peer.write_size = s.write_size;
        peer.read_size = s.read_size;
        peer.window = s.window;
        peer.send_limit = Some(0); // until its start time
        peer.read_allowance = 0;
    }
    let mut next_read = vec![started; round.scripts.len()];
    fleet.run_until(
        &format!("round with seed {} to finish", round.seed),
        Duration::from_secs(60),
        |f| {
            let now = Instant::now();
            for (i, s) in round.scripts.iter().enumerate() {
                if f.peers[i].is_open() && now >= started + s.start {
                    steer(f, i, s, now, &mut next_read[i]);
                }
            }
            f.open() == 0
        },
    );
    fleet
}

/// Between turns, sets what client `i`, started, may send and read by its
/// script `s`, and ends it when the script says.
fn steer(f: &mut Fleet, i: usize, s: &Script, now: Instant, next_read: &mut Instant) {
    let p = &mut f.peers[i];
    match s.end {
        End::Clean => {
            p.send_limit = Some(s.total);
            p.fin_after_send = true;
        }
        End::Reset(at) => p.send_limit = Some(at.max(p.sent).min(s.total)),
        End::Vanish(at) => {
            p.send_limit = Some(at);
            p.fin_after_send = true;
        }
    }
    if s.burst == u64::MAX {
        p.read_allowance = u64::MAX;
    } else if now >= *next_read && p.read_allowance == 0 {
        p.read_allowance = s.burst;
        *next_read = now + s.pause;
    }
    match s.end {
        End::Reset(at) if p.sent >= at => f.reset(i),
        End::Vanish(at) if p.sent >= at && p.fin_sent => f.drop_peer(i),
        _ => {}
    }
}

/// What the clients of a round sent and saw.
#[derive(Debug, Default)]
struct Seen {
    sent: u64,
    received: u64,
    clean: u64,
    aborted: u64,
}

/// Every stream's echo is byte-exact: whole, then end of stream, for the
/// clients that end cleanly; a verified prefix for the others.
fn check_every_stream(round: &Round, fleet: &Fleet) -> Seen {
    let mut seen = Seen::default();
    for (p, s) in fleet.peers.iter().zip(&round.scripts) {
        let what = || format!("seed {}: {:?}: {}", round.seed, s, p.describe());
        assert!(p.corrupt_at.is_none(), "echo corrupted: {}", what());
        assert!(p.received <= p.sent, "more echoed than sent: {}", what());
        match s.end {
            End::Clean => {
                assert!(
                    p.error.is_none() && p.eof_at.is_some() && p.received == s.total,
                    "incomplete echo: {}",
                    what()
                );
                seen.clean += 1;
            }
            End::Reset(_) | End::Vanish(_) => seen.aborted += 1,
        }
        seen.sent += p.sent;
        seen.received += p.received;
    }
    seen
}

/// The server ends the round with every connection counted as closed by
/// its peer or errored, nothing pending, and byte counts consistent with
/// what the clients saw (exactly equal when no client aborted).
fn check_server_counts(round: &Round, stats: &echoloop::Stats, seen: &Seen) {
    let (seed, conns) = (round.seed, round.scripts.len() as u64);
    assert_eq!(stats.accepted, conns, "seed {seed}: {stats}");
    assert_eq!(
        stats.closed_by_peer + stats.errored,
        conns,
        "seed {seed}: {stats}"
    );
    assert!(stats.closed_by_peer >= seen.clean, "seed {seed}: {stats}");
    assert_eq!(stats.pending_bytes, 0, "seed {seed}: {stats}");
    let (sent, received) = (seen.sent, seen.received);
    assert!(
        received <= stats.bytes_out && stats.bytes_out <= stats.bytes_in && stats.bytes_in <= sent,
        "seed {seed}: client saw {received} of {sent}; {stats}"
    );
    if seen.aborted == 0 {
        assert_eq!(stats.bytes_in, sent, "seed {seed}: {stats}");
        assert_eq!(stats.bytes_out, sent, "seed {seed}: {stats}");
    }
}
