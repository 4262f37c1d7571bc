//! The latency chart: the distribution (CDF) of per-record latency of each side, as a PNG.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::reader::percentile;

/// DejaVu Sans 2.37, unchanged from Debian 12's `fonts-dejavu-core`, under the Bitstream Vera
/// licence with the DejaVu changes in the public domain (text in `DejaVuSans.LICENSE` beside
/// it). plotters' `ab_glyph` feature draws text with registered fonts only, so the chart needs
/// no fonts on the machine.
const FONT: &[u8] = include_bytes!("DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// One side's distribution.
#[derive(Debug)]
pub(crate) struct Series<'a> {
    pub(crate) label: &'a str,
    /// Per-record latency, ms, sorted.
    pub(crate) sorted_ms: &'a [i64],
    /// Records accounted for and expected, when not all were.
    pub(crate) incomplete: Option<(u64, u64)>,
}

const COLOURS: [RGBColor; 2] = [RGBColor(31, 119, 180), RGBColor(214, 39, 40)];

/// Draws the series' CDFs into a PNG at `path` (its folder is created).
pub(crate) fn draw(path: &Path, title: &str, series: &[Series<'_>]) -> Result<()> {
    register_font(FAMILY, FontStyle::Normal, FONT)
        .map_err(|_| anyhow!("the embedded font does not parse"))?;
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
    }
    let x_max = x_axis_end(series);
    let root = BitMapBackend::new(path, (1100, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 22))
        .margin(18)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..100f64)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("latency per record, ms (axis ends a little past the larger p99.9)")
        .y_desc("records at or under that latency, %")
        .x_label_formatter(&|ms| format!("{ms:.0}"))
        .y_label_formatter(&|percent| format!("{percent:.0}"))
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(plot_error)?;
    for (one, colour) in series.iter().zip(COLOURS) {
        let style = colour.stroke_width(2);
        chart
            .draw_series(LineSeries::new(cdf(one.sorted_ms, x_max), style))
            .map_err(plot_error)?
            .label(legend(one))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FAMILY, 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the latency chart: {error}")
}

/// A little past the largest p99.9, so one outlier does not squeeze the curves into a corner.
fn x_axis_end(series: &[Series<'_>]) -> f64 {
    let tail = series
        .iter()
        .map(|one| percentile(one.sorted_ms, 0.999))
        .max()
        .unwrap_or(1);
    (tail.max(1) as f64 * 1.1).ceil()
}

/// `label: p50 .. ms, p99 .. ms, max .. ms (n = ..)`.
fn legend(one: &Series<'_>) -> String {
    let ms = one.sorted_ms;
    let mut text = format!(
        "{}: p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms (n = {})",
        one.label,
        percentile(ms, 0.50),
        percentile(ms, 0.99),
        percentile(ms, 0.999),
        ms.last().copied().unwrap_or(-1),
        ms.len()
    );
    if let Some((accounted, expected)) = one.incomplete {
        text.push_str(&format!(" INCOMPLETE: {accounted} of {expected} accounted"));
    }
    text
}

/// Points of the empirical CDF (at most ~2000 steps) up to `x_max`.
fn cdf(sorted: &[i64], x_max: f64) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let step = (n / 2000).max(1);
    let mut points = vec![(sorted[0].max(0) as f64, 0.0)];
    for i in (0..n).step_by(step).chain([n - 1]) {
        let x = (sorted[i] as f64).max(0.0);
        let y = (i + 1) as f64 * 100.0 / n as f64;
        let previous = points.last().map_or(0.0, |&(_, y)| y);
        if x > x_max {
            points.push((x_max, previous));
            break;
        }
        // A step: along at the previous fraction, then up at x.
        points.push((x, previous));
        points.push((x, y));
    }
    points
}
