//! Benchmarks that are commands, not tests: the forest on the standard outlier data sets (the
//! Online Isolation Forest paper's protocol) and the detector's cost per window.

pub mod console;
pub mod quality;
pub mod real;
pub mod real_metrics;

use crate::model::window::{SeriesKey, WindowRecord, N_FEATURES};
use crate::processors::iforest::forest::{ForestParams, OnlineForest, Rng};
use crate::processors::iforest::{IForestConfig, IForestProcessor};
use crate::telemetry::Telemetry;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("reading {path}: {message}")]
    Read { path: String, message: String },
    #[error("no data set matches in {0}")]
    NoDatasets(String),
}

/// Services ranked by their best score (ties by name); none when there are none.
pub fn ranked_by_score(best: impl IntoIterator<Item = (String, f64)>) -> Option<Vec<String>> {
    let mut v: Vec<(String, f64)> = best.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    (!v.is_empty()).then(|| v.into_iter().map(|x| x.0).collect())
}

/// Rankings against the true root services: (ranked, top-1 hits, top-3 hits).
pub fn root_cause_hits<'a>(
    roots: impl IntoIterator<Item = &'a str>,
    ranked: &[Option<Vec<String>>],
) -> (usize, usize, usize) {
    let (mut n, mut top1, mut top3) = (0, 0, 0);
    for (root, r) in roots.into_iter().zip(ranked) {
        let Some(r) = r else { continue };
        n += 1;
        if r.first().is_some_and(|s| s == root) {
            top1 += 1;
        }
        if r.iter().take(3).any(|s| s == root) {
            top3 += 1;
        }
    }
    (n, top1, top3)
}

/// ROC AUC by the rank-sum (Mann–Whitney) statistic, ties sharing their average rank.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut pos) = (0.0, 0usize);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] {
                rank_sum += avg;
                pos += 1;
            }
        }
        i = j + 1;
    }
    let neg = scores.len() - pos;
    if pos == 0 || neg == 0 {
        return 0.5;
    }
    (rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos as f64 * neg as f64)
}

pub struct Dataset {
    pub name: String,
    pub points: Vec<Vec<f64>>,
    pub labels: Vec<bool>,
}

/// Reads a gzip CSV with a header `f0,…,f{d-1},label`.
pub fn load_dataset(path: &Path) -> Result<Dataset, BenchError> {
    let err = |m: String| BenchError::Read {
        path: path.display().to_string(),
        message: m,
    };
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(f));
    let mut points = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| err(e.to_string()))?;
        if i == 0 || line.trim().is_empty() {
            continue;
        }
        let vals: Result<Vec<f64>, _> = line.split(',').map(|v| v.trim().parse::<f64>()).collect();
        let mut vals = vals.map_err(|e| err(format!("line {}: {e}", i + 1)))?;
        let label = vals
            .pop()
            .ok_or_else(|| err(format!("line {}: empty", i + 1)))?;
        labels.push(label >= 0.5);
        points.push(vals);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().replace(".csv.gz", ""))
        .unwrap_or_default();
    Ok(Dataset {
        name,
        points,
        labels,
    })
}

/// The paper's protocol: shuffle, stream in batches of 100, learn each batch then score it;
/// the ROC AUC over all scores at the end. Returns (AUC, seconds).
pub fn paper_protocol(ds: &Dataset, params: &ForestParams, seed: u64) -> (f64, f64) {
    let mut rng = Rng::new(seed);
    let mut order: Vec<usize> = (0..ds.points.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let dim = ds.points.first().map(|p| p.len()).unwrap_or(0);
    let mut forest = OnlineForest::new(params.clone(), dim, seed ^ 0x5eed);
    let started = Instant::now();
    let mut scores = Vec::with_capacity(order.len());
    let mut labels = Vec::with_capacity(order.len());
    for chunk in order.chunks(100) {
        let batch: Vec<Vec<f64>> = chunk.iter().map(|&i| ds.points[i].clone()).collect();
        forest.learn_batch(&batch);
        for (&i, p) in chunk.iter().zip(&batch) {
            scores.push(forest.score(p));
            labels.push(ds.labels[i]);
        }
    }
    (roc_auc(&scores, &labels), started.elapsed().as_secs_f64())
}

/// Reference figures (authors' code AUC, its time, batch scikit-learn AUC) from the data sets'
/// README, by data set name suffix.
const REFERENCE: &[(&str, &str, &str, &str)] = &[
    ("http", "0.9998", "459 s", "0.9993"),
    ("cover", "0.820", "258 s", "0.883"),
    ("smtp", "0.886", "70 s", "0.905"),
    ("shuttle", "0.996", "48 s", "0.997"),
    ("mammography", "0.867 / 0.884", "8 s", "0.861"),
    ("annthyroid", "0.678 / 0.648", "5 s", "0.832"),
    ("satellite", "0.643 / 0.681", "5 s", "0.695"),
    ("donors", "0.805", "563 s", "0.768"),
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs every `*.csv.gz` in `dir` (or those whose name contains one of `only`), `runs` times
/// each, with the paper's settings and with bounded scoring; returns a markdown table.
pub fn forest_report(dir: &Path, runs: usize, only: &[String]) -> Result<String, BenchError> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| BenchError::Read {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".csv.gz"))
        .filter(|p| {
            only.is_empty()
                || only.iter().any(|o| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().contains(o.as_str()))
                })
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(BenchError::NoDatasets(dir.display().to_string()));
    }
    let mut out = String::from(
        "| data set | n | d | AUC, paper settings: median (min–max) | AUC, bounded scoring | time per run | authors' code AUC | its time | batch sklearn AUC |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for f in files {
        let ds = load_dataset(&f)?;
        let paper = ForestParams::default();
        let bounded = ForestParams {
            bounded: true,
            ..ForestParams::default()
        };
        let mut a = Vec::new();
        let mut b = Vec::new();
        let mut secs = Vec::new();
        for r in 0..runs.max(1) {
            let (auc, s) = paper_protocol(&ds, &paper, 1000 + r as u64);
            a.push(auc);
            secs.push(s);
            b.push(paper_protocol(&ds, &bounded, 1000 + r as u64).0);
        }
        let reference = REFERENCE
            .iter()
            .find(|(k, ..)| ds.name.ends_with(k))
            .map(|(_, a, t, s)| (*a, *t, *s))
            .unwrap_or(("–", "–", "–"));
        let spread = |v: &[f64]| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if v.len() > 1 {
                format!(" ({lo:.3}–{hi:.3})")
            } else {
                String::new()
            }
        };
        let line = format!(
            "| {} | {} | {} | {:.4}{} | {:.4}{} | {:.1} s | {} | {} | {} |\n",
            ds.name,
            ds.points.len(),
            ds.points.first().map(|p| p.len()).unwrap_or(0),
            median(a.clone()),
            spread(&a),
            median(b.clone()),
            spread(&b),
            median(secs),
            reference.0,
            reference.1,
            reference.2
        );
        eprint!("{line}");
        out.push_str(&line);
    }
    Ok(out)
}

/// The detector's cost: microseconds to score (and learn) one window, and memory per series.
/// Resident memory of this process in bytes (Linux), if it can be read.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

pub fn scoring_cost(series: usize, windows_per_series: usize) -> String {
    let rss_before = resident_bytes();
    let cfg = IForestConfig::default();
    let mut p = IForestProcessor::new(&cfg, "bench", &Telemetry::new());
    let mut rng = Rng::new(1);
    let keys: Vec<Arc<SeriesKey>> = (0..series)
        .map(|i| Arc::new(SeriesKey::service(&format!("svc-{i}"))))
        .collect();
    let mut make = |key: &Arc<SeriesKey>, k: usize| {
        let mut f = [0.0; N_FEATURES];
        for (i, v) in f.iter_mut().enumerate() {
            *v = (10.0 + i as f64) * (1.0 + 0.1 * rng.unit());
        }
        WindowRecord::new(key.clone(), k as u64 * 10_000_000_000, 10_000_000_000, f)
    };
    // Fill every model's window first, then time steady-state scoring.
    let fill = cfg.window_size + 10;
    for k in 0..fill {
        for key in &keys {
            let mut r = make(key, k);
            p.score(&mut r);
        }
    }
    let started = Instant::now();
    let mut n = 0;
    for k in 0..windows_per_series {
        for key in &keys {
            let mut r = make(key, fill + k);
            p.score(&mut r);
            n += 1;
        }
    }
    let us = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    // Resident memory before the model file is built (it would count too).
    let rss_after = resident_bytes();
    let file = p.to_model_file();
    // Per series, averaged: a figure of each forest.
    let per_series = |of: fn(&crate::processors::iforest::forest::OnlineForest) -> usize| {
        keys.iter()
            .filter_map(|k| p.model(k))
            .map(|m| of(&m.forest))
            .sum::<usize>()
            / series.max(1)
    };
    let nodes = per_series(|f| f.nodes());
    let slots = per_series(|f| f.node_slots());
    // Resident estimate: what each forest's buffers have allocated, and the model's typical
    // windows (120 × 10 f64) and score history (256 f64).
    let forest_bytes = per_series(|f| f.heap_bytes());
    let per_series_bytes = forest_bytes + 120 * N_FEATURES * 8 + 256 * 8;
    let measured = match (rss_before, rss_after) {
        (Some(a), Some(b)) => format!(
            "{:.0} KiB",
            b.saturating_sub(a) as f64 / 1024.0 / series.max(1) as f64
        ),
        _ => "n/a".into(),
    };
    let saved = serde_json::to_vec(&file).map(|v| v.len()).unwrap_or(0) / series.max(1);
    format!(
        "| {series} series, {n} scored windows | {us:.1} µs per window (score + learn) | {nodes} tree nodes per series ({slots} slots) | {measured} per series resident (measured), ~{:.0} KiB estimated | {:.0} KiB per series saved |\n",
        per_series_bytes as f64 / 1024.0,
        saved as f64 / 1024.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_inverted_rankings() {
        let labels = [false, false, true, true];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &labels), 1.0);
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &labels), 0.0);
        assert_eq!(roc_auc(&[0.5, 0.5, 0.5, 0.5], &labels), 0.5);
        assert_eq!(roc_auc(&[0.1, 0.6, 0.6, 0.9], &labels), 0.875);
    }
}
