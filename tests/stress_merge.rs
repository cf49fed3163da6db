//! The distributed recipe, tested on one machine: N `echoloop-stress --json
//! --start-at T` processes against one server, then one `merge` of their
//! reports — and what `merge` refuses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod support;

use serde_json::Value as Json;
use support::{Stress, StressRun, STRESS};

/// Longest any one process may take.
const LIMIT: Duration = Duration::from_secs(60);

/// A thread-per-connection echo server on 127.0.0.1:0 (anyone's RFC 862
/// server, not ours); its threads end with the test process.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr");
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A directory for this test's files under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// Starts `echoloop-stress args`.
fn spawn(args: &[&str]) -> Stress {
    Stress::spawn(Command::new(STRESS).args(args))
}

/// Runs `echoloop-stress args` to completion (at most [`LIMIT`], else it
/// is killed and the test fails).
fn stress(args: &[&str]) -> StressRun {
    spawn(args).finish(LIMIT)
}

/// A count of a report.
#[track_caller]
fn count(j: &Json, key: &str) -> u64 {
    j[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a count in {j}"))
}

/// Seconds since the Unix epoch.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// Writes `text` to `dir/name`, returning the path as a string.
fn file(dir: &Path, name: &str, text: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a report");
    path.to_string_lossy().into_owned()
}

/// Proves the distributed recipe: four client processes started together
/// with `--start-at` (each begins within a tenth of a second of T), against
/// one server, merge into exactly the sum of their own reports — counts,
/// bytes and connections summed, the latency histogram's count the sum of
/// theirs, its p99 within the range of theirs (a percentile of the whole
/// lies between those of its parts) — with throughput over the window from
/// the first start to the last end.
#[test]
fn four_clients_merge_into_the_sum_of_their_reports() {
    let addr = echo_server().to_string();
    let dir = scratch("stress-merge-recipe");
    let at = format!("{:.3}", unix_now() + 1.0);
    let children: Vec<Stress> = ["2", "3", "5", "7"]
        .iter()
        .map(|c| {
            spawn(&[
                "--addr",
                &addr,
                "-c",
                c,
                "-d",
                "1",
                "--json",
                "--start-at",
                &at,
            ])
        })
        .collect();
    let mut paths = Vec::new();
    let mut parts = Vec::new();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.finish(LIMIT);
        assert!(out.status.success(), "client {i}: {}", out.describe());
        paths.push(file(&dir, &format!("{i}.json"), out.stdout.as_bytes()));
        parts.push(out.json());
    }
    let t: f64 = at.parse().expect("T");
    for p in &parts {
        let started = p["started_unix"].as_f64().expect("started_unix");
        assert!(
            (t..t + 0.1).contains(&started),
            "started at {started}, T = {t}"
        );
    }
    let mut args = vec!["merge", "--json"];
    args.extend(paths.iter().map(String::as_str));
    let merged = stress(&args);
    assert!(merged.status.success(), "{}", merged.describe());
    assert_sum_of(&parts, &merged.json());

    // The text form says how many runs it merged.
    args.remove(1);
    let text = stress(&args).exit.stdout;
    assert!(text.contains("4 runs merged"), "{text}");
}

/// Asserts merged report `m` is exactly the sum of `parts`: counts summed,
/// histograms added, throughput over the first start to the last end.
#[track_caller]
fn assert_sum_of(parts: &[Json], m: &Json) {
    for key in [
        "messages",
        "bytes",
        "connections",
        "connections_attempted",
        "connections_established",
        "verification_errors",
        "failures",
    ] {
        let sum: u64 = parts.iter().map(|p| count(p, key)).sum();
        assert_eq!(count(m, key), sum, "{key}");
    }
    assert_eq!(count(m, "connections"), 17);
    assert_eq!(count(m, "merged_runs"), 4);
    let latency_count: u64 = parts.iter().map(|p| count(&p["latency_us"], "count")).sum();
    assert_eq!(count(&m["latency_us"], "count"), latency_count);
    let p99s: Vec<f64> = parts
        .iter()
        .map(|p| p["latency_us"]["p99"].as_f64().expect("p99"))
        .collect();
    let p99 = m["latency_us"]["p99"].as_f64().expect("p99");
    let (low, high) = p99s
        .iter()
        .fold((f64::MAX, 0f64), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(
        (low..=high).contains(&p99),
        "merged p99 {p99} outside the parts' {p99s:?}"
    );
    let time = |p: &Json, key: &str| p[key].as_f64().expect("a time");
    let start = parts
        .iter()
        .map(|p| time(p, "started_unix"))
        .fold(f64::MAX, f64::min);
    let end = parts
        .iter()
        .map(|p| time(p, "ended_unix"))
        .fold(0.0, f64::max);
    let rate = count(m, "messages") as f64 / (end - start);
    let got = m["msgs_per_sec"].as_f64().expect("msgs_per_sec");
    assert!(
        (got - rate).abs() <= rate * 0.01 + 1.0,
        "msgs/s {got}, window says {rate}"
    );
}

/// Proves `merge` refuses what cannot be added up, with one line naming the
/// file and what is wrong, and exit status 2: runs of another mode or
/// message size (naming the mismatch), a truncated report (saying where it
/// broke), a corrupted histogram (naming it) and a missing file.
#[test]
fn merge_refuses_what_does_not_add_up() {
    let addr = echo_server().to_string();
    let dir = scratch("stress-merge-refusals");
    let base = stress(&["--addr", &addr, "-c", "2", "-n", "200", "--json"]);
    assert!(base.status.success(), "{}", base.describe());
    let good = file(&dir, "good.json", base.stdout.as_bytes());
    let churn = stress(&[
        "--addr", &addr, "-m", "churn", "-c", "2", "-n", "20", "--json",
    ]);
    let churn = file(&dir, "churn.json", churn.stdout.as_bytes());
    let big = stress(&[
        "--addr", &addr, "-c", "2", "-n", "200", "-s", "64", "--json",
    ]);
    let big = file(&dir, "size.json", big.stdout.as_bytes());
    let half = file(
        &dir,
        "truncated.json",
        &base.stdout.as_bytes()[..base.stdout.len() / 2],
    );
    let text = &base.stdout;
    let rtt = base.json()["histograms"]["rtt"]
        .as_str()
        .expect("rtt")
        .to_string();
    let broken = text.replace(&rtt, &format!("{}AAAA", &rtt[..rtt.len() / 2]));
    let broken = file(&dir, "corrupted.json", broken.as_bytes());
    let missing = dir.join("missing.json").to_string_lossy().into_owned();
    for (other, says) in [
        (&churn, vec!["--mode churn", "--mode load"]),
        (&big, vec!["--message-size 64", "--message-size 512"]),
        (&half, vec!["truncated.json", "line", "column"]),
        (&broken, vec!["corrupted.json", "histograms.rtt"]),
        (&missing, vec!["missing.json", "read"]),
    ] {
        let line = stress(&["merge", &good, other]).assert_usage_error(other);
        for word in says {
            assert!(line.contains(word), "{other}: no {word:?} in {line}");
        }
    }
}

/// Writes `report` with `edit` applied to its JSON as `dir/name`.
fn edited(dir: &Path, name: &str, report: &Json, edit: impl FnOnce(&mut Json)) -> String {
    let mut j = report.clone();
    edit(&mut j);
    let text = serde_json::to_string_pretty(&j).expect("serialize");
    file(dir, name, text.as_bytes())
}

/// Moves report `j` `secs` later: another run, as far as `merge` can tell.
fn shift(j: &mut Json, secs: f64) {
    for key in ["started_unix", "ended_unix"] {
        let t = j[key].as_f64().expect("a time");
        j[key] = (t + secs).into();
    }
}

/// Asserts `merge a b` and `merge b a` both refuse, each with one line
/// (exit 2) that holds every word of `says`.
#[track_caller]
fn assert_refused_both_ways(a: &str, b: &str, says: &[&str]) {
    for (x, y) in [(a, b), (b, a)] {
        let line = stress(&["merge", x, y]).assert_usage_error(&format!("merge {x} {y}"));
        for word in says {
            assert!(line.contains(word), "merge {x} {y}: no {word:?} in {line}");
        }
    }
}

/// Proves `merge` refuses runs whose settings give their counts another
/// meaning, whatever the order of the files, naming the setting and both
/// values: `-k 1` with `-k 8`, `--rate 100` with `--rate 1000`, `-d 1`
/// with `-n`, and UDP runs with another `--max-loss` (whose verdict would
/// otherwise be the first file's limit). Runs that differ only in what
/// adds up (connections, loops) still merge, in either order, to the
/// same verdict.
#[test]
fn merge_refuses_unlike_runs_in_either_order() {
    let addr = echo_server().to_string();
    let dir = scratch("stress-merge-unlike");
    let run = |name: &str, args: &[&str]| {
        let mut argv = vec!["--addr", &addr, "-c", "2", "--json"];
        argv.extend_from_slice(args);
        let out = stress(&argv);
        out.assert_exit(0);
        (file(&dir, name, out.stdout.as_bytes()), out.json())
    };
    let (k1, _) = run("k1.json", &["-n", "40", "-k", "1"]);
    let (k8, _) = run("k8.json", &["-n", "40", "-k", "8"]);
    assert_refused_both_ways(&k1, &k8, &["--pipeline 1", "--pipeline 8", "k8.json"]);
    let (r100, _) = run("r100.json", &["-n", "20", "-r", "100"]);
    let (r1000, _) = run("r1000.json", &["-n", "20", "-r", "1000"]);
    assert_refused_both_ways(&r100, &r1000, &["--rate 100", "--rate 1000"]);
    let (timed, _) = run("timed.json", &["-d", "0.2"]);
    assert_refused_both_ways(&k1, &timed, &["--duration 0.2"]);

    // --max-loss, edited into a UDP report (the setting is all that differs).
    let (_, tcp) = run("tcp.json", &["-n", "20"]);
    let udp = |name: &str, max_loss: f64, later: f64| {
        edited(&dir, name, &tcp, |j| {
            j["mode"] = "udp".into();
            for key in ["sent", "echoed", "lost", "late", "duplicated", "reordered"] {
                j[key] = 0.into();
            }
            for key in ["corrupted", "foreign", "icmp_errors", "unresolved"] {
                j[key] = 0.into();
            }
            j["max_loss_percent"] = max_loss.into();
            shift(j, later);
        })
    };
    let (strict, lenient) = (udp("loss0.json", 0.0, 0.0), udp("loss50.json", 50.0, 1.0));
    assert_refused_both_ways(&strict, &lenient, &["--max-loss 0", "--max-loss 50"]);

    // Another connection count is no difference: both orders merge alike.
    let (more, _) = run("c2-k1.json", &["-n", "40", "-k", "1"]);
    let (a, b) = (
        stress(&["merge", "--json", &k1, &more]),
        stress(&["merge", "--json", &more, &k1]),
    );
    a.assert_exit(0);
    b.assert_exit(0);
    assert_eq!(a.json()["verdict"], b.json()["verdict"]);
    assert_eq!(count(&a.json(), "messages"), 80);
}

/// Proves a run given twice is refused rather than counted twice: the
/// same file twice, and a copy of it under another name (same start, same
/// counts, same histograms), each one line naming both files; a run that
/// is not the same (another start) still merges.
#[test]
fn merge_refuses_the_same_run_twice() {
    let addr = echo_server().to_string();
    let dir = scratch("stress-merge-twice");
    let out = stress(&["--addr", &addr, "-c", "2", "-n", "100", "--json"]);
    out.assert_exit(0);
    let a = file(&dir, "a.json", out.stdout.as_bytes());
    let copy = file(&dir, "copy.json", out.stdout.as_bytes());
    for other in [&a, &copy] {
        let line = stress(&["merge", &a, other]).assert_usage_error(other);
        assert!(line.contains("same run"), "{line}");
        assert!(
            line.contains("a.json") && line.contains(other.as_str()),
            "{line}"
        );
    }
    let later = edited(&dir, "later.json", &out.json(), |j| shift(j, 0.5));
    let merged = stress(&["merge", "--json", &a, &later]);
    merged.assert_exit(0);
    assert_eq!(count(&merged.json(), "messages"), 200);
}

/// Proves `merge` never panics nor wraps on numbers no run writes: times
/// of ±1e20 s, a duration of 1e300 s, a count of 2^64−1 added to a normal
/// report, failure reasons that add up past 2^64−1. Each is one line
/// naming the file and the field, exit status 2.
#[test]
fn merge_refuses_extreme_values_naming_file_and_field() {
    let addr = echo_server().to_string();
    let dir = scratch("stress-merge-extreme");
    let out = stress(&["--addr", &addr, "-c", "2", "-n", "100", "--json"]);
    out.assert_exit(0);
    let good = file(&dir, "good.json", out.stdout.as_bytes());
    let base = out.json();
    let set = |name: &str, key: &'static str, value: Json| {
        edited(&dir, name, &base, move |j| j[key] = value)
    };
    let cases = [
        (set("ended.json", "ended_unix", 1e20.into()), "ended_unix"),
        (
            set("started.json", "started_unix", (-1e20).into()),
            "started_unix",
        ),
        (
            set("duration.json", "duration_secs", 1e300.into()),
            "duration_secs",
        ),
        (set("huge.json", "messages", u64::MAX.into()), "messages"),
        (set("bytes.json", "bytes", u64::MAX.into()), "bytes"),
        (
            edited(&dir, "reasons.json", &base, |j| {
                j["failed_by_reason"]["refused"] = u64::MAX.into();
                j["failed_by_reason"]["timeout"] = 1.into();
            }),
            "failures",
        ),
    ];
    for (bad, field) in &cases {
        let line = stress(&["merge", &good, bad]).assert_usage_error(bad);
        let name = Path::new(bad).file_name().expect("name").to_string_lossy();
        assert!(line.contains(&*name), "{bad}: {line}");
        assert!(line.contains(field), "{bad}: no {field} in {line}");
    }
}

/// Proves the recipe for a container with no shell to redirect with (the
/// Kubernetes Job of docs/distributed.md): `--json --output FILE` writes the
/// report into the file, not onto stdout, and `merge` reads such files; an
/// `--output` that is another output's file, or cannot be created, is
/// refused before the run (exit 2, naming the flag).
#[test]
fn reports_written_with_output_merge() {
    let addr = echo_server().to_string();
    let dir = scratch("stress-merge-output");
    let paths: Vec<String> = (0..2)
        .map(|i| dir.join(format!("{i}.json")).to_string_lossy().into_owned())
        .collect();
    for path in &paths {
        let run = stress(&[
            "--addr", &addr, "-c", "2", "-n", "200", "--json", "--output", path,
        ]);
        run.assert_exit(0);
        assert_eq!(run.exit.stdout, "", "the report went to --output");
    }
    let merged = stress(&["merge", &paths[0], &paths[1]]);
    merged.assert_exit(0);
    assert!(
        merged.exit.stdout.contains("2 runs merged"),
        "{}",
        merged.describe()
    );

    let same = stress(&[
        "--addr", &addr, "-n", "1", "--output", &paths[0], "--hlog", &paths[0],
    ]);
    same.assert_exit(2);
    assert!(
        same.stderr_text().contains("--hlog and --output"),
        "{}",
        same.describe()
    );
    let missing = dir.join("no-such-folder/0.json");
    let missing = stress(&[
        "--addr",
        &addr,
        "-n",
        "1",
        "--output",
        missing.to_str().unwrap(),
    ]);
    missing.assert_exit(2);
    assert!(
        missing.stderr_text().contains("--output"),
        "{}",
        missing.describe()
    );
}
