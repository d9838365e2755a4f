//! The HTML report: one self-contained file with inline CSS and inline SVG charts drawn
//! by `plotters`' SVG backend. It has no scripts and fetches nothing (its
//! Content-Security-Policy forbids both), so it opens offline in any browser.
//!
//! The figures table is built from [`render::summary_table`], the same cells the terminal
//! summary prints.

use std::error::Error;
use std::fmt::Write as _;

use plotters::prelude::*;

use crate::render::{self, Row};
use crate::report::SimReport;

const CHART_SIZE: (u32, u32) = (900, 340);
const FONT: &str = "sans-serif";

/// One colour per autoscaler, in report order; the first is kerf's in the usual
/// `kerf` + `node-groups` pair.
const RUN_COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// One colour per `nodepool/capacity-type` band, cycled when there are more.
const BAND_COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(174, 199, 232),
    RGBColor(255, 127, 14),
    RGBColor(255, 187, 120),
    RGBColor(44, 160, 44),
    RGBColor(152, 223, 138),
    RGBColor(214, 39, 40),
    RGBColor(255, 152, 150),
    RGBColor(148, 103, 189),
    RGBColor(197, 176, 213),
];

const STYLE: &str = "\
body{font-family:sans-serif;margin:2em auto;max-width:960px;color:#222;padding:0 1em}
h1{margin-bottom:.2em}
.run{color:#555;margin-top:0}
.verdict{font-size:1.2em;font-weight:bold}
.zero{padding:.6em 1em;border-radius:4px;margin:1em 0}
.zero.ok{background:#e6f4e6;border:1px solid #7bb77b}
.zero.fail{background:#fde2e2;border:2px solid #c62828;color:#8b0000;font-weight:bold}
table{border-collapse:collapse;margin:1em 0}
th,td{padding:.2em .8em;text-align:right}
td:first-child{text-align:left;padding-left:1.6em}
thead th{border-bottom:1px solid #888}
tr.section th{text-align:left;padding-top:.8em;border-bottom:1px solid #ddd}
td.violation{background:#c62828;color:#fff;font-weight:bold}
figure{margin:1em 0}
svg{max-width:100%;height:auto}
";

/// The report as one HTML document.
pub fn render(reports: &[SimReport]) -> String {
    let heading = render::heading(reports);
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // The file must open offline: nothing may be loaded, and no script may run.
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" \
         content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
    );
    let _ = writeln!(out, "<title>kerf simulate {}</title>", escape(&heading));
    let _ = writeln!(out, "<style>\n{STYLE}</style>\n</head>\n<body>");
    out.push_str("<h1>kerf simulate</h1>\n");
    let _ = writeln!(out, "<p class=\"run\">{}</p>", escape(&heading));
    if reports.is_empty() {
        out.push_str("</body>\n</html>\n");
        return out;
    }
    if let Some(verdict) = render::cost_verdict(reports) {
        let _ = writeln!(out, "<p class=\"verdict\">{}</p>", escape(&verdict));
    }
    must_be_zero(&mut out, reports);

    out.push_str("<h2>Summary</h2>\n");
    table(&mut out, reports);

    let time = TimeAxis::for_reports(reports);
    out.push_str("<h2>Cost</h2>\n");
    figure(&mut out, cost_chart(reports, &time));
    out.push_str("<h2>Nodes by NodePool and capacity type</h2>\n");
    for report in reports {
        figure(&mut out, nodes_chart(report, &time));
    }
    out.push_str("<h2>Utilization (requested / allocatable)</h2>\n");
    figure(
        &mut out,
        utilization_chart(reports, &time, "CPU utilization", |s| {
            (s.cpu_requested, s.cpu_allocatable)
        }),
    );
    figure(
        &mut out,
        utilization_chart(reports, &time, "Memory utilization", |s| {
            (s.memory_requested_gib, s.memory_allocatable_gib)
        }),
    );
    out.push_str("</body>\n</html>\n");
    out
}

/// The banner for the counters that must be zero: green when they are, red and listing
/// each one that isn't otherwise.
fn must_be_zero(out: &mut String, reports: &[SimReport]) {
    let broken = render::violations(reports);
    if broken.is_empty() {
        out.push_str(
            "<div class=\"zero ok\">Every must-be-zero counter is zero: no PDB violations, \
             do-not-disrupt violations, leaked instances or double launches.</div>\n",
        );
    } else {
        out.push_str("<div class=\"zero fail\">Must-be-zero counters are not zero:\n<ul>\n");
        for line in broken {
            let _ = writeln!(out, "<li>{}</li>", escape(&line));
        }
        out.push_str("</ul>\n</div>\n");
    }
}

fn table(out: &mut String, reports: &[SimReport]) {
    out.push_str("<table>\n<thead><tr><th></th>");
    for report in reports {
        let _ = write!(out, "<th>{}</th>", escape(&report.autoscaler));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in render::summary_table(reports) {
        match row {
            Row::Section(title) => {
                let _ = writeln!(
                    out,
                    "<tr class=\"section\"><th colspan=\"{}\">{}</th></tr>",
                    reports.len() + 1,
                    escape(title)
                );
            }
            Row::Figure { label, cells } => {
                let _ = write!(out, "<tr><td>{}</td>", escape(&label));
                for cell in cells {
                    let class = if cell.violation {
                        " class=\"violation\""
                    } else {
                        ""
                    };
                    let _ = write!(out, "<td{class}>{}</td>", escape(&cell.text));
                }
                out.push_str("</tr>\n");
            }
        }
    }
    out.push_str("</tbody>\n</table>\n");
}

/// A chart, or why it could not be drawn. Drawing into a string can only fail on a
/// plotters bug, which should not cost the user the rest of the report.
fn figure(out: &mut String, chart: Result<String, Box<dyn Error>>) {
    match chart {
        Ok(svg) => {
            let _ = write!(out, "<figure>\n{svg}</figure>\n");
        }
        Err(err) => {
            let _ = writeln!(
                out,
                "<p>This chart could not be drawn: {}</p>",
                escape(&err.to_string())
            );
        }
    }
}

/// Time on the x axis: minutes for runs up to three hours, hours beyond.
struct TimeAxis {
    secs_per_unit: f64,
    label: &'static str,
    end: f64,
}

impl TimeAxis {
    fn for_reports(reports: &[SimReport]) -> TimeAxis {
        let end_secs = reports
            .iter()
            .flat_map(|r| r.samples.iter().map(|s| s.t).chain([r.duration_secs]))
            .max()
            .unwrap_or(0);
        let (secs_per_unit, label) = if end_secs <= 3 * 3600 {
            (60.0, "minutes")
        } else {
            (3600.0, "hours")
        };
        TimeAxis {
            secs_per_unit,
            label,
            end: (end_secs as f64 / secs_per_unit).max(1.0),
        }
    }

    fn at(&self, t: i64) -> f64 {
        t as f64 / self.secs_per_unit
    }
}

/// A time axis label: whole numbers without decimals.
fn time_label(v: &f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The top of a y axis: a little above the highest value, and never empty or infinite
/// (plotters looks for tick marks up to it).
fn headroom(max: f64) -> f64 {
    if max.is_finite() && max > 0.0 {
        max * 1.1
    } else {
        1.0
    }
}

/// One autoscaler's line in a chart: (time, value) points, `None` where there is no
/// value, which breaks the line.
struct Line<'a> {
    autoscaler: &'a str,
    points: Vec<Option<(f64, f64)>>,
}

/// A chart with one line per autoscaler.
fn lines_chart(
    title: &str,
    time: &TimeAxis,
    y_top: f64,
    y_format: &dyn Fn(&f64) -> String,
    lines: &[Line],
) -> Result<String, Box<dyn Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..time.end, 0.0..y_top)?;
        chart
            .configure_mesh()
            .x_desc(time.label)
            .x_label_formatter(&time_label)
            .y_label_formatter(y_format)
            .draw()?;
        for (run_idx, line) in lines.iter().enumerate() {
            let color = RUN_COLORS[run_idx % RUN_COLORS.len()];
            let segments = line
                .points
                .split(Option::is_none)
                .filter(|seg| !seg.is_empty());
            for (seg_idx, segment) in segments.enumerate() {
                let series =
                    LineSeries::new(segment.iter().flatten().copied(), color.stroke_width(2));
                let drawn = chart.draw_series(series)?;
                if seg_idx == 0 {
                    drawn.label(line.autoscaler).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 14))
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// $/hour over time, one line per autoscaler.
fn cost_chart(reports: &[SimReport], time: &TimeAxis) -> Result<String, Box<dyn Error>> {
    let peak = reports
        .iter()
        .flat_map(|r| &r.samples)
        .map(|s| s.cost_per_hour)
        .fold(0.0, f64::max);
    let lines: Vec<Line> = reports
        .iter()
        .map(|r| {
            let points = r
                .samples
                .iter()
                .map(|s| Some((time.at(s.t), s.cost_per_hour)))
                .collect();
            Line {
                autoscaler: &r.autoscaler,
                points,
            }
        })
        .collect();
    lines_chart(
        "$ per hour",
        time,
        headroom(peak),
        &|v| format!("${v:.2}"),
        &lines,
    )
}

/// Requested over allocatable as a percentage over time, one line per autoscaler; no
/// point where nothing was allocatable.
fn utilization_chart(
    reports: &[SimReport],
    time: &TimeAxis,
    title: &str,
    requested_allocatable: fn(&crate::report::Sample) -> (f64, f64),
) -> Result<String, Box<dyn Error>> {
    let lines: Vec<Line> = reports
        .iter()
        .map(|r| {
            let points = r
                .samples
                .iter()
                .map(|s| {
                    let (requested, allocatable) = requested_allocatable(s);
                    (allocatable > 0.0).then(|| (time.at(s.t), 100.0 * requested / allocatable))
                })
                .collect();
            Line {
                autoscaler: &r.autoscaler,
                points,
            }
        })
        .collect();
    let peak = lines
        .iter()
        .flat_map(|l| l.points.iter().flatten())
        .map(|p| p.1)
        .fold(100.0, f64::max);
    let top = if peak.is_finite() { peak } else { 100.0 };
    lines_chart(title, time, top, &|v| format!("{v:.0}%"), &lines)
}

/// One autoscaler's nodes over time, stacked by `nodepool/capacity-type`.
fn nodes_chart(report: &SimReport, time: &TimeAxis) -> Result<String, Box<dyn Error>> {
    let keys: std::collections::BTreeSet<&str> = report
        .samples
        .iter()
        .flat_map(|s| s.nodes.keys().map(String::as_str))
        .collect();
    // The top edge of each band: the nodes of its key and of every key before it.
    let mut tops: Vec<(&str, Vec<(f64, u32)>)> = Vec::new();
    for key in keys {
        let below = tops.last().map(|(_, points)| points.clone());
        let points = report
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let base = below.as_ref().map_or(0, |b| b[i].1);
                (time.at(s.t), base + s.nodes.get(key).copied().unwrap_or(0))
            })
            .collect();
        tops.push((key, points));
    }
    let peak = tops
        .last()
        .map_or(0, |(_, p)| p.iter().map(|p| p.1).max().unwrap_or(0));

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let title = format!("Nodes under {}", report.autoscaler);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..time.end, 0..(peak + peak / 10 + 1))?;
        chart
            .configure_mesh()
            .x_desc(time.label)
            .x_label_formatter(&time_label)
            .draw()?;
        // Highest band first, so each lower band is painted over the one above it.
        for (band_idx, (key, points)) in tops.iter().enumerate().rev() {
            let color = BAND_COLORS[band_idx % BAND_COLORS.len()];
            chart
                .draw_series(AreaSeries::new(points.iter().copied(), 0, color.filled()))?
                .label(*key)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 14))
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// `text` with the characters HTML gives meaning to replaced by references.
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
    use crate::render::tests::ecommerce_pair;

    /// Checks that every element opened is closed, in order, and returns how often each
    /// element name was opened. Enough to catch a truncated chart or an unescaped `<`.
    fn element_counts(html: &str) -> std::collections::BTreeMap<String, usize> {
        const VOID: [&str; 2] = ["meta", "br"];
        let mut open: Vec<String> = Vec::new();
        let mut counts = std::collections::BTreeMap::new();
        let mut rest = html;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("a tag is closed") + start;
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            if tag.starts_with('!') {
                continue;
            }
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if let Some(closing) = tag.strip_prefix('/') {
                assert_eq!(
                    open.pop().as_deref(),
                    Some(closing),
                    "</{closing}> closes the wrong element"
                );
            } else if !tag.ends_with('/') && !VOID.contains(&name.as_str()) {
                open.push(name.clone());
            }
            if !tag.starts_with('/') {
                *counts.entry(name).or_insert(0) += 1;
            }
        }
        assert!(open.is_empty(), "never closed: {open:?}");
        counts
    }

    #[test]
    fn one_self_contained_page_with_a_chart_each() {
        let reports = ecommerce_pair();
        let html = render(&reports);
        let counts = element_counts(&html);
        // $/hour, nodes under each autoscaler, CPU and memory utilization.
        assert_eq!(counts["svg"], 1 + reports.len() + 2);
        assert!(
            counts["text"] > 20,
            "axis labels are SVG text, laid out by the browser"
        );
        assert!(
            counts["polyline"] >= 4,
            "a line per autoscaler in the line charts"
        );
        assert_eq!(counts.get("script"), None);
        for fetch in [
            "src=", "href=", "url(", "@import", "<link", "<img", "<iframe",
        ] {
            assert!(
                !html.contains(fetch),
                "the page must not fetch anything: {fetch}"
            );
        }
        assert_eq!(html, render(&reports), "same reports, same bytes");
    }

    #[test]
    fn figures_match_the_terminal_summary() {
        let reports = ecommerce_pair();
        let html = render(&reports);
        let text = render::summary(&reports);
        for row in render::summary_table(&reports) {
            let Row::Figure { label, cells } = row else {
                continue;
            };
            let cells: Vec<String> = cells.into_iter().map(|c| c.text).collect();
            let html_cells: Vec<String> = cells.iter().map(|c| escape(c)).collect();
            let html_row = format!(
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(&label),
                html_cells.join("</td><td>")
            );
            assert!(html.contains(&html_row), "{html_row}");
            let text_row = text
                .lines()
                .find(|line| line.trim_start().starts_with(&format!("{label} ")))
                .unwrap_or_else(|| panic!("no terminal line for {label}"));
            assert_eq!(
                text_row
                    .split_whitespace()
                    .rev()
                    .take(cells.len())
                    .collect::<Vec<_>>(),
                cells.iter().rev().map(String::as_str).collect::<Vec<_>>()
            );
        }
        let verdict = render::cost_verdict(&reports).expect("a baseline is present");
        assert!(verdict.starts_with("kerf saves $2.74 (59.4%)"), "{verdict}");
        assert!(html.contains(&escape(&verdict)) && text.contains(&verdict));
        assert!(html.contains("<div class=\"zero ok\">"));
        assert!(!html.contains("class=\"violation\""));
    }

    #[test]
    fn violations_are_marked() {
        let mut reports = ecommerce_pair();
        reports[1].leaked_instances = 3;
        let html = render(&reports);
        assert!(html.contains(
            "<tr><td>leaked instances</td><td>0</td><td class=\"violation\">3</td></tr>"
        ));
        assert!(html.contains("<div class=\"zero fail\">"));
        assert!(html.contains("<li>node-groups: leaked instances = 3</li>"));
    }

    #[test]
    fn scenario_strings_are_escaped() {
        let mut reports = ecommerce_pair();
        reports[0].scenario = "<script>alert('x')</script> & co".to_owned();
        reports[1].scenario = reports[0].scenario.clone();
        reports[0].autoscaler = "kerf<b>".to_owned();
        let key = "web\"&<pool>/spot".to_owned();
        reports[0].samples[1].nodes.insert(key, 1);
        reports[0].disruptions.insert("<i>drift</i>".to_owned(), 1);
        let html = render(&reports);
        element_counts(&html);
        assert!(!html.contains("<script") && !html.contains("<b>") && !html.contains("<i>"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"));
        assert!(
            html.contains("web&quot;&amp;&lt;pool&gt;/spot"),
            "legend labels are escaped by plotters"
        );
    }

    #[test]
    fn odd_figures_still_render() {
        let mut reports = ecommerce_pair();
        reports[0].samples[1].cost_per_hour = f64::NAN;
        reports[0].samples[2].cost_per_hour = f64::INFINITY;
        reports[0].samples[3].cpu_requested = f64::INFINITY;
        reports[0].samples[4].cpu_allocatable = 0.0;
        reports[1].samples.clear();
        reports[1].duration_secs = 30 * 86_400;
        let counts = element_counts(&render(&reports));
        assert_eq!(counts["svg"], 5);
    }

    #[test]
    fn no_reports_no_charts() {
        let html = render(&[]);
        assert_eq!(element_counts(&html).get("svg"), None);
        assert!(html.contains("no simulation reports"));
    }
}
