//! `echoloop-stress chart`: the benchmark's results file turned into the
//! guide's SVG charts, tested on a small synthetic results file shaped as
//! `bench/run.py` writes it (`backends` and `compare` lists).

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod support;

use support::{run_to_exit, Exit, STRESS};

/// A results file: two backends at three idle counts, and four techniques
/// of which one lacks the 1,000-connection case and one has no figures.
const RESULTS: &str = r#"{
  "command": "python3 bench/run.py --compare --backends",
  "backends": [
    {"server": "epoll", "idle_requested": 0, "msgs_per_sec": 294939.7},
    {"server": "epoll", "idle_requested": 10000, "msgs_per_sec": 267339.5},
    {"server": "epoll", "idle_requested": 1000, "msgs_per_sec": 270317.1},
    {"server": "poll(2)", "idle_requested": 0, "msgs_per_sec": 242290.1},
    {"server": "poll(2)", "idle_requested": 1000, "msgs_per_sec": 105587.2},
    {"server": "poll(2)", "idle_requested": 10000, "msgs_per_sec": 14224.9}
  ],
  "compare": [
    {"server": "echoloop", "kind": "loop",
     "c1": {"msgs_per_sec": 42093.7}, "c50": {"msgs_per_sec": 278353.4}, "c1000": {"msgs_per_sec": 923347.8}},
    {"server": "thread_per_connection", "kind": "threads",
     "c1": {"msgs_per_sec": 44015.8}, "c50": {"msgs_per_sec": 174173.7}, "c1000": {"msgs_per_sec": 219617.2}},
    {"server": "select_loop", "kind": "loop",
     "c1": {"msgs_per_sec": 40000.0}, "c50": {"msgs_per_sec": 150000.0}},
    {"server": "iocp_loop", "kind": "completion", "skipped": "Windows only"}
  ]
}"#;

/// A directory for this test's files under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// Runs `echoloop-stress chart results --out out` to its exit.
fn chart(results: &Path, out: &Path) -> Exit {
    let mut cmd = Command::new(STRESS);
    cmd.arg("chart").arg(results).arg("--out").arg(out);
    run_to_exit(&mut cmd)
}

/// Proves `chart` draws both charts from a results file: epoll vs poll(2)
/// with a line per backend, and the techniques with a bar group each,
/// leaving out the technique with no figures and the case a technique
/// lacks instead of refusing the file.
#[test]
fn results_become_two_svg_charts() {
    let dir = scratch("stress-chart");
    let results = dir.join("results.json");
    std::fs::write(&results, RESULTS).expect("write the results");
    let out = chart(&results, &dir.join("img"));
    assert!(out.status.success(), "{out:?}");
    let backends = std::fs::read_to_string(dir.join("img/epoll-vs-poll.svg")).expect("svg");
    let techniques = std::fs::read_to_string(dir.join("img/techniques.svg")).expect("svg");
    for (svg, words) in [
        (
            &backends,
            &[
                "<svg",
                "epoll",
                "poll(2)",
                "idle connections held",
                "msgs/s",
            ][..],
        ),
        (
            &techniques,
            &[
                "<svg",
                "echoloop",
                "thread_per_connection",
                "select_loop",
                "1 connection",
                "50 connections",
                "1,000 connections",
            ],
        ),
    ] {
        for word in words {
            assert!(svg.contains(word), "no {word:?} in the chart");
        }
        assert!(svg.trim_end().ends_with("</svg>"), "an unfinished SVG");
    }
    assert!(
        !techniques.contains("iocp_loop"),
        "a technique without figures was drawn"
    );
    // Two lines of three points each, one bar per figure (3 + 3 + 2).
    assert_eq!(backends.matches("<circle").count(), 6, "{backends}");
    let bars = techniques.matches("<rect").count();
    assert!(bars >= 8, "{bars} rectangles for 8 bars");
}

/// Proves a results file with nothing to chart, or not JSON at all, is one
/// line naming the file and exit status 2.
#[test]
fn nothing_to_chart_is_an_error() {
    let dir = scratch("stress-chart-empty");
    for (name, text) in [
        ("empty.json", "{\"main\": {}}"),
        ("bad.json", "{\"backends\": ["),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        let line = chart(&path, &dir.join("img")).assert_usage_error(name);
        assert!(line.contains(name), "{line}");
    }
}

/// `chart` lists the files it wrote on stdout; into a pipe whose reader is
/// gone that is one line on stderr and a non-zero exit, not a panic in
/// `println!`.
#[cfg(unix)]
#[test]
fn closed_stdout_is_one_line_not_a_panic() {
    let dir = scratch("stress-chart-closed-stdout");
    let results = dir.join("results.json");
    std::fs::write(&results, RESULTS).expect("write the results");
    let mut cmd = Command::new(STRESS);
    cmd.arg("chart")
        .arg(&results)
        .arg("--out")
        .arg(dir.join("img"));
    let out = support::run_with_closed_stdout(&mut cmd);
    let stderr = out.stderr_text();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("write to stdout"), "{stderr}");
}
