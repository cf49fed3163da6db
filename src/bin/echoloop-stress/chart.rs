//! `echoloop-stress chart bench/results.json --out docs/img/`: the
//! benchmark's results as two SVG charts for the guide, drawn with the same
//! plotting crate as `--plot`:
//!
//! - `epoll-vs-poll.svg`: msgs/s as idle connections held grow, one line
//!   per backend (the results' `backends` list);
//! - `techniques.svg`: msgs/s at 1, 50 and 1,000 connections, one group of
//!   bars per technique (the results' `compare` list).
//!
//! The results file is read loosely: a technique or backend missing, or a
//! case it has no figure for, is left out of the chart rather than refused,
//! so the charts follow whatever the benchmark measured.
//!
//! `echoloop-stress chart --percentiles A.json B.json … --out F.svg`: the
//! latency distributions of several `--json` reports side by side, one line
//! per report (and series asked for), drawn as `--plot-percentiles` draws
//! one run (`spectrum.rs`); reports are read as `merge` reads them, so a
//! broken one is refused naming the file and the field.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use serde_json::Value;

use crate::cli::ChartArgs;
use crate::merge;
use crate::plot::{tick, PALETTE};
use crate::run::EXIT_SETUP;
use crate::spectrum;

/// Chart size in pixels.
const SIZE: (u32, u32) = (960, 540);

/// The cases of the techniques chart: results key, legend label.
const CASES: [(&str, &str); 3] = [
    ("c1", "1 connection"),
    ("c50", "50 connections"),
    ("c1000", "1,000 connections"),
];

/// One backend's line: (idle connections held, msgs/s), sorted.
type Line = (String, Vec<(f64, f64)>);

/// One technique's bars: msgs/s per case of [`CASES`], where measured.
type Group = (String, [Option<f64>; 3]);

/// Runs `chart`; returns the exit status.
pub fn run(args: &ChartArgs) -> i32 {
    let written = if args.percentiles {
        percentiles(args).map(|path| vec![path])
    } else {
        match args.files.as_slice() {
            [results] => chart(results, &args.out),
            _ => Err("the benchmark's charts are drawn from one results file; \
                      several --json reports are charted with --percentiles"
                .to_string()),
        }
    };
    match written {
        Ok(written) => {
            let listed: String = written.iter().map(|path| format!("{path}\n")).collect();
            if !crate::output::to_stdout("echoloop-stress", listed.as_bytes()) {
                return EXIT_SETUP;
            }
            0
        }
        Err(message) => {
            eprintln!("echoloop-stress: chart: {message}");
            EXIT_SETUP
        }
    }
}

/// Reads `results` and writes the charts it has data for into `out`;
/// returns the files written.
fn chart(results: &Path, out: &Path) -> Result<Vec<String>, String> {
    let name = results.display();
    let text = std::fs::read_to_string(results).map_err(|e| format!("{name}: read: {e}"))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("{name}: not JSON: {e}"))?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: create: {e}", out.display()))?;
    let mut written = Vec::new();
    let lines = backends(&value);
    if !lines.is_empty() {
        let path = out.join("epoll-vs-poll.svg");
        draw_backends(&path, &lines).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path.display().to_string());
    }
    let groups = techniques(&value);
    if !groups.is_empty() {
        let path = out.join("techniques.svg");
        draw_techniques(&path, &groups).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path.display().to_string());
    }
    if written.is_empty() {
        return Err(format!(
            "{name}: neither `backends` nor `compare` results to chart"
        ));
    }
    Ok(written)
}

/// `chart --percentiles`: the reports' distributions into one SVG file;
/// returns its name.
fn percentiles(args: &ChartArgs) -> Result<String, String> {
    if !args.labels.is_empty() && args.labels.len() != args.files.len() {
        return Err(format!(
            "{} --label for {} reports: give one per report, in the same order",
            args.labels.len(),
            args.files.len()
        ));
    }
    let mut lines = Vec::new();
    let mut names = Vec::new();
    for (i, path) in args.files.iter().enumerate() {
        let run = merge::read(path)?;
        let name = args.labels.get(i).cloned().unwrap_or_else(|| {
            let stem = path.file_stem().unwrap_or(path.as_os_str());
            stem.to_string_lossy().into_owned()
        });
        for &series in &args.series {
            let label = if args.series.len() == 1 {
                name.clone()
            } else {
                format!("{name}: {}", series.tag())
            };
            lines.extend(spectrum::Line::of(label, run.rec.get(series)));
        }
        names.push(name);
    }
    if lines.is_empty() {
        let tags: Vec<&str> = args.series.iter().map(|s| s.tag()).collect();
        return Err(format!("no report has samples of {}", tags.join(", ")));
    }
    let tags: Vec<&str> = args.series.iter().map(|s| s.tag()).collect();
    let title = format!(
        "latency by percentile ({}): {}",
        tags.join(", "),
        names.join(" vs ")
    );
    let svg = spectrum::svg(&title, &lines)?;
    let out = args.out.display();
    std::fs::write(&args.out, svg).map_err(|e| format!("{out}: write: {e}"))?;
    Ok(out.to_string())
}

/// A number at `key` of `v`, if there is one.
fn number(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// The `backends` results as one line per backend.
fn backends(results: &Value) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    let points = results.get("backends").and_then(Value::as_array);
    for point in points.into_iter().flatten() {
        let (Some(server), Some(idle), Some(rate)) = (
            point.get("server").and_then(Value::as_str),
            number(point, "idle_requested"),
            number(point, "msgs_per_sec"),
        ) else {
            continue;
        };
        match lines.iter_mut().find(|(name, _)| name == server) {
            Some((_, line)) => line.push((idle, rate)),
            None => lines.push((server.to_string(), vec![(idle, rate)])),
        }
    }
    for (_, line) in &mut lines {
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    lines
}

/// The `compare` results as one group of bars per technique.
fn techniques(results: &Value) -> Vec<Group> {
    let entries = results.get("compare").and_then(Value::as_array);
    entries
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let server = entry.get("server").and_then(Value::as_str)?;
            let bars = CASES.map(|(key, _)| entry.get(key).and_then(|c| number(c, "msgs_per_sec")));
            bars.iter()
                .any(Option::is_some)
                .then(|| (server.to_string(), bars))
        })
        .collect()
}

/// The error of a drawing call.
type DrawError = DrawingAreaErrorKind<std::io::Error>;

/// Draws the epoll-vs-poll(2) chart: msgs/s (log scale) against idle
/// connections held.
fn draw_backends(path: &Path, lines: &[Line]) -> Result<(), DrawError> {
    let all = lines.iter().flat_map(|(_, l)| l.iter());
    let right = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let top = all.clone().map(|p| p.1).fold(1.0, f64::max) * 2.0;
    let bottom = all.map(|p| p.1).fold(f64::MAX, f64::min).min(top) / 2.0;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(15)
        .caption(
            "echoloop, 50 busy connections: epoll vs poll(2) as idle connections are held",
            ("sans-serif", 17),
        )
        .x_label_area_size(45)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..right * 1.05, (bottom.max(1.0)..top).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("idle connections held")
        .y_desc("echoed messages per second (msgs/s, log scale)")
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .draw()?;
    for (i, (name, line)) in lines.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                line.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()
}

/// Draws the techniques chart: per technique, a bar per case.
fn draw_techniques(path: &Path, groups: &[Group]) -> Result<(), DrawError> {
    // Four slots per technique: three bars and a gap.
    let slots = groups.len() as i32 * 4;
    let top = groups
        .iter()
        .flat_map(|(_, bars)| bars.iter().flatten())
        .fold(1.0f64, |a, &b| a.max(b))
        * 1.3;
    // Room for each technique's name under its bars.
    let width = SIZE.0.max(150 * groups.len() as u32);
    let root = SVGBackend::new(path, (width, SIZE.1)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(15)
        .caption(
            "Every technique side by side: msgs/s at 1, 50 and 1,000 connections",
            ("sans-serif", 17),
        )
        .x_label_area_size(45)
        .y_label_area_size(90)
        .build_cartesian_2d((0..slots).into_segmented(), 0f64..top)?;
    let label = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(k) if k % 4 == 1 => groups
            .get((k / 4) as usize)
            .map_or(String::new(), |(name, _)| name.clone()),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(slots as usize + 1)
        .x_label_formatter(&label)
        .x_desc("technique")
        .y_desc("echoed messages per second (msgs/s)")
        .y_label_formatter(&tick)
        .draw()?;
    for (j, (_, case)) in CASES.iter().enumerate() {
        let colour = PALETTE[j];
        let bars = groups.iter().enumerate().filter_map(|(i, (_, bars))| {
            let k = i as i32 * 4 + j as i32;
            bars[j].map(|y| {
                Rectangle::new(
                    [
                        (SegmentValue::Exact(k), 0.0),
                        (SegmentValue::Exact(k + 1), y),
                    ],
                    colour.filled(),
                )
            })
        });
        chart
            .draw_series(bars)?
            .label(*case)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()
}
