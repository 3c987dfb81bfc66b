//! The picture of normal vs anomalous windows: one panel per series, p95 latency over time, with
//! anomalous windows marked in red and warm-up shaded grey.

use crate::model::window::{feature, SeriesKey, WindowRecord};
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

/// Draws up to `max_panels` series (those with the most anomalies first) into a PNG.
pub fn render_png(
    records: &[WindowRecord],
    path: &Path,
    max_panels: usize,
) -> Result<(), PlotError> {
    if records.is_empty() {
        return Err(PlotError::Empty);
    }
    let err = |e: &dyn std::fmt::Display| PlotError::Draw {
        path: path.display().to_string(),
        message: e.to_string(),
    };
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
    let t0 = records.iter().map(|r| r.start_ns).min().unwrap_or(0);
    let minutes = |r: &WindowRecord| (r.start_ns - t0) as f64 / 60e9;
    let font = ensure_font();

    let height = 260 * series.len() as u32 + if font { 40 } else { 0 };
    let root = BitMapBackend::new(path, (1200, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = if font {
        root.titled(
            "otelwatch: normal (blue) vs anomalous (red) windows",
            ("sans-serif", 22),
        )
        .map_err(|e| err(&e))?
    } else {
        root
    };
    let panels = root.split_evenly((series.len(), 1));
    for (panel, (key, rs)) in panels.iter().zip(&series) {
        let xmax = rs.iter().map(|r| minutes(r)).fold(1.0, f64::max);
        let ymax = rs
            .iter()
            .map(|r| r.features[feature::LATENCY_P95])
            .fold(1.0, f64::max)
            * 1.1;
        let anomalies = rs.iter().filter(|r| r.is_anomaly()).count();
        let mut builder = ChartBuilder::on(panel);
        builder.margin(12);
        if font {
            builder
                .caption(
                    format!(
                        "{key}: p95 latency, {anomalies} anomalous windows of {}",
                        rs.len()
                    ),
                    ("sans-serif", 16),
                )
                .x_label_area_size(28)
                .y_label_area_size(60);
        }
        let mut chart = builder
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .map_err(|e| err(&e))?;
        if font {
            chart
                .configure_mesh()
                .x_desc("minutes")
                .y_desc("p95 ms")
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(|e| err(&e))?;
        }
        let warm: Vec<&&WindowRecord> = rs
            .iter()
            .filter(|r| r.anomaly.as_ref().is_some_and(|a| a.warming_up))
            .collect();
        if let (Some(first), Some(last)) = (warm.first(), warm.last()) {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(minutes(first), 0.0), (minutes(last), ymax)],
                    RGBColor(220, 220, 220).filled(),
                )))
                .map_err(|e| err(&e))?;
        }
        chart
            .draw_series(LineSeries::new(
                rs.iter()
                    .map(|r| (minutes(r), r.features[feature::LATENCY_P95])),
                &RGBColor(40, 90, 200),
            ))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(rs.iter().filter(|r| r.is_anomaly()).map(|r| {
                Circle::new(
                    (minutes(r), r.features[feature::LATENCY_P95]),
                    5,
                    RED.filled(),
                )
            }))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
