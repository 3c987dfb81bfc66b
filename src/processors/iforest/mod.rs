//! Processor `iforest`: scores every window record with a per-series online isolation forest,
//! keeps learning from the windows it judges normal, and explains each anomaly.
//!
//! ```yaml
//! processors:
//!   iforest:
//!     trees: 32
//!     max_leaf_samples: 8      # η
//!     window_size: 512         # ω: windows each series' forest remembers (~85 min at 10 s)
//!     warmup: 30               # windows learned before anything is flagged
//!     threshold: auto          # or a fixed score in (0, 1)
//!     min_threshold: 0.55      # the floor of the adaptive threshold
//!     min_deviation: 4.0       # robust z-score a feature needs to count as a cause
//!     relearn_after: 60        # anomalous windows in a run (a lone normal one after nine bridged) after which the new level is learned
//!     seed: 42
//!     model_path: ./models/models.json   # load at start if present; save periodically and at shutdown
//!     save_interval: 5m
//!     model_store: ""          # a directory the instances behind a load balancer share: each
//!                              # service's models follow it to the instance it moves to (store.rs)
//!     max_series: 10000        # models kept at once; beyond, the least recently scored tenth goes
//!     series_ttl: 24h          # a model whose series sent no window for this long is dropped
//! ```
//!
//! Two views of each window: the forest says how isolated it is among the series' recent normal
//! windows, across all ten features at once; a per-feature test says which features are out of
//! line, each against the noise model that fits it (see `deviations`). The score is the larger
//! of the forest's score and the strongest feature's evidence mapped to [0, 1] — a window can
//! stand out as a whole, or by one feature far beyond its noise (a subtle error-rate rise that a
//! forest over ten dimensions barely sees). A window is an anomaly when its score passes the
//! threshold **and** at least one feature is out of line, so every anomaly comes with its causes,
//! and a window unusual in a way no single feature shows is not reported. Anomalous windows are
//! not learned (an incident must not become normal), nor are unexplained ones above the
//! threshold, until a run of such windows has lasted `relearn_after` (a run bridges a lone
//! normal window after nine anomalous ones: a shifted level now and then gives one in its old
//! range): then it is a new level, and learning resumes.

pub mod batch;
pub mod forest;
pub mod persist;
pub mod shares;
pub mod store;

use super::Processor;
use crate::config::decode::decode_section;
use crate::config::duration::ConfigDuration;
use crate::config::error::ConfigError;
use crate::model::feedback::FeedbackBoard;
use crate::model::window::{
    feature, log_feature, metric_feature, Anomaly, Contribution, LogLevel, SeriesKey, Severity,
    Signal, TemplateCount, WindowRecord, MAX_TEMPLATES_KEPT, N_FEATURES,
};
use crate::pipeline::{Batch, DataKind, Payload};
use crate::telemetry::{Counter, Telemetry};
use forest::{ForestParams, OnlineForest};
use serde::Deserialize;
use shares::TemplateShares;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// `threshold: auto` (adaptive, from the series' own recent scores) or a fixed number.
#[derive(Debug, Clone, PartialEq)]
pub enum ThresholdSetting {
    Auto,
    Fixed(f64),
    /// Any other word: kept so that `parse` reports it together with every other problem of
    /// the section; a validated config never holds it.
    Invalid(String),
}

impl<'de> Deserialize<'de> for ThresholdSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ThresholdSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"auto\" or a number between 0 and 1")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(ThresholdSetting::Fixed(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ThresholdSetting::Fixed(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ThresholdSetting::Fixed(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(match v {
                    "auto" => ThresholdSetting::Auto,
                    other => ThresholdSetting::Invalid(other.to_string()),
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IForestConfig {
    pub trees: usize,
    pub max_leaf_samples: usize,
    pub window_size: usize,
    pub warmup: usize,
    pub threshold: ThresholdSetting,
    pub min_threshold: f64,
    pub min_deviation: f64,
    pub relearn_after: usize,
    pub seed: u64,
    /// Where models are loaded from at start and saved to; empty: not persisted.
    pub model_path: String,
    pub save_interval: ConfigDuration,
    /// A directory shared by the instances behind a load balancer (see `store`); empty: none.
    pub model_store: String,
    pub max_series: usize,
    pub series_ttl: ConfigDuration,
}

impl Default for IForestConfig {
    fn default() -> Self {
        Self {
            trees: 32,
            max_leaf_samples: 8,
            window_size: 512,
            warmup: 30,
            threshold: ThresholdSetting::Auto,
            min_threshold: 0.55,
            min_deviation: 4.0,
            relearn_after: 60,
            seed: 42,
            model_path: String::new(),
            save_interval: ConfigDuration::from_secs(300),
            model_store: String::new(),
            max_series: 10_000,
            series_ttl: ConfigDuration::from_secs(24 * 3600),
        }
    }
}

impl crate::processors::ProcessorType for IForestConfig {
    const NAME: &'static str = "iforest";

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        let mut err = |field: &str, msg: &str| {
            errors.push(ConfigError::new(format!("{path}.{field}"), msg));
        };
        if cfg.trees == 0 || cfg.trees > 1000 {
            err("trees", "must be between 1 and 1000");
        }
        if cfg.max_leaf_samples == 0 {
            err("max_leaf_samples", "must be at least 1");
        }
        if cfg.window_size < cfg.max_leaf_samples * 2 {
            err("window_size", "must be at least twice max_leaf_samples");
        }
        if cfg.warmup < cfg.max_leaf_samples * 2 {
            err(
                "warmup",
                "must be at least twice max_leaf_samples (scores mean little before)",
            );
        }
        match &cfg.threshold {
            ThresholdSetting::Fixed(t) if !(*t > 0.0 && *t < 1.0) => {
                err("threshold", "a fixed threshold must be between 0 and 1")
            }
            ThresholdSetting::Invalid(w) => err(
                "threshold",
                &format!("must be \"auto\" or a number between 0 and 1, not {w:?}"),
            ),
            _ => {}
        }
        if !(cfg.min_threshold > 0.0 && cfg.min_threshold < 1.0) {
            err("min_threshold", "must be between 0 and 1");
        }
        if !(cfg.min_deviation.is_finite() && cfg.min_deviation > 0.0) {
            err("min_deviation", "must be a positive number");
        }
        if cfg.max_series == 0 {
            err("max_series", "must be at least 1");
        }
        if cfg.series_ttl.get().is_zero() {
            err("series_ttl", "must be longer than 0");
        }
        crate::config::decode::validated(cfg, errors)
    }

    fn output_kind(&self, input: DataKind) -> Result<DataKind, &'static str> {
        match input {
            DataKind::Windows => Ok(DataKind::Windows),
            _ => Err("windows (put the window processor before it)"),
        }
    }

    fn build(&self, ctx: &crate::processors::ProcessorContext<'_>) -> Box<dyn Processor> {
        Box::new(
            IForestProcessor::with_saved_models(self, &ctx.instance(), ctx.telemetry)
                .with_feedback(ctx.feedback.clone()),
        )
    }
}

impl IForestConfig {
    fn forest_params(&self) -> ForestParams {
        ForestParams {
            trees: self.trees,
            max_leaf_samples: self.max_leaf_samples,
            window: self.window_size,
            adaptive: true,
            subsample: 1.0,
            bounded: true,
        }
    }
}

/// Recent normal windows kept for "typical" values and spreads.
const TYPICAL_WINDOWS: usize = 120;
/// Recent normal scores kept for the adaptive threshold.
const SCORE_HISTORY: usize = 256;

/// A window's features at the precision the history keeps (beyond `f32`'s range: its largest).
fn narrow(features: &[f64; N_FEATURES]) -> [f32; N_FEATURES] {
    features.map(|v| v.clamp(-f64::from(f32::MAX), f64::from(f32::MAX)) as f32)
}

/// The forest's view of a window: counts and latencies on a log scale (their spread grows with
/// their size), rates as they are, the throughput ratio as a log.
pub fn transform(f: &[f64; N_FEATURES]) -> Vec<f64> {
    transform_for(Signal::Spans, f)
}

/// `transform` for a series of `signal`: a metric's values on a signed log scale (they may be
/// negative), its change as a log.
pub fn transform_for(signal: Signal, f: &[f64; N_FEATURES]) -> Vec<f64> {
    use feature::*;
    if signal == Signal::Metrics {
        return f
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let v = if v.is_finite() { *v } else { 0.0 };
                if i == metric_feature::VALUE_CHANGE {
                    v.max(1e-3).ln()
                } else {
                    v.signum() * v.abs().ln_1p()
                }
            })
            .collect();
    }
    let mut x = Vec::with_capacity(N_FEATURES);
    for (i, v) in f.iter().enumerate() {
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        x.push(match i {
            ERROR_RATE | CLIENT_ERROR_RATE => v,
            THROUGHPUT_CHANGE => v.max(1e-3).ln(),
            _ => v.ln_1p(),
        });
    }
    x
}

/// FNV-1a, for per-series seeds that do not depend on hash-map order or process.
fn stable_hash(key: &SeriesKey) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |s: &str| {
        for b in s.bytes().chain([0xff]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(&key.service);
    eat(key.target.as_deref().unwrap_or(""));
    if key.signal != Signal::Spans {
        eat(key.signal.as_str());
    }
    for (k, v) in &key.labels {
        eat(k);
        eat(v);
    }
    h
}

/// The median, by selection (linear time; `v` is reordered).
fn median(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    let (below, &mut upper, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        return upper;
    }
    let lower = below
        .iter()
        .copied()
        .max_by(f64::total_cmp)
        .unwrap_or(upper);
    (lower + upper) / 2.0
}

/// What a window was judged to be.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    Normal {
        warming_up: bool,
    },
    Anomaly,
    /// Above the threshold, but no feature is out of line.
    Unexplained,
}

/// One series' detector state.
pub struct SeriesModel {
    pub forest: OnlineForest,
    /// Recent normal windows at single precision (`normal()` reads them back): the history is
    /// the largest part of a series' model after the forest, and seven digits say as much
    /// about a request count or a latency as sixteen.
    normal: VecDeque<[f32; N_FEATURES]>,
    scores: VecDeque<f64>,
    learned: usize,
    /// Anomalous (or unexplained) windows in the current run.
    consecutive: usize,
    /// Anomalous windows of the run since it last bridged a normal one (see `normal_window`).
    since_bridge: usize,
    /// The latency sample z-scores of the last windows that had requests (newest last), for
    /// pooling the evidence of sparse windows (see `pooled`).
    recent: VecDeque<[f64; N_FEATURES]>,
    /// Start of the last window scored (0: loaded, not scored since).
    last_ns: u64,
    /// A log series' lines and the traces they came from over its recent normal windows
    /// (sums decayed by 1 − 1/`TYPICAL_WINDOWS` a window): how many lines one event writes.
    log_lines: f64,
    log_traces: f64,
    /// A log series' usual templates, by id (see `TemplateShares`).
    shares: TemplateShares,
    /// Windows said not to be anomalies: per feature that flagged one, how far off typical it
    /// was, in the feature's own units (actual − typical; the farthest kept each way). A window
    /// no further off than a quarter beyond it, in the same direction, is not flagged for that
    /// feature. Units, not z-scores: a z-score saturates far out, where a window ten times
    /// further off than the one dismissed must still alarm.
    accepted: Vec<(u8, f64)>,
}

/// Anomalous windows a run needs before (and between) the lone normal windows it bridges: at
/// most one window in ten of a run is normal.
const BRIDGE_AFTER: usize = 9;

/// How much further off than a dismissed window a window may be and still count as like it.
const ACCEPT_MARGIN: f64 = 1.25;

impl SeriesModel {
    pub fn new(cfg: &IForestConfig, key: &SeriesKey) -> Self {
        Self {
            forest: OnlineForest::new(cfg.forest_params(), N_FEATURES, cfg.seed ^ stable_hash(key)),
            normal: VecDeque::new(),
            scores: VecDeque::new(),
            learned: 0,
            consecutive: 0,
            since_bridge: 0,
            recent: VecDeque::new(),
            last_ns: 0,
            log_lines: 0.0,
            log_traces: 0.0,
            shares: TemplateShares::default(),
            accepted: Vec::new(),
        }
    }

    /// Takes a window someone said is not an anomaly: it is learned as normal, and how far off
    /// it is on each feature out of line becomes acceptable; so does how far short it was of
    /// each usual log template (when the window is still remembered: see `shares`).
    pub fn accept(
        &mut self,
        cfg: &IForestConfig,
        signal: Signal,
        start_ns: u64,
        features: &[f64; N_FEATURES],
    ) {
        if signal == Signal::Logs {
            self.shares.accept(start_ns, cfg.min_deviation);
        }
        let deviations = self.deviations(signal, features, cfg.min_deviation);
        for (i, _, typical) in deviations {
            let off = features[i] - typical;
            if off == 0.0 || !off.is_finite() {
                continue;
            }
            let i = i as u8;
            match self
                .accepted
                .iter_mut()
                .find(|(f, a)| *f == i && a.signum() == off.signum())
            {
                Some((_, a)) if off.abs() > a.abs() => *a = off,
                Some(_) => {}
                None => self.accepted.push((i, off)),
            }
        }
        let x = transform_for(signal, features);
        self.consecutive = 0;
        self.since_bridge = 0;
        self.learn(features, &x, 0.0, false);
    }

    /// Whether feature `i` being `off` from typical (actual − typical) is like a window said
    /// not to be an anomaly.
    fn accepts(&self, i: usize, off: f64) -> bool {
        self.accepted.iter().any(|(f, a)| {
            *f as usize == i && a.signum() == off.signum() && off.abs() <= a.abs() * ACCEPT_MARGIN
        })
    }

    /// Lines a log series writes per independent event (trace) in its normal windows, at
    /// least 1: the factor by which its line count is noisier than a Poisson count of lines.
    /// A service that logs 40 lines per request has a count as noisy as its requests.
    pub fn lines_per_trace(&self) -> f64 {
        if self.log_traces >= 1.0 {
            (self.log_lines / self.log_traces).max(1.0)
        } else {
            1.0
        }
    }

    /// Adds a normal log window's lines and traces to the decayed sums; a window whose traces
    /// are unknown (0 with lines, e.g. one read back from a document) adds nothing.
    fn learn_traces(&mut self, lines: f64, traces: u64) {
        if traces == 0 && lines > 0.0 {
            return;
        }
        let keep = 1.0 - 1.0 / TYPICAL_WINDOWS as f64;
        self.log_lines = self.log_lines * keep + lines;
        self.log_traces = self.log_traces * keep + traces as f64;
    }

    /// The recent normal windows, oldest first.
    fn normal(&self) -> impl Iterator<Item = [f64; N_FEATURES]> + '_ {
        self.normal.iter().map(|w| w.map(f64::from))
    }

    /// Windows learned so far.
    pub fn learned(&self) -> usize {
        self.learned
    }

    /// Learns a normal window. Scores from the warm-up are not kept: a forest that has seen
    /// only a few windows scores everything high, which would inflate the adaptive threshold.
    fn learn(&mut self, features: &[f64; N_FEATURES], x: &[f64], score: f64, keep_score: bool) {
        self.forest.learn(x);
        // The oldest goes before the newest comes, so a full history never grows its buffer
        // (a deque one past its capacity doubles it: the scores' 2 KiB would take 4).
        if self.normal.len() >= TYPICAL_WINDOWS {
            self.normal.pop_front();
        }
        self.normal.push_back(narrow(features));
        if keep_score {
            if self.scores.len() >= SCORE_HISTORY {
                self.scores.pop_front();
            }
            self.scores.push_back(score);
        }
        self.learned += 1;
    }

    /// What the model learns from a scored window: a normal one is learned (its score kept
    /// once warm); an anomalous or unexplained one is not, until a run of them has reached
    /// `relearn_after` windows and is taken as the new normal.
    fn follow(
        &mut self,
        cfg: &IForestConfig,
        features: &[f64; N_FEATURES],
        x: &[f64],
        score: f64,
        verdict: Verdict,
    ) {
        match verdict {
            Verdict::Normal { warming_up } => {
                self.normal_window(cfg);
                self.learn(features, x, score, !warming_up);
            }
            Verdict::Anomaly | Verdict::Unexplained => {
                self.consecutive = self.consecutive.saturating_add(1);
                self.since_bridge = self.since_bridge.saturating_add(1);
                if self.consecutive >= cfg.relearn_after {
                    self.learn(features, x, score, true);
                }
            }
        }
    }

    /// A normal window ends a run of anomalous ones, unless the run is not being learned yet
    /// and the window is a lone one, after at least nine anomalous windows (since the run
    /// began or bridged the last): a level that has shifted for good now and then gives a
    /// window in its old range (a few requests, a quiet minute), and counting the run again
    /// from zero each time, it would never be learned. Two normal windows in a row end it (a
    /// recovery, however short, before another fault), and so does one once the run is being
    /// learned: the new level is known.
    fn normal_window(&mut self, cfg: &IForestConfig) {
        if self.consecutive < cfg.relearn_after && self.since_bridge >= BRIDGE_AFTER {
            self.since_bridge = 0;
        } else {
            self.consecutive = 0;
            self.since_bridge = 0;
        }
    }

    fn threshold(&self, cfg: &IForestConfig) -> f64 {
        match cfg.threshold {
            ThresholdSetting::Fixed(t) => t,
            ThresholdSetting::Auto | ThresholdSetting::Invalid(_) => {
                let mut s: Vec<f64> = self.scores.iter().copied().collect();
                if s.is_empty() {
                    return cfg.min_threshold;
                }
                let k = ((s.len() as f64 * 0.99) as usize).min(s.len() - 1);
                let (_, &mut q99, _) = s.select_nth_unstable_by(k, f64::total_cmp);
                (q99 + 0.02).clamp(cfg.min_threshold, 0.95)
            }
        }
    }

    /// Typical value (median of recent normal windows) and spread (scaled MAD) per feature.
    ///
    /// With `observed(i, window)`, feature `i` of a window is left out where it was not
    /// observed: a span window without requests has no latencies or error rates, and counting
    /// its zeros would put the typical latency of a series with traffic in every other window
    /// halfway to zero and its spread at the latency itself.
    fn typical_where(
        &self,
        observed: impl Fn(usize, &[f64; N_FEATURES]) -> bool,
    ) -> ([f64; N_FEATURES], [f64; N_FEATURES]) {
        let mut centre = [0.0; N_FEATURES];
        let mut spread = [0.0; N_FEATURES];
        let mut col = Vec::with_capacity(self.normal.len());
        for i in 0..N_FEATURES {
            col.clear();
            col.extend(self.normal().filter(|f| observed(i, f)).map(|f| f[i]));
            if col.is_empty() {
                continue;
            }
            let m = median(&mut col);
            for v in col.iter_mut() {
                *v = (*v - m).abs();
            }
            centre[i] = m;
            spread[i] = 1.4826 * median(&mut col);
        }
        (centre, spread)
    }

    /// Typical values and spreads over every recent normal window.
    fn typical(&self) -> ([f64; N_FEATURES], [f64; N_FEATURES]) {
        self.typical_where(|_, _| true)
    }

    /// Typical values and spreads of a span series: its latencies and error rates over the
    /// normal windows that had requests.
    fn typical_spans(&self) -> ([f64; N_FEATURES], [f64; N_FEATURES]) {
        use feature::*;
        self.typical_where(|i, f| {
            matches!(i, REQUEST_COUNT | THROUGHPUT_CHANGE) || f[REQUEST_COUNT] > 0.0
        })
    }

    /// The features out of line, most deviant first, as (feature, z, typical).
    ///
    /// Each kind of feature gets the test that fits its noise:
    /// - latencies: distance from the median of recent normal windows in units of their scaled
    ///   MAD, plus a floor (2 ms + 5% for mean and median, 5 ms + 10% for p95, 10 ms + 20% for
    ///   p99, max and spread) so that scheduling jitter of a few milliseconds on a very fast
    ///   service — a busy host, a garbage collection — is not news;
    /// - the request count: the same on a log scale (a drop to a fifth is as large at 10/s as at
    ///   10 000/s), with Poisson noise as the floor;
    /// - error and client-error rates: how unlikely this many errors is if the usual rate still
    ///   held (binomial upper tail at this window's request count), as a z-score — so 2 errors
    ///   in 10 requests is noise while 7 in 80 against a 1% baseline is not;
    /// - throughput change: on a log scale, with the noise of a ratio of small counts; a change
    ///   back to the usual count (traffic resuming after a pause) is no news (`returns`).
    fn deviations(
        &mut self,
        signal: Signal,
        f: &[f64; N_FEATURES],
        min_dev: f64,
    ) -> Vec<(usize, f64, f64)> {
        match signal {
            Signal::Logs => return self.log_deviations(f, min_dev),
            Signal::Metrics => return self.metric_deviations(f, min_dev),
            Signal::Spans | Signal::Network => {}
        }
        use feature::*;
        let (centre, spread) = self.typical_spans();
        let n = f[REQUEST_COUNT];
        let m_count = centre[REQUEST_COUNT];
        let requests = RequestLatency::fit(self.normal()).map(|d| match signal {
            Signal::Network => d.with_unseen_tail(),
            _ => d,
        });
        let mut sample = [0.0; N_FEATURES];
        if let Some(dist) = &requests {
            for (i, z) in sample
                .iter_mut()
                .enumerate()
                .take(LATENCY_STDDEV + 1)
                .skip(LATENCY_MEAN)
            {
                *z = dist.sample_z(i, f[i], n);
            }
        }
        let pooled = self.pooled(&sample);
        if n > 0.0 {
            self.recent.push_back(sample);
            if self.recent.len() >= POOL_WINDOWS {
                self.recent.pop_front();
            }
        }
        let mut out = Vec::new();
        for i in 0..N_FEATURES {
            let m = centre[i];
            // Rates and latencies of an empty window are not observations.
            if n == 0.0 && i != REQUEST_COUNT && i != THROUGHPUT_CHANGE {
                continue;
            }
            let z_window = match i {
                REQUEST_COUNT => {
                    let logs: Vec<f64> = self.normal().map(|w| w[i].ln_1p()).collect();
                    let (lc, ls) = median_and_spread(logs);
                    let poisson = 1.0 / (m + 1.0).sqrt();
                    (f[i].ln_1p() - lc) / (ls + poisson + 0.05)
                }
                ERROR_RATE | CLIENT_ERROR_RATE => {
                    // The usual rate over recent normal windows, request-weighted; with none
                    // seen, half an error over everything seen (Jeffreys), so a service that
                    // never errs is judged against how rarely it errs, not against 0.1%.
                    let (errors, requests) = self.normal().fold((0.0, 0.0), |(e, r), w| {
                        (e + w[i] * w[REQUEST_COUNT], r + w[REQUEST_COUNT])
                    });
                    let usual = (errors + 0.5) / (requests + 1.0);
                    binomial_z(n, (f[i] * n).round(), usual)
                }
                LATENCY_MAX | LATENCY_STDDEV | LATENCY_P99 => {
                    (f[i] - m) / (spread[i] + 10.0 + 0.2 * m)
                }
                LATENCY_P95 => (f[i] - m) / (spread[i] + 5.0 + 0.1 * m),
                THROUGHPUT_CHANGE => {
                    // A ratio of two Poisson counts: judged on a log scale, with the noise of
                    // small counts (a window after a near-empty one easily shows ×8)...
                    let logs: Vec<f64> = self.normal().map(|w| w[i].max(1e-3).ln()).collect();
                    let (lc, ls) = median_and_spread(logs);
                    let z_log = (f[i].max(1e-3).ln() - lc) / (ls + 1.5 / (n + 1.0).sqrt() + 0.1);
                    // ...and significant for the two counts themselves (a sparse series'
                    // windows alternate between a few requests and none, so its usual ratio
                    // says little: 2 requests after none is no news).
                    let previous = if f[i] > 0.0 { n / f[i] } else { m_count };
                    if returns(f[i], n, m_count) {
                        0.0
                    } else {
                        weaker(z_log, two_counts_z(n.round(), previous.round()))
                    }
                }
                _ => (f[i] - m) / (spread[i] + 2.0 + 0.05 * m),
            };
            // A latency statistic of a few requests is weak evidence however far it lies: it
            // must also be significant for this window's request count (see `sample_z`).
            // Without a history of requests there is nothing to judge a latency against.
            let z = match (i, &requests) {
                (LATENCY_MEAN..=LATENCY_STDDEV, Some(_)) => {
                    let z = weaker(pooled[i], z_window);
                    if z.abs() >= min_dev && (i == LATENCY_MAX || i == LATENCY_P99) {
                        self.seen_tail_z(i, f[i], m)
                            .map_or(z, |seen| weaker(z, seen))
                    } else {
                        z
                    }
                }
                (LATENCY_MEAN..=LATENCY_STDDEV, None) => 0.0,
                _ => z_window,
            };
            // The first errors of a series with none in all its recent normal windows count at
            // half the evidence: new errors are news even at a volume where one is not rare.
            let bar = if (i == ERROR_RATE || i == CLIENT_ERROR_RATE)
                && f[i] > 0.0
                && self.normal.len() >= 10
                && self.normal().all(|w| w[i] == 0.0)
            {
                min_dev / 2.0
            } else {
                min_dev
            };
            if z.abs() >= bar {
                out.push((i, z, m));
            }
        }
        if signal == Signal::Network {
            // A network series counts the calls its edge's record counts already (those whose
            // callee's span was seen): its traffic is the edge's news, not its own. And less
            // time between two services, or fewer failures in between, is no fault: only a
            // rise is judged. Its mean and spread are not judged either: one call held up by a
            // TCP timer moves them as far as a delay of every call does, while its order
            // statistics count how many calls were held up, against a tail with room for such
            // calls (`with_unseen_tail`).
            out.retain(|(i, z, _)| {
                !matches!(
                    *i,
                    REQUEST_COUNT | THROUGHPUT_CHANGE | LATENCY_MEAN | LATENCY_STDDEV
                ) && *z > 0.0
            });
        }
        out.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        out
    }

    /// How far latency statistic `i` = `x` lies beyond the same statistic of the recent normal
    /// windows with requests (`tail_z`). Real latency has a heavier tail than the log-normal
    /// `sample_z` assumes (a collection pause, a cold cache): a series whose windows now and
    /// then hold one request thirty times the usual has shown that such a window is ordinary,
    /// and the tail its windows show is the better judge. A history with too few distinct
    /// values to show a tail (`MIN_SEEN_TAIL`) leaves the judgement to the model.
    fn seen_tail_z(&self, i: usize, x: f64, typical: f64) -> Option<f64> {
        use feature::*;
        let col: Vec<f64> = self
            .normal()
            .filter(|w| w[REQUEST_COUNT] > 0.0 && w[i].is_finite())
            .map(|w| w[i])
            .collect();
        let mut distinct = col.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        (distinct.len() >= MIN_SEEN_TAIL).then(|| tail_z(&col, x, typical))
    }

    /// The log features out of line, most deviant first, as (feature, z, typical):
    /// - the record count and its change: as the request count and the throughput change;
    /// - error and warning rates: the binomial test of the error rate, at this window's count;
    /// - new templates, new error templates and the largest count of one error template: how
    ///   unlikely this many is if the usual rate over recent normal windows held (Poisson upper
    ///   tail, half a count added to what was seen), as a z-score. New error templates, like
    ///   first errors, need half the evidence.
    ///
    /// Counts by level and the number of distinct templates only inform the forest.
    fn log_deviations(&mut self, f: &[f64; N_FEATURES], min_dev: f64) -> Vec<(usize, f64, f64)> {
        use log_feature::*;
        let (centre, _) = self.typical();
        let n = f[LOG_COUNT];
        let per_trace = self.lines_per_trace();
        let windows = self.normal.len() as f64;
        let usual_count = |i: usize| {
            let seen: f64 = self.normal().map(|w| w[i]).sum();
            (seen + 0.5) / (windows + 1.0)
        };
        let mut out = Vec::new();
        for i in 0..N_FEATURES {
            if n == 0.0 && i != LOG_COUNT && i != LOG_COUNT_CHANGE {
                continue;
            }
            let z = match i {
                // Lines come in bursts (a request writes several): the count is judged as the
                // number of events behind it, lines / `lines_per_trace`, like the request
                // count — 52 lines from 2 requests missing in a window is no news.
                LOG_COUNT => {
                    let events = |lines: f64| (lines / per_trace).ln_1p();
                    let logs: Vec<f64> = self.normal().map(|w| events(w[i])).collect();
                    let (lc, ls) = median_and_spread(logs);
                    let poisson = 1.0 / (centre[i] / per_trace + 1.0).sqrt();
                    (events(f[i]) - lc) / (ls + poisson + 0.05)
                }
                LOG_COUNT_CHANGE => {
                    let logs: Vec<f64> = self.normal().map(|w| w[i].max(1e-3).ln()).collect();
                    let (lc, ls) = median_and_spread(logs);
                    let z_log = (f[i].max(1e-3).ln() - lc)
                        / (ls + 1.5 / (n / per_trace + 1.0).sqrt() + 0.1);
                    // And the change must be significant for the events behind the two counts:
                    // with a + b events in the two windows and no change, the current window's
                    // share is binomial(a + b, ½) (the exact test of two Poisson counts).
                    let previous = if f[i] > 0.0 {
                        n / f[i]
                    } else {
                        centre[LOG_COUNT]
                    };
                    let (a, b) = ((n / per_trace).round(), (previous / per_trace).round());
                    if returns(f[i], n, centre[LOG_COUNT]) {
                        0.0
                    } else {
                        weaker(z_log, two_counts_z(a, b))
                    }
                }
                ERROR_RATE | WARNING_RATE => {
                    let (hits, total) = self.normal().fold((0.0, 0.0), |(e, r), w| {
                        (e + w[i] * w[LOG_COUNT], r + w[LOG_COUNT])
                    });
                    binomial_z(n, (f[i] * n).round(), (hits + 0.5) / (total + 1.0))
                }
                NEW_TEMPLATES | NEW_ERROR_TEMPLATES | TOP_ERROR_TEMPLATE => {
                    poisson_z(f[i], usual_count(i))
                }
                _ => 0.0,
            };
            let bar = if i == NEW_ERROR_TEMPLATES {
                min_dev / 2.0
            } else {
                min_dev
            };
            if z.abs() >= bar {
                out.push((i, z, centre[i]));
            }
        }
        out.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        out
    }

    /// The metric features out of line, most deviant first, as (feature, z, typical). A window
    /// without points is no observation, and a series needs `MIN_METRIC_HISTORY` windows with
    /// points before it is judged. A metric can be anything (bytes, cores, a ratio, a latency
    /// percentile of a handful of requests), so no noise model is assumed: each value feature
    /// (value, extremes, spread, percentiles) is compared with the same feature in the recent
    /// normal windows that had points, by the tail those windows show (`tail_z`):
    /// - a value inside the range they spanned is not news;
    /// - beyond it, how unlikely it is is extrapolated from their most extreme tenth (peaks
    ///   over a threshold, a generalised Pareto tail fitted by moments, as SPOT does for
    ///   streams: Siffer et al., KDD 2017), on a log scale when the metric is never negative
    ///   (a doubling counts the same at 2 % CPU as at 80 %);
    /// - a tail too flat to extrapolate (a metric that was nearly always the same) says only
    ///   that the value is the most extreme of n, which is never enough on its own.
    ///
    /// A histogram's observation count is judged as the request count (log scale, Poisson
    /// floor). The number of points and the change from the previous window only inform the
    /// forest: scrape intervals are not the service, and a change that matters shows in the
    /// value itself.
    fn metric_deviations(&mut self, f: &[f64; N_FEATURES], min_dev: f64) -> Vec<(usize, f64, f64)> {
        use metric_feature::*;
        if f[POINTS] == 0.0 {
            return Vec::new();
        }
        let seen: Vec<[f64; N_FEATURES]> = self.normal().filter(|w| w[POINTS] > 0.0).collect();
        if seen.len() < MIN_METRIC_HISTORY {
            return Vec::new();
        }
        let mut out = Vec::new();
        for i in [VALUE, MIN, MAX, STDDEV, P50, P95, P99, COUNT] {
            let col: Vec<f64> = seen.iter().map(|w| w[i]).collect();
            let (m, _) = median_and_spread(col.clone());
            let x = f[i];
            let z = if i == COUNT {
                let (lo, hi) = range(&col);
                if (lo..=hi).contains(&x) {
                    continue;
                }
                let logs: Vec<f64> = col.iter().map(|v| v.max(0.0).ln_1p()).collect();
                let (lc, ls) = median_and_spread(logs);
                (x.max(0.0).ln_1p() - lc) / (ls + 1.0 / (m.max(0.0) + 1.0).sqrt() + 0.05)
            } else {
                tail_z(&col, x, m)
            };
            if z.abs() >= min_dev {
                out.push((i, z, m));
            }
        }
        out.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        out
    }

    /// Latency evidence pooled over consecutive windows: a window's sample z-score combined
    /// with those of the windows just before it (Stouffer: the sum over √k), taking the run of
    /// the last k ≤ `POOL_WINDOWS` windows that is most significant, every window in it
    /// shifted the same way by at least `POOL_JOIN`. A few requests per window that are all
    /// far slower than usual are weak evidence one window at a time and strong evidence
    /// together; under no change each window's z is roughly standard normal and independent,
    /// so a run of them past `POOL_JOIN` is rare. The current window must carry evidence of its
    /// own: a fault's windows do not flag the normal one after it.
    fn pooled(&self, current: &[f64; N_FEATURES]) -> [f64; N_FEATURES] {
        let mut out = *current;
        for i in 0..N_FEATURES {
            let z = current[i];
            if z.abs() < POOL_JOIN {
                continue;
            }
            let (mut sum, mut k) = (z, 1.0f64);
            for w in self.recent.iter().rev() {
                if w[i].signum() != z.signum() || w[i].abs() < POOL_JOIN {
                    break;
                }
                sum += w[i];
                k += 1.0;
                let p = sum / k.sqrt();
                if p.abs() > out[i].abs() {
                    out[i] = p;
                }
            }
        }
        out
    }
}

/// Windows with points a metric series has learned before it is judged.
const MIN_METRIC_HISTORY: usize = 10;
/// Distinct values of a latency statistic that show a tail of its own.
const MIN_SEEN_TAIL: usize = 20;

/// The smallest and largest value.
fn range(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(*x), b.max(*x))
        })
}

/// The smallest tail scale on the log scale: a change of a few percent is never news.
const MIN_TAIL_SCALE: f64 = 0.05;

/// How far into the tail of `history` the value `x` lies, as a signed z-score (positive above,
/// negative below; 0 inside the range of `history`). On a log scale when nothing is negative
/// (a twentieth of the typical value `typical`, else of the mean, added, so values near zero
/// do not explode), unless the typical value is 0 (then linearly, with the history's range as
/// the smallest tail scale). The tail beyond the threshold `t` that the most extreme tenth of the
/// history passes (at least 3 values) is a generalised Pareto distribution fitted by moments
/// (shape ξ in [0, 0.5], scale one standard error above its estimate and at least
/// `MIN_TAIL_SCALE` on the log scale): P(X > t + y) =
/// (k/n)(1 + ξy/σ)^(-1/ξ). With fewer than 3 distinct excesses the tail cannot be
/// extrapolated, and the value only counts as the most extreme of n+1.
///
/// A metric that counts in whole steps (CPU time in clock ticks, a counter of a few events a
/// window: its history sits on a few multiples of one `quantum`) is a count as well as a value:
/// the change must also be unlikely for a Poisson count of steps with the history's mean
/// (`weaker` of the two). Otherwise one tick more than a near-idle process's usual one is a
/// doubling far beyond a tail that only the interval's jitter spread.
pub fn tail_z(history: &[f64], x: f64, typical: f64) -> f64 {
    let z = value_tail_z(history, x, typical);
    if z == 0.0 || x < 0.0 {
        return z;
    }
    match quantum(history) {
        Some(q) => {
            let mean = history.iter().sum::<f64>() / history.len() as f64;
            weaker(z, counts_z(x / q, mean / q))
        }
        None => z,
    }
}

/// Values closer than this share of the larger are one level of a stepped metric (the jitter
/// of the interval a count is divided by).
const LEVEL_TOLERANCE: f64 = 0.05;

/// The step a non-negative history moves in, when it has one: its values fall on a few levels
/// (at most a third as many as values, so each recurs), every level a whole multiple (within
/// 15 %) of the smallest gap between two levels. `None` for a history of one level or of
/// values spread without steps.
pub fn quantum(history: &[f64]) -> Option<f64> {
    if history.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
        return None;
    }
    let mut v = history.to_vec();
    v.sort_by(f64::total_cmp);
    // (sum, count, last value) of each run of values within the tolerance of the one before.
    let mut levels: Vec<(f64, f64, f64)> = Vec::new();
    for x in v {
        match levels.last_mut() {
            Some((sum, count, last)) if x - *last <= LEVEL_TOLERANCE * x => {
                *sum += x;
                *count += 1.0;
                *last = x;
            }
            _ => levels.push((x, 1.0, x)),
        }
    }
    if levels.len() < 2 || levels.len() * 3 > history.len() {
        return None;
    }
    let centres: Vec<f64> = levels.iter().map(|(s, c, _)| s / c).collect();
    let q = centres
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(f64::INFINITY, f64::min);
    let whole = |c: &f64| ((c / q) - (c / q).round()).abs() <= 0.15;
    (q > 0.0 && centres.iter().all(whole)).then_some(q)
}

/// A count of `k` against a Poisson mean `lambda`, as a signed z-score (both tails).
fn counts_z(k: f64, lambda: f64) -> f64 {
    if k >= lambda {
        return poisson_z(k, lambda);
    }
    if lambda > 25.0 {
        return (k + 0.5 - lambda) / lambda.sqrt();
    }
    // P(X ≤ k), summed from 0.
    let k = k.round();
    let (mut log_term, mut tail) = (-lambda, 0.0);
    for i in 0..=(k as u64) {
        if i > 0 {
            log_term += lambda.ln() - (i as f64).ln();
        }
        tail += log_term.exp();
    }
    -upper_tail_z(tail.min(0.5))
}

/// `tail_z` by the values alone.
fn value_tail_z(history: &[f64], x: f64, typical: f64) -> f64 {
    let n = history.len();
    let (lo, hi) = range(history);
    if n == 0 || (lo..=hi).contains(&x) || !x.is_finite() {
        return 0.0;
    }
    // A metric usually at zero (the CPU of a mostly idle process, a queue that is mostly
    // empty) has no level for a ratio to be taken against: on a log scale a reading of two
    // clock ticks after a history of none and one would be a doubling far into the tail. It
    // is judged on its own scale, the range it has shown being the least change that counts.
    let at_zero = typical == 0.0 && lo >= 0.0;
    let log_scale = lo >= 0.0 && x >= 0.0 && !at_zero;
    let eps = if log_scale {
        let mean = history.iter().sum::<f64>() / n as f64;
        [0.05 * typical, 0.05 * mean, 0.05 * x]
            .into_iter()
            .find(|e| *e > 0.0)
            .unwrap_or(1.0)
    } else {
        0.0
    };
    let up = x > hi;
    let sign = if up { 1.0 } else { -1.0 };
    let g = |v: f64| sign * if log_scale { (v + eps).ln() } else { v };
    let mut u: Vec<f64> = history.iter().map(|v| g(*v)).collect();
    u.sort_by(|a, b| b.total_cmp(a));
    let k = (n / 10).max(3).min(n - 1);
    let t = u[k];
    let excess: Vec<f64> = u[..k].iter().map(|v| v - t).collect();
    let distinct = {
        let mut d = excess.clone();
        d.dedup_by(|a, b| (*a - *b).abs() <= 1e-12 * (1.0 + b.abs()));
        d.iter().filter(|e| **e > 0.0).count()
    };
    let p = if distinct < 3 {
        0.5 / (n as f64 + 1.0)
    } else {
        let m = excess.iter().sum::<f64>() / k as f64;
        let v = excess.iter().map(|e| (e - m).powi(2)).sum::<f64>() / (k as f64 - 1.0);
        let (xi, sigma) = if v > 0.0 {
            let r = m * m / v;
            ((0.5 * (1.0 - r)).clamp(0.0, 0.5), 0.5 * m * (r + 1.0))
        } else {
            (0.0, m)
        };
        let floor = if log_scale {
            MIN_TAIL_SCALE
        } else if at_zero {
            hi - lo
        } else {
            0.05 * typical.abs()
        };
        // A tail seen in a few excesses is uncertain: its scale is taken one standard error
        // above its estimate (σ̂/√k for an exponential tail).
        let sigma = (sigma * (1.0 + 1.0 / (k as f64).sqrt()))
            .max(floor)
            .max(1e-300);
        let y = (g(x) - t).max(0.0);
        let tail = if xi < 1e-9 {
            (-y / sigma).exp()
        } else {
            (1.0 + xi * y / sigma).powf(-1.0 / xi)
        };
        (k as f64 / n as f64) * tail
    };
    sign * upper_tail_z(p)
}

/// Whether a change of count from the previous window (`change`, the ratio) brings the count
/// back toward its usual level without passing it (a rise that ends at or below `usual`, a fall
/// that ends at or above it): traffic resuming after a pause, or settling after a burst. The
/// change is large because the previous window was unusual, and that window has had its say;
/// the return to normal is no news. A rise past the usual count (a backlog after a pause) is
/// judged as any change.
fn returns(change: f64, count: f64, usual: f64) -> bool {
    (change > 1.0 && count <= usual) || (change < 1.0 && count >= usual)
}

/// Windows pooled at most for latency evidence (the current one and those before it).
const POOL_WINDOWS: usize = 3;
/// The z-score each pooled window must reach (one window in 44 does under no change).
const POOL_JOIN: f64 = 2.0;

/// The latency of one request in a series, fitted to its recent normal windows: a log-normal
/// with the pooled mean and variance of all their requests (exact sums, so busy windows weigh
/// as much as their requests). Used to ask how likely a window's latency statistic is for the
/// number of requests it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestLatency {
    /// Mean and standard deviation of ln(latency in ms).
    pub mu: f64,
    pub sigma: f64,
    /// Pooled mean and standard deviation in ms.
    pub mean: f64,
    pub stddev: f64,
    /// The least chance given to one request lying beyond any value (0: none, the log-normal's
    /// tail alone; see `with_unseen_tail`).
    pub tail_floor: f64,
    /// Requests the fit was made from.
    pub seen: f64,
}

impl RequestLatency {
    /// `None` with fewer than 5 requests seen. The spread is widened for a small history
    /// (by 1 + 3/√N for N requests seen): a tail fitted to a handful of requests is uncertain.
    pub fn fit(windows: impl Iterator<Item = [f64; N_FEATURES]>) -> Option<Self> {
        use feature::*;
        let (mut n, mut s1, mut s2) = (0.0, 0.0, 0.0);
        for w in windows {
            let k = w[REQUEST_COUNT];
            if k <= 0.0 || !w[LATENCY_MEAN].is_finite() || !w[LATENCY_STDDEV].is_finite() {
                continue;
            }
            n += k;
            s1 += k * w[LATENCY_MEAN];
            s2 += k * (w[LATENCY_STDDEV].powi(2) + w[LATENCY_MEAN].powi(2));
        }
        if n < 5.0 {
            return None;
        }
        let mean = (s1 / n).max(1e-3);
        let var = (s2 / n - mean * mean).max(0.0);
        // A floor on the spread: no real service answers every request in the same time.
        let sigma = (1.0 + var / (mean * mean)).ln().sqrt().max(0.15) * (1.0 + 3.0 / n.sqrt());
        Some(Self {
            mu: mean.ln() - sigma * sigma / 2.0,
            sigma,
            mean,
            stddev: var.sqrt(),
            tail_floor: 0.0,
            seen: n,
        })
    }

    /// The same fit, with a floor under its tail: the chance that one request lies beyond a
    /// value is at least that of an event none of the `seen` requests showed, half a request
    /// in `seen + 1` (the Krichevsky–Trofimov estimate). For the time between two services:
    /// a call held up by a TCP timer (a retransmission after the 200 ms minimum timeout, a
    /// connection retried after 1 s) lies where a log-normal fitted to the others gives it no
    /// chance at all, yet such calls come now and then on any network. So one such call in
    /// a window is no news, while most of a window's calls delayed still are.
    pub fn with_unseen_tail(mut self) -> Self {
        self.tail_floor = 0.5 / (self.seen + 1.0);
        self
    }

    /// P(one request takes longer than `x` ms).
    pub fn exceed(&self, x: f64) -> f64 {
        if x <= 0.0 {
            return 1.0;
        }
        normal_sf((x.ln() - self.mu) / self.sigma).max(self.tail_floor)
    }

    /// How significant latency statistic `feature` = `x` is for a window of `n` requests drawn
    /// from this distribution, as a signed z-score. Percentiles and the maximum are order
    /// statistics: the k-th smallest of n is above x exactly when at least n − k + 1 requests
    /// are, a binomial count — so one slow request among three (a p95 of 3 is their maximum)
    /// is what the tail predicts, while a fifth of 300 requests past the old p99 is not. The
    /// mean and the spread are judged on a log scale with their sampling error at n.
    pub fn sample_z(&self, feature: usize, x: f64, n: f64) -> f64 {
        use feature::*;
        if n < 1.0 || !x.is_finite() {
            return 0.0;
        }
        let order = |p: f64| {
            let k = (p * n).ceil().clamp(1.0, n);
            let above = self.exceed(x);
            if above < 0.5 {
                binomial_z(n, n - k + 1.0, above)
            } else {
                -binomial_z(n, k, 1.0 - above)
            }
        };
        let cv2 = self.sigma.powi(2).exp() - 1.0;
        match feature {
            LATENCY_P50 => order(0.5),
            LATENCY_P95 => order(0.95),
            LATENCY_P99 => order(0.99),
            LATENCY_MAX => order(1.0),
            LATENCY_MEAN => (x.max(1e-3) / self.mean).ln() / (1.0 + cv2 / n).ln().sqrt(),
            LATENCY_STDDEV if n >= 2.0 && self.stddev > 0.0 => {
                (x.max(1e-3) / self.stddev).ln() / (1.0 + 2.0 * (cv2 + 1.0) / n).ln().sqrt()
            }
            _ => 0.0,
        }
    }
}

/// P(Z > z) for a standard normal Z (erfc after Numerical Recipes' `erfcc`, relative error
/// below 1.2e-7 over the whole range, tails included).
pub fn normal_sf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    let erfc = t
        * (-a * a - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    let erfc = if x >= 0.0 { erfc } else { 2.0 - erfc };
    erfc / 2.0
}

/// The strongest single-feature deviation as a score in [0, 1]: 0.5 at `min_dev`, about 0.7 at
/// twice that, towards 1 beyond. Below `min_dev/2` (ordinary noise) it stays under 0.25, where
/// the forest's own score decides.
pub fn evidence_score(z: f64, min_dev: f64) -> f64 {
    if z <= 0.0 {
        0.0
    } else {
        2f64.powf(-min_dev / z)
    }
}

/// The exact test of two Poisson counts, as a signed z-score: with `a + b` events in two
/// windows and no change, the current window's share `a` is binomial(a + b, ½).
fn two_counts_z(a: f64, b: f64) -> f64 {
    if a >= b {
        binomial_z(a + b, a, 0.5)
    } else {
        -binomial_z(a + b, b, 0.5)
    }
}

/// Two tests of one change that must both hold: the weaker z when they agree in direction,
/// else none.
fn weaker(z: f64, other: f64) -> f64 {
    if z.signum() == other.signum() {
        z.signum() * z.abs().min(other.abs())
    } else {
        0.0
    }
}

fn median_and_spread(mut v: Vec<f64>) -> (f64, f64) {
    let m = median(&mut v);
    for x in v.iter_mut() {
        *x = (*x - m).abs();
    }
    (m, 1.4826 * median(&mut v))
}

/// How surprising `k` events in `n` trials are when each has probability `p`, as the z-score
/// with the same upper-tail probability. Only excesses count (fewer errors is not an incident).
pub fn binomial_z(n: f64, k: f64, p: f64) -> f64 {
    if n <= 0.0 || k <= n * p {
        return 0.0;
    }
    let var = n * p * (1.0 - p);
    let tail = if var > 25.0 {
        // Normal approximation with continuity correction: accurate at this size.
        return (k - 0.5 - n * p) / var.sqrt();
    } else {
        // Exact upper tail, summed in log space from k while the terms matter.
        let (ln_p, ln_q) = (p.ln(), (1.0 - p).ln());
        let ln_choose =
            |n: f64, r: f64| ln_gamma(n + 1.0) - ln_gamma(r + 1.0) - ln_gamma(n - r + 1.0);
        let mut sum = 0.0;
        let mut r = k;
        while r <= n && r <= k + 400.0 {
            let t = (ln_choose(n, r) + r * ln_p + (n - r) * ln_q).exp();
            sum += t;
            if t < sum * 1e-12 {
                break;
            }
            r += 1.0;
        }
        sum
    };
    upper_tail_z(tail)
}

/// How surprising a count of `k` is when the usual mean is `lambda`, as the z-score with the
/// same upper-tail probability (Poisson). Only excesses count.
pub fn poisson_z(k: f64, lambda: f64) -> f64 {
    if lambda.is_nan() || lambda <= 0.0 || k <= lambda {
        return 0.0;
    }
    if lambda > 25.0 {
        return (k - 0.5 - lambda) / lambda.sqrt();
    }
    // P(X ≥ k), summed from k in log space while the terms matter.
    let k = k.round();
    let mut log_term = -lambda + k * lambda.ln() - ln_gamma(k + 1.0);
    let mut tail = 0.0;
    let mut i = k;
    while log_term > -745.0 && i <= k + 500.0 {
        let term = log_term.exp();
        tail += term;
        if term < tail * 1e-12 {
            break;
        }
        i += 1.0;
        log_term += lambda.ln() - i.ln();
    }
    upper_tail_z(tail.min(0.5))
}

/// z such that P(Z ≥ z) = `p` (Abramowitz & Stegun 26.2.23; |error| < 4.5e-4).
pub fn upper_tail_z(p: f64) -> f64 {
    if p >= 0.5 {
        return 0.0;
    }
    let p = p.max(1e-300);
    let t = (-2.0 * p.ln()).sqrt();
    t - (2.515_517 + 0.802_853 * t + 0.010_328 * t * t)
        / (1.0 + 1.432_788 * t + 0.189_269 * t * t + 0.001_308 * t * t * t)
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

fn fmt_value(signal: Signal, feature: usize, v: f64) -> String {
    use feature::*;
    if signal == Signal::Metrics {
        return if feature == metric_feature::VALUE_CHANGE {
            format!("{v:.2}")
        } else {
            significant(v)
        };
    }
    if signal == Signal::Logs {
        use log_feature::*;
        return match feature {
            ERROR_RATE | WARNING_RATE => format!("{v:.3}"),
            LOG_COUNT_CHANGE => format!("{v:.2}"),
            _ => format!("{v:.0}"),
        };
    }
    match feature {
        REQUEST_COUNT => format!("{v:.0}"),
        ERROR_RATE | CLIENT_ERROR_RATE => format!("{v:.3}"),
        THROUGHPUT_CHANGE => format!("{v:.2}"),
        _ if v >= 10.0 => format!("{v:.0}"),
        _ => format!("{v:.1}"),
    }
}

/// Three significant digits (a metric may be bytes or a fraction of a core).
fn significant(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    if v.abs() >= 100.0 {
        return format!("{v:.0}");
    }
    let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 9) as usize;
    format!("{v:.digits$}")
}

pub struct IForestProcessor {
    cfg: IForestConfig,
    models: HashMap<Arc<SeriesKey>, SeriesModel>,
    /// The latest window start scored, and records scored since the last TTL sweep.
    clock_ns: u64,
    since_sweep: usize,
    evicted: Counter,
    scored: Counter,
    anomalies: Counter,
    last_save: std::time::Instant,
    dirty: bool,
    writer: Option<persist::ModelWriter>,
    /// The process's feedback, and the newest dismissal taken from it.
    feedback: Option<Arc<FeedbackBoard>>,
    feedback_seen: u64,
    feedback_changes: u64,
    /// Expected ranges read with the saved models, for the board once there is one.
    restored_expected: Vec<crate::model::feedback::ExpectedRange>,
    /// The shared model store, and when it was last written.
    store: Option<store::Store>,
    last_store_save: std::time::Instant,
    /// Services whose models came from the store, and services that moved away.
    store_loads: Counter,
    store_moves: Counter,
}

impl IForestProcessor {
    pub fn new(cfg: &IForestConfig, id: &str, telemetry: &Telemetry) -> Self {
        let labels = || vec![("processor", id.to_string())];
        Self {
            cfg: cfg.clone(),
            models: HashMap::new(),
            clock_ns: 0,
            since_sweep: 0,
            evicted: telemetry.counter(
                "otelwatch_iforest_series_evicted_total",
                "Models dropped: idle past series_ttl, or the least recently scored at max_series.",
                labels(),
            ),
            scored: telemetry.counter(
                "otelwatch_iforest_windows_scored_total",
                "Window records scored.",
                labels(),
            ),
            anomalies: telemetry.counter(
                "otelwatch_iforest_anomalies_total",
                "Window records flagged as anomalous.",
                labels(),
            ),
            last_save: std::time::Instant::now(),
            dirty: false,
            writer: (!cfg.model_path.is_empty())
                .then(|| persist::ModelWriter::new(std::path::Path::new(&cfg.model_path))),
            feedback: None,
            feedback_seen: 0,
            feedback_changes: 0,
            restored_expected: Vec::new(),
            store: (!cfg.model_store.is_empty()).then(|| store::Store::new(&cfg.model_store)),
            last_store_save: std::time::Instant::now(),
            store_loads: telemetry.counter(
                "otelwatch_iforest_store_loads_total",
                "Services whose models were loaded from the shared model store (they moved here).",
                labels(),
            ),
            store_moves: telemetry.counter(
                "otelwatch_iforest_store_moves_total",
                "Services found owned by another instance in the shared model store (they moved away); their models here were dropped.",
                labels(),
            ),
        }
    }

    /// Follows the process's feedback board (handing it the expected ranges saved with the
    /// models).
    pub fn with_feedback(mut self, board: Arc<FeedbackBoard>) -> Self {
        board.restore(std::mem::take(&mut self.restored_expected));
        self.feedback = Some(board);
        self
    }

    /// Takes the dismissals not taken yet: each of this processor's series learns its window
    /// as normal (others' are not its own).
    fn take_feedback(&mut self) {
        let Some(board) = &self.feedback else {
            return;
        };
        let changes = board.changes();
        if changes == self.feedback_changes {
            return;
        }
        // Expected ranges are saved with the models: a change is a change to save.
        self.feedback_changes = changes;
        self.dirty = true;
        for d in board.dismissals_after(self.feedback_seen) {
            self.feedback_seen = self.feedback_seen.max(d.seq);
            if let Some(m) = self.models.get_mut(&d.series) {
                m.accept(&self.cfg, d.series.signal, d.start_ns, &d.features);
                self.dirty = true;
                tracing::info!(series = %d.series, window = %crate::model::time::rfc3339(d.start_ns), "learned a window said not to be an anomaly");
            }
        }
    }

    /// Builds the processor and loads `model_path` if it exists. A missing file is a cold
    /// start; an unreadable one is logged and ignored (detection must not stop for it).
    pub fn with_saved_models(cfg: &IForestConfig, id: &str, telemetry: &Telemetry) -> Self {
        let mut p = Self::new(cfg, id, telemetry);
        if !cfg.model_path.is_empty() {
            let path = std::path::Path::new(&cfg.model_path);
            if path.exists() {
                match p.load(path) {
                    Ok(n) => {
                        tracing::info!(path = %path.display(), series = n, "loaded saved models")
                    }
                    Err(e) => tracing::warn!(error = %e, "starting without saved models"),
                }
            }
        }
        p
    }

    /// Replaces the models (with those read from a file).
    pub fn replace_models(&mut self, models: HashMap<Arc<SeriesKey>, SeriesModel>) {
        self.models = models;
    }

    /// Replaces the models with those in `path`; returns how many series were loaded.
    pub fn load(&mut self, path: &std::path::Path) -> Result<usize, persist::ModelError> {
        let file = persist::read(path)?;
        self.models = persist::from_file(&self.cfg, &file);
        match &self.feedback {
            Some(board) => board.restore(file.expected),
            None => self.restored_expected = file.expected,
        }
        Ok(self.models.len())
    }

    pub fn save(&self, path: &std::path::Path) -> Result<(), persist::ModelError> {
        persist::write(path, &self.to_model_file())
    }

    /// The saved form of the current models, with the expected ranges.
    pub fn to_model_file(&self) -> persist::ModelFile {
        let mut file = persist::to_file(&self.cfg, &self.models);
        file.expected = match &self.feedback {
            Some(board) => board.expected(),
            None => self.restored_expected.clone(),
        };
        file
    }

    /// Periodic save: the models are copied here and written on a blocking thread.
    fn save_in_background(&mut self) {
        // Without a model file there is nothing to copy (this runs on every tick).
        if !self.dirty || self.writer.is_none() {
            return;
        }
        let file = self.to_model_file();
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        if writer.write_in_background(file) {
            self.dirty = false;
            self.last_save = std::time::Instant::now();
        }
    }

    /// The last save, on shutdown: written before the pipeline reports itself drained (after
    /// a background write still running, and again if the last one failed).
    fn save_now(&mut self) {
        let pending = self.writer.as_ref().is_some_and(|w| w.needs_final_write());
        if (!self.dirty && !pending) || self.writer.is_none() {
            return;
        }
        let file = self.to_model_file();
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        match writer.write_now(&file) {
            Ok(()) => {
                tracing::debug!(path = %self.cfg.model_path, series = file.series.len(), "models saved")
            }
            Err(e) => tracing::warn!(error = %e, "saving models failed"),
        }
        self.dirty = false;
    }

    /// Series with a model.
    pub fn series(&self) -> usize {
        self.models.len()
    }

    pub fn model(&self, key: &SeriesKey) -> Option<&SeriesModel> {
        self.models.get(key)
    }

    /// Keeps the models within `max_series` and `series_ttl`: at the cap the least recently
    /// scored tenth goes; every few thousand records, models idle past the TTL go.
    fn bound(&mut self, rec: &WindowRecord) {
        self.clock_ns = self.clock_ns.max(rec.start_ns);
        self.since_sweep += 1;
        if self.since_sweep >= 4096 {
            self.since_sweep = 0;
            let (clock, ttl) = (self.clock_ns, self.cfg.series_ttl.get().as_nanos() as u64);
            let before = self.models.len();
            self.models.retain(|_, m| {
                if m.last_ns == 0 {
                    // Loaded from a file: its age counts from now.
                    m.last_ns = clock;
                }
                m.last_ns.saturating_add(ttl) >= clock
            });
            self.evicted.add((before - self.models.len()) as u64);
        }
        if self.models.len() < self.cfg.max_series || self.models.contains_key(&rec.series) {
            return;
        }
        let n = (self.cfg.max_series / 10).max(1).min(self.models.len());
        let mut last: Vec<u64> = self.models.values().map(|m| m.last_ns).collect();
        let (_, cutoff, _) = last.select_nth_unstable(n - 1);
        let cutoff = *cutoff;
        let mut left = n;
        self.models.retain(|_, m| {
            let go = left > 0 && m.last_ns <= cutoff;
            left -= go as usize;
            !go
        });
        self.evicted.add((n - left) as u64);
    }

    /// Looks `rec`'s service up in the shared store when this instance holds no model for
    /// the series (once per arriving service), and notes where its traffic is. A series whose
    /// model came from the store has its first window here scored as partial: it began at the
    /// instance the service moved from. Returns false for a window of a service that moved
    /// away and is silent here: not this instance's to judge.
    fn consult_store(&mut self, rec: &mut WindowRecord) -> bool {
        let Some(store) = self.store.as_mut() else {
            return true;
        };
        let service = &rec.series.service;
        if rec.seen() > 0.0 {
            let t = store.traffic.entry(service.clone()).or_insert(rec.start_ns);
            *t = (*t).max(rec.start_ns);
            store.away.remove(service);
        } else if store.away.contains(service) {
            return false;
        }
        if !self.models.contains_key(&rec.series) && !store.looked_up.contains(service) {
            if store.looked_up.len() >= self.cfg.max_series {
                store.looked_up.clear();
            }
            store.looked_up.insert(service.clone());
            let (dir, name) = (store.dir.clone(), service.clone());
            let read = move || store::read(&dir, &name);
            let found = match tokio::runtime::Handle::try_current() {
                Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(read)
                }
                _ => read(),
            };
            let ttl = self.cfg.series_ttl.get().as_nanos() as u64;
            match found {
                Ok(Some(file)) if file.traffic_ns.saturating_add(ttl) >= rec.start_ns => {
                    let mut n = 0;
                    for saved in &file.series {
                        let Some((key, model)) = persist::restore(&self.cfg, saved) else {
                            continue;
                        };
                        if let std::collections::hash_map::Entry::Vacant(e) =
                            self.models.entry(key.clone())
                        {
                            store.resumed.insert(key);
                            e.insert(model);
                            n += 1;
                        }
                    }
                    self.store_loads.inc();
                    tracing::info!(service = %file.service, from = %file.owner, series = n, "models loaded from the model store");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reading the model store failed"),
            }
        }
        if store.resumed.remove(&rec.series) {
            rec.partial = true;
        }
        true
    }

    /// Takes what the last background save found: services another instance owns now.
    fn take_moved(&mut self) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let moved = std::mem::take(&mut *store.moved.lock().unwrap_or_else(|e| e.into_inner()));
        for (service, owner) in moved {
            if store
                .traffic
                .get(&service)
                .is_some_and(|t| store.saved.get(&service).is_some_and(|s| t > s))
            {
                // Traffic came back here since that save: it is this instance's again.
                continue;
            }
            self.models.retain(|k, _| k.service != service);
            store.resumed.retain(|k| k.service != service);
            store.traffic.remove(&service);
            store.saved.remove(&service);
            store.looked_up.remove(&service);
            store.away.insert(service.clone());
            self.store_moves.inc();
            tracing::info!(service = %service, to = %owner, "service moved to another instance: its models here are dropped");
        }
    }

    /// Writes the services that had traffic here since their last save to the store: on a
    /// blocking thread, or now (`now`: at shutdown).
    fn save_store(&mut self, now: bool) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        if !now && store.pending.as_ref().is_some_and(|p| !p.is_finished()) {
            return;
        }
        let (services, check) = store.to_save();
        self.last_store_save = std::time::Instant::now();
        if services.is_empty() && check.is_empty() {
            return;
        }
        let files = store::files(&store.owner, &self.models, &services);
        for (s, t) in services {
            store.saved.insert(s, t);
        }
        let (dir, owner, moved) = (store.dir.clone(), store.owner.clone(), store.moved.clone());
        let job = move || store::Store::write_all(&dir, &owner, &files, &check, &moved);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if !now => store.pending = Some(rt.spawn_blocking(job)),
            _ => job(),
        }
    }

    /// Scores one record, learns from it if it is normal, and fills in `anomaly`.
    pub fn score(&mut self, rec: &mut WindowRecord) {
        if !self.consult_store(rec) {
            return;
        }
        self.bound(rec);
        let cfg = &self.cfg;
        let model = self
            .models
            .entry(rec.series.clone())
            .or_insert_with(|| SeriesModel::new(cfg, &rec.series));
        model.last_ns = rec.start_ns.max(1);
        let x = transform_for(rec.series.signal, &rec.features);
        let threshold = model.threshold(cfg);
        let warming_up = model.learned < cfg.warmup;
        let forest_score = model.forest.score(&x);
        let mut missing = None;
        let mut deviations = if warming_up {
            Vec::new()
        } else {
            let mut d = model.deviations(rec.series.signal, &rec.features, cfg.min_deviation);
            if rec.series.signal == Signal::Logs {
                if let Some((z, m, records)) = model
                    .shares
                    .shortfall((!rec.partial).then_some(rec.start_ns), &rec.presence)
                {
                    if z.abs() >= cfg.min_deviation {
                        let typical = model.typical().0[log_feature::TEMPLATES];
                        d.push((log_feature::TEMPLATES, z, typical));
                        d.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
                        missing = Some((m, records));
                    }
                }
            }
            d
        };
        if rec.partial {
            // Data was skipped, or the shutdown cut the window short: low counts are the
            // shedding or the stop, not a traffic drop; a metric's
            // rates and counts are low bounds too, so a partial metric window is not judged.
            // Nor is a usual log line's shortfall: its lines may be among those skipped.
            use feature::{REQUEST_COUNT, THROUGHPUT_CHANGE};
            deviations.retain(|(i, _, _)| {
                rec.series.signal != Signal::Metrics
                    && *i != REQUEST_COUNT
                    && *i != THROUGHPUT_CHANGE
                    && !(rec.series.signal == Signal::Logs && *i == log_feature::TEMPLATES)
            });
        }
        // Out of line only as far as a window someone said is fine: normal, and learned.
        let off = deviations.len();
        deviations.retain(|(i, _, typical)| !model.accepts(*i, rec.features[*i] - typical));
        let accepted = off > 0 && deviations.is_empty();
        let strongest = deviations.first().map(|d| d.1.abs()).unwrap_or(0.0);
        let score = forest_score.max(evidence_score(strongest, cfg.min_deviation));
        let is_anomaly = !warming_up && score >= threshold && !deviations.is_empty();
        // Above the threshold without a cause: not reported, but not learned either, so an
        // outlier does not widen what the forest calls normal (unless it keeps happening).
        let verdict = if accepted {
            Verdict::Normal { warming_up }
        } else if is_anomaly {
            Verdict::Anomaly
        } else if !warming_up && score >= threshold {
            Verdict::Unexplained
        } else {
            Verdict::Normal { warming_up }
        };
        // A partial window is not what normal looks like: it is never learned.
        if !(rec.partial && matches!(verdict, Verdict::Normal { .. })) {
            if rec.series.signal == Signal::Logs && matches!(verdict, Verdict::Normal { .. }) {
                model.learn_traces(rec.features[log_feature::LOG_COUNT], rec.traces);
                model.shares.learn(&rec.presence);
            }
            model.follow(cfg, &rec.features, &x, score, verdict);
        }
        if !is_anomaly {
            deviations.clear();
        }
        // A usual template the window's traces wrote too seldom is quoted first.
        if let Some((m, records)) = missing.filter(|_| {
            deviations
                .iter()
                .take(3)
                .any(|(i, _, _)| *i == log_feature::TEMPLATES)
        }) {
            rec.templates.retain(|t| t.template != m.text);
            rec.templates.insert(
                0,
                TemplateCount {
                    template: m.text,
                    count: records,
                    level: LogLevel::Other,
                    new: false,
                    missing: Some(m.missing),
                },
            );
            rec.templates.truncate(MAX_TEMPLATES_KEPT);
        }
        let contributions: Vec<Contribution> = deviations
            .iter()
            .take(3)
            .map(|(i, _, typical)| Contribution {
                feature: rec.feature_names()[*i],
                actual: rec.features[*i],
                typical: *typical,
            })
            .collect();
        let severity = is_anomaly.then(|| severity(score - threshold, strongest));
        let message = if is_anomaly {
            explain(rec, &deviations, model.consecutive, cfg.relearn_after)
        } else {
            String::new()
        };
        let expected = is_anomaly
            && self.feedback.as_ref().is_some_and(|b| {
                b.expected_at(&rec.series.service, rec.start_ns, rec.end_ns())
                    .is_some()
            });
        self.scored.inc();
        self.dirty = true;
        if is_anomaly {
            self.anomalies.inc();
        }
        rec.anomaly = Some(Anomaly {
            score,
            threshold,
            is_anomaly,
            severity,
            warming_up,
            contributions,
            message,
            incident: None,
            expected,
        });
    }
}

/// How far over the threshold (or how many spreads off typical) an anomaly is.
fn severity(over: f64, strongest: f64) -> Severity {
    if over >= 0.15 || strongest >= 50.0 {
        Severity::Critical
    } else if over >= 0.05 || strongest >= 15.0 {
        Severity::Major
    } else {
        Severity::Minor
    }
}

/// `series: feature actual (typical t), …`, and a note once it is being learned as normal.
fn explain(
    rec: &WindowRecord,
    deviations: &[(usize, f64, f64)],
    consecutive: usize,
    relearn_after: usize,
) -> String {
    let parts: Vec<String> = deviations
        .iter()
        .take(3)
        .map(|(i, _, t)| {
            let signal = rec.series.signal;
            format!(
                "{} {} (typical {})",
                rec.feature_names()[*i],
                fmt_value(signal, *i, rec.features[*i]),
                fmt_value(signal, *i, *t)
            )
        })
        .collect();
    let mut m = format!("{}: {}", rec.series, parts.join(", "));
    // A log anomaly quotes its most telling template: a usual one too seldom written, or a
    // new or error one.
    if let Some((t, missing)) = rec
        .templates
        .iter()
        .find_map(|t| Some((t, t.missing?)))
        .filter(|_| {
            deviations
                .iter()
                .take(3)
                .any(|d| d.0 == log_feature::TEMPLATES)
        })
    {
        m.push_str(&format!(
            "; usual template `{}` written by {} of {} traces (typically {:.1})",
            t.template, missing.traces, missing.of, missing.expected
        ));
    } else if let Some(t) = rec
        .templates
        .iter()
        .find(|t| t.level == LogLevel::Error || t.new)
    {
        let what = match (t.new, t.level) {
            (true, LogLevel::Error) => "new ERROR template",
            (true, _) => "new template",
            (false, _) => "ERROR template",
        };
        m.push_str(&format!("; {what}: `{}` ×{}", t.template, t.count));
        if t.new {
            m.push_str(", first seen");
        }
    }
    if consecutive >= relearn_after {
        m.push_str(&format!(
            " (for {consecutive} windows; now learning it as the new normal)"
        ));
    }
    m
}

impl Processor for IForestProcessor {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        let Payload::Windows(records) = batch.payload else {
            out.push(batch);
            return;
        };
        self.take_feedback();
        self.take_moved();
        let mut records = Arc::try_unwrap(records).unwrap_or_else(|a| (*a).clone());
        for r in &mut records {
            self.score(r);
        }
        out.push(Batch {
            items: records.len(),
            payload: Payload::Windows(Arc::new(records)),
            encoded: None,
            held: Default::default(),
        });
    }

    fn tick_interval(&self) -> Option<std::time::Duration> {
        (!self.cfg.model_path.is_empty() || self.store.is_some())
            .then(|| (self.cfg.save_interval.get() / 4).max(std::time::Duration::from_millis(100)))
    }

    fn on_tick(&mut self, _out: &mut Vec<Batch>) {
        self.take_feedback();
        self.take_moved();
        if self.last_save.elapsed() >= self.cfg.save_interval.get() {
            self.save_in_background();
        }
        if self.last_store_save.elapsed() >= self.cfg.save_interval.get() {
            self.save_store(false);
        }
    }

    fn on_shutdown(&mut self, _out: &mut Vec<Batch>) {
        self.save_now();
        self.take_moved();
        self.save_store(true);
    }
}

#[cfg(test)]
mod tests;
