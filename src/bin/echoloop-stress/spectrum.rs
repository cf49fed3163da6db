//! The latency distribution as HdrHistogram's plotter draws it (the
//! percentile-spectrum picture wrk2 users paste): latency against
//! percentile on a log-scaled "1 in N" axis, x = 1/(1−p), so that 0 %,
//! 90 %, 99 %, 99.9 %, 99.99 % … are evenly spaced and the tail gets the
//! room the median does. One line per series of a run (`--plot-percentiles`),
//! or per run (`chart --percentiles A.json B.json …`).
//!
//! The points are the histogram's own percentile iteration (five steps per
//! halving of the remaining distance, as `outputPercentileDistribution`
//! prints them), so the picture is exact to the histogram's precision. The
//! last of those is the 100th percentile, whose 1/(1−p) is infinite: the
//! line ends with the maximum at x = N, the one-in-N sample. The latency
//! axis is logarithmic too (HdrHistogram's is linear), because one picture
//! holds a loopback round trip in µs and a connect or stall in ms.

use plotters::prelude::*;

use crate::plot::{self, tick, PALETTE};
use crate::record::Recorder;
use crate::report::{us, Setup};

/// The picture's size in pixels.
pub const SIZE: (u32, u32) = (1000, 560);

/// Percentile-iteration steps per halving of the distance to 100 %.
const TICKS_PER_HALF: u32 = 5;

/// One line of the picture: its legend, and (1/(1−p), µs) points with x
/// rising.
#[derive(Debug, Clone)]
pub struct Line {
    /// The legend: a series' tag, a run's name, or both.
    pub label: String,
    /// (1 in N, latency in µs), x from 1 up.
    pub points: Vec<(f64, f64)>,
}

impl Line {
    /// The spectrum of `h` (ns) under `label`; `None` with no samples.
    pub fn of(label: String, h: &hdrhistogram::Histogram<u64>) -> Option<Line> {
        if h.is_empty() {
            return None;
        }
        let mut points: Vec<(f64, f64)> = Vec::new();
        for step in h.iter_quantiles(TICKS_PER_HALF) {
            let q = step.quantile_iterated_to();
            if q >= 1.0 {
                break;
            }
            let x = 1.0 / (1.0 - q);
            let y = us(step.value_iterated_to());
            match points.last_mut() {
                Some(last) if last.0 >= x => last.1 = last.1.max(y),
                _ => points.push((x, y)),
            }
        }
        let end = points.last().map_or(1.0, |p| p.0).max(h.len() as f64);
        points.push((end, us(h.max())));
        Some(Line { label, points })
    }
}

/// `--plot-percentiles`: one line per series the run `setup` describes
/// recorded (rtt; rtt-uncorrected in the open loop; connect and first-byte
/// over TCP), as SVG text.
pub fn of_run(setup: &Setup, rec: &Recorder) -> Result<String, String> {
    let lines: Vec<Line> = setup
        .series()
        .into_iter()
        .filter_map(|s| Line::of(s.tag().to_string(), rec.get(s)))
        .collect();
    let title = plot::title(setup);
    let what = title.strip_prefix("echoloop-stress: ").unwrap_or(&title);
    svg(&format!("latency by percentile: {what}"), &lines)
}

/// `10^k` on the "1 in N" axis as the percentile it stands for: `0%`,
/// `90%`, `99%`, `99.9%`, `99.99%` …; other values get no label.
pub fn percentile_label(x: &f64) -> String {
    let k = x.log10();
    if (k - k.round()).abs() > 1e-6 || k < -1e-6 {
        return String::new();
    }
    match k.round() as usize {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        2 => "99%".to_string(),
        k => format!("99.{}%", "9".repeat(k - 2)),
    }
}

/// The picture of `lines` under `title`, as SVG text.
pub fn svg(title: &str, lines: &[Line]) -> Result<String, String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        draw(&root, title, lines).map_err(|e| format!("draw the percentiles: {e}"))?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(text)
}

/// Draws `lines` on `root`.
fn draw(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    lines: &[Line],
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    root.fill(&WHITE)?;
    let all = lines.iter().flat_map(|l| l.points.iter());
    let right = all.clone().map(|p| p.0).fold(10.0, f64::max);
    // Whole decades, so the axis ends on a percentile label.
    let decades = right.log10().ceil().max(1.0);
    let right = 10f64.powf(decades);
    let high = all.clone().map(|p| p.1).fold(1.0, f64::max) * 1.5;
    let low = all.map(|p| p.1).fold(f64::MAX, f64::min).min(high) / 1.5;
    let mut chart = ChartBuilder::on(root)
        .margin(15)
        .margin_right(40)
        .caption(title, ("sans-serif", 14))
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d((1f64..right).log_scale(), (low.max(0.01)..high).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(decades as usize + 1)
        .x_label_formatter(&percentile_label)
        .x_desc("percentile (log scale of 1/(1−p): one in 10, 100, 1,000 … samples is above)")
        .y_desc("latency (µs, log scale)")
        .y_label_formatter(&tick)
        .draw()?;
    for (i, line) in lines.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(line.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::new_histogram;

    /// The line runs from the minimum (at 0 %, x = 1) to the maximum at
    /// x = N, x rising, y never falling, the p99 at x = 100.
    #[test]
    fn a_line_follows_the_histogram() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 1_000).expect("in range");
        }
        let line = Line::of("rtt".into(), &h).expect("samples");
        let first = line.points[0];
        assert_eq!(first.0, 1.0);
        assert!((first.1 - us(h.min())).abs() < 1.0, "{first:?}");
        let last = *line.points.last().expect("points");
        assert_eq!(last, (10_000.0, us(h.max())));
        for pair in line.points.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{pair:?}");
            assert!(pair[0].1 <= pair[1].1, "{pair:?}");
        }
        // The iteration steps past 99 % at x = 100: the value there is p99.
        let p99 = us(h.value_at_quantile(0.99));
        let near = line.points.iter().find(|p| p.0 >= 100.0).expect("x 100");
        assert!((near.1 - p99).abs() / p99 < 0.02, "{near:?} vs {p99}");
        assert!(Line::of("none".into(), &new_histogram()).is_none());
    }

    #[test]
    fn axis_labels_are_percentiles() {
        let labels: Vec<String> = [1.0, 10.0, 100.0, 1e3, 1e5, 30.0]
            .iter()
            .map(percentile_label)
            .collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.999%", ""]);
    }
}
