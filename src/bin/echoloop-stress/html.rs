//! `--html FILE`: the report as one page to look at, self-contained — the
//! charts are inline SVG (the same pictures as `--plot` and
//! `--plot-percentiles`), the style is inline, there is no script and no
//! reference to any other file, so the page opens the same from a mail
//! attachment, a CI artifact or a machine with no network.
//!
//! Its figures come from the `--json` report itself ([`JsonReport`]), read
//! back by field name: the page shows what the JSON says, under the same
//! names, and a field the report gains appears on the page (in "Every
//! figure") with no edit here.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::conn::FailReason;
use crate::intervals::Point;
use crate::json::{JsonReport, Summary};
use crate::plot;
use crate::record::Series;
use crate::report::{group, Report};
use crate::spectrum;

/// The run's settings, by their JSON names, in the order shown.
const PARAMETERS: [&str; 15] = [
    "mode",
    "addr",
    "connections",
    "message_size",
    "pipeline",
    "threads",
    "rate_per_connection",
    "messages_requested",
    "duration_secs",
    "max_failures",
    "max_loss_percent",
    "fd_limit",
    "started_unix",
    "elapsed_secs",
    "merged_runs",
];

/// What went wrong, by their JSON names (those a run's kind lacks are
/// left out); the connects that failed are shown by reason apart.
const FAILURES: [&str; 16] = [
    "connections_failed",
    "connections_aborted",
    "connections_never_attempted",
    "unexpected_closes",
    "closed_before_echo",
    "stalled",
    "unfinished",
    "verification_errors",
    "lost",
    "late",
    "duplicated",
    "reordered",
    "corrupted",
    "foreign",
    "icmp_errors",
    "failures",
];

/// The page's style: plain, readable, printable.
const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:1040px;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;\
text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.verdict{font-size:1.3em;font-weight:bold;padding:.4em .8em;display:inline-block}\
.pass{background:#dff0d8;color:#2b542c}.fail{background:#f2dede;color:#a94442}\
svg{max-width:100%;height:auto}code{white-space:pre-wrap;word-break:break-all}\
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}";

/// The page for `report`, whose intervals are `points`.
pub fn page(report: &Report, points: &[Point]) -> Result<String, String> {
    let json = serde_json::to_value(JsonReport::of(report)).map_err(|e| format!("{e}"))?;
    let Value::Object(fields) = json else {
        return Err("the report is not a JSON object".into());
    };
    let title = plot::title(&report.setup);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    verdict(&mut out, report);
    let _ = writeln!(
        out,
        "<h2>The report</h2>\n<pre>{}</pre>",
        escape(report.text().trim_end())
    );
    out.push_str("<h2>Parameters</h2>\n");
    table(&mut out, &fields, &PARAMETERS);
    out.push_str("<h2>Throughput and latency over time</h2>\n");
    out.push_str(&plot::svg(&report.setup, points)?);
    out.push_str("\n<h2>Latency by percentile</h2>\n");
    if report.rec.is_empty() {
        out.push_str("<p>No latency was recorded.</p>");
    } else {
        out.push_str(&spectrum::of_run(&report.setup, &report.rec)?);
    }
    out.push_str("\n<h2>Round trip, connect and first-byte times (µs)</h2>\n");
    latency_table(&mut out, report);
    out.push_str("<h2>Failures by reason</h2>\n");
    failures(&mut out, report, &fields);
    out.push_str("<h2>Every figure of the report</h2>\n<p>As in <code>--json</code>, by name (the histograms left out).</p>\n");
    let names: Vec<&str> = fields
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "histograms")
        .collect();
    table(&mut out, &fields, &names);
    out.push_str("</body></html>\n");
    Ok(out)
}

/// PASS or FAIL and why, the exit status, and the outputs not written.
fn verdict(out: &mut String, report: &Report) {
    let _ = match report.verdict() {
        None => write!(out, "<p class=\"verdict pass\">PASS</p>"),
        Some(why) => write!(out, "<p class=\"verdict fail\">FAIL: {}</p>", escape(&why)),
    };
    let _ = writeln!(out, "<p>exit status {}</p>", report.exit_code());
    for error in &report.output_errors {
        let _ = writeln!(out, "<p class=\"fail\">NOT WRITTEN: {}</p>", escape(error));
    }
    if let Some(advice) = report.advice() {
        let _ = writeln!(out, "<p>{}</p>", escape(&advice));
    }
}

/// A two-column table of the `names` of `fields` that are there.
fn table(out: &mut String, fields: &Map<String, Value>, names: &[&str]) {
    out.push_str("<table>\n");
    for name in names {
        if let Some(value) = fields.get(*name) {
            row(out, name, value);
        }
    }
    out.push_str("</table>\n");
}

/// One `name | value` row.
fn row(out: &mut String, name: &str, value: &Value) {
    let class = if value.is_number() {
        " class=\"n\""
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "<tr><th>{}</th><td{class}>{}</td></tr>",
        escape(name),
        shown(value)
    );
}

/// A JSON value as the page shows it: counts grouped, `null` as a dash,
/// objects and lists as compact JSON.
fn shown(value: &Value) -> String {
    match value {
        Value::Null => "—".into(),
        Value::Number(n) => n.as_u64().map_or_else(|| n.to_string(), group),
        Value::String(s) => escape(s),
        Value::Bool(b) => b.to_string(),
        other => format!("<code>{}</code>", escape(&other.to_string())),
    }
}

/// Each recorded series' percentiles, max, mean and count.
fn latency_table(out: &mut String, report: &Report) {
    let series: Vec<(Series, Summary)> = report
        .setup
        .series()
        .into_iter()
        .filter_map(|s| Summary::of(report.rec.get(s), &report.percentiles).map(|m| (s, m)))
        .collect();
    let Some((_, first)) = series.first() else {
        out.push_str("<p>No latency was recorded.</p>\n");
        return;
    };
    out.push_str("<table>\n<tr><th>series</th>");
    for (name, _) in &first.quantiles {
        let _ = write!(out, "<th>{}</th>", escape(name));
    }
    out.push_str("<th>max</th><th>mean</th><th>count</th></tr>\n");
    for (s, m) in &series {
        let _ = write!(out, "<tr><th>{}</th>", s.tag());
        for (_, v) in &m.quantiles {
            let _ = write!(out, "<td class=\"n\">{v:.1}</td>");
        }
        let _ = writeln!(
            out,
            "<td class=\"n\">{:.1}</td><td class=\"n\">{:.1}</td><td class=\"n\">{}</td></tr>",
            m.max,
            m.mean,
            group(m.count)
        );
    }
    out.push_str("</table>\n");
}

/// Failed connects by reason, the other failures, and the first error of
/// each kind.
fn failures(out: &mut String, report: &Report, fields: &Map<String, Value>) {
    if !report.setup.mode.udp() {
        out.push_str("<table>\n<tr><th>failed connects</th>");
        for r in FailReason::ALL {
            let _ = write!(out, "<th>{}</th>", r.name());
        }
        out.push_str("</tr>\n<tr><td></td>");
        for r in FailReason::ALL {
            let n = report.counts.failed[r.index()];
            let _ = write!(out, "<td class=\"n\">{}</td>", group(n));
        }
        out.push_str("</tr>\n</table>\n");
    }
    table(out, fields, &FAILURES);
    let mut first = Vec::new();
    for (name, value) in fields.iter().filter(|(k, _)| k.starts_with("first_")) {
        match value {
            Value::Object(by) => first.extend(
                by.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (format!("{name}.{k}"), v.clone())),
            ),
            Value::Null => {}
            v => first.push((name.clone(), v.clone())),
        }
    }
    if first.is_empty() {
        out.push_str("<p>No error of any kind.</p>\n");
        return;
    }
    out.push_str("<table>\n");
    for (name, value) in &first {
        row(out, name, value);
    }
    out.push_str("</table>\n");
}

/// `text` safe inside HTML text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(shown(&Value::from(1_234_567u64)), "1,234,567");
        assert_eq!(shown(&Value::Null), "—");
    }
}
