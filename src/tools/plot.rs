//! The picture of normal vs anomalous windows: one panel per series, over time, with anomalous
//! windows marked in red and warm-up shaded grey. Each panel draws the feature that made most of
//! the series' windows anomalous (p95 latency when none was), so a red dot sits where its cause
//! shows; a dot whose own cause is another feature is labelled with it.

use crate::model::window::{feature, SeriesKey, WindowRecord, FEATURE_NAMES};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("nothing to draw: no window records")]
    Empty,
    #[error("drawing {path}: {message}")]
    Draw { path: String, message: String },
}

/// Where fonts usually are; text is left out when none is found (the picture still draws).
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

fn ensure_font() -> bool {
    static FONT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FONT.get_or_init(|| {
        for p in FONT_PATHS {
            if let Ok(bytes) = std::fs::read(p) {
                // Registered once per process; the font lives as long as the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// A panel's drawing area in the picture.
type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
/// A panel's chart: minutes against a feature's value.
type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws up to `max_panels` series (those with the most anomalies first) into a PNG.
pub fn render_png(
    records: &[WindowRecord],
    path: &Path,
    max_panels: usize,
) -> Result<(), PlotError> {
    if records.is_empty() {
        return Err(PlotError::Empty);
    }
    let series = panel_series(records, max_panels);
    let canvas = Canvas {
        path,
        t0: records.iter().map(|r| r.start_ns).min().unwrap_or(0),
        font: ensure_font(),
    };
    let height = 260 * series.len() as u32 + if canvas.font { 40 } else { 0 };
    let root = BitMapBackend::new(path, (1200, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| canvas.err(&e))?;
    let root = if canvas.font {
        root.titled(
            "otelwatch: normal (blue) vs anomalous (red) windows",
            ("sans-serif", 22),
        )
        .map_err(|e| canvas.err(&e))?
    } else {
        root
    };
    let panels = root.split_evenly((series.len(), 1));
    for (panel, (key, rs)) in panels.iter().zip(&series) {
        canvas.draw_panel(panel, key, rs)?;
    }
    root.present().map_err(|e| canvas.err(&e))?;
    Ok(())
}

/// The windows of each series, the series with the most anomalies first, at most `max_panels`
/// of them.
fn panel_series(
    records: &[WindowRecord],
    max_panels: usize,
) -> Vec<(Arc<SeriesKey>, Vec<&WindowRecord>)> {
    let mut by_series: BTreeMap<Arc<SeriesKey>, Vec<&WindowRecord>> = BTreeMap::new();
    for r in records {
        by_series.entry(r.series.clone()).or_default().push(r);
    }
    let mut series: Vec<(Arc<SeriesKey>, Vec<&WindowRecord>)> = by_series.into_iter().collect();
    series.sort_by_key(|(k, rs)| {
        (
            std::cmp::Reverse(rs.iter().filter(|r| r.is_anomaly()).count()),
            k.clone(),
        )
    });
    series.truncate(max_panels.max(1));
    series
}

/// What the panels of one picture share: the file, the time origin and whether there is a
/// font for text.
struct Canvas<'a> {
    path: &'a Path,
    t0: u64,
    font: bool,
}

impl Canvas<'_> {
    fn err(&self, e: &dyn std::fmt::Display) -> PlotError {
        PlotError::Draw {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// Minutes from the first window to the start of `r`.
    fn minutes(&self, r: &WindowRecord) -> f64 {
        (r.start_ns - self.t0) as f64 / 60e9
    }

    /// One series' panel: its panel feature over time, the warm-up shaded, anomalies in red.
    fn draw_panel(
        &self,
        panel: &Area,
        key: &SeriesKey,
        rs: &[&WindowRecord],
    ) -> Result<(), PlotError> {
        let f = panel_feature(rs);
        let ymax = rs.iter().map(|r| r.features[f]).fold(1.0, f64::max) * 1.1;
        let mut chart = self.chart(panel, key, rs, f, ymax)?;
        self.shade_warmup(&mut chart, rs, ymax)?;
        self.draw_windows(&mut chart, rs, f)
    }

    /// The panel's axes up to `ymax`, with its caption and mesh when there is a font.
    fn chart<'a, 'b>(
        &self,
        panel: &'a Area<'b>,
        key: &SeriesKey,
        rs: &[&WindowRecord],
        f: usize,
        ymax: f64,
    ) -> Result<Chart<'a, 'b>, PlotError> {
        let name = FEATURE_NAMES[f];
        let xmax = rs.iter().map(|r| self.minutes(r)).fold(1.0, f64::max);
        let anomalies = rs.iter().filter(|r| r.is_anomaly()).count();
        let mut builder = ChartBuilder::on(panel);
        builder.margin(12);
        if self.font {
            builder
                .caption(
                    format!(
                        "{key}: {name}, {anomalies} anomalous windows of {}",
                        rs.len()
                    ),
                    ("sans-serif", 16),
                )
                .x_label_area_size(28)
                .y_label_area_size(60);
        }
        let mut chart = builder
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .map_err(|e| self.err(&e))?;
        if self.font {
            chart
                .configure_mesh()
                .x_desc("minutes")
                .y_desc(name)
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(|e| self.err(&e))?;
        }
        Ok(chart)
    }

    /// The warm-up windows shaded grey, from the first to the last.
    fn shade_warmup(
        &self,
        chart: &mut Chart,
        rs: &[&WindowRecord],
        ymax: f64,
    ) -> Result<(), PlotError> {
        let warm: Vec<&&WindowRecord> = rs
            .iter()
            .filter(|r| r.anomaly.as_ref().is_some_and(|a| a.warming_up))
            .collect();
        if let (Some(first), Some(last)) = (warm.first(), warm.last()) {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(self.minutes(first), 0.0), (self.minutes(last), ymax)],
                    RGBColor(220, 220, 220).filled(),
                )))
                .map_err(|e| self.err(&e))?;
        }
        Ok(())
    }

    /// Feature `f` of every window as a line, the anomalous ones as red dots, each labelled
    /// with its own cause when that is another feature (and there is a font).
    fn draw_windows(
        &self,
        chart: &mut Chart,
        rs: &[&WindowRecord],
        f: usize,
    ) -> Result<(), PlotError> {
        chart
            .draw_series(LineSeries::new(
                rs.iter().map(|r| (self.minutes(r), r.features[f])),
                &RGBColor(40, 90, 200),
            ))
            .map_err(|e| self.err(&e))?;
        chart
            .draw_series(
                rs.iter()
                    .filter(|r| r.is_anomaly())
                    .map(|r| Circle::new((self.minutes(r), r.features[f]), 5, RED.filled())),
            )
            .map_err(|e| self.err(&e))?;
        if self.font {
            chart
                .draw_series(rs.iter().filter(|r| r.is_anomaly()).filter_map(|r| {
                    let cause = top_feature(r).filter(|c| *c != f)?;
                    Some(Text::new(
                        FEATURE_NAMES[cause],
                        (self.minutes(r), r.features[f]),
                        ("sans-serif", 12).into_font().color(&RED),
                    ))
                }))
                .map_err(|e| self.err(&e))?;
        }
        Ok(())
    }
}

/// The feature that made a window anomalous (its first contribution).
fn top_feature(r: &WindowRecord) -> Option<usize> {
    let c = r.anomaly.as_ref()?.contributions.first()?;
    FEATURE_NAMES.iter().position(|n| *n == c.feature)
}

/// The feature most of a series' anomalous windows were anomalous in; p95 latency if none.
fn panel_feature(rs: &[&WindowRecord]) -> usize {
    let mut count = [0usize; FEATURE_NAMES.len()];
    for r in rs.iter().filter(|r| r.is_anomaly()) {
        if let Some(f) = top_feature(r) {
            count[f] += 1;
        }
    }
    match count
        .iter()
        .enumerate()
        .max_by_key(|(i, n)| (**n, *i == feature::LATENCY_P95))
    {
        Some((i, n)) if *n > 0 => i,
        _ => feature::LATENCY_P95,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::window::{Anomaly, Contribution, N_FEATURES};

    fn rec(w: u64, cause: Option<&'static str>) -> WindowRecord {
        WindowRecord {
            series: Arc::new(SeriesKey::service("checkout")),
            start_ns: w * 10_000_000_000,
            interval_ns: 10_000_000_000,
            features: [1.0; N_FEATURES],
            anomaly: Some(Anomaly {
                score: if cause.is_some() { 0.8 } else { 0.3 },
                threshold: 0.6,
                is_anomaly: cause.is_some(),
                severity: None,
                warming_up: false,
                contributions: cause
                    .map(|c| {
                        vec![Contribution {
                            feature: c,
                            actual: 2.0,
                            typical: 1.0,
                        }]
                    })
                    .unwrap_or_default(),
                message: String::new(),
                incident: None,
                expected: false,
            }),
            partial: false,
            templates: Vec::new(),
            traces: 0,
            examples: Vec::new(),
            presence: Default::default(),
        }
    }

    #[test]
    fn a_panel_draws_the_feature_its_anomalies_were_in() {
        let rs = [
            rec(0, None),
            rec(1, Some("latency_p99_ms")),
            rec(2, Some("latency_p99_ms")),
            rec(3, Some("error_rate")),
        ];
        let refs: Vec<&WindowRecord> = rs.iter().collect();
        assert_eq!(FEATURE_NAMES[panel_feature(&refs)], "latency_p99_ms");
        assert_eq!(panel_feature(&refs[..1]), feature::LATENCY_P95);
    }
}
