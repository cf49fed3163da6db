//! Every flag value parser, on any text: the units (seconds, byte counts and
//! counts, against every bound the configuration declares), the server's
//! `--allow`/`--deny` lists, and the stress client's `--source-addrs`
//! ranges, `--percentiles` and its other numeric flags — each through the
//! command line its binary really builds, so clap's splitting is fuzzed
//! too. Never a panic; what is accepted is within its bounds.
//!
//! Input: the first byte picks the parser, the rest (UTF-8, as clap takes
//! values) is the text.

#![no_main]
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use echoloop::units::{parse_secs, Bounds};
use echoloop::Config;
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;

/// The server's command line, from its own source file.
#[allow(dead_code)]
#[path = "../../src/bin/echoloop/cli.rs"]
mod server_cli;

// The stress client, whose command line imports its other modules: all of
// them, as its `main.rs` declares them (see the report target).
include!(concat!(env!("OUT_DIR"), "/stress_modules.rs"));
use stress::cli as stress_cli;

/// The long flags of a command line that take a value, read from its clap
/// definition (so new flags are fuzzed too), less those in `skip`.
fn value_flags<C: CommandFactory>(skip: &[&str]) -> Vec<String> {
    C::command()
        .get_arguments()
        .filter(|a| a.get_action().takes_values())
        .filter_map(|a| a.get_long())
        .filter(|long| !skip.contains(long))
        .map(|long| format!("--{long}"))
        .collect()
}

/// The server's value flags; `--listen` and `--metrics` would ask the
/// resolver.
fn server_flags() -> &'static [String] {
    static FLAGS: OnceLock<Vec<String>> = OnceLock::new();
    FLAGS.get_or_init(|| value_flags::<server_cli::Cli>(&["listen", "metrics"]))
}

/// The stress client's value flags.
fn stress_flags() -> &'static [String] {
    static FLAGS: OnceLock<Vec<String>> = OnceLock::new();
    FLAGS.get_or_init(|| value_flags::<stress_cli::Args>(&[]))
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    match pick % 6 {
        0 => units(text),
        1 => server_list(text),
        2 => source_addrs(text),
        3 => percentiles(text),
        4 => {
            let flags = server_flags();
            let flag = &flags[usize::from(pick / 6) % flags.len()];
            let _ = server_cli::Cli::try_parse_from(["echoloop", &format!("{flag}={text}")]);
        }
        _ => {
            let flags = stress_flags();
            let flag = &flags[usize::from(pick / 6) % flags.len()];
            let _ =
                stress_cli::Args::try_parse_from(["echoloop-stress", &format!("{flag}={text}")]);
        }
    }
});

/// Seconds and byte counts: what any bound accepts is inside it.
fn units(text: &str) {
    if let Ok(d) = parse_secs(text) {
        assert!(d.as_secs_f64().is_finite());
    }
    let durations: [Bounds<Duration>; 3] = [
        Config::IDLE_TIMEOUT,
        Config::STATS_INTERVAL,
        Config::SHUTDOWN_GRACE,
    ];
    for b in durations {
        if let Ok(d) = b.parse(text) {
            assert!(b.min <= d && d <= b.max, "{text:?} -> {d:?} outside {b:?}");
        }
    }
    let counts: [Bounds<u64>; 7] = [
        Config::MAX_PENDING,
        Config::SEND_BUFFER,
        Config::READ_BUFFER,
        Config::BACKLOG,
        Config::TCP_KEEPALIVE,
        Config::UDP_RATE,
        Config::PER_TURN,
    ];
    for b in counts {
        if let Ok(n) = b.parse(text) {
            assert!(b.min <= n && n <= b.max, "{text:?} -> {n} outside {b:?}");
        }
        let _ = b.parse_usize(text);
    }
}

/// `--allow`/`--deny`: accepted exactly when every comma-separated item is
/// a CIDR range or an address, and then one range per item, in order.
fn server_list(text: &str) {
    let reference: Option<Vec<IpNet>> = text
        .split(',')
        .map(|item| {
            let item = item.trim();
            item.parse::<IpNet>()
                .ok()
                .or_else(|| item.parse::<IpAddr>().ok().map(IpNet::from))
        })
        .collect();
    for flag in ["--allow", "--deny"] {
        let parsed = server_cli::Cli::try_parse_from(["echoloop", &format!("{flag}={text}")]);
        match (parsed, &reference) {
            (Ok(cli), Some(want)) => {
                let got = if flag == "--allow" {
                    cli.allow
                } else {
                    cli.deny
                };
                assert_eq!(&got, want, "{flag}={text:?}");
            }
            (Err(_), None) => {}
            (Ok(cli), None) => panic!("{flag}={text:?} accepted as {:?}", cli.allow),
            (Err(e), Some(want)) => panic!("{flag}={text:?} refused ({e}), but is {want:?}"),
        }
    }
}

/// `--source-addrs`: accepted lists are not empty and within the cap.
fn source_addrs(text: &str) {
    if let Ok(args) =
        stress_cli::Args::try_parse_from(["echoloop-stress", &format!("--source-addrs={text}")])
    {
        let addrs = args.source_addrs.expect("--source-addrs was given").0;
        assert!(!addrs.is_empty() && addrs.len() <= 65_536, "{text:?}");
    }
}

/// `--percentiles`: every accepted one above 0 and at most 100, one per
/// non-empty item.
fn percentiles(text: &str) {
    if let Ok(args) =
        stress_cli::Args::try_parse_from(["echoloop-stress", &format!("--percentiles={text}")])
    {
        let list = args.percentiles.0;
        let items = text.split(',').filter(|s| !s.trim().is_empty()).count();
        assert_eq!(list.len(), items, "{text:?}");
        assert!(list.iter().all(|&p| p > 0.0 && p <= 100.0), "{text:?}");
    }
}
