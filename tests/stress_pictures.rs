//! The stress client's pictures of a real run: `--plot-percentiles` (the
//! latency distribution), `chart --percentiles` over several `--json`
//! reports (runs side by side) and the `--html` page, opened in headless
//! Chromium. Every run is against a real server on 127.0.0.1:0: echoloop
//! in-process, or a thread-per-connection echo written here (another
//! server to compare with).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub mod support;

use support::{run_to_exit, StressArgs, TestServer, STRESS};

/// Longest any run may take before the test kills it and fails.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// A directory for this test's files under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// The text of the SVG file at `path`, failing unless it is a whole one.
#[track_caller]
fn svg(path: &Path) -> String {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(text.starts_with("<svg"), "not an SVG: {}", path.display());
    assert!(text.trim_end().ends_with("</svg>"), "an unfinished SVG");
    text
}

/// The legend entries and axis labels of `svg`: the text of its `<text>`
/// elements.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_string())
        })
        .collect()
}

/// How many data lines `svg` has: polylines two pixels wide (the axes,
/// the mesh and the legend's samples are one pixel wide).
fn drawn_lines(svg: &str) -> usize {
    svg.split("<polyline")
        .skip(1)
        .filter(|p| p[..p.find('>').unwrap_or(p.len())].contains("stroke-width=\"2\""))
        .count()
}

/// Proves `--plot-percentiles` draws the run's latency distribution on
/// the "1 in N" axis (labelled 0%, 90%, 99%, 99.9%) with one line per
/// series the run recorded: in the open loop rtt, rtt-uncorrected,
/// connect and first-byte; in the closed loop no rtt-uncorrected (there
/// is one round trip). The run still passes and reports no output error.
#[test]
fn percentile_plot_has_a_line_per_series() {
    let server = TestServer::start(|_| {});
    let dir = scratch("stress-percentile-plot");
    for (open_loop, series) in [
        (
            true,
            &["rtt", "rtt-uncorrected", "connect", "first-byte"][..],
        ),
        (false, &["rtt", "connect", "first-byte"]),
    ] {
        let path = dir.join(format!("open-{open_loop}.svg"));
        let mut args = StressArgs::to(server.addr)
            .conns(3)
            .json()
            .flag("--plot-percentiles", path.display());
        args = if open_loop {
            args.rate(300.0).secs(1.0)
        } else {
            args.messages(3000)
        };
        let run = args.run(RUN_LIMIT);
        run.assert_exit(0);
        assert!(run.report().output_errors.is_empty(), "{}", run.describe());
        let svg = svg(&path);
        let texts = texts(&svg);
        for label in ["0%", "90%", "99%", "99.9%"].iter().chain(series) {
            assert!(texts.iter().any(|t| t == label), "no {label:?}: {texts:?}");
        }
        if !open_loop {
            assert!(!texts.iter().any(|t| t == "rtt-uncorrected"), "{texts:?}");
        }
        assert_eq!(drawn_lines(&svg), series.len(), "{svg}");
    }
}

/// Runs `chart` with `args` to its exit.
fn chart(args: &[&str]) -> support::Exit {
    let mut cmd = Command::new(STRESS);
    cmd.arg("chart").args(args);
    run_to_exit(&mut cmd)
}

/// Proves `chart --percentiles` puts the runs of several `--json` reports
/// side by side, one line per report, named after each file (echoloop
/// against another server) or by `--label`, and with `--series` one per
/// report and series; that a report that is not one, or a `--label` count
/// that does not match, is exit status 2 naming the problem; and that the
/// benchmark's mode refuses several files.
#[test]
fn chart_puts_reports_side_by_side() {
    let ours = TestServer::start(|_| {});
    let theirs = support::threaded_echo();
    let dir = scratch("stress-chart-percentiles");
    let mut reports = Vec::new();
    for (name, addr) in [("echoloop", ours.addr), ("threaded", theirs)] {
        let run = StressArgs::to(addr)
            .conns(4)
            .messages(4000)
            .json()
            .run(RUN_LIMIT);
        run.assert_exit(0);
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, &run.stdout).expect("write the report");
        reports.push(path.display().to_string());
    }
    let (a, b) = (reports[0].as_str(), reports[1].as_str());
    let out = dir.join("cmp.svg");
    let out_s = out.display().to_string();

    let exit = chart(&["--percentiles", a, b, "--out", &out_s]);
    assert!(exit.status.success(), "{exit:?}");
    assert_eq!(exit.stdout.trim(), out_s);
    let drawn = texts(&svg(&out));
    for label in ["echoloop", "threaded", "99%"] {
        assert!(drawn.iter().any(|t| t == label), "no {label}: {drawn:?}");
    }
    assert_eq!(drawn_lines(&svg(&out)), 2);

    let exit = chart(&[
        "--percentiles",
        a,
        b,
        "--out",
        &out_s,
        "--label",
        "before",
        "--label",
        "after",
        "--series",
        "rtt,connect",
    ]);
    assert!(exit.status.success(), "{exit:?}");
    let drawn = texts(&svg(&out));
    for label in [
        "before: rtt",
        "before: connect",
        "after: rtt",
        "after: connect",
    ] {
        assert!(drawn.iter().any(|t| t == label), "no {label}: {drawn:?}");
    }

    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"mode\": \"load\"}").expect("write");
    let bad_s = bad.display().to_string();
    let line = chart(&["--percentiles", a, &bad_s, "--out", &out_s]).assert_usage_error("bad");
    assert!(line.contains("bad.json"), "{line}");
    let line = chart(&["--percentiles", a, b, "--out", &out_s, "--label", "x"])
        .assert_usage_error("one label");
    assert!(line.contains("--label"), "{line}");
    let line = chart(&[a, b, "--out", &out_s]).assert_usage_error("two results files");
    assert!(line.contains("--percentiles"), "{line}");
}

/// Proves `--html` writes one self-contained page of a real run — the
/// parameters, the verdict, both charts inline as SVG, the latency table
/// with connect and first-byte times, failures by reason and every figure
/// of the `--json` report, with nothing fetched (no script, stylesheet,
/// image or frame from anywhere) — and that headless Chromium renders it:
/// a good share of the screenshot is inked, coloured chart lines among
/// it, and the console logs no error.
#[test]
fn html_page_stands_alone_and_renders() {
    let server = TestServer::start(|_| {});
    let dir = scratch("stress-html");
    let page = dir.join("report.html");
    let run = StressArgs::to(server.addr)
        .conns(3)
        .rate(300.0)
        .secs(1.5)
        .flag("--interval", 0.25)
        .json()
        .flag("--html", page.display())
        .run(RUN_LIMIT);
    run.assert_exit(0);
    let report = run.report();
    let html = std::fs::read_to_string(&page).expect("read the page");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert_eq!(html.matches("<svg").count(), 2, "two inline charts");
    for words in [
        "PASS",
        "exit status 0",
        "Parameters",
        &format!("<th>addr</th><td>{}</td>", report.addr),
        "rate_per_connection",
        "throughput",
        "Latency by percentile",
        "99.9%",
        "<th>connect</th>",
        "<th>first-byte</th>",
        "<th>rtt-uncorrected</th>",
        "failed connects",
        "addr-not-available",
        "verification_errors",
        "Every figure of the report",
        "msgs_per_sec",
    ] {
        assert!(html.contains(words), "no {words:?} in the page");
    }
    // Nothing the page could fetch: the SVGs' xmlns is a name, not a fetch.
    for fetch in [
        "<script", "<link", "<img", "<iframe", "src=", "href=", "url(", "@import",
    ] {
        assert!(!html.contains(fetch), "the page has {fetch:?}");
    }

    #[cfg(target_os = "linux")]
    assert_renders("html_page_stands_alone_and_renders", &page);
}

/// Asserts headless Chromium renders `page` (the test `test`'s): a good
/// share of the screenshot inked, coloured chart lines among it, and no
/// error on the console.
#[cfg(target_os = "linux")]
#[track_caller]
fn assert_renders(test: &str, page: &Path) {
    let Some(shown) = support::browser::render(test, page, (1200, 2000)) else {
        return;
    };
    assert_eq!((shown.width, shown.height), (1200, 2000));
    let (inked, coloured) = (shown.share_not_white(), shown.coloured());
    eprintln!(
        "{test}: {:.1} % of the screenshot inked, {coloured} coloured pixels",
        inked * 100.0
    );
    assert!(
        inked > 0.04,
        "only {:.1} % of the page is inked",
        inked * 100.0
    );
    assert!(
        coloured > 2_000,
        "only {coloured} coloured pixels: no chart lines"
    );
    let errors = shown.console_errors();
    assert!(
        errors.is_empty(),
        "console errors: {errors:?}\n{}",
        shown.log
    );
}
