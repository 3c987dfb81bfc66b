//! Window records: what the `window` processor produces and the `iforest` processor scores, and
//! the document shape they are written in (the output contract in `ARCHITECTURE.md`).

use serde_json::{json, Map, Value};
use std::fmt;
use std::sync::Arc;

use super::time::{parse_rfc3339_ns, rfc3339};

/// The ten features, by their contract names, in this order.
pub const FEATURE_NAMES: [&str; 10] = [
    "request_count",
    "error_rate",
    "client_error_rate",
    "latency_mean_ms",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "latency_stddev_ms",
    "throughput_change",
];

pub const N_FEATURES: usize = FEATURE_NAMES.len();

/// The ten features of a log series (`signal: logs`), by their contract names, in this order.
pub const LOG_FEATURE_NAMES: [&str; N_FEATURES] = [
    "log_count",
    "error_log_rate",
    "warning_log_rate",
    "error_log_count",
    "warning_log_count",
    "new_template_count",
    "new_error_template_count",
    "template_count",
    "top_error_template_count",
    "log_count_change",
];

/// Positions in `LOG_FEATURE_NAMES`.
pub mod log_feature {
    pub const LOG_COUNT: usize = 0;
    pub const ERROR_RATE: usize = 1;
    pub const WARNING_RATE: usize = 2;
    pub const ERROR_COUNT: usize = 3;
    pub const WARNING_COUNT: usize = 4;
    pub const NEW_TEMPLATES: usize = 5;
    pub const NEW_ERROR_TEMPLATES: usize = 6;
    pub const TEMPLATES: usize = 7;
    pub const TOP_ERROR_TEMPLATE: usize = 8;
    pub const LOG_COUNT_CHANGE: usize = 9;
}

/// The ten features of a metric series (`signal: metrics`: one selected metric of a service),
/// by their contract names, in this order.
pub const METRIC_FEATURE_NAMES: [&str; N_FEATURES] = [
    "metric_value",
    "metric_min",
    "metric_max",
    "metric_stddev",
    "metric_p50",
    "metric_p95",
    "metric_p99",
    "metric_count",
    "metric_points",
    "metric_value_change",
];

/// Positions in `METRIC_FEATURE_NAMES`.
pub mod metric_feature {
    /// A gauge's mean, a monotonic sum's rate per second, a histogram's mean observation.
    pub const VALUE: usize = 0;
    pub const MIN: usize = 1;
    pub const MAX: usize = 2;
    pub const STDDEV: usize = 3;
    /// Histograms only, from their buckets.
    pub const P50: usize = 4;
    pub const P95: usize = 5;
    pub const P99: usize = 6;
    /// A histogram's observations in the window.
    pub const COUNT: usize = 7;
    /// Data points received for the window.
    pub const POINTS: usize = 8;
    pub const VALUE_CHANGE: usize = 9;
}

/// The ten features of a network series (`signal: network`: the calls of one caller → callee
/// edge whose callee's own span was seen, each call's time beyond that span), by their
/// contract names, in the layout of the span features (`feature::*`), so that they are judged
/// as a span series' are.
pub const NETWORK_FEATURE_NAMES: [&str; N_FEATURES] = [
    "joined_call_count",
    "transport_error_rate",
    "transport_client_error_rate",
    "network_mean_ms",
    "network_p50_ms",
    "network_p95_ms",
    "network_p99_ms",
    "network_max_ms",
    "network_stddev_ms",
    "joined_call_count_change",
];

/// The label that names a metric series' metric (first in its key's labels).
pub const METRIC_LABEL: &str = "metric.name";

/// What a series' windows count: a service's (or edge's) requests, from spans, a service's
/// log records, one of a service's metrics, or an edge's time between caller and callee.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    #[default]
    Spans,
    Logs,
    Metrics,
    /// The calls of an edge joined with their callee's own span (`NETWORK_FEATURE_NAMES`).
    Network,
}

impl Signal {
    /// Every signal, in the order of their documents' sections.
    pub const ALL: [Signal; 4] = [
        Signal::Spans,
        Signal::Logs,
        Signal::Metrics,
        Signal::Network,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Spans => "spans",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
            Signal::Network => "network",
        }
    }

    pub fn parse(s: &str) -> Option<Signal> {
        match s {
            "spans" => Some(Signal::Spans),
            "logs" => Some(Signal::Logs),
            "metrics" => Some(Signal::Metrics),
            "network" => Some(Signal::Network),
            _ => None,
        }
    }

    /// The names of its ten features.
    pub fn feature_names(self) -> &'static [&'static str; N_FEATURES] {
        match self {
            Signal::Spans => &FEATURE_NAMES,
            Signal::Logs => &LOG_FEATURE_NAMES,
            Signal::Metrics => &METRIC_FEATURE_NAMES,
            Signal::Network => &NETWORK_FEATURE_NAMES,
        }
    }
}

/// A log level, as far as detection cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// TRACE, DEBUG, INFO, or no level at all.
    #[default]
    Other,
    Warning,
    /// ERROR or FATAL.
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Other => "other",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
        }
    }
}

/// One log template's share of a log window (the most frequent ones are kept with the record,
/// to quote in explanations).
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateCount {
    pub template: Arc<str>,
    pub count: u64,
    /// The highest level among its records in the window.
    pub level: LogLevel,
    /// First seen in this window.
    pub new: bool,
    /// Set on a usual template that fewer of the window's traces wrote than its usual share
    /// (see `TemplatePresence`): the `iforest` processor's finding, quoted in explanations.
    pub missing: Option<Missing>,
}

/// A usual template's shortfall in one window: how many of the window's traces wrote it, how
/// many would have at its usual share, out of how many.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Missing {
    pub traces: u64,
    pub expected: f64,
    pub of: u64,
}

/// How a log window's events went along its code paths: of the traces that took its known
/// ordinary paths (wrote a line below warning level of a template not new in the window; a
/// record without a trace context counts as a trace of its own), how many wrote each template
/// (at most `MAX_PRESENCE_KEPT`, most traces first). Errors and new lines are left out of the
/// traces so that a burst of them does not thin the share of the usual ones. Empty when a
/// count was cut (more than `MAX_TRACES_COUNTED` traces), and for spans and metrics. Kept with
/// the record for the `iforest` processor; not in documents.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Presence {
    pub traces: u64,
    pub templates: Vec<TemplatePresence>,
}

/// How many of a log window's traces wrote one template (a record without a trace context
/// counts as a trace of its own), and its records: what the share of events taking one code
/// path is judged by. Kept with the record for the `iforest` processor; not in documents.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplatePresence {
    /// The template's id in the window processor's miner (stable through merges, not across
    /// restarts or instances).
    pub id: u64,
    pub text: Arc<str>,
    pub traces: u32,
    /// Its records in the window.
    pub records: u32,
    /// The highest level among them.
    pub level: LogLevel,
}

pub mod feature {
    pub const REQUEST_COUNT: usize = 0;
    pub const ERROR_RATE: usize = 1;
    pub const CLIENT_ERROR_RATE: usize = 2;
    pub const LATENCY_MEAN: usize = 3;
    pub const LATENCY_P50: usize = 4;
    pub const LATENCY_P95: usize = 5;
    pub const LATENCY_P99: usize = 6;
    pub const LATENCY_MAX: usize = 7;
    pub const LATENCY_STDDEV: usize = 8;
    pub const THROUGHPUT_CHANGE: usize = 9;
}

/// What a record describes: a service's own requests, or one caller's view of a dependency
/// (`target`), optionally split by extra attributes (`labels`, from `group_by`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub service: Arc<str>,
    pub target: Option<Arc<str>>,
    pub labels: Vec<(Arc<str>, Arc<str>)>,
    pub signal: Signal,
}

impl SeriesKey {
    pub fn service(name: &str) -> Self {
        Self {
            service: name.into(),
            target: None,
            labels: Vec::new(),
            signal: Signal::Spans,
        }
    }

    /// A service's log records.
    pub fn logs(name: &str) -> Self {
        Self::logs_of(name.into())
    }

    /// A service's log records, its name shared.
    pub fn logs_of(service: Arc<str>) -> Self {
        Self {
            service,
            target: None,
            labels: Vec::new(),
            signal: Signal::Logs,
        }
    }

    /// One metric of a service (`labels` start with `metric.name`).
    pub fn metric(service: &str, metric: &str) -> Self {
        Self {
            signal: Signal::Metrics,
            labels: vec![(METRIC_LABEL.into(), metric.into())],
            ..Self::service(service)
        }
    }

    /// The metric a metric series follows.
    pub fn metric_name(&self) -> Option<&str> {
        match (self.signal, self.labels.first()) {
            (Signal::Metrics, Some((k, v))) if &**k == METRIC_LABEL => Some(v),
            _ => None,
        }
    }

    /// The time between `caller` and `target` beyond the callee's own spans.
    pub fn network(caller: &str, target: &str) -> Self {
        Self {
            signal: Signal::Network,
            ..Self::edge(caller, target)
        }
    }

    /// The callers' view of a dependency: `caller → target`.
    pub fn edge(caller: &str, target: &str) -> Self {
        Self {
            service: caller.into(),
            target: Some(target.into()),
            labels: Vec::new(),
            signal: Signal::Spans,
        }
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.service)?;
        if let Some(t) = &self.target {
            write!(f, " → {t}")?;
        }
        let mut labels = self.labels.iter();
        if let Some(m) = self.metric_name() {
            labels.next();
            write!(f, " ({m})")?;
        }
        for (k, v) in labels {
            write!(f, " [{k}={v}]")?;
        }
        match self.signal {
            Signal::Logs => f.write_str(" (logs)")?,
            Signal::Network => f.write_str(" (network)")?,
            _ => {}
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Minor,
    Major,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }
}

/// One feature that made a window anomalous.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    pub feature: &'static str,
    pub actual: f64,
    /// Robust centre (median) of the series' recent normal windows.
    pub typical: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub score: f64,
    pub threshold: f64,
    pub is_anomaly: bool,
    pub severity: Option<Severity>,
    pub warming_up: bool,
    pub contributions: Vec<Contribution>,
    pub message: String,
    /// The incident this anomalous window belongs to (set by the `incidents` processor).
    pub incident: Option<Arc<str>>,
    /// An anomaly in a time range when anomalies are expected (see `feedback`): recorded, but
    /// it opens no incident and sends no alert. `anomaly.expected: true` in documents.
    pub expected: bool,
}

/// One series over one tumbling window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRecord {
    pub series: Arc<SeriesKey>,
    /// Window start, Unix nanoseconds (a multiple of the interval).
    pub start_ns: u64,
    pub interval_ns: u64,
    pub features: [f64; N_FEATURES],
    /// Set by the `iforest` processor.
    pub anomaly: Option<Anomaly>,
    /// Some of the window's spans were skipped (detection shed load so forwarding could go
    /// on): its counts are low bounds, not a traffic drop. `window.partial: true` in documents.
    pub partial: bool,
    /// A log window's most frequent templates (at most `MAX_TEMPLATES_KEPT`, new and error
    /// ones first); empty for spans.
    pub templates: Vec<TemplateCount>,
    /// A log window's distinct traces (a record without a trace context counts as one of its
    /// own; counted up to `MAX_TRACES_COUNTED`): how many independent events its lines came
    /// from. 0 for spans and metrics.
    pub traces: u64,
    /// A span window's traces worth opening: its failing spans' and its slowest spans' (at
    /// most `MAX_EXAMPLES` of each, failing first, then slowest first). Written to documents
    /// only for anomalies (`anomaly.examples`).
    pub examples: Vec<TraceExample>,
    /// A log window's templates with the number of its traces that wrote each: what the
    /// shares of its code paths are judged by (see `Presence`).
    pub presence: Presence,
}

/// One trace of a window, with why it was kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceExample {
    pub trace_id: [u8; 16],
    pub duration_ms: f64,
    pub error: bool,
}

/// The failing and the slowest spans a window keeps the traces of, each.
pub const MAX_EXAMPLES: usize = 3;

impl TraceExample {
    pub fn trace_id_hex(&self) -> String {
        self.trace_id.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn to_json(self) -> Value {
        json!({
            "trace_id": self.trace_id_hex(),
            "duration_ms": round(self.duration_ms, 3),
            "error": self.error,
        })
    }

    /// `anomaly.examples` of a window document.
    pub fn from_document(doc: &Value) -> Vec<TraceExample> {
        let Some(list) = doc["anomaly"]["examples"].as_array() else {
            return Vec::new();
        };
        list.iter()
            .filter_map(|e| {
                let hex = e["trace_id"].as_str()?;
                let mut trace_id = [0u8; 16];
                if hex.len() != 32 {
                    return None;
                }
                for (i, b) in trace_id.iter_mut().enumerate() {
                    *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
                }
                Some(TraceExample {
                    trace_id,
                    duration_ms: e["duration_ms"].as_f64().unwrap_or(0.0),
                    error: e["error"].as_bool().unwrap_or(false),
                })
            })
            .take(2 * MAX_EXAMPLES)
            .collect()
    }
}

/// The distinct traces a log window counts exactly; past it, it says at least this many
/// (enough to judge the count's noise: a window of more events is no burstier for it).
pub const MAX_TRACES_COUNTED: u64 = 4096;

/// Templates kept with a log window.
pub const MAX_TEMPLATES_KEPT: usize = 5;

/// Templates whose presence is kept with a log window (the most frequent: a rarer one could
/// not be missed significantly).
pub const MAX_PRESENCE_KEPT: usize = 64;

impl WindowRecord {
    /// A record of `series` for the window at `start_ns`, with these features, not scored
    /// (no anomaly, templates, traces or examples).
    pub fn new(
        series: Arc<SeriesKey>,
        start_ns: u64,
        interval_ns: u64,
        features: [f64; N_FEATURES],
    ) -> Self {
        Self {
            series,
            start_ns,
            interval_ns,
            features,
            anomaly: None,
            partial: false,
            templates: Vec::new(),
            traces: 0,
            examples: Vec::new(),
            presence: Default::default(),
        }
    }

    /// How much of its window the record saw: its requests, log records or metric points.
    pub fn seen(&self) -> f64 {
        match self.series.signal {
            Signal::Spans | Signal::Network => self.features[feature::REQUEST_COUNT],
            Signal::Logs => self.features[log_feature::LOG_COUNT],
            Signal::Metrics => self.features[metric_feature::POINTS],
        }
    }

    pub fn end_ns(&self) -> u64 {
        self.start_ns + self.interval_ns
    }

    pub fn feature_names(&self) -> &'static [&'static str; N_FEATURES] {
        self.series.signal.feature_names()
    }

    pub fn feature(&self, name: &str) -> Option<f64> {
        self.feature_names()
            .iter()
            .position(|n| *n == name)
            .map(|i| self.features[i])
    }

    pub fn is_anomaly(&self) -> bool {
        self.anomaly.as_ref().is_some_and(|a| a.is_anomaly)
    }

    /// An anomaly that alerts: not in a range when anomalies are expected.
    pub fn alerts(&self) -> bool {
        self.anomaly
            .as_ref()
            .is_some_and(|a| a.is_anomaly && !a.expected)
    }

    /// The document for the windows index (and the `file` exporter).
    pub fn to_document(&self) -> Value {
        self.document(Digits::Shown)
    }

    /// The same document with every number as computed (not rounded for reading): what one
    /// otelwatch sends another (`otlp::records`), so the receiver judges exactly what the
    /// sender scored.
    pub fn to_exact_document(&self) -> Value {
        self.document(Digits::Exact)
    }

    fn document(&self, digits: Digits) -> Value {
        let round = |v: f64, d: i32| match digits {
            Digits::Shown => round(v, d),
            Digits::Exact if v.is_finite() => v,
            Digits::Exact => 0.0,
        };
        let mut doc = json!({
            "@timestamp": rfc3339(self.end_ns()),
            "event": { "kind": "metric", "dataset": "otelwatch.window" },
            "service": { "name": &*self.series.service },
            "window": {
                "start": rfc3339(self.start_ns),
                "end": rfc3339(self.end_ns()),
                "interval_s": self.interval_ns as f64 / 1e9,
            },
            "features": self.features_json(digits),
        });
        if self.partial {
            doc["window"]["partial"] = json!(true);
        }
        if self.series.signal != Signal::Spans {
            doc["window"]["signal"] = json!(self.series.signal.as_str());
        }
        if self.series.signal == Signal::Logs {
            doc["logs"] = json!({ "traces": self.traces });
        }
        if !self.templates.is_empty() {
            doc["logs"]["templates"] = self
                .templates
                .iter()
                .map(|t| {
                    let mut j = json!({
                        "template": &*t.template,
                        "count": t.count,
                        "level": t.level.as_str(),
                        "new": t.new,
                    });
                    if let Some(m) = t.missing {
                        j["missing"] = json!({
                            "traces": m.traces,
                            "expected": round(m.expected, 2),
                            "of": m.of,
                        });
                    }
                    j
                })
                .collect();
        }
        if let Some(t) = &self.series.target {
            doc["service"]["target"] = json!({ "name": &**t });
        }
        let mut labels = &self.series.labels[..];
        if let Some(m) = self.series.metric_name() {
            doc["metric"] = json!({ "name": m });
            labels = &labels[1..];
        }
        if !labels.is_empty() {
            let labels: Map<String, Value> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect();
            doc["labels"] = Value::Object(labels);
        }
        if let Some(a) = &self.anomaly {
            let mut an = json!({
                "score": round(a.score, 4),
                "threshold": round(a.threshold, 4),
                "is_anomaly": a.is_anomaly,
                "warming_up": a.warming_up,
                "contributions": a.contributions.iter().map(|c| json!({
                    "feature": c.feature, "actual": round(c.actual, 3), "typical": round(c.typical, 3)
                })).collect::<Vec<_>>(),
            });
            if let Some(s) = a.severity {
                an["severity"] = json!(s.as_str());
            }
            if !a.message.is_empty() {
                an["message"] = json!(a.message);
            }
            if a.expected {
                an["expected"] = json!(true);
            }
            if a.is_anomaly && !self.examples.is_empty() {
                an["examples"] = self.examples.iter().map(|e| e.to_json()).collect();
            }
            doc["anomaly"] = an;
            if let Some(id) = &a.incident {
                doc["incident"] = json!({ "id": &**id });
            }
        }
        doc
    }

    /// The document for the anomalies index: the same, as an alert.
    pub fn to_alert_document(&self) -> Value {
        let mut doc = self.to_document();
        doc["event"]["kind"] = json!("alert");
        if let Some(s) = self.anomaly.as_ref().and_then(|a| a.severity) {
            doc["event"]["severity"] = json!(match s {
                Severity::Minor => 3,
                Severity::Major => 5,
                Severity::Critical => 7,
            });
            doc["event"]["severity_name"] = json!(s.as_str());
        }
        doc
    }

    fn features_json(&self, digits: Digits) -> Value {
        let m: Map<String, Value> = self
            .feature_names()
            .iter()
            .zip(self.features.iter())
            .map(|(n, v)| {
                let v = match digits {
                    Digits::Shown => round(*v, 4),
                    Digits::Exact if v.is_finite() => *v,
                    Digits::Exact => 0.0,
                };
                (n.to_string(), json!(v))
            })
            .collect();
        Value::Object(m)
    }
}

/// How a document writes its numbers.
#[derive(Clone, Copy)]
enum Digits {
    /// Rounded for reading (features to 4 decimals, contributions to 3, scores to 4).
    Shown,
    Exact,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        [Severity::Minor, Severity::Major, Severity::Critical]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

impl Anomaly {
    /// The anomaly part of a window document (`anomaly`): the verdict, the severity and the
    /// explanation's contributions (those that name one of the signal's features).
    pub fn from_document(doc: &Value) -> Option<Anomaly> {
        let a = doc.get("anomaly")?;
        let names = doc["window"]["signal"]
            .as_str()
            .and_then(Signal::parse)
            .unwrap_or_default()
            .feature_names();
        let contributions = a["contributions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let name = c["feature"].as_str()?;
                Some(Contribution {
                    feature: names.iter().find(|n| **n == name)?,
                    actual: c["actual"].as_f64()?,
                    typical: c["typical"].as_f64()?,
                })
            })
            .collect();
        Some(Anomaly {
            score: a["score"].as_f64()?,
            threshold: a["threshold"].as_f64().unwrap_or(0.0),
            is_anomaly: a["is_anomaly"].as_bool().unwrap_or(false),
            severity: a["severity"].as_str().and_then(Severity::parse),
            warming_up: a["warming_up"].as_bool().unwrap_or(false),
            contributions,
            message: a["message"].as_str().unwrap_or("").to_string(),
            incident: doc["incident"]["id"].as_str().map(Into::into),
            expected: a["expected"].as_bool().unwrap_or(false),
        })
    }
}

impl WindowRecord {
    /// Reads a window document back (as written by `to_document`); `None` if it is not one.
    pub fn from_document(doc: &Value) -> Option<WindowRecord> {
        let service = doc["service"]["name"].as_str()?;
        let start_ns = parse_rfc3339_ns(doc["window"]["start"].as_str()?)?;
        let interval_ns = (doc["window"]["interval_s"].as_f64()? * 1e9).round() as u64;
        let signal = match doc["window"]["signal"].as_str() {
            Some(s) => Signal::parse(s)?,
            None => Signal::Spans,
        };
        let mut features = [0.0; N_FEATURES];
        for (i, n) in signal.feature_names().iter().enumerate() {
            features[i] = doc["features"][n].as_f64().unwrap_or(0.0);
        }
        let level = |s: &str| match s {
            "error" => LogLevel::Error,
            "warning" => LogLevel::Warning,
            _ => LogLevel::Other,
        };
        let templates = doc["logs"]["templates"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| {
                        Some(TemplateCount {
                            template: t["template"].as_str()?.into(),
                            count: t["count"].as_u64().unwrap_or(0),
                            level: level(t["level"].as_str().unwrap_or("")),
                            new: t["new"].as_bool().unwrap_or(false),
                            missing: t["missing"]["of"].as_u64().map(|of| Missing {
                                traces: t["missing"]["traces"].as_u64().unwrap_or(0),
                                expected: t["missing"]["expected"].as_f64().unwrap_or(0.0),
                                of,
                            }),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut labels: Vec<(Arc<str>, Arc<str>)> = doc["metric"]["name"]
            .as_str()
            .filter(|_| signal == Signal::Metrics)
            .map(|m| (METRIC_LABEL.into(), m.into()))
            .into_iter()
            .collect();
        labels.extend(
            doc["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str().into(), v.as_str().unwrap_or("").into())),
        );
        Some(WindowRecord {
            series: Arc::new(SeriesKey {
                service: service.into(),
                target: doc["service"]["target"]["name"].as_str().map(Into::into),
                labels,
                signal,
            }),
            start_ns,
            interval_ns,
            features,
            anomaly: None,
            partial: doc["window"]["partial"].as_bool().unwrap_or(false),
            templates,
            traces: doc["logs"]["traces"].as_u64().unwrap_or(0),
            examples: TraceExample::from_document(doc),
            presence: Default::default(),
        })
    }
}

fn round(v: f64, digits: i32) -> f64 {
    if !v.is_finite() {
        return 0.0;
    }
    let p = 10f64.powi(digits);
    (v * p).round() / p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_follows_the_contract() {
        let mut features = [0.0; N_FEATURES];
        features[feature::REQUEST_COUNT] = 412.0;
        features[feature::LATENCY_P95] = 812.0;
        let rec = WindowRecord {
            series: Arc::new(SeriesKey {
                service: "frontend".into(),
                target: Some("checkout".into()),
                labels: vec![],
                signal: Default::default(),
            }),
            start_ns: 1_767_571_200_000_000_000,
            interval_ns: 10_000_000_000,
            features,
            anomaly: Some(Anomaly {
                score: 0.81,
                threshold: 0.62,
                is_anomaly: true,
                severity: Some(Severity::Major),
                warming_up: false,
                contributions: vec![Contribution {
                    feature: "latency_p95_ms",
                    actual: 812.0,
                    typical: 95.0,
                }],
                message: "frontend → checkout: latency_p95_ms 812 (typical 95)".into(),
                incident: Some("3f9c0a7d51e2b864".into()),
                expected: false,
            }),
            partial: false,
            templates: Vec::new(),
            traces: 0,
            examples: vec![TraceExample {
                trace_id: [0xab; 16],
                duration_ms: 812.25,
                error: true,
            }],
            presence: Default::default(),
        };
        let doc = rec.to_document();
        assert_eq!(doc["@timestamp"], "2026-01-05T00:00:10Z");
        assert_eq!(doc["event"]["kind"], "metric");
        assert_eq!(doc["event"]["dataset"], "otelwatch.window");
        assert_eq!(doc["service"]["name"], "frontend");
        assert_eq!(doc["service"]["target"]["name"], "checkout");
        assert_eq!(doc["window"]["start"], "2026-01-05T00:00:00Z");
        assert_eq!(doc["window"]["interval_s"], 10.0);
        assert_eq!(doc["features"]["request_count"], 412.0);
        assert_eq!(doc["features"].as_object().unwrap().len(), 10);
        assert_eq!(doc["anomaly"]["severity"], "major");
        assert_eq!(doc["incident"]["id"], "3f9c0a7d51e2b864");
        assert_eq!(
            doc["anomaly"]["contributions"][0]["feature"],
            "latency_p95_ms"
        );
        let back = WindowRecord::from_document(&doc).unwrap();
        assert_eq!(back.series, rec.series);
        assert_eq!(
            (back.start_ns, back.interval_ns),
            (rec.start_ns, rec.interval_ns)
        );
        assert_eq!(back.features[feature::LATENCY_P95], 812.0);
        assert_eq!(doc["anomaly"]["examples"][0]["trace_id"], "ab".repeat(16));
        assert_eq!(back.examples, rec.examples);
        let alert = rec.to_alert_document();
        assert_eq!(alert["event"]["kind"], "alert");
        assert_eq!(alert["event"]["severity"], 5);
    }
}
