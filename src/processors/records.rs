//! Processor `records`: the window records other otelwatch instances send (their `otlp` or
//! `otlphttp` exporter on a windows pipeline: log records `otelwatch.window`, see
//! `otlp::records`), read back as window records and joined by window start, so that one
//! `incidents` processor judges the whole call graph when many instances share the services.
//!
//! ```yaml
//! receivers:
//!   otlp:
//! processors:
//!   records:
//!     join_wait: 10s
//!   incidents:
//! service:
//!   pipelines:
//!     logs/incidents:
//!       receivers: [otlp]
//!       processors: [records, incidents]
//!       exporters: [file]
//! ```
//!
//! Each sender is told apart by its resource's `service.instance.id`. Its window processor
//! emits every window of its series in turn, but its exporter may deliver two of them out of
//! order; how far it has got is the run of windows it delivered without a gap (per window
//! length: its pipelines may window at different intervals), a gap still open `join_wait` after
//! the window beyond it came being taken as windows it will not send. A window start is handed
//! on once every sender has got past it, or once `join_wait` has passed both since its first
//! record came and since each sender still behind was last heard from (a sender whose services
//! had no traffic sends nothing). Its records are handed on in series order, as one instance's
//! window processor hands them on, so the incidents do not depend on which sender came first.
//!
//! A series' window is judged once: a second record of the same series and start (two senders
//! owned the service while it moved between them) keeps the one that saw more, and a record
//! of a window already handed on is late; both are counted
//! (`otelwatch_records_dropped_items_total`, `reason` = duplicate|late), as are log records
//! that are not window records (`reason` = not_a_window|invalid).

use super::Processor;
use crate::config::decode::decode_section;
use crate::config::duration::ConfigDuration;
use crate::config::error::ConfigError;
use crate::model::window::{SeriesKey, WindowRecord};
use crate::pipeline::{Batch, DataKind, Payload};
use crate::telemetry::{Counter, Telemetry};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Window starts held at most while a sender catches up; beyond, the oldest is handed on.
const MAX_PENDING: usize = 1024;
/// Records held at most (whatever senders send); beyond, the oldest window is handed on.
const MAX_HELD: usize = 500_000;
/// Senders remembered at most; beyond, the longest silent is forgotten.
const MAX_SENDERS: usize = 4096;
/// A sender silent this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecordsConfig {
    /// How long a window start waits for senders that have not reached it.
    pub join_wait: ConfigDuration,
}

impl Default for RecordsConfig {
    fn default() -> Self {
        Self {
            join_wait: ConfigDuration::from_secs(10),
        }
    }
}

impl crate::processors::ProcessorType for RecordsConfig {
    const NAME: &'static str = "records";

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if cfg.join_wait.get() > Duration::from_secs(3600) {
            errors.push(ConfigError::new(
                format!("{path}.join_wait"),
                "must be at most 1h",
            ));
        }
        crate::config::decode::validated(cfg, errors)
    }

    fn output_kind(&self, input: DataKind) -> Result<DataKind, &'static str> {
        match input {
            DataKind::Logs => Ok(DataKind::Windows),
            _ => Err("logs (the window records other otelwatch instances send)"),
        }
    }

    fn build(&self, ctx: &crate::processors::ProcessorContext<'_>) -> Box<dyn Processor> {
        Box::new(RecordsProcessor::new(
            self.join_wait.get(),
            &ctx.instance(),
            ctx.telemetry,
        ))
    }
}

/// What one sender has delivered of one window length (a sender's pipelines may window at
/// different intervals). Its window processor emits every window of its series in turn, but
/// its exporter may deliver two batches out of order (several requests in flight), so how far
/// it has got is the latest window of the run it delivered without a gap: every window before
/// that one is complete (a window's records may come in several requests, so the latest is not
/// known complete until a later one comes).
struct Stream {
    /// The latest window start of the gapless run (None: nothing yet).
    last: Option<u64>,
    /// Windows delivered beyond a gap, and when each came: a gap still open `join_wait` after
    /// the window beyond it came is taken as windows this sender will not send.
    ahead: BTreeMap<u64, Instant>,
    heard: Instant,
}

impl Stream {
    fn note(&mut self, start: u64, now: Instant) {
        self.heard = now;
        match self.last {
            None => self.last = Some(start),
            Some(last) if start > last => {
                self.ahead.entry(start).or_insert(now);
                // Bounded whatever a sender sends: the oldest gap is given up first.
                if self.ahead.len() > MAX_PENDING {
                    if let Some((first, _)) = self.ahead.pop_first() {
                        self.last = Some(first);
                    }
                }
            }
            Some(_) => {}
        }
    }

    /// Closes the gaps filled, and those waited on for `wait`.
    fn advance(&mut self, interval: u64, now: Instant, wait: Duration) {
        while let Some((&start, &came)) = self.ahead.first_key_value() {
            let last = self.last.unwrap_or(start);
            if start <= last.saturating_add(interval) || now.duration_since(came) >= wait {
                self.last = Some(last.max(start));
                self.ahead.pop_first();
            } else {
                break;
            }
        }
    }

    /// Whether every record of window `start` has come.
    fn past(&self, start: u64) -> bool {
        self.last.is_some_and(|l| l > start)
    }
}

struct Dropped {
    duplicate: Counter,
    late: Counter,
    not_a_window: Counter,
    invalid: Counter,
}

pub struct RecordsProcessor {
    wait: Duration,
    /// By sender and window length.
    senders: HashMap<(Arc<str>, u64), Stream>,
    /// Records waiting, by window start, by series; and when the first came.
    pending: BTreeMap<u64, (Instant, BTreeMap<Arc<SeriesKey>, WindowRecord>)>,
    /// The latest window start handed on (a record at or before it is late).
    handed: Option<u64>,
    /// Records waiting.
    held: usize,
    dropped: Dropped,
}

impl RecordsProcessor {
    pub fn new(wait: Duration, id: &str, telemetry: &Telemetry) -> Self {
        let counter = |reason: &str| {
            telemetry.counter(
                "otelwatch_records_dropped_items_total",
                "Log records received by the records processor and not handed on, by reason: duplicate (a series' window sent twice), late (its window already judged), not_a_window, invalid.",
                vec![("processor", id.to_string()), ("reason", reason.to_string())],
            )
        };
        Self {
            wait,
            senders: HashMap::new(),
            pending: BTreeMap::new(),
            handed: None,
            held: 0,
            dropped: Dropped {
                duplicate: counter("duplicate"),
                late: counter("late"),
                not_a_window: counter("not_a_window"),
                invalid: counter("invalid"),
            },
        }
    }

    fn offer(&mut self, sender: Arc<str>, r: WindowRecord, now: Instant) {
        let interval = r.interval_ns.max(1);
        let s = self.senders.entry((sender, interval)).or_insert(Stream {
            last: None,
            ahead: BTreeMap::new(),
            heard: now,
        });
        s.note(r.start_ns, now);
        s.advance(interval, now, self.wait);
        if self.handed.is_some_and(|h| r.start_ns <= h) {
            self.dropped.late.inc();
            return;
        }
        let (_, window) = self
            .pending
            .entry(r.start_ns)
            .or_insert_with(|| (now, BTreeMap::new()));
        match window.get_mut(&r.series) {
            Some(kept) => {
                self.dropped.duplicate.inc();
                let split = r.seen() > 0.0 && kept.seen() > 0.0;
                if r.seen() > kept.seen() {
                    *kept = r;
                }
                if split {
                    split_window(kept);
                }
            }
            None => {
                window.insert(r.series.clone(), r);
                self.held += 1;
            }
        }
    }

    fn ready(&self, start: u64, since: Instant, now: Instant) -> bool {
        self.pending.len() > MAX_PENDING
            || self.held > MAX_HELD
            || self.senders.values().all(|s| {
                s.past(start)
                    || (now.duration_since(s.heard) >= self.wait
                        && now.duration_since(since) >= self.wait)
            })
    }

    /// Hands on every window start that is ready (all of them with `all`), oldest first.
    fn flush(&mut self, now: Instant, all: bool, out: &mut Vec<Batch>) {
        for ((_, interval), s) in self.senders.iter_mut() {
            s.advance(*interval, now, self.wait);
        }
        let mut records = Vec::new();
        while let Some((&start, &(since, _))) = self.pending.first_key_value() {
            if !all && !self.ready(start, since, now) {
                break;
            }
            let Some((_, (_, window))) = self.pending.pop_first() else {
                break;
            };
            self.handed = Some(start);
            self.held = self.held.saturating_sub(window.len());
            records.extend(window.into_values());
        }
        if !records.is_empty() {
            out.push(Batch {
                items: records.len(),
                payload: Payload::Windows(Arc::new(records)),
                encoded: None,
                held: Default::default(),
            });
        }
        if self.senders.len() > MAX_SENDERS
            || self
                .senders
                .values()
                .any(|s| now.duration_since(s.heard) >= FORGET_AFTER)
        {
            self.forget(now);
        }
    }

    fn forget(&mut self, now: Instant) {
        self.senders
            .retain(|_, s| now.duration_since(s.heard) < FORGET_AFTER);
        while self.senders.len() > MAX_SENDERS {
            let Some(oldest) = self
                .senders
                .iter()
                .min_by_key(|(_, s)| s.heard)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.senders.remove(&oldest);
        }
    }
}

/// A window whose traffic two instances shared (its service moved between them inside it):
/// the record kept saw only part of it, so its counts are low bounds. It is partial, and an
/// anomaly its counts alone made is not one (a metric window's rates and counts are all low
/// bounds: it is not judged).
fn split_window(r: &mut WindowRecord) {
    use crate::model::window::{feature, log_feature, Signal};
    r.partial = true;
    let names = r.series.signal.feature_names();
    let counts: &[usize] = match r.series.signal {
        Signal::Spans | Signal::Network => &[feature::REQUEST_COUNT, feature::THROUGHPUT_CHANGE],
        Signal::Logs => &[
            log_feature::LOG_COUNT,
            log_feature::LOG_COUNT_CHANGE,
            log_feature::ERROR_COUNT,
            log_feature::WARNING_COUNT,
        ],
        Signal::Metrics => &[],
    };
    let Some(a) = r.anomaly.as_mut().filter(|a| a.is_anomaly) else {
        return;
    };
    let by_counts = r.series.signal == Signal::Metrics
        || a.contributions
            .iter()
            .all(|c| counts.iter().any(|i| names[*i] == c.feature));
    if by_counts {
        a.is_anomaly = false;
        a.severity = None;
        a.contributions.clear();
        a.message.clear();
    }
}

impl Processor for RecordsProcessor {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        let Payload::Logs(logs) = &batch.payload else {
            out.push(batch);
            return;
        };
        let read = crate::otlp::records::logs_to_windows(logs);
        self.dropped.not_a_window.add(read.other as u64);
        self.dropped.invalid.add(read.invalid as u64);
        let now = Instant::now();
        for (sender, r) in read.records {
            self.offer(sender, r, now);
        }
        self.flush(now, false, out);
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(200))
    }

    fn on_tick(&mut self, out: &mut Vec<Batch>) {
        self.flush(Instant::now(), false, out);
    }

    fn on_shutdown(&mut self, out: &mut Vec<Batch>) {
        self.flush(Instant::now(), true, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::window::N_FEATURES;
    use crate::otlp::records::windows_to_logs;

    fn rec(service: &str, start_s: u64, requests: f64) -> WindowRecord {
        let mut features = [0.0; N_FEATURES];
        features[0] = requests;
        WindowRecord::new(
            Arc::new(SeriesKey::service(service)),
            start_s * 1_000_000_000,
            10_000_000_000,
            features,
        )
    }

    fn logs(sender: &str, records: &[WindowRecord]) -> Batch {
        let req = windows_to_logs(sender, records);
        Batch {
            items: records.len(),
            payload: Payload::Logs(Arc::new(req)),
            encoded: None,
            held: Default::default(),
        }
    }

    fn handed(out: &[Batch]) -> Vec<(String, u64, f64)> {
        out.iter()
            .flat_map(|b| match &b.payload {
                Payload::Windows(r) => r.to_vec(),
                _ => Vec::new(),
            })
            .map(|r| {
                (
                    r.series.service.to_string(),
                    r.start_ns / 1_000_000_000,
                    r.features[0],
                )
            })
            .collect()
    }

    fn processor(wait_ms: u64) -> (RecordsProcessor, Telemetry) {
        let t = Telemetry::default();
        (
            RecordsProcessor::new(Duration::from_millis(wait_ms), "records", &t),
            t,
        )
    }

    #[test]
    fn a_window_waits_for_every_sender_and_comes_out_in_series_order() {
        let (mut p, _t) = processor(60_000);
        let mut out = Vec::new();
        p.process(logs("b", &[rec("zeta", 10, 1.0)]), &mut out);
        p.process(logs("a", &[rec("alpha", 10, 2.0)]), &mut out);
        assert!(handed(&out).is_empty(), "a is not past window 10 yet");
        p.process(logs("a", &[rec("alpha", 20, 3.0)]), &mut out);
        assert!(handed(&out).is_empty(), "b is not past window 10 yet");
        p.process(logs("b", &[rec("zeta", 20, 4.0)]), &mut out);
        assert_eq!(
            handed(&out),
            vec![("alpha".into(), 10, 2.0), ("zeta".into(), 10, 1.0)]
        );
        out.clear();
        p.on_shutdown(&mut out);
        assert_eq!(
            handed(&out),
            vec![("alpha".into(), 20, 3.0), ("zeta".into(), 20, 4.0)]
        );
    }

    #[test]
    fn a_window_two_senders_shared_is_partial_and_not_an_anomaly_of_its_counts() {
        use crate::model::window::{Anomaly, Contribution, FEATURE_NAMES};
        let (mut p, _t) = processor(60_000);
        let mut out = Vec::new();
        let anomaly = |feature: usize| Anomaly {
            score: 0.9,
            threshold: 0.6,
            is_anomaly: true,
            severity: Some(crate::model::window::Severity::Major),
            warming_up: false,
            contributions: vec![Contribution {
                feature: FEATURE_NAMES[feature],
                actual: 3.0,
                typical: 30.0,
            }],
            message: "drop".into(),
            incident: None,
            expected: false,
        };
        let mut fewer = rec("alpha", 10, 3.0);
        fewer.anomaly = Some(anomaly(0));
        let mut more = rec("alpha", 10, 27.0);
        more.anomaly = Some(anomaly(0));
        let mut slow = rec("beta", 10, 27.0);
        slow.anomaly = Some(anomaly(5));
        let mut slow_part = rec("beta", 10, 2.0);
        slow_part.anomaly = Some(anomaly(0));
        p.process(logs("a", &[fewer, slow_part]), &mut out);
        p.process(logs("b", &[more, slow]), &mut out);
        p.on_shutdown(&mut out);
        let got: Vec<WindowRecord> = out
            .iter()
            .flat_map(|b| match &b.payload {
                Payload::Windows(r) => r.to_vec(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(got.len(), 2);
        // The drop in requests was the move, not the service.
        assert!(got[0].partial && !got[0].is_anomaly() && got[0].features[0] == 27.0);
        // A latency anomaly is still one.
        assert!(got[1].partial && got[1].is_anomaly());
    }

    #[test]
    fn windows_a_sender_delivers_out_of_order_are_not_late() {
        let (mut p, t) = processor(60_000);
        let mut out = Vec::new();
        p.process(logs("a", &[rec("alpha", 10, 1.0)]), &mut out);
        p.process(logs("b", &[rec("beta", 10, 1.0)]), &mut out);
        // a's window 30 overtakes its window 20.
        p.process(logs("a", &[rec("alpha", 30, 1.0)]), &mut out);
        p.process(logs("b", &[rec("beta", 20, 1.0)]), &mut out);
        p.process(logs("b", &[rec("beta", 30, 1.0)]), &mut out);
        // a's run stops at 10 until its 20 comes: window 10 may still have records of a's.
        assert!(handed(&out).is_empty(), "{:?}", handed(&out));
        p.process(logs("a", &[rec("alpha", 20, 1.0)]), &mut out);
        assert_eq!(
            handed(&out).len(),
            4,
            "windows 10 and 20: {:?}",
            handed(&out)
        );
        p.on_shutdown(&mut out);
        assert_eq!(handed(&out).len(), 6, "{:?}", handed(&out));
        assert!(t.render().contains("reason=\"late\"} 0"), "{}", t.render());
    }

    #[test]
    fn a_silent_sender_is_waited_for_join_wait_only() {
        let (mut p, _t) = processor(50);
        let mut out = Vec::new();
        p.process(logs("a", &[rec("alpha", 10, 1.0)]), &mut out);
        p.process(logs("b", &[rec("beta", 10, 1.0)]), &mut out);
        p.process(logs("a", &[rec("alpha", 20, 1.0)]), &mut out);
        p.on_tick(&mut out);
        assert!(handed(&out).is_empty());
        std::thread::sleep(Duration::from_millis(80));
        p.on_tick(&mut out);
        assert_eq!(handed(&out).len(), 3, "{:?}", handed(&out));
    }

    #[test]
    fn a_series_window_is_handed_on_once() {
        let (mut p, t) = processor(60_000);
        let mut out = Vec::new();
        // The service moved from a to b inside window 10: both saw part of it.
        p.process(logs("a", &[rec("alpha", 10, 2.0)]), &mut out);
        p.process(logs("b", &[rec("alpha", 10, 5.0)]), &mut out);
        p.process(logs("a", &[rec("x", 20, 1.0)]), &mut out);
        p.process(logs("b", &[rec("y", 20, 1.0)]), &mut out);
        assert_eq!(handed(&out), vec![("alpha".into(), 10, 5.0)]);
        // Window 10 is judged: a record of it now is late.
        p.process(logs("a", &[rec("beta", 10, 1.0)]), &mut out);
        p.on_shutdown(&mut out);
        assert_eq!(handed(&out).len(), 3, "{:?}", handed(&out));
        let text = t.render();
        for reason in ["duplicate", "late"] {
            assert!(
                text.contains(&format!(
                    "otelwatch_records_dropped_items_total{{processor=\"records\",reason=\"{reason}\"}} 1"
                )),
                "{text}"
            );
        }
    }
}
