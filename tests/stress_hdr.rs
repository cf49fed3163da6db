//! echoloop-stress's histograms read back by an implementation that is not
//! ours: HdrHistogram_py (the PyPI package `hdrhistogram`) decodes the
//! `--hlog` interval log and the V2-deflate histograms in `--json`, and
//! Python's own XML parser reads the `--plot` SVG.
//!
//! The package is installed with pip into a virtual environment under
//! `target/` the first time (later runs reuse it); Python's venv itself,
//! when missing, and a venv that cannot be made follow the rule of
//! `support::tools` (installed where it can be; else a failure under CI
//! and a skip that says why elsewhere).

pub mod support;

use support::{Exit, Process, STRESS};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value as Json;

/// The PyPI package that decodes HdrHistogram encodings and logs.
const PACKAGE: &str = "hdrhistogram";

/// Reads what echoloop-stress wrote, with HdrHistogram_py and
/// xml.etree, and prints it back as JSON: per file and tag, the total
/// count and the p99 (ns, at the same rank as the report's: the smallest
/// value at least 99 % of the samples do not exceed); the SVG's text
/// elements.
const CHECK: &str = r#"
import json, math, sys
import xml.etree.ElementTree as ET
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

def summary(h):
    # The p99 at the report's rank, ceil(0.99 n): HdrHistogram_py's own
    # rounds 0.99 n to the nearest rank, one lower when its fraction is
    # under a half -- a different definition, not a different histogram.
    n = h.get_total_count()
    rank = max(1, math.ceil(0.99 * n))
    return {"count": n, "p99": h.get_value_at_percentile(rank * 100.0 / n) if n else 0}

report, hlog, svg = sys.argv[1:4]
out = {"hlog": {}, "json": {}, "merged": {}, "svg": []}
totals = {}
reader = HistogramLogReader(hlog, HdrHistogram(1, 3600 * 10**9, 3))
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    totals.setdefault(h.get_tag(), HdrHistogram(1, 3600 * 10**9, 3)).add(h)
out["hlog"] = {tag: summary(h) for tag, h in totals.items()}
for tag, text in json.load(open(report))["histograms"].items():
    if text is not None:
        out["json"][tag] = summary(HdrHistogram.decode(text))
if len(sys.argv) > 4:
    merged, parts = sys.argv[4], sys.argv[5:]
    added = HdrHistogram(1, 3600 * 10**9, 3)
    for part in parts:
        added.decode_and_add(json.load(open(part))["histograms"]["rtt"])
    out["merged"]["sum_of_parts"] = summary(added)
    out["merged"]["merged"] = summary(HdrHistogram.decode(json.load(open(merged))["histograms"]["rtt"]))
root = ET.parse(svg).getroot()
out["svg"] = [t.text.strip() for t in root.iter("{http://www.w3.org/2000/svg}text") if t.text]
print(json.dumps(out))
"#;

/// A directory for this test's files under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// The virtual environment's python with HdrHistogram_py installed, made
/// once per test process; `Err` says why it cannot be had.
fn python() -> Result<PathBuf, String> {
    static VENV: OnceLock<Mutex<Result<PathBuf, String>>> = OnceLock::new();
    let venv = VENV.get_or_init(|| Mutex::new(make_venv()));
    venv.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Creates `target/py-venv` (if needed) and installs the package into it.
fn make_venv() -> Result<PathBuf, String> {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let venv = tmp.parent().unwrap_or(tmp).join("py-venv");
    let python = venv.join("bin").join("python3");
    let has_package = |python: &Path| {
        Command::new(python)
            .args(["-c", "import hdrh.histogram, hdrh.log"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has_package(&python) {
        return Ok(python);
    }
    support::run_tool(
        "python3 -m venv",
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
    )?;
    support::run_tool(
        "pip install hdrhistogram",
        Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            PACKAGE,
        ]),
    )?;
    if has_package(&python) {
        Ok(python)
    } else {
        Err("hdrhistogram installed but `import hdrh` fails".into())
    }
}

/// The checker's python, or `None` after `support::tools`' rule for what
/// cannot be had.
fn checker(test: &str) -> Option<PathBuf> {
    let has_venv = || {
        Command::new("python3")
            .args(["-c", "import venv, ensurepip"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !support::tools::available(test, "python3 with venv", "python3-venv", has_venv) {
        return None;
    }
    match python() {
        Ok(python) => Some(python),
        Err(why) => {
            support::tools::unavailable(test, &why);
            None
        }
    }
}

/// Runs a command to completion within a minute (killing it otherwise).
fn run_bounded(cmd: &mut Command) -> Exit {
    Process::spawn("check", cmd).finish(Duration::from_secs(60))
}

/// Runs the checker on `files` (report, hlog, svg[, merged, parts…]);
/// returns what it read.
fn check(python: &Path, files: &[&Path]) -> Json {
    let checked = run_bounded(Command::new(python).args(["-c", CHECK]).args(files));
    assert!(checked.status.success(), "{checked:?}");
    serde_json::from_str(&checked.stdout).expect("the checker's JSON")
}

/// Asserts every series the checker read from the interval log and from
/// the JSON's histograms has the report's count and p99.
#[track_caller]
fn assert_series(j: &Json, c: &Json) {
    let messages = j["messages"].as_u64().expect("messages");
    assert!(messages > 1000, "{messages} messages");
    for (tag, object, count) in [
        ("rtt", "latency_us", messages),
        ("rtt-uncorrected", "latency_uncorrected_us", messages),
        ("connect", "connect_latency_us", 8),
        ("first-byte", "first_byte_us", 8),
    ] {
        let p99_ns = j[object]["p99"].as_f64().expect("p99") * 1000.0;
        for source in ["hlog", "json"] {
            let got = &c[source][tag];
            assert_eq!(got["count"].as_u64(), Some(count), "{source} {tag}: {c}");
            let p99 = got["p99"].as_f64().expect("p99");
            assert!(
                close(p99, p99_ns),
                "{source} {tag}: p99 {p99} ns, report {p99_ns} ns"
            );
        }
    }
}

/// Whether `a` and `b` (ns) agree within a 3-significant-digit
/// histogram's precision.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= a.max(b) * 0.002 + 1.0
}

/// Proves the histograms echoloop-stress writes are standard: an open-loop
/// run's interval log, read by HdrHistogram_py, holds as many round trips
/// (tag rtt, and rtt-uncorrected) as the report counts messages, one
/// connect and one first byte per connection, with the report's p99 within
/// the histogram's precision; the JSON's embedded histograms decode to the
/// same; and the SVG parses as XML and names every series.
#[test]
fn hlog_json_and_plot_read_by_other_tools() {
    let Some(python) = checker("hlog_json_and_plot_read_by_other_tools") else {
        return;
    };
    let dir = scratch("stress-hdr");
    let (report, hlog, svg) = (
        dir.join("run.json"),
        dir.join("run.hlog"),
        dir.join("run.svg"),
    );
    let addr = support::threaded_echo().to_string();
    let out = run_bounded(
        Command::new(STRESS)
            .args(["--addr", &addr, "-c", "8", "-k", "2"])
            .args([
                "--rate",
                "300",
                "-d",
                "2.5",
                "--interval",
                "0.5",
                "--json",
                "--hlog",
            ])
            .arg(&hlog)
            .arg("--plot")
            .arg(&svg),
    );
    assert!(out.status.success(), "{out:?}");
    std::fs::write(&report, &out.stdout).expect("save the report");
    let j: Json = serde_json::from_str(&out.stdout).expect("the report is JSON");

    let c = check(&python, &[&report, &hlog, &svg]);
    assert_series(&j, &c);
    let texts: Vec<&str> = c["svg"]
        .as_array()
        .expect("texts")
        .iter()
        .filter_map(Json::as_str)
        .collect();
    for series in [
        "msgs/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "p99 uncorrected",
        "time since start (s)",
    ] {
        assert!(
            texts.contains(&series),
            "the plot lacks {series}: {texts:?}"
        );
    }
    assert!(
        texts.iter().any(|t| t.contains("8 connections")),
        "{texts:?}"
    );
}

/// Proves `merge` adds histograms, checked by HdrHistogram_py: three runs'
/// round-trip histograms added up there have the count and p99 of the
/// merged report's.
#[test]
fn merged_histogram_is_the_sum_of_the_parts() {
    let Some(python) = checker("merged_histogram_is_the_sum_of_the_parts") else {
        return;
    };
    let dir = scratch("stress-hdr-merge");
    let addr = support::threaded_echo().to_string();
    let mut parts = Vec::new();
    for (i, size) in ["4", "8", "16"].into_iter().enumerate() {
        let out = run_bounded(
            Command::new(STRESS)
                .args([
                    "--addr", &addr, "-c", size, "-n", "3000", "--json", "--hlog",
                ])
                .arg(dir.join(format!("{i}.hlog")))
                .arg("--plot")
                .arg(dir.join(format!("{i}.svg"))),
        );
        assert!(out.status.success(), "{out:?}");
        let path = dir.join(format!("{i}.json"));
        std::fs::write(&path, &out.stdout).expect("save a report");
        parts.push(path);
    }
    let merged = run_bounded(Command::new(STRESS).arg("merge").args(&parts).arg("--json"));
    assert!(merged.status.success(), "{merged:?}");
    let merged_path = dir.join("merged.json");
    std::fs::write(&merged_path, &merged.stdout).expect("save the merged report");
    let (hlog, svg) = (dir.join("0.hlog"), dir.join("0.svg"));
    let mut files = vec![parts[0].as_path(), &hlog, &svg, &merged_path];
    files.extend(parts.iter().map(PathBuf::as_path));
    let c = check(&python, &files);
    let (sum, merged) = (&c["merged"]["sum_of_parts"], &c["merged"]["merged"]);
    assert_eq!(sum["count"].as_u64(), Some(9000), "{c}");
    assert_eq!(merged["count"], sum["count"], "{c}");
    let (a, b) = (
        sum["p99"].as_f64().expect("p99"),
        merged["p99"].as_f64().expect("p99"),
    );
    assert!(close(a, b), "p99 of the parts added {a} ns, merged {b} ns");
}
