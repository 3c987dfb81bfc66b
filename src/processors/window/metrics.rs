//! What a metrics request says about its services: the selected metric streams' data points,
//! made comparable window to window.
//!
//! - A **gauge** (and a sum that is not monotonic) is judged by its values: mean, min, max and
//!   spread of the points in the window.
//! - A **monotonic sum** is judged by its rate: the increase over the window per second. Delta
//!   points are increases already; a cumulative stream's increase is its difference with the
//!   stream's previous point, and a point below the previous one, or with a new start time, is
//!   a reset (the increase since the reset is the point's value). A cumulative stream's first
//!   point only sets its baseline.
//! - A **histogram** (explicit or exponential buckets) is judged by the observations it gained:
//!   their count, mean and percentiles from the buckets (linear within a bucket, bounded by the
//!   point's min and max when it has them), differenced like a cumulative sum.
//!
//! A stream is one metric of one resource with one set of point attributes; the points of a
//! service's streams of one metric (its routes, its CPU states, its pods) are merged into one
//! series per service (and per value of `attribute`, when set). Cumulative streams are
//! remembered up to a cap, least recently seen forgotten first (counted).

use crate::config::glob::wildcard;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets as ExpBuckets, AggregationTemporality,
    ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint,
};
use serde::Deserialize;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// The metric streams the window processor follows.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Metric names to follow (`*` and `?` patterns).
    pub include: Vec<String>,
    /// Names left out even when included.
    pub exclude: Vec<String>,
    /// A resource or point attribute that splits a service's metric into one series per value
    /// (such as `k8s.pod.name`); empty: one series per service and metric.
    pub attribute: String,
    /// Cumulative streams remembered at once (for their differences).
    pub max_streams: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            include: DEFAULT_METRICS.iter().map(|s| s.to_string()).collect(),
            exclude: Vec::new(),
            attribute: String::new(),
            max_streams: 100_000,
        }
    }
}

/// The semantic-convention metrics that say most about a service's health: request durations,
/// CPU and memory of the process, its runtime, its container or pod and its host.
pub const DEFAULT_METRICS: &[&str] = &[
    "http.server.request.duration",
    "http.server.duration",
    "http.client.request.duration",
    "rpc.server.duration",
    "rpc.client.duration",
    "process.cpu.utilization",
    "process.cpu.time",
    "process.memory.usage",
    "process.runtime.*",
    "jvm.cpu.*",
    "jvm.memory.used",
    "jvm.gc.duration",
    "jvm.thread.count",
    "nodejs.eventloop.*",
    "v8js.memory.heap.used",
    "container.cpu.*",
    "container.memory.*",
    "k8s.pod.cpu.*",
    "k8s.pod.memory.*",
    "system.cpu.utilization",
    "system.memory.utilization",
];

impl MetricsConfig {
    pub fn selects(&self, name: &str) -> bool {
        self.include.iter().any(|p| wildcard(p, name))
            && !self.exclude.iter().any(|p| wildcard(p, name))
    }
}

/// A histogram's buckets as (upper bound, observations), ascending; the last bound may be
/// infinite.
pub type Buckets = Vec<(f64, u64)>;

/// What one data point adds to its series' window.
#[derive(Debug, Clone, PartialEq)]
pub enum Point {
    Gauge(f64),
    /// An increase over `secs` seconds (0: unknown).
    Increase {
        delta: f64,
        secs: f64,
    },
    /// Observations since the stream's previous point.
    Histogram(HistogramDelta),
    /// A cumulative stream's first point: its baseline, no increase yet.
    Baseline,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistogramDelta {
    pub count: u64,
    pub sum: f64,
    pub buckets: Buckets,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// The previous point of a cumulative stream.
#[derive(Debug, Clone)]
struct Prev {
    start: u64,
    time: u64,
    value: f64,
    count: u64,
    buckets: Buckets,
    /// When it was last seen (a sequence number, for forgetting the least recent).
    used: u64,
}

/// The previous points of cumulative streams, bounded.
pub struct Streams {
    prev: HashMap<u64, Prev>,
    cap: usize,
    seq: u64,
    pub evicted: u64,
}

impl Streams {
    pub fn new(cap: usize) -> Self {
        Self {
            prev: HashMap::new(),
            cap: cap.max(1),
            seq: 0,
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.prev.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prev.is_empty()
    }

    /// Replaces the stream's previous point, returning the one before.
    fn swap(&mut self, id: u64, mut p: Prev) -> Option<Prev> {
        self.seq += 1;
        p.used = self.seq;
        if self.prev.len() >= self.cap && !self.prev.contains_key(&id) {
            self.forget_least_recent();
        }
        self.prev.insert(id, p)
    }

    fn forget_least_recent(&mut self) {
        let n = (self.cap / 10).max(1).min(self.prev.len());
        if n == 0 {
            return;
        }
        let mut used: Vec<u64> = self.prev.values().map(|p| p.used).collect();
        let (_, cut, _) = used.select_nth_unstable(n - 1);
        let cut = *cut;
        self.prev.retain(|_, p| p.used > cut);
        self.evicted += n as u64;
    }

    /// A number point of a sum.
    pub fn sum(
        &mut self,
        id: u64,
        p: &NumberDataPoint,
        temporality: i32,
        monotonic: bool,
    ) -> Option<Point> {
        let v = number(p)?;
        if !monotonic {
            return Some(Point::Gauge(v));
        }
        let secs = |from: u64| seconds(from, p.time_unix_nano);
        if temporality != AggregationTemporality::Cumulative as i32 {
            return Some(Point::Increase {
                delta: v.max(0.0),
                secs: secs(p.start_time_unix_nano),
            });
        }
        let now = Prev {
            start: p.start_time_unix_nano,
            time: p.time_unix_nano,
            value: v,
            count: 0,
            buckets: Vec::new(),
            used: 0,
        };
        Some(match self.swap(id, now) {
            None => Point::Baseline,
            Some(prev) if reset(&prev, p.start_time_unix_nano, v < prev.value) => Point::Increase {
                delta: v.max(0.0),
                secs: secs(p.start_time_unix_nano),
            },
            Some(prev) => Point::Increase {
                delta: v - prev.value,
                secs: secs(prev.time),
            },
        })
    }

    /// A histogram point (explicit buckets).
    pub fn histogram(&mut self, id: u64, p: &HistogramDataPoint, temporality: i32) -> Point {
        let buckets = explicit_buckets(&p.explicit_bounds, &p.bucket_counts);
        self.histogram_point(
            id,
            temporality,
            (p.start_time_unix_nano, p.time_unix_nano),
            HistogramDelta {
                count: p.count,
                sum: p.sum.unwrap_or(f64::NAN),
                buckets,
                min: p.min,
                max: p.max,
            },
        )
    }

    /// A histogram point (exponential buckets).
    pub fn exponential(
        &mut self,
        id: u64,
        p: &ExponentialHistogramDataPoint,
        temporality: i32,
    ) -> Point {
        let buckets = exponential_buckets(p);
        self.histogram_point(
            id,
            temporality,
            (p.start_time_unix_nano, p.time_unix_nano),
            HistogramDelta {
                count: p.count,
                sum: p.sum.unwrap_or(f64::NAN),
                buckets,
                min: p.min,
                max: p.max,
            },
        )
    }

    fn histogram_point(
        &mut self,
        id: u64,
        temporality: i32,
        (start, time): (u64, u64),
        mut h: HistogramDelta,
    ) -> Point {
        if temporality != AggregationTemporality::Cumulative as i32 {
            return Point::Histogram(h);
        }
        let now = Prev {
            start,
            time,
            value: h.sum,
            count: h.count,
            buckets: h.buckets.clone(),
            used: 0,
        };
        match self.swap(id, now) {
            None => Point::Baseline,
            Some(prev) if reset(&prev, start, h.count < prev.count) => Point::Histogram(h),
            Some(prev) => {
                h.count -= prev.count;
                h.sum -= prev.value;
                h.buckets = difference(&h.buckets, &prev.buckets);
                // The extremes of a cumulative point are those of all time, not of the delta.
                h.min = None;
                h.max = None;
                Point::Histogram(h)
            }
        }
    }
}

/// A new start time, or a value that went down: the stream restarted.
fn reset(prev: &Prev, start: u64, went_down: bool) -> bool {
    went_down || (start != 0 && prev.start != 0 && start != prev.start)
}

fn seconds(from: u64, to: u64) -> f64 {
    if from == 0 || to <= from {
        0.0
    } else {
        (to - from) as f64 / 1e9
    }
}

fn number(p: &NumberDataPoint) -> Option<f64> {
    let v = match p.value? {
        Number::AsDouble(d) => d,
        Number::AsInt(i) => i as f64,
    };
    v.is_finite().then_some(v)
}

/// A gauge's point.
pub fn gauge(p: &NumberDataPoint) -> Option<Point> {
    number(p).map(Point::Gauge)
}

fn explicit_buckets(bounds: &[f64], counts: &[u64]) -> Buckets {
    counts
        .iter()
        .enumerate()
        .map(|(i, c)| (bounds.get(i).copied().unwrap_or(f64::INFINITY), *c))
        .filter(|(b, _)| !b.is_nan())
        .collect()
}

/// Largest bucket index magnitude read (a hostile point cannot make the bounds overflow).
const MAX_EXP_INDEX: i64 = 1 << 20;
/// Buckets read from one exponential point (per sign).
const MAX_EXP_BUCKETS: usize = 2048;

/// Bucket `i` at `scale` holds (base^i, base^(i+1)] with base = 2^(2^-scale).
fn exponential_buckets(p: &ExponentialHistogramDataPoint) -> Buckets {
    let scale = p.scale.clamp(-10, 20);
    let bound =
        |i: i64| (i.clamp(-MAX_EXP_INDEX, MAX_EXP_INDEX) as f64 * (-scale as f64).exp2()).exp2();
    let side = |b: &Option<ExpBuckets>| -> Vec<(i64, u64)> {
        b.as_ref()
            .map(|b| {
                b.bucket_counts
                    .iter()
                    .take(MAX_EXP_BUCKETS)
                    .enumerate()
                    .map(|(k, c)| (b.offset as i64 + k as i64, *c))
                    .filter(|(_, c)| *c > 0)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out: Buckets = side(&p.negative)
        .into_iter()
        .rev()
        .map(|(i, c)| (-bound(i), c))
        .collect();
    if p.zero_count > 0 {
        out.push((p.zero_threshold.max(0.0), p.zero_count));
    }
    out.extend(
        side(&p.positive)
            .into_iter()
            .map(|(i, c)| (bound(i + 1), c)),
    );
    out
}

/// `now` minus `prev`, bucket by bucket (bounds that match); a bucket not in `prev` is new.
fn difference(now: &Buckets, prev: &Buckets) -> Buckets {
    now.iter()
        .map(|(b, c)| {
            let before = prev
                .iter()
                .find(|(pb, _)| pb.to_bits() == b.to_bits())
                .map_or(0, |(_, pc)| *pc);
            (*b, c.saturating_sub(before))
        })
        .collect()
}

/// A stream's identity: its resource, scope, metric and point attributes.
pub fn stream_id(resource: &[KeyValue], scope: &str, metric: &str, attributes: &[KeyValue]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut eat = |kvs: &[KeyValue]| {
        let mut sorted: Vec<&KeyValue> = kvs.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        for kv in sorted {
            kv.key.hash(&mut h);
            hash_value(kv.value.as_ref(), &mut h);
        }
        0xffu8.hash(&mut h);
    };
    eat(resource);
    eat(attributes);
    scope.hash(&mut h);
    metric.hash(&mut h);
    h.finish()
}

fn hash_value(v: Option<&AnyValue>, h: &mut impl Hasher) {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.hash(h),
        Some(Value::IntValue(i)) => i.hash(h),
        Some(Value::DoubleValue(d)) => d.to_bits().hash(h),
        Some(Value::BoolValue(b)) => b.hash(h),
        Some(other) => format!("{other:?}").hash(h),
        None => 0u8.hash(h),
    }
}

/// One metric series' window: what its points add up to.
#[derive(Debug, Default)]
pub struct MetricAccum {
    pub points: u64,
    gauges: Moments,
    /// Increases: their total and the rates of those with a known duration.
    increase: f64,
    increases: u64,
    rates: Moments,
    histogram: HistogramDelta,
    histograms: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Moments {
    n: u64,
    sum: f64,
    sum_sq: f64,
    min: f64,
    max: f64,
}

impl Moments {
    fn add(&mut self, v: f64) {
        if self.n == 0 {
            (self.min, self.max) = (v, v);
        }
        self.n += 1;
        self.sum += v;
        self.sum_sq += v * v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    fn mean(&self) -> f64 {
        self.sum / self.n.max(1) as f64
    }

    fn stddev(&self) -> f64 {
        let n = self.n.max(1) as f64;
        let m = self.sum / n;
        (self.sum_sq / n - m * m).max(0.0).sqrt()
    }
}

/// Buckets merged into one window's histogram at most (the finest ones are merged beyond).
const MAX_WINDOW_BUCKETS: usize = 4096;

impl MetricAccum {
    pub fn add(&mut self, p: &Point) {
        self.points += 1;
        match p {
            Point::Gauge(v) => self.gauges.add(*v),
            Point::Increase { delta, secs } => {
                self.increase += delta;
                self.increases += 1;
                if *secs > 0.0 {
                    self.rates.add(delta / secs);
                }
            }
            Point::Histogram(h) => {
                self.histograms += 1;
                let w = &mut self.histogram;
                w.count += h.count;
                if h.sum.is_finite() {
                    w.sum += h.sum;
                }
                w.min = match (w.min, h.min) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                w.max = match (w.max, h.max) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                // Empty buckets stay: their bounds are the next bucket's lower bound.
                if w.buckets.len() < MAX_WINDOW_BUCKETS {
                    w.buckets.extend(h.buckets.iter().copied());
                }
            }
            Point::Baseline => {}
        }
    }

    /// The features (see `METRIC_FEATURE_NAMES`), `interval_s` the window's length and
    /// `previous` the value of the series' last window with points.
    pub fn features(&mut self, interval_s: f64, previous: Option<f64>) -> [f64; 10] {
        use crate::model::window::metric_feature::*;
        let mut f = [0.0; 10];
        f[POINTS] = self.points as f64;
        if self.histograms > 0 {
            let h = &mut self.histogram;
            h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            merge_equal(&mut h.buckets);
            let n = h.count as f64;
            f[COUNT] = n;
            if h.count > 0 {
                f[VALUE] = h.sum / n;
                f[P50] = quantile(h, 0.50);
                f[P95] = quantile(h, 0.95);
                f[P99] = quantile(h, 0.99);
                f[MIN] = h.min.unwrap_or_else(|| quantile(h, 0.0));
                f[MAX] = h.max.unwrap_or_else(|| quantile(h, 1.0));
                f[STDDEV] = bucket_stddev(h);
            }
        } else if self.increases > 0 {
            f[VALUE] = self.increase / interval_s.max(1e-9);
            if self.rates.n > 0 {
                f[MIN] = self.rates.min;
                f[MAX] = self.rates.max;
                f[STDDEV] = self.rates.stddev();
            } else {
                (f[MIN], f[MAX]) = (f[VALUE], f[VALUE]);
            }
        } else if self.gauges.n > 0 {
            f[VALUE] = self.gauges.mean();
            f[MIN] = self.gauges.min;
            f[MAX] = self.gauges.max;
            f[STDDEV] = self.gauges.stddev();
        }
        f[VALUE_CHANGE] = value_change(f[VALUE], previous);
        f
    }

    /// Whether the window holds a value (a gauge, an increase or observations), not only
    /// baselines.
    pub fn has_value(&self) -> bool {
        self.gauges.n > 0 || self.increases > 0 || self.histogram.count > 0
    }
}

/// This window's value over the previous one's; 1 without a previous value of the same sign.
pub fn value_change(value: f64, previous: Option<f64>) -> f64 {
    match previous {
        Some(p) if p != 0.0 && value / p >= 0.0 => value / p,
        Some(_) if value == 0.0 => 1.0,
        _ => 1.0,
    }
}

fn merge_equal(b: &mut Buckets) {
    let mut out: Buckets = Vec::with_capacity(b.len());
    for (bound, c) in b.drain(..) {
        match out.last_mut() {
            Some(last) if last.0.to_bits() == bound.to_bits() => last.1 += c,
            _ => out.push((bound, c)),
        }
    }
    *b = out;
}

/// The q-quantile of the observations, linear within its bucket (a bucket's lower bound is the
/// bound before it, or the minimum; an infinite upper bound is the maximum, or the lower bound).
fn quantile(h: &HistogramDelta, q: f64) -> f64 {
    let total: u64 = h.buckets.iter().map(|b| b.1).sum();
    if total == 0 {
        return 0.0;
    }
    let target = q * total as f64;
    let mut before = 0.0;
    let mut lower = h
        .min
        .unwrap_or_else(|| h.buckets.first().map_or(0.0, |b| b.0.min(0.0)));
    for &(upper, c) in &h.buckets {
        let upper_v = if upper.is_finite() {
            upper
        } else {
            h.max.unwrap_or(lower).max(lower)
        };
        let c = c as f64;
        if c > 0.0 && before + c >= target {
            let lo = lower.min(upper_v);
            let v = lo + (upper_v - lo) * ((target - before) / c).clamp(0.0, 1.0);
            return clamp_to(v, h.min, h.max);
        }
        before += c;
        lower = upper_v;
    }
    clamp_to(lower, h.min, h.max)
}

fn clamp_to(v: f64, min: Option<f64>, max: Option<f64>) -> f64 {
    let v = min.map_or(v, |m| v.max(m));
    max.map_or(v, |m| v.min(m))
}

/// The observations' spread estimated from bucket midpoints.
fn bucket_stddev(h: &HistogramDelta) -> f64 {
    let mut m = Moments::default();
    let mut lower = h.min.unwrap_or(0.0);
    let mut n = 0u64;
    let (mut s1, mut s2) = (0.0, 0.0);
    for &(upper, c) in &h.buckets {
        let upper_v = if upper.is_finite() {
            upper
        } else {
            h.max.unwrap_or(lower)
        };
        let mid = (lower.min(upper_v) + upper_v) / 2.0;
        s1 += mid * c as f64;
        s2 += mid * mid * c as f64;
        n += c;
        lower = upper_v;
    }
    if n == 0 {
        return 0.0;
    }
    m.n = n;
    m.sum = s1;
    m.sum_sq = s2;
    m.stddev()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(v: f64, start: u64, time: u64) -> NumberDataPoint {
        NumberDataPoint {
            start_time_unix_nano: start,
            time_unix_nano: time,
            value: Some(Number::AsDouble(v)),
            ..Default::default()
        }
    }

    const S: u64 = 1_000_000_000;
    const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;
    const DELTA: i32 = AggregationTemporality::Delta as i32;

    #[test]
    fn cumulative_sums_become_increases_across_a_reset() {
        let mut s = Streams::new(10);
        assert_eq!(
            s.sum(1, &num(100.0, S, 10 * S), CUMULATIVE, true),
            Some(Point::Baseline)
        );
        assert_eq!(
            s.sum(1, &num(130.0, S, 20 * S), CUMULATIVE, true),
            Some(Point::Increase {
                delta: 30.0,
                secs: 10.0
            })
        );
        // The process restarted: a lower value, a new start time.
        assert_eq!(
            s.sum(1, &num(5.0, 25 * S, 30 * S), CUMULATIVE, true),
            Some(Point::Increase {
                delta: 5.0,
                secs: 5.0
            })
        );
        assert_eq!(
            s.sum(1, &num(15.0, 25 * S, 40 * S), CUMULATIVE, true),
            Some(Point::Increase {
                delta: 10.0,
                secs: 10.0
            })
        );
        // Another stream is its own.
        assert_eq!(
            s.sum(2, &num(7.0, S, 40 * S), CUMULATIVE, true),
            Some(Point::Baseline)
        );
    }

    #[test]
    fn delta_sums_are_increases_and_other_sums_are_values() {
        let mut s = Streams::new(10);
        assert_eq!(
            s.sum(1, &num(12.0, 10 * S, 20 * S), DELTA, true),
            Some(Point::Increase {
                delta: 12.0,
                secs: 10.0
            })
        );
        assert_eq!(
            s.sum(1, &num(-3.0, 0, 20 * S), CUMULATIVE, false),
            Some(Point::Gauge(-3.0))
        );
        assert_eq!(
            s.len(),
            0,
            "nothing to remember for delta and non-monotonic sums"
        );
        let mut bad = num(0.0, 0, S);
        bad.value = Some(Number::AsDouble(f64::NAN));
        assert_eq!(s.sum(1, &bad, DELTA, true), None);
    }

    #[test]
    fn rates_means_and_extremes_per_window() {
        let mut a = MetricAccum::default();
        a.add(&Point::Increase {
            delta: 30.0,
            secs: 10.0,
        });
        a.add(&Point::Increase {
            delta: 10.0,
            secs: 10.0,
        });
        a.add(&Point::Baseline);
        let f = a.features(20.0, Some(1.0));
        use crate::model::window::metric_feature::*;
        assert_eq!(f[VALUE], 2.0);
        assert_eq!((f[MIN], f[MAX]), (1.0, 3.0));
        assert_eq!(f[POINTS], 3.0);
        assert_eq!(f[VALUE_CHANGE], 2.0);
        let mut g = MetricAccum::default();
        for v in [0.2, 0.4, 0.6] {
            g.add(&Point::Gauge(v));
        }
        let f = g.features(10.0, None);
        assert!((f[VALUE] - 0.4).abs() < 1e-12);
        assert_eq!((f[MIN], f[MAX]), (0.2, 0.6));
        assert_eq!(f[VALUE_CHANGE], 1.0);
    }

    #[test]
    fn explicit_histograms_difference_and_percentiles() {
        let mut s = Streams::new(10);
        let point = |counts: Vec<u64>, sum: f64| HistogramDataPoint {
            start_time_unix_nano: S,
            time_unix_nano: 10 * S,
            count: counts.iter().sum(),
            sum: Some(sum),
            explicit_bounds: vec![10.0, 100.0, 1000.0],
            bucket_counts: counts,
            ..Default::default()
        };
        assert_eq!(
            s.histogram(1, &point(vec![5, 5, 0, 0], 300.0), CUMULATIVE),
            Point::Baseline
        );
        // 100 new observations: 90 in (0, 10], 10 in (100, 1000].
        let Point::Histogram(h) =
            s.histogram(1, &point(vec![95, 5, 10, 0], 300.0 + 2450.0), CUMULATIVE)
        else {
            panic!("a histogram delta")
        };
        assert_eq!(h.count, 100);
        let mut a = MetricAccum::default();
        a.add(&Point::Histogram(h));
        let f = a.features(10.0, None);
        use crate::model::window::metric_feature::*;
        assert_eq!(f[COUNT], 100.0);
        assert!((f[VALUE] - 24.5).abs() < 1e-9);
        // The median is in the first bucket, the 95th percentile half-way through (100, 1000].
        assert!(f[P50] > 0.0 && f[P50] <= 10.0, "{}", f[P50]);
        assert!((f[P95] - 550.0).abs() < 1e-6, "{}", f[P95]);
        // A reset: fewer observations than before count from zero.
        let p = s.histogram(1, &point(vec![1, 0, 0, 0], 2.0), CUMULATIVE);
        assert!(matches!(p, Point::Histogram(ref h) if h.count == 1));
    }

    #[test]
    fn exponential_histograms_map_to_bounds() {
        // Scale 0: base 2; bucket i holds (2^i, 2^(i+1)].
        let p = ExponentialHistogramDataPoint {
            scale: 0,
            count: 11,
            sum: Some(60.0),
            zero_count: 1,
            positive: Some(ExpBuckets {
                offset: 2,
                bucket_counts: vec![5, 5],
            }),
            min: Some(0.0),
            max: Some(16.0),
            ..Default::default()
        };
        let mut s = Streams::new(10);
        let Point::Histogram(h) = s.exponential(1, &p, DELTA) else {
            panic!("a histogram delta")
        };
        assert_eq!(h.buckets, vec![(0.0, 1), (8.0, 5), (16.0, 5)]);
        let mut a = MetricAccum::default();
        a.add(&Point::Histogram(h));
        let f = a.features(10.0, None);
        use crate::model::window::metric_feature::*;
        assert_eq!(f[COUNT], 11.0);
        assert_eq!(f[MAX], 16.0);
        assert!(f[P95] > 8.0 && f[P95] <= 16.0, "{}", f[P95]);
        // Hostile scales and offsets stay finite.
        let wild = ExponentialHistogramDataPoint {
            scale: i32::MIN,
            count: 1,
            positive: Some(ExpBuckets {
                offset: i32::MAX,
                bucket_counts: vec![1],
            }),
            ..Default::default()
        };
        let Point::Histogram(h) = s.exponential(2, &wild, DELTA) else {
            panic!("a histogram delta")
        };
        assert!(h.buckets.iter().all(|(b, _)| !b.is_nan()));
    }

    #[test]
    fn cumulative_streams_are_bounded() {
        let mut s = Streams::new(100);
        for id in 0..1000 {
            s.sum(id, &num(1.0, S, 2 * S), CUMULATIVE, true);
        }
        assert!(s.len() <= 100);
        assert!(s.evicted >= 900);
    }

    #[test]
    fn selection_by_patterns() {
        let cfg = MetricsConfig {
            exclude: vec!["jvm.memory.used".into()],
            ..Default::default()
        };
        assert!(cfg.selects("process.runtime.jvm.memory.usage"));
        assert!(cfg.selects("http.server.request.duration"));
        assert!(cfg.selects("k8s.pod.cpu.utilization"));
        assert!(!cfg.selects("jvm.memory.used"));
        assert!(!cfg.selects("my.business.metric"));
    }
}
