//! Processor `window`: spans → one record per service (and per dependency edge) per tumbling
//! window, with the ten features; logs → one record per service per window with the ten log
//! features (counts by level, and log templates mined online: `templates.rs`).
//!
//! ```yaml
//! processors:
//!   window:
//!     interval: 10s            # windows are [k·interval, (k+1)·interval) since the Unix epoch
//!     allowed_lateness: 5s     # how long a window waits for late spans
//!     service_ttl: 1h          # series not seen for this long get no more (empty) windows
//!     max_services: 10000        # services + edges + groups held at once
//!     edges: true              # the callers' view of each dependency (CLIENT/PRODUCER spans)
//!     network: true            # per edge, each call's time beyond the span that served it
//!     group_by: [http.route]   # extra series per value of these attributes
//!     max_log_templates: 5000  # log templates held across all services (least recently seen go)
//!     metrics:                 # in a metrics pipeline: which metrics make series
//!       include: [http.server.request.duration, "process.runtime.*", ...]   # name patterns
//!       exclude: []
//!       attribute: ""          # e.g. k8s.pod.name: a series per service, metric and value
//!       max_streams: 100000    # cumulative streams remembered for their differences
//! ```
//!
//! With `network` (and `edges`), each CLIENT span is joined with the SERVER span it is the
//! parent of (same trace; the two arrive in any order): the call's duration less the served
//! span's is the time spent between the two services, and each edge whose calls are joined
//! gets a network series (`Signal::Network`, `joins.rs`) in the call's window. Calls to
//! services that send no spans (a database) join nothing and make no such series.
//!
//! In a metrics pipeline, each selected metric of a service is a series (`metrics.rs` says how
//! gauges, sums and histograms become its ten features); a point's event time is its
//! `time_unix_nano`.
//!
//! In a logs pipeline, a record's event time is its `time_unix_nano` (or, unset, its
//! `observed_time_unix_nano`); its level comes from `severity_number`, or `severity_text` when
//! that is unset (`logs.rs`); its message (a string body) is matched to a template. A template
//! first seen after a service's first `VOCABULARY_WINDOWS` log windows counts as new.
//!
//! Event time is the span's **end** time. The watermark is the largest end time seen minus the
//! lateness; while no data arrives it also moves forward with the wall clock (relative to when
//! data last arrived), so a replay at full speed and a live stream both close windows, and a
//! service that goes silent still gets its empty windows. Spans for windows already closed are
//! counted (`otelwatch_window_late_spans_total`) and dropped, and the services they came from
//! are named in a warning about once a minute (a client whose clock lags). A span ending ahead of the wall
//! clock (a client whose clock runs fast) is kept in its window but moves the watermark only
//! as far as the clock plus `CLOCK_SKEW`, so one such span cannot close every open window and
//! make the real spans after it late (`otelwatch_window_spans_ahead_total` counts them); past
//! `MAX_FUTURE` a span is refused (`otelwatch_window_future_spans_total`).

use super::Processor;
use crate::config::decode::decode_section;
use crate::config::duration::ConfigDuration;
use crate::config::error::ConfigError;
use crate::model::time::now_ns;
use crate::model::window::{
    feature, log_feature, metric_feature, LogLevel, Presence, SeriesKey, Signal, TemplateCount,
    TemplatePresence, TraceExample, WindowRecord, MAX_EXAMPLES, MAX_PRESENCE_KEPT,
    MAX_TEMPLATES_KEPT, MAX_TRACES_COUNTED, N_FEATURES,
};
use crate::pipeline::{Batch, DataKind, Payload};
use crate::telemetry::{Counter, Telemetry};
use latency::{Latencies, Scale};
use metrics::{MetricAccum, MetricsConfig, Streams};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use templates::{DrainSettings, Matched, TemplateId, TemplateMiner};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    pub interval: ConfigDuration,
    pub allowed_lateness: ConfigDuration,
    pub service_ttl: ConfigDuration,
    pub max_services: usize,
    pub edges: bool,
    pub network: bool,
    pub group_by: Vec<String>,
    pub max_log_templates: usize,
    pub metrics: MetricsConfig,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            interval: ConfigDuration::from_secs(10),
            allowed_lateness: ConfigDuration::from_secs(5),
            service_ttl: ConfigDuration::from_secs(3600),
            max_services: 10_000,
            edges: true,
            network: true,
            group_by: Vec::new(),
            max_log_templates: 5000,
            metrics: MetricsConfig::default(),
        }
    }
}

impl crate::processors::ProcessorType for WindowConfig {
    const NAME: &'static str = "window";

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if cfg.interval.get() < Duration::from_millis(10) {
            errors.push(ConfigError::new(
                format!("{path}.interval"),
                "must be at least 10ms",
            ));
        }
        if cfg.max_log_templates == 0 {
            errors.push(ConfigError::new(
                format!("{path}.max_log_templates"),
                "must be at least 1",
            ));
        }
        if cfg.metrics.max_streams == 0 {
            errors.push(ConfigError::new(
                format!("{path}.metrics.max_streams"),
                "must be at least 1",
            ));
        }
        for (i, p) in cfg.metrics.include.iter().enumerate() {
            if p.trim().is_empty() {
                errors.push(ConfigError::new(
                    format!("{path}.metrics.include[{i}]"),
                    "empty metric name pattern",
                ));
            }
        }
        if cfg.max_services == 0 {
            errors.push(ConfigError::new(
                format!("{path}.max_services"),
                "must be at least 1",
            ));
        }
        if cfg.service_ttl.get() < cfg.interval.get() {
            errors.push(ConfigError::new(
                format!("{path}.service_ttl"),
                "must not be shorter than interval",
            ));
        }
        for (i, k) in cfg.group_by.iter().enumerate() {
            if k.trim().is_empty() {
                errors.push(ConfigError::new(
                    format!("{path}.group_by[{i}]"),
                    "empty attribute name",
                ));
            }
        }
        crate::config::decode::validated(cfg, errors)
    }

    fn output_kind(&self, input: DataKind) -> Result<DataKind, &'static str> {
        match input {
            DataKind::Traces | DataKind::Logs | DataKind::Metrics => Ok(DataKind::Windows),
            _ => Err("traces, metrics or logs"),
        }
    }

    fn build(&self, ctx: &crate::processors::ProcessorContext<'_>) -> Box<dyn Processor> {
        let mut p = WindowProcessor::new(self, &ctx.instance(), ctx.telemetry);
        p.skipped = ctx.skipped.clone();
        Box::new(p)
    }
}

/// Spans ending further than this beyond the wall clock are refused (clock skew would otherwise
/// close every open window at once).
const MAX_FUTURE: Duration = Duration::from_secs(300);
/// How far ahead of the wall clock the watermark may go: the clock skew tolerated between
/// the services' hosts and this one.
const CLOCK_SKEW: Duration = Duration::from_secs(2);

/// Running sums for one series in one window.
struct Accum {
    count: u64,
    errors: u64,
    client_errors: u64,
    sum_ms: f64,
    sum_sq_ms: f64,
    max_ms: f64,
    latencies: Latencies,
    /// The failing and the slowest spans' traces (at most `MAX_EXAMPLES` of each).
    failing: Vec<TraceExample>,
    slowest: Vec<TraceExample>,
}

/// Keeps `e` among the `MAX_EXAMPLES` longest of `kept`, one per trace.
fn keep_longest(kept: &mut Vec<TraceExample>, e: TraceExample) {
    if let Some(k) = kept.iter_mut().find(|k| k.trace_id == e.trace_id) {
        if e.duration_ms > k.duration_ms {
            *k = e;
        }
        return;
    }
    if kept.len() < MAX_EXAMPLES {
        kept.push(e);
        return;
    }
    if let Some(shortest) = kept
        .iter_mut()
        .min_by(|a, b| a.duration_ms.total_cmp(&b.duration_ms))
    {
        if e.duration_ms > shortest.duration_ms {
            *shortest = e;
        }
    }
}

impl Accum {
    fn new(latencies: Latencies) -> Self {
        Self {
            count: 0,
            errors: 0,
            client_errors: 0,
            sum_ms: 0.0,
            sum_sq_ms: 0.0,
            max_ms: 0.0,
            latencies,
            failing: Vec::new(),
            slowest: Vec::new(),
        }
    }

    /// Notes a span's trace as an example if it failed or is among the slowest so far.
    fn example(&mut self, trace_id: [u8; 16], ms: f64, error: bool) {
        if trace_id == [0; 16] {
            return;
        }
        let e = TraceExample {
            trace_id,
            duration_ms: ms,
            error,
        };
        if error {
            keep_longest(&mut self.failing, e);
        }
        let shortest = self
            .slowest
            .iter()
            .map(|k| k.duration_ms)
            .fold(f64::INFINITY, f64::min);
        if self.slowest.len() < MAX_EXAMPLES || ms > shortest {
            keep_longest(&mut self.slowest, e);
        }
    }

    /// The examples, failing first, then the slowest not already named, each longest first.
    fn examples(&mut self) -> Vec<TraceExample> {
        let by_duration =
            |a: &TraceExample, b: &TraceExample| b.duration_ms.total_cmp(&a.duration_ms);
        let mut out = std::mem::take(&mut self.failing);
        out.sort_by(by_duration);
        let mut slowest = std::mem::take(&mut self.slowest);
        slowest.sort_by(by_duration);
        for e in slowest {
            if !out.iter().any(|k| k.trace_id == e.trace_id) {
                out.push(e);
            }
        }
        out
    }

    fn add(&mut self, ms: f64, error: bool, client_error: bool) {
        self.count += 1;
        self.errors += error as u64;
        self.client_errors += client_error as u64;
        self.sum_ms += ms;
        self.sum_sq_ms += ms * ms;
        self.max_ms = self.max_ms.max(ms);
        self.latencies.record(ms);
    }

    fn features(&mut self, previous_count: Option<u64>, scale: &Scale) -> [f64; N_FEATURES] {
        let mut f = [0.0; N_FEATURES];
        let n = self.count as f64;
        f[feature::REQUEST_COUNT] = n;
        if self.count > 0 {
            let mean = self.sum_ms / n;
            let var = (self.sum_sq_ms / n - mean * mean).max(0.0);
            // The middle of the histogram bucket (within 1%), never above the exact maximum.
            let [p50, p95, p99] = self.latencies.quantiles([0.50, 0.95, 0.99], scale);
            let q = |us: u64| (us as f64 / 1000.0).min(self.max_ms);
            f[feature::ERROR_RATE] = self.errors as f64 / n;
            f[feature::CLIENT_ERROR_RATE] = self.client_errors as f64 / n;
            f[feature::LATENCY_MEAN] = mean;
            f[feature::LATENCY_P50] = q(p50);
            f[feature::LATENCY_P95] = q(p95);
            f[feature::LATENCY_P99] = q(p99);
            f[feature::LATENCY_MAX] = self.max_ms;
            f[feature::LATENCY_STDDEV] = var.sqrt();
        }
        f[feature::THROUGHPUT_CHANGE] = throughput_change(self.count, previous_count);
        f
    }
}

/// One log window of one service: counts by level and per template, and the traces its
/// records came from.
#[derive(Default)]
struct LogAccum {
    count: u64,
    errors: u64,
    warnings: u64,
    /// Records, highest level and whether it is new, by template.
    templates: foldhash::HashMap<TemplateId, (u64, LogLevel, bool)>,
    /// The distinct trace ids seen (as `trace_key`s), up to `MAX_TRACES_COUNTED`.
    trace_ids: foldhash::HashSet<u64>,
    /// Records without a trace context.
    untraced: u64,
    /// The traces that took a known ordinary path (see `Presence`), and such records
    /// without a trace context.
    usual_ids: foldhash::HashSet<u64>,
    usual_untraced: u64,
    /// The distinct (template, trace) pairs seen, up to `MAX_PRESENCE_PAIRS`, and the records
    /// without a trace context by template: how many traces wrote each template.
    pairs: foldhash::HashSet<(TemplateId, u64)>,
    untraced_by: foldhash::HashMap<TemplateId, u32>,
    /// A count was cut (too many traces or pairs): presence is not reported.
    presence_cut: bool,
}

/// (template, trace) pairs a log window counts exactly.
const MAX_PRESENCE_PAIRS: usize = 4 * MAX_TRACES_COUNTED as usize;

impl LogAccum {
    /// Notes the trace a record of `template` belongs to (`None`: no trace context), and
    /// whether the record took a known ordinary path (`usual`: below warning level, of a
    /// template not new in the window).
    fn trace(&mut self, template: TemplateId, id: Option<u64>, usual: bool) {
        match id {
            Some(id) => {
                if (self.trace_ids.len() as u64) < MAX_TRACES_COUNTED {
                    self.trace_ids.insert(id);
                } else if !self.trace_ids.contains(&id) {
                    self.presence_cut = true;
                }
                if usual && !self.usual_ids.contains(&id) {
                    if (self.usual_ids.len() as u64) < MAX_TRACES_COUNTED {
                        self.usual_ids.insert(id);
                    } else {
                        self.presence_cut = true;
                    }
                }
                if self.pairs.len() < MAX_PRESENCE_PAIRS {
                    self.pairs.insert((template, id));
                } else if !self.pairs.contains(&(template, id)) {
                    self.presence_cut = true;
                }
            }
            None => {
                self.untraced += 1;
                self.usual_untraced += usual as u64;
                *self.untraced_by.entry(template).or_default() += 1;
            }
        }
    }

    /// How many of the window's traces wrote each template, most first (at most
    /// `MAX_PRESENCE_KEPT`); empty when a count was cut.
    fn presence(&self, miner: &TemplateMiner) -> Presence {
        if self.presence_cut {
            return Presence::default();
        }
        let mut by: foldhash::HashMap<TemplateId, u32> = self.untraced_by.clone();
        for (t, _) in &self.pairs {
            *by.entry(*t).or_default() += 1;
        }
        let mut v: Vec<(TemplateId, u32)> = by.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let templates = v
            .into_iter()
            .take(MAX_PRESENCE_KEPT)
            .filter_map(|(id, traces)| {
                Some(TemplatePresence {
                    id,
                    text: miner.get(id)?.text().into(),
                    traces,
                    records: self.templates.get(&id).map_or(0, |t| t.0 as u32),
                    level: self.templates.get(&id).map_or(LogLevel::Other, |t| t.1),
                })
            })
            .collect();
        Presence {
            traces: self.usual_ids.len() as u64 + self.usual_untraced,
            templates,
        }
    }

    /// The independent events the window's records came from: distinct traces, and each
    /// record without a trace context.
    fn traces(&self) -> u64 {
        self.trace_ids.len() as u64 + self.untraced
    }

    fn add(&mut self, level: LogLevel, template: TemplateId, new: bool) {
        self.count += 1;
        self.errors += (level == LogLevel::Error) as u64;
        self.warnings += (level == LogLevel::Warning) as u64;
        let t = self.templates.entry(template).or_insert((0, level, new));
        t.0 += 1;
        t.1 = t.1.max(level);
        t.2 |= new;
    }

    /// The features and the templates to keep with the record (new and error ones first,
    /// then the most frequent).
    fn features(
        &self,
        previous_count: Option<u64>,
        miner: &TemplateMiner,
    ) -> ([f64; N_FEATURES], Vec<TemplateCount>) {
        use log_feature::*;
        let mut f = [0.0; N_FEATURES];
        let n = self.count as f64;
        f[LOG_COUNT] = n;
        if self.count > 0 {
            f[ERROR_RATE] = self.errors as f64 / n;
            f[WARNING_RATE] = self.warnings as f64 / n;
        }
        f[ERROR_COUNT] = self.errors as f64;
        f[WARNING_COUNT] = self.warnings as f64;
        let t = self.templates.values();
        f[NEW_TEMPLATES] = t.clone().filter(|(_, _, new)| *new).count() as f64;
        f[NEW_ERROR_TEMPLATES] = t
            .clone()
            .filter(|(_, l, new)| *new && *l == LogLevel::Error)
            .count() as f64;
        f[TEMPLATES] = self.templates.len() as f64;
        f[TOP_ERROR_TEMPLATE] = t
            .filter(|(_, l, _)| *l == LogLevel::Error)
            .map(|(c, _, _)| *c)
            .max()
            .unwrap_or(0) as f64;
        f[LOG_COUNT_CHANGE] = throughput_change(self.count, previous_count);
        let mut kept: Vec<(&TemplateId, &(u64, LogLevel, bool))> = self.templates.iter().collect();
        kept.sort_by(|(a_id, a), (b_id, b)| {
            let rank =
                |(c, l, new): &(u64, LogLevel, bool)| (*new && *l == LogLevel::Error, *l, *new, *c);
            rank(b).cmp(&rank(a)).then(a_id.cmp(b_id))
        });
        let templates = kept
            .into_iter()
            .take(MAX_TEMPLATES_KEPT)
            .map(|(id, (count, level, new))| TemplateCount {
                template: miner
                    .get(*id)
                    .map_or_else(|| "(template no longer held)".into(), |t| t.text().into()),
                count: *count,
                level: *level,
                new: *new,
                missing: None,
            })
            .collect();
        (f, templates)
    }
}

/// A log record's trace id as a key (its two halves folded: a 64-bit id is the low half of
/// a 16-byte one, the high half zero); none when it has no trace context (empty or all zero,
/// as OTLP says).
fn trace_key(id: &[u8]) -> Option<u64> {
    if id.iter().all(|b| *b == 0) {
        return None;
    }
    Some(id.chunks(8).fold(0u64, |h, c| {
        let mut word = [0u8; 8];
        word[..c.len()].copy_from_slice(c);
        h.rotate_left(29) ^ u64::from_le_bytes(word)
    }))
}

/// A service's first log windows establish its vocabulary: templates first seen in them do
/// not count as new.
pub const VOCABULARY_WINDOWS: u64 = 3;

/// An open window of a series.
enum Open {
    Spans(Accum),
    Logs(LogAccum),
    Metrics(MetricAccum),
}

impl Open {
    fn count(&self) -> u64 {
        match self {
            Open::Spans(a) => a.count,
            Open::Logs(a) => a.count,
            Open::Metrics(a) => a.points,
        }
    }
}

/// This window's count over the previous window's. With no previous window the change is 1;
/// after an empty window it is the count itself (as if the previous window had one request).
pub fn throughput_change(count: u64, previous: Option<u64>) -> f64 {
    match previous {
        None => 1.0,
        Some(0) if count == 0 => 1.0,
        Some(p) => count as f64 / p.max(1) as f64,
    }
}

/// What a span offers the join of calls with the spans that served them (`joins.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinAs {
    /// A CLIENT span, by its span id.
    Call(u64),
    /// A SERVER span, by its parent's span id.
    Served(u64),
}

struct Series {
    key: Arc<SeriesKey>,
    /// Open windows by start time.
    open: BTreeMap<u64, Open>,
    /// Windows emitted so far.
    emitted: u64,
    /// The first window not yet emitted; spans for earlier windows are late.
    next_emit: u64,
    /// Latest end time seen for this series.
    last_seen_ns: u64,
    previous_count: Option<u64>,
    /// A metric series' value in its last window with one.
    previous_value: Option<f64>,
}

/// What one span or log record contributes, once classified.
struct Observation {
    key: SeriesKey,
    /// Its event time: a span's end, a log record's time.
    end_ns: u64,
    what: Observed,
}

enum Observed {
    Span {
        ms: f64,
        error: bool,
        client_error: bool,
        /// Its trace id (zeros when it has none).
        trace: [u8; 16],
        /// Set on a span's own series' observation (not its group's) when calls are joined.
        join: Option<JoinAs>,
    },
    Log {
        level: LogLevel,
        template: Matched,
        /// The record's trace id (`trace_key`); none without a trace context.
        trace: Option<u64>,
    },
    Metric(metrics::Point),
}

/// Longest service, target or label value kept in a series key (longer ones are cut at a
/// character boundary): a name is a name, and keys live as long as their series.
const MAX_NAME_BYTES: usize = 256;

/// The names of one request, each allocated once — or not at all when a series held already
/// has it (`known`): its spans' keys then share the series' own names, so a request allocates
/// no text for the services it has sent before, and comparing keys is comparing pointers.
#[derive(Default)]
struct Names<'a, 'k> {
    seen: foldhash::HashMap<&'a str, Arc<str>>,
    known: Option<&'k foldhash::HashSet<Arc<str>>>,
}

impl<'a, 'k> Names<'a, 'k> {
    fn with_known(known: &'k foldhash::HashSet<Arc<str>>) -> Self {
        Self {
            seen: Default::default(),
            known: Some(known),
        }
    }

    fn get(&mut self, name: &'a str) -> Arc<str> {
        let name = truncate(name, MAX_NAME_BYTES);
        let known = self.known;
        self.seen
            .entry(name)
            .or_insert_with(|| {
                known
                    .and_then(|k| k.get(name).cloned())
                    .unwrap_or_else(|| name.into())
            })
            .clone()
    }

    /// An attribute's text: shared when it is the request's own string.
    fn text(&mut self, text: Cow<'a, str>) -> Arc<str> {
        match text {
            Cow::Borrowed(s) => self.get(s),
            Cow::Owned(s) => truncate(&s, MAX_NAME_BYTES).into(),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub struct WindowProcessor {
    interval_ns: u64,
    lateness_ns: u64,
    ttl_ns: u64,
    max_services: usize,
    edges: bool,
    /// Calls joined with the spans that served them (with `edges` only).
    network: bool,
    joins: joins::Joins,
    joins_full: Counter,
    group_by: Vec<Arc<str>>,
    /// Looked up once per span: a fast hasher, seeded at random per process (series keys are
    /// the clients' names).
    series: foldhash::HashMap<SeriesKey, Series>,
    /// The names the series' keys hold (services, callees, label values), shared with the
    /// requests that name them again (`Names`); forgotten with the last series holding them.
    known: foldhash::HashSet<Arc<str>>,
    /// Largest end time seen, and the wall-clock instant it was last raised.
    max_event_ns: u64,
    /// No window closes before the watermark reaches this (the earliest end of a series'
    /// next window): until then a batch or a tick does not visit every series.
    next_close: u64,
    last_data: Instant,
    /// When the pipeline last called this processor (a batch or a tick).
    last_call: Instant,
    /// Latency buffers of closed windows, for the next ones.
    spare_latencies: Vec<Latencies>,
    /// The latency histograms' bucket boundaries.
    scale: Scale,
    late_spans: Counter,
    future_spans: Counter,
    ahead_spans: Counter,
    dropped_series: Counter,
    evicted_series: Counter,
    windows_out: Counter,
    warned_cap: bool,
    /// What the pipeline skipped before this processor (detection shedding load), as last seen.
    skipped: Option<Counter>,
    skipped_seen: u64,
    /// Window starts, [from, to), of windows that lost spans to skipping.
    partial: VecDeque<(u64, u64)>,
    late: LateReport,
    /// Log templates of every service (logs pipelines only).
    miner: TemplateMiner,
    templates_evicted: Counter,
    templates_evicted_seen: u64,
    /// Templates held, for the gauge.
    templates_held: Arc<std::sync::atomic::AtomicU64>,
    /// Which metrics make series (metrics pipelines only), and the previous points of
    /// cumulative streams.
    metrics: MetricsConfig,
    streams: Streams,
    streams_evicted: Counter,
    streams_evicted_seen: u64,
}

/// Services whose spans arrive after their window has closed (a clock that lags, or an
/// exporter that holds spans too long), reported by name about once a minute.
#[derive(Default)]
struct LateReport {
    /// Late spans and how far behind the most behind was, by service (at most 100 named).
    by_service: HashMap<Arc<str>, (u64, u64)>,
    last: Option<Instant>,
}

impl LateReport {
    fn note(&mut self, service: Arc<str>, behind_ns: u64) {
        if self.by_service.len() >= 100 && !self.by_service.contains_key(&service) {
            return;
        }
        let e = self.by_service.entry(service).or_default();
        e.0 += 1;
        e.1 = e.1.max(behind_ns);
    }

    fn report(&mut self) {
        if self.by_service.is_empty() || self.last.is_some_and(|l| l.elapsed() < LATE_REPORT_EVERY)
        {
            return;
        }
        self.last = Some(Instant::now());
        let mut worst: Vec<_> = self.by_service.drain().collect();
        worst.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
        let services: Vec<String> = worst
            .iter()
            .take(5)
            .map(|(s, (n, behind))| {
                format!("{s}: {n} spans, up to {:.0} s behind", *behind as f64 / 1e9)
            })
            .collect();
        tracing::warn!(
            services = %services.join("; "),
            "spans or log records arrived after their window had closed and were not counted (a lagging clock or a slow exporter at the client; otelwatch_window_late_spans_total)"
        );
    }
}

const LATE_REPORT_EVERY: Duration = Duration::from_secs(60);

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key) {
        Some(Value::StringValue(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// An attribute as text: a string as it is (borrowed), a number or a boolean written out.
fn attr_text<'a>(attrs: &'a [KeyValue], key: &str) -> Option<Cow<'a, str>> {
    match attr(attrs, key) {
        Some(Value::StringValue(s)) => Some(Cow::Borrowed(s.as_str())),
        Some(Value::IntValue(i)) => Some(Cow::Owned(i.to_string())),
        Some(Value::BoolValue(b)) => Some(Cow::Owned(b.to_string())),
        Some(Value::DoubleValue(d)) => Some(Cow::Owned(d.to_string())),
        _ => None,
    }
}

/// A latency buffer: a spare one emptied, or a new one.
fn new_latencies(spare: &mut Vec<Latencies>) -> Latencies {
    let mut l = spare.pop().unwrap_or_default();
    l.clear();
    l
}

/// Spare latency buffers kept: about one per series with spans, for its next window.
const MAX_SPARE_LATENCIES: usize = 1024;

impl WindowProcessor {
    pub fn new(cfg: &WindowConfig, id: &str, telemetry: &Telemetry) -> Self {
        let labels = || vec![("processor", id.to_string())];
        Self {
            interval_ns: cfg.interval.get().as_nanos() as u64,
            lateness_ns: cfg.allowed_lateness.get().as_nanos() as u64,
            ttl_ns: cfg.service_ttl.get().as_nanos() as u64,
            max_services: cfg.max_services,
            edges: cfg.edges,
            network: cfg.network && cfg.edges,
            joins: Default::default(),
            joins_full: telemetry.counter(
                "otelwatch_window_unjoined_spans_total",
                "Calls and served spans not joined because joins::MAX_PENDING halves were waiting (no network time for them).",
                labels(),
            ),
            group_by: cfg.group_by.iter().map(|k| k.as_str().into()).collect(),
            series: Default::default(),
            known: Default::default(),
            max_event_ns: 0,
            next_close: 0,
            last_data: Instant::now(),
            last_call: Instant::now(),
            spare_latencies: Vec::new(),
            scale: Scale::default(),
            late_spans: telemetry.counter(
                "otelwatch_window_late_spans_total",
                "Spans that arrived after their window had closed.",
                labels(),
            ),
            future_spans: telemetry.counter(
                "otelwatch_window_future_spans_total",
                "Spans ending too far beyond the wall clock (clock skew), refused.",
                labels(),
            ),
            ahead_spans: telemetry.counter(
                "otelwatch_window_spans_ahead_total",
                "Spans ending ahead of the wall clock (kept; the watermark does not follow them).",
                labels(),
            ),
            dropped_series: telemetry.counter(
                "otelwatch_window_evicted_spans_total",
                "Spans in the open windows of series evicted because max_services was reached.",
                labels(),
            ),
            evicted_series: telemetry.counter(
                "otelwatch_window_series_evicted_total",
                "Series evicted (least recently seen first) because max_services was reached.",
                labels(),
            ),
            windows_out: telemetry.counter(
                "otelwatch_window_records_total",
                "Window records emitted.",
                labels(),
            ),
            warned_cap: false,
            skipped: None,
            skipped_seen: 0,
            partial: VecDeque::new(),
            late: LateReport::default(),
            miner: TemplateMiner::new(DrainSettings {
                max_templates: cfg.max_log_templates,
                ..DrainSettings::default()
            }),
            templates_evicted: telemetry.counter(
                "otelwatch_window_log_templates_evicted_total",
                "Log templates forgotten (least recently seen first) because max_log_templates was reached.",
                labels(),
            ),
            templates_evicted_seen: 0,
            templates_held: {
                let held = Arc::new(std::sync::atomic::AtomicU64::new(0));
                let probe = Arc::downgrade(&held);
                telemetry.gauge_fn(
                    "otelwatch_window_log_templates",
                    "Log templates held (at most max_log_templates).",
                    labels(),
                    move || {
                        probe.upgrade().map_or(0.0, |h| {
                            h.load(std::sync::atomic::Ordering::Relaxed) as f64
                        })
                    },
                );
                held
            },
            metrics: cfg.metrics.clone(),
            streams: Streams::new(cfg.metrics.max_streams),
            streams_evicted: telemetry.counter(
                "otelwatch_window_metric_streams_evicted_total",
                "Cumulative metric streams forgotten (least recently seen first) because metrics.max_streams was reached; their next point only sets a new baseline.",
                labels(),
            ),
            streams_evicted_seen: 0,
        }
    }

    fn window_start(&self, ns: u64) -> u64 {
        ns - ns % self.interval_ns
    }

    /// The watermark moves with the wall clock while the sources are silent, not while the
    /// pipeline itself was held up (a slow exporter downstream, a busy machine): a gap between
    /// two calls longer than the tick and a second is taken off the silence, so the batches
    /// waiting behind the hold-up are not made late by it.
    fn note_stall(&mut self) {
        let now = Instant::now();
        let gap = now.duration_since(self.last_call);
        let expected = self.tick_interval().unwrap_or_default() + Duration::from_secs(1);
        if gap > expected {
            self.last_data += gap - expected;
            self.last_data = self.last_data.min(now);
        }
        self.last_call = now;
    }

    /// Event-time watermark: windows ending at or before it are closed.
    pub fn watermark(&self) -> u64 {
        if self.max_event_ns == 0 {
            return 0;
        }
        let idle = self.last_data.elapsed().as_nanos() as u64;
        (self.max_event_ns + idle).saturating_sub(self.lateness_ns)
    }

    /// A logs request's records, each matched to its template.
    fn log_observations(&mut self, req: &ExportLogsServiceRequest, out: &mut Vec<Observation>) {
        let mut names = Names::default();
        let mut location = String::new();
        for rl in &req.resource_logs {
            let service = rl
                .resource
                .as_ref()
                .and_then(|r| attr_str(&r.attributes, "service.name"))
                .unwrap_or("unknown_service");
            let service = names.get(service);
            for sl in &rl.scope_logs {
                let logger = sl.scope.as_ref().map_or("", |s| s.name.as_str());
                for rec in &sl.log_records {
                    // A record with neither time is counted when it arrives.
                    let time = [rec.time_unix_nano, rec.observed_time_unix_nano]
                        .into_iter()
                        .find(|t| *t != 0)
                        .unwrap_or_else(now_ns);
                    let message = match rec.body.as_ref().and_then(|b| b.value.as_ref()) {
                        Some(Value::StringValue(s)) => s.as_str(),
                        _ => "",
                    };
                    logs::write_location(logger, rec, &mut location);
                    let template = self.miner.add_at(&service, &location, message);
                    out.push(Observation {
                        key: SeriesKey::logs_of(service.clone()),
                        end_ns: time,
                        what: Observed::Log {
                            level: logs::level(rec),
                            template,
                            trace: trace_key(&rec.trace_id),
                        },
                    });
                }
            }
        }
        let evicted = self.miner.evicted();
        self.templates_evicted
            .add(evicted - self.templates_evicted_seen);
        self.templates_evicted_seen = evicted;
        self.templates_held.store(
            self.miner.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// A metrics request's points of the selected metrics, cumulative ones differenced.
    fn metric_observations(
        &mut self,
        req: &ExportMetricsServiceRequest,
        out: &mut Vec<Observation>,
    ) {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        let mut names = Names::default();
        let split_by = (!self.metrics.attribute.is_empty()).then_some(&*self.metrics.attribute);
        for rm in &req.resource_metrics {
            let resource: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
            let service =
                names.get(attr_str(resource, "service.name").unwrap_or("unknown_service"));
            let resource_split = split_by.and_then(|k| attr_text(resource, k));
            for sm in &rm.scope_metrics {
                let scope = sm.scope.as_ref().map_or("", |s| s.name.as_str());
                for m in &sm.metrics {
                    if !self.metrics.selects(&m.name) {
                        continue;
                    }
                    let base = SeriesKey::metric(&service, truncate(&m.name, MAX_NAME_BYTES));
                    let mut push =
                        |attrs: &'_ [KeyValue], time: u64, point: Option<metrics::Point>| {
                            let Some(point) = point else { return };
                            let mut key = base.clone();
                            if let Some(k) = split_by {
                                let v = resource_split.clone().or_else(|| attr_text(attrs, k));
                                if let Some(v) = v {
                                    key.labels
                                        .push((k.into(), truncate(&v, MAX_NAME_BYTES).into()));
                                }
                            }
                            out.push(Observation {
                                key,
                                end_ns: time,
                                what: Observed::Metric(point),
                            });
                        };
                    let id =
                        |attrs: &[KeyValue]| metrics::stream_id(resource, scope, &m.name, attrs);
                    match &m.data {
                        Some(Data::Gauge(g)) => {
                            for p in &g.data_points {
                                push(&p.attributes, p.time_unix_nano, metrics::gauge(p));
                            }
                        }
                        Some(Data::Sum(sum)) => {
                            for p in &sum.data_points {
                                let point = self.streams.sum(
                                    id(&p.attributes),
                                    p,
                                    sum.aggregation_temporality,
                                    sum.is_monotonic,
                                );
                                push(&p.attributes, p.time_unix_nano, point);
                            }
                        }
                        Some(Data::Histogram(h)) => {
                            for p in &h.data_points {
                                let point = self.streams.histogram(
                                    id(&p.attributes),
                                    p,
                                    h.aggregation_temporality,
                                );
                                push(&p.attributes, p.time_unix_nano, Some(point));
                            }
                        }
                        Some(Data::ExponentialHistogram(h)) => {
                            for p in &h.data_points {
                                let point = self.streams.exponential(
                                    id(&p.attributes),
                                    p,
                                    h.aggregation_temporality,
                                );
                                push(&p.attributes, p.time_unix_nano, Some(point));
                            }
                        }
                        // Summaries carry no buckets to compare; not followed.
                        Some(Data::Summary(_)) | None => {}
                    }
                }
            }
        }
        let evicted = self.streams.evicted;
        self.streams_evicted
            .add(evicted - self.streams_evicted_seen);
        self.streams_evicted_seen = evicted;
    }

    fn ingest(&mut self, obs: Vec<Observation>) {
        if obs.is_empty() {
            return;
        }
        let now = now_ns();
        let future_limit = now + MAX_FUTURE.as_nanos() as u64;
        let clock_limit = now + CLOCK_SKEW.as_nanos() as u64;
        // What was closed before this batch: a batch's own newest records do not make its
        // older ones late (a request may group a minute of points by resource).
        let first_open = (self.max_event_ns != 0).then(|| self.window_start(self.watermark()));
        let mut raised = false;
        // Halves of calls whose windows have closed (by a tick since the last batch, too) are
        // let go before any joins them: their time between would only be late.
        if let Some(first_open) = first_open {
            self.joins.expire(first_open);
        }
        let mut joined = Vec::new();
        for o in obs {
            if !self.place(&o, first_open, future_limit) {
                continue;
            }
            if let Observed::Span {
                join: Some(join), ..
            } = &o.what
            {
                if let Some(j) = self.join(&o, *join) {
                    joined.push(j);
                }
            }
            if o.end_ns > clock_limit {
                self.ahead_spans.inc();
            }
            let event = o.end_ns.min(clock_limit);
            if event > self.max_event_ns {
                self.max_event_ns = event;
                raised = true;
            }
        }
        // A call's time between the two services goes to its window, as the call does.
        for o in joined {
            self.place(&o, first_open, future_limit);
        }
        if raised {
            self.last_data = Instant::now();
        }
    }

    /// Adds an observation to its series' window (making the series if need be); false when it
    /// has no event time, ends too far ahead, is late, or the series cap keeps it out.
    fn place(&mut self, o: &Observation, first_open: Option<u64>, future_limit: u64) -> bool {
        if o.end_ns == 0 {
            return false;
        }
        if o.end_ns > future_limit {
            self.future_spans.inc();
            return false;
        }
        let start = self.window_start(o.end_ns);
        // A known series is looked up once (in `add`); `track` makes a new one.
        self.add(o, start)
            || (!self.series.contains_key(&o.key)
                && self.track(&o.key, start, first_open)
                && self.add(o, start))
    }

    /// Offers a span to the join of calls with the spans that served them: the call's network
    /// observation once both halves are in.
    fn join(&mut self, o: &Observation, join: JoinAs) -> Option<Observation> {
        let Observed::Span {
            ms,
            error,
            client_error,
            trace,
            ..
        } = &o.what
        else {
            return None;
        };
        let end = joins::End {
            end_ns: o.end_ns,
            ms: *ms,
            error: *error,
            client_error: *client_error,
        };
        let trace_n = joins::trace_number(trace);
        let got = match join {
            JoinAs::Call(span) => self.joins.call(trace_n, span, &o.key, end),
            JoinAs::Served(parent) => self.joins.served(trace_n, parent, end),
        };
        let j = match got {
            Ok(j) => j?,
            Err(joins::Full) => {
                self.joins_full.inc();
                return None;
            }
        };
        Some(Observation {
            key: j.key,
            end_ns: j.end_ns,
            what: Observed::Span {
                ms: j.ms,
                error: j.error,
                client_error: j.client_error,
                trace: *trace,
                join: None,
            },
        })
    }

    /// Makes sure `key` has a series (its first window the one starting at `start`, or the
    /// first open one, `first_open`: none before any data); false when the series cap keeps a
    /// new one out, or its window has closed.
    fn track(&mut self, key: &SeriesKey, start: u64, first_open: Option<u64>) -> bool {
        if self.series.contains_key(key) {
            return true;
        }
        if let Some(first_open) = first_open.filter(|f| start < *f) {
            // Late for a series not tracked: counted by `add`'s caller as late, and no series
            // (nor eviction) is made for it.
            self.late_spans.inc();
            self.late.note(key.service.clone(), first_open - start);
            return false;
        }
        if self.series.len() >= self.max_services {
            self.evict_least_recent();
        }
        let next_emit = start.max(first_open.unwrap_or(0));
        self.next_close = self
            .next_close
            .min(next_emit.saturating_add(self.interval_ns));
        let names = std::iter::once(&key.service)
            .chain(&key.target)
            .chain(key.labels.iter().map(|(_, v)| v));
        for name in names {
            // Bounded by the series: each holds a few names, and the series are capped.
            if self.known.len() < self.max_services.saturating_mul(4) && !self.known.contains(name)
            {
                self.known.insert(name.clone());
            }
        }
        self.series.insert(
            key.clone(),
            Series {
                key: Arc::new(key.clone()),
                open: BTreeMap::new(),
                emitted: 0,
                next_emit,
                last_seen_ns: 0,
                previous_count: None,
                previous_value: None,
            },
        );
        true
    }

    /// Forgets the names no series holds any more (after series went).
    fn forget_names(&mut self) {
        self.known.retain(|name| Arc::strong_count(name) > 1);
    }

    /// When the pipeline skipped spans since the last look, the windows they would have gone
    /// to (those still open: from the oldest the watermark allows to the newest) are partial.
    fn note_skips(&mut self) {
        let Some(skipped) = &self.skipped else {
            return;
        };
        let now = skipped.get();
        if now == self.skipped_seen {
            return;
        }
        self.skipped_seen = now;
        // Skipped spans are the ones arriving now: event times about the newest seen.
        let from = self.window_start(self.watermark());
        let to = self.window_start(self.max_event_ns) + self.interval_ns;
        match self.partial.back_mut() {
            Some(last) if last.1 >= from => last.1 = last.1.max(to),
            _ => self.partial.push_back((from, to)),
        }
        if self.partial.len() > 64 {
            self.partial.pop_front();
        }
    }

    /// At the cap, the least recently seen tenth of the series makes room, so a new real
    /// service is still tracked whatever a flood of one-off names did before it. Their open
    /// windows go with them (counted); a series seen again later starts afresh.
    fn evict_least_recent(&mut self) {
        let n = (self.max_services / 10).max(1);
        let mut seen: Vec<u64> = self.series.values().map(|s| s.last_seen_ns).collect();
        let cut = n.min(seen.len()) - 1;
        let (_, nth, _) = seen.select_nth_unstable(cut);
        let cutoff = *nth;
        let mut left = n;
        let mut dropped_spans = 0u64;
        let mut spare = Vec::new();
        self.series.retain(|_, s| {
            if left > 0 && s.last_seen_ns <= cutoff {
                left -= 1;
                for open in std::mem::take(&mut s.open).into_values() {
                    dropped_spans += open.count();
                    if let Open::Spans(acc) = open {
                        spare.push(acc.latencies);
                    }
                }
                return false;
            }
            true
        });
        // Their latency buffers serve the series that take their place.
        self.spare_latencies.extend(spare);
        self.spare_latencies.truncate(MAX_SPARE_LATENCIES);
        self.forget_names();
        self.evicted_series.add((n - left) as u64);
        self.dropped_series.add(dropped_spans);
        if !self.warned_cap {
            self.warned_cap = true;
            tracing::warn!(
                max_services = self.max_services,
                "window: series cap reached; the least recently seen series make room for new ones (counted in otelwatch_window_series_evicted_total)"
            );
        }
    }

    /// Adds one span to its series' window starting at `start`; false if that window has
    /// already been emitted (the span is late).
    /// Adds an observation to its series' window starting at `start` (made if needed); false
    /// when the series is not tracked, the window has been emitted, or the kinds disagree.
    /// One lookup of the series per observation: this runs for every span.
    fn add(&mut self, o: &Observation, start: u64) -> bool {
        let Some(series) = self.series.get_mut(&o.key) else {
            return false;
        };
        if start < series.next_emit {
            let behind = series.next_emit.saturating_sub(start);
            let service = series.key.service.clone();
            self.late_spans.inc();
            self.late.note(service, behind);
            return false;
        }
        let spare = &mut self.spare_latencies;
        let open = series.open.entry(start).or_insert_with(|| match &o.what {
            Observed::Span { .. } => Open::Spans(Accum::new(new_latencies(spare))),
            Observed::Log { .. } => Open::Logs(LogAccum::default()),
            Observed::Metric(_) => Open::Metrics(MetricAccum::default()),
        });
        match (open, &o.what) {
            (
                Open::Spans(acc),
                Observed::Span {
                    ms,
                    error,
                    client_error,
                    trace,
                    ..
                },
            ) => {
                acc.add(*ms, *error, *client_error);
                acc.example(*trace, *ms, *error);
            }
            (
                Open::Logs(acc),
                Observed::Log {
                    level,
                    template,
                    trace,
                },
            ) => {
                let new = template.new && series.emitted >= VOCABULARY_WINDOWS;
                acc.add(*level, template.id, new);
                acc.trace(template.id, *trace, *level == LogLevel::Other && !new);
            }
            (Open::Metrics(acc), Observed::Metric(p)) => acc.add(p),
            // A series' key says its signal: the two never meet.
            _ => return false,
        }
        series.last_seen_ns = series.last_seen_ns.max(o.end_ns);
        true
    }

    /// Emits every window that ends at or before `watermark`, empty ones included, and forgets
    /// series idle for longer than the TTL.
    fn close_until(&mut self, watermark: u64, out: &mut Vec<WindowRecord>) {
        if watermark < self.next_close {
            return;
        }
        let interval = self.interval_ns;
        let mut next_close = u64::MAX;
        let held = self.series.len();
        let ttl = self.ttl_ns;
        let mut spare = Vec::new();
        let partial = &self.partial;
        let miner = &self.miner;
        let scale = &self.scale;
        self.series.retain(|_, s| {
            while s.next_emit + interval <= watermark {
                let start = s.next_emit;
                let mut examples = Vec::new();
                let mut presence = Presence::default();
                let (features, count, templates, traces) = match s.open.remove(&start) {
                    Some(Open::Spans(mut acc)) => {
                        let f = acc.features(s.previous_count, scale);
                        let c = acc.count;
                        examples = acc.examples();
                        spare.push(acc.latencies);
                        (f, c, Vec::new(), 0)
                    }
                    Some(Open::Logs(acc)) => {
                        let (f, t) = acc.features(s.previous_count, miner);
                        presence = acc.presence(miner);
                        (f, acc.count, t, acc.traces())
                    }
                    Some(Open::Metrics(mut acc)) => {
                        let f = acc.features(interval as f64 / 1e9, s.previous_value);
                        if acc.has_value() {
                            s.previous_value = Some(f[metric_feature::VALUE]);
                        }
                        (f, acc.points, Vec::new(), 0)
                    }
                    None => {
                        // Idle past the TTL: stop producing empty windows for it.
                        if s.last_seen_ns + ttl < start + interval {
                            return false;
                        }
                        // A silence longer than the TTL before the series' next data (spans
                        // years apart in one request): its middle is skipped, as an idle
                        // series' would be, so no request makes more than a TTL of empty
                        // windows.
                        let resume = s.open.keys().next().copied().unwrap_or(watermark);
                        if resume > start + ttl + interval {
                            let skip_to = resume - ttl;
                            s.next_emit = (skip_to - skip_to % interval).max(start + interval);
                            continue;
                        }
                        let mut f = [0.0; N_FEATURES];
                        match s.key.signal {
                            Signal::Spans | Signal::Network => {
                                f[feature::THROUGHPUT_CHANGE] =
                                    throughput_change(0, s.previous_count)
                            }
                            Signal::Logs => {
                                f[log_feature::LOG_COUNT_CHANGE] =
                                    throughput_change(0, s.previous_count)
                            }
                            // No points: no value, nothing changed.
                            Signal::Metrics => f[metric_feature::VALUE_CHANGE] = 1.0,
                        }
                        (f, 0, Vec::new(), 0)
                    }
                };
                out.push(WindowRecord {
                    series: s.key.clone(),
                    start_ns: start,
                    interval_ns: interval,
                    features,
                    anomaly: None,
                    partial: partial.iter().any(|(f, t)| (*f..*t).contains(&start)),
                    templates,
                    traces,
                    examples,
                    presence,
                });
                s.emitted += 1;
                s.previous_count = Some(count);
                s.next_emit = start + interval;
            }
            next_close = next_close.min(s.next_emit + interval);
            true
        });
        self.next_close = next_close;
        if self.series.len() < held {
            self.forget_names();
        }
        self.spare_latencies.extend(spare);
        self.spare_latencies.truncate(MAX_SPARE_LATENCIES);
        // Ranges wholly before what is still open are done with.
        let open_from = self.window_start(watermark);
        while self
            .partial
            .front()
            .is_some_and(|(_, t)| *t + interval <= open_from)
        {
            self.partial.pop_front();
        }
    }

    fn emit(&mut self, mut records: Vec<WindowRecord>, out: &mut Vec<Batch>) {
        if records.is_empty() {
            return;
        }
        records.sort_by(|a, b| a.start_ns.cmp(&b.start_ns).then(a.series.cmp(&b.series)));
        self.windows_out.add(records.len() as u64);
        out.push(Batch {
            items: records.len(),
            payload: Payload::Windows(Arc::new(records)),
            encoded: None,
            held: Default::default(),
        });
    }

    /// Series currently tracked (services, edges and groups).
    pub fn series_count(&self) -> usize {
        self.series.len()
    }
}

impl Processor for WindowProcessor {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        self.note_stall();
        self.note_skips();
        let mut obs = Vec::new();
        match &batch.payload {
            Payload::Traces(t) => self.span_observations(t, &mut obs),
            Payload::Logs(l) => self.log_observations(l, &mut obs),
            Payload::Metrics(m) => self.metric_observations(m, &mut obs),
            _ => {}
        }
        self.ingest(obs);
        let mut records = Vec::new();
        self.close_until(self.watermark(), &mut records);
        self.emit(records, out);
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(
            Duration::from_nanos(self.interval_ns / 4)
                .clamp(Duration::from_millis(5), Duration::from_secs(1)),
        )
    }

    fn on_tick(&mut self, out: &mut Vec<Batch>) {
        self.note_stall();
        self.note_skips();
        self.late.report();
        let mut records = Vec::new();
        self.close_until(self.watermark(), &mut records);
        self.emit(records, out);
    }

    /// Closes every open window, including the current partial one: nothing accepted is lost.
    /// The windows whose time was not over — from the newest event's on — are marked partial:
    /// their counts end with the shutdown, not with the traffic, and a restart is no traffic
    /// drop.
    fn on_shutdown(&mut self, out: &mut Vec<Batch>) {
        let last_open = self
            .series
            .values()
            .filter_map(|s| s.open.keys().next_back().copied())
            .max();
        if let Some(last) = last_open {
            let cut = self.window_start(self.max_event_ns);
            if self.max_event_ns != 0 && cut <= last {
                self.partial.push_back((cut, last + self.interval_ns));
            }
            let mut records = Vec::new();
            self.close_until(last + self.interval_ns, &mut records);
            self.emit(records, out);
        }
    }
}

pub mod joins;
mod latency;
pub mod logs;
pub mod metrics;
mod spans;
pub mod templates;

pub use spans::{classify, edge_target};

#[cfg(test)]
mod tests;
