//! `--plot`: the run over time as an SVG picture — msgs/s in one panel,
//! latency (p50, p99, p99.9, max; log scale) in the other, one point per
//! `--interval`, the run's parameters in the title; with `--stages`, a
//! dashed line where each stage begins, labelled with the connections it
//! ramps to; with `--udp`, the interval's RFC 3550 jitter beside the
//! latency. Drawn with plotters'
//! SVG backend, into a string: the file of `--plot` and the page of
//! `--html` get the same picture.

use plotters::prelude::*;

use crate::intervals::{Point, LATENCY_LINES};
use crate::report::{group, Setup};

/// The picture's size in pixels.
const SIZE: (u32, u32) = (1000, 720);

/// Line colours of the latency series, in the order of [`LATENCY_LINES`].
const COLOURS: [RGBColor; LATENCY_LINES.len()] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(80, 80, 80),
];

/// The picture of `points` of the run `setup` describes, as SVG text.
pub fn svg(setup: &Setup, points: &[Point]) -> Result<String, String> {
    let mut text = String::new();
    draw(SVGBackend::with_string(&mut text, SIZE), setup, points)?;
    Ok(text)
}

/// Draws `points` of the run `setup` describes on `backend`.
fn draw(backend: SVGBackend<'_>, setup: &Setup, points: &[Point]) -> Result<(), String> {
    let root = backend.into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(&title(setup), ("sans-serif", 17))
        .map_err(|e| e.to_string())?;
    let (top, bottom) = root.split_vertically(SIZE.1 / 2 - 20);
    let end = points.last().map_or(1.0, |p| p.start + p.secs).max(1e-3);
    let marks = stage_marks(setup);
    throughput(&top, points, end, &marks).map_err(|e| format!("draw msgs/s: {e}"))?;
    latency(&bottom, points, end, setup.rate.is_some())
        .map_err(|e| format!("draw latency: {e}"))?;
    root.present().map_err(|e| e.to_string())
}

/// `load mode, 1,000 connections × 128 B, pipeline 4, closed loop, against …`
pub fn title(s: &Setup) -> String {
    let how = s.rate.map_or_else(
        || "closed loop".to_string(),
        |r| format!("open loop {r} msg/s per connection"),
    );
    format!(
        "echoloop-stress: {} mode, {} connections × {} B, pipeline {}, {}, {} thread(s), against {}",
        s.mode.name(),
        s.connections,
        s.message_size,
        s.pipeline,
        how,
        s.threads,
        s.addr
    )
}

/// The line and bar colours of every chart, in legend order
/// (matplotlib's, which readers know).
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(80, 80, 80),
];

/// An axis value as a tick label: `12,345` from 10 up, `1.5` below.
pub fn tick(v: &f64) -> String {
    if v.abs() >= 10.0 {
        group(v.round() as u64)
    } else {
        format!("{}", (v * 100.0).round() / 100.0)
    }
}

/// `value` of each interval as steps: flat across the interval, so each
/// is seen for the time it covers.
fn steps<'a>(
    points: &'a [Point],
    value: impl Fn(&Point) -> Option<f64> + 'a,
) -> impl Iterator<Item = (f64, f64)> + 'a {
    points.iter().flat_map(move |p| {
        value(p)
            .map(|v| [(p.start, v), (p.start + p.secs, v)])
            .into_iter()
            .flatten()
    })
}

/// `--stages`: where each stage begins on the time axis (seconds after
/// the warm-up, which the axis leaves out), and its label:
/// `stage 2 → 1,000 conns` (the connections it ramps to). Stages over
/// by the end of the warm-up are left out.
fn stage_marks(setup: &Setup) -> Vec<(f64, String)> {
    let Some(stages) = &setup.stages else {
        return Vec::new();
    };
    let warmup = setup.warmup.unwrap_or_default().as_secs_f64();
    stages
        .spans()
        .enumerate()
        .filter(|(_, (_, end, _, _))| *end as f64 / 1e9 > warmup)
        .map(|(n, (start, _, _, stage))| {
            let at = (start as f64 / 1e9 - warmup).max(0.0);
            (
                at,
                format!("stage {} → {} conns", n + 1, group(stage.target)),
            )
        })
        .collect()
}

/// The error type every drawing call returns.
type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// The top panel: echoed messages per second.
fn throughput(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    points: &[Point],
    end: f64,
    marks: &[(f64, String)],
) -> DrawResult {
    let rate = |p: &Point| p.messages as f64 / p.secs.max(1e-9);
    let top = points.iter().map(rate).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .caption("throughput", ("sans-serif", 15))
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..end, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("echoed messages per second (msgs/s)")
        .y_label_formatter(&tick)
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            steps(points, |p| Some(rate(p))),
            &COLOURS[0],
        ))?
        .label("msgs/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], COLOURS[0]));
    for (at, label) in marks {
        let line = [(*at, 0.0), (*at, top)];
        chart.draw_series(DashedLineSeries::new(line, 6, 4, BLACK.into()))?;
        chart.draw_series(std::iter::once(Text::new(
            label.clone(),
            (*at + end * 0.005, top * 0.97),
            ("sans-serif", 13),
        )))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
}

/// The bottom panel: latency percentiles per interval, log scale.
fn latency(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    points: &[Point],
    end: f64,
    open_loop: bool,
) -> DrawResult {
    let values = points.iter().filter_map(|p| p.latency);
    let jitters = points.iter().filter_map(|p| p.jitter);
    let low = values
        .clone()
        .map(|l| l[0])
        .chain(jitters)
        .fold(f64::MAX, f64::min);
    let high = values
        .map(|l| l[LATENCY_LINES.len() - 1])
        .fold(1.0, f64::max);
    let low = if low == f64::MAX {
        1.0
    } else {
        (low / 2.0).max(0.01)
    };
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .caption(
            if open_loop {
                "round-trip latency (from each scheduled send; coordinated omission corrected)"
            } else {
                "round-trip latency"
            },
            ("sans-serif", 15),
        )
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..end, (low..high * 2.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("latency (µs, log scale)")
        .y_label_formatter(&tick)
        .draw()?;
    for (i, (name, _)) in LATENCY_LINES.into_iter().enumerate() {
        let colour = COLOURS[i];
        chart
            .draw_series(LineSeries::new(
                steps(points, move |p| p.latency.map(|l| l[i])),
                &colour,
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    if open_loop {
        let colour = RGBColor(44, 160, 44);
        chart
            .draw_series(LineSeries::new(
                steps(points, |p| p.uncorrected_p99),
                &colour,
            ))?
            .label("p99 uncorrected")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    if points.iter().any(|p| p.jitter.is_some()) {
        let colour = RGBColor(148, 103, 189);
        chart
            .draw_series(LineSeries::new(
                steps(points, move |p| p.jitter.map(|j| j.max(low))),
                &colour,
            ))?
            .label("jitter")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
}
