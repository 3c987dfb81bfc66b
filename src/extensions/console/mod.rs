//! Extension `console`: a live view of the services, their anomalies and incidents, served by
//! otelwatch itself. Every detection pipeline (one that turns its signal into window records)
//! hands its scored windows and incident changes to each enabled console, which keeps the last
//! hours of them in memory (`history.rs`, bounded by age and size) and answers a JSON API
//! (`server.rs`) and a page (`page/index.html`, embedded in the binary).
//!
//! The page draws its charts as plain SVG: each is a line, a band and a few marks, which take
//! fewer lines to draw than to configure a charting library, and leave nothing to vendor, load
//! from elsewhere or keep up to date; the whole page is one file of about 20 KB.
//!
//! ```yaml
//! extensions:
//!   console:
//!     endpoint: localhost:8080    # where the console listens
//!     retention: 6h               # how long windows and resolved incidents are kept
//!     max_memory_mib: 64          # the most memory the kept windows may take (oldest go first)
//!     auth: { authenticator: bearertokenauth }   # optional: as the receivers' (401 without)
//!     trace_url: https://jaeger.example/trace/{trace_id}   # optional: where example traces open
//! service:
//!   extensions: [bearertokenauth, console]
//! ```

pub mod history;
pub mod server;

use super::{ExtensionError, ExtensionType, Role};
use crate::config::decode::{decode_section, validated};
use crate::config::duration::ConfigDuration;
use crate::config::error::ConfigError;
use crate::pipeline::{Batch, Payload};
use history::{History, HistoryConfig};
use serde::Deserialize;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    pub endpoint: String,
    pub retention: ConfigDuration,
    pub max_memory_mib: usize,
    /// Requests must carry credentials this authenticator extension accepts.
    pub auth: Option<super::AuthSettings>,
    /// Where a trace is opened, `{trace_id}` standing for its id (32 hex digits):
    /// `https://jaeger.example/trace/{trace_id}`. Without it, example traces are listed by id.
    pub trace_url: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            endpoint: "localhost:8080".into(),
            retention: ConfigDuration(Duration::from_secs(6 * 3600)),
            max_memory_mib: 64,
            auth: None,
            trace_url: None,
        }
    }
}

impl ExtensionType for ConsoleConfig {
    const NAME: &'static str = "console";
    const ROLE: Role = Role::Console;

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if let Err(e) = crate::config::listen::listen_addr(&cfg.endpoint) {
            errors.push(ConfigError::new(format!("{path}.endpoint"), e.to_string()));
        }
        if cfg.retention.get().is_zero() {
            errors.push(ConfigError::new(
                format!("{path}.retention"),
                "must be longer than 0s",
            ));
        }
        if cfg.max_memory_mib == 0 {
            errors.push(ConfigError::new(
                format!("{path}.max_memory_mib"),
                "must be at least 1",
            ));
        }
        if let Some(t) = &cfg.trace_url {
            if !t.contains("{trace_id}") {
                errors.push(ConfigError::new(
                    format!("{path}.trace_url"),
                    "must contain {trace_id}, where the trace's id goes",
                ));
            } else if !(t.starts_with("http://") || t.starts_with("https://")) {
                errors.push(ConfigError::new(
                    format!("{path}.trace_url"),
                    "must be an http:// or https:// URL",
                ));
            }
        }
        validated(cfg, errors)
    }

    fn console(&self, _id: &str) -> Result<ConsoleHub, ExtensionError> {
        Ok(ConsoleHub::new(self))
    }
}

/// A started console: its memory, fed by the detection pipelines, where it listens, and the
/// news of what arrived for the pages that follow it live.
#[derive(Debug)]
pub struct ConsoleHub {
    pub endpoint: String,
    /// Every request must pass it, when set.
    pub auth: Option<std::sync::Arc<super::Authenticator>>,
    /// Where example traces link to (`{trace_id}` replaced).
    pub trace_url: Option<String>,
    /// Where "not an anomaly" and expected ranges go (the process's board once started).
    pub feedback: std::sync::Arc<crate::model::feedback::FeedbackBoard>,
    history: Mutex<History>,
    /// The start of the newest window held, sent each time windows or incidents arrive.
    news: tokio::sync::broadcast::Sender<u64>,
    /// Spans taken in and forwarded, read from the process's own counters.
    spans: std::sync::OnceLock<SpanMeter>,
}

/// Spans per second in (accepted by the receivers) and forwarded (sent by the OTLP
/// exporters), over about the last minute, from the counters `/metrics` serves.
pub struct SpanMeter {
    telemetry: crate::telemetry::Telemetry,
    forwarders: Vec<String>,
    /// (when, in, forwarded), at least a second apart, the last minute's.
    samples: Mutex<std::collections::VecDeque<(std::time::Instant, u64, u64)>>,
}

impl std::fmt::Debug for SpanMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanMeter")
            .field("forwarders", &self.forwarders)
            .finish_non_exhaustive()
    }
}

/// How far back the span rates look.
const RATE_SPAN: Duration = Duration::from_secs(60);

impl SpanMeter {
    fn totals(&self) -> (u64, u64) {
        use crate::telemetry::names;
        let accepted = self
            .telemetry
            .sum(names::RECEIVER_ACCEPTED, &[("signal", "traces")]);
        let forwarded = self
            .forwarders
            .iter()
            .map(|e| {
                self.telemetry.sum(
                    names::EXPORTER_SENT,
                    &[("exporter", e), ("signal", "traces")],
                )
            })
            .sum();
        (accepted, forwarded)
    }

    /// Takes a sample (at most one a second) and answers the rates since the oldest kept.
    pub fn rates(&self) -> (f64, f64) {
        let now = std::time::Instant::now();
        let (i, f) = self.totals();
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples
            .back()
            .is_none_or(|(t, _, _)| now.duration_since(*t) >= Duration::from_secs(1))
        {
            samples.push_back((now, i, f));
        }
        while samples.len() > 2
            && samples
                .front()
                .is_some_and(|(t, _, _)| now.duration_since(*t) > RATE_SPAN)
        {
            samples.pop_front();
        }
        let Some(&(t0, i0, f0)) = samples.front() else {
            return (0.0, 0.0);
        };
        // Over a second at least: a burst just after the start is not a rate of millions.
        let dt = now.duration_since(t0).as_secs_f64().max(1.0);
        (
            i.saturating_sub(i0) as f64 / dt,
            f.saturating_sub(f0) as f64 / dt,
        )
    }
}

impl ConsoleHub {
    pub fn new(cfg: &ConsoleConfig) -> Self {
        Self {
            endpoint: cfg.endpoint.clone(),
            auth: None,
            trace_url: cfg.trace_url.clone(),
            feedback: Default::default(),
            spans: std::sync::OnceLock::new(),
            news: tokio::sync::broadcast::channel(16).0,
            history: Mutex::new(History::new(HistoryConfig {
                retention: cfg.retention.get(),
                max_bytes: cfg.max_memory_mib << 20,
                ..HistoryConfig::default()
            })),
        }
    }

    /// Keeps what a detection pipeline produced: scored windows and incident changes (other
    /// batches are not the console's).
    pub fn observe(&self, batch: &Batch) {
        let newest = match &batch.payload {
            Payload::Windows(w) => {
                let mut h = self.history();
                h.add_windows(w);
                h.newest_ns()
            }
            Payload::Incidents(i) => {
                let mut h = self.history();
                h.add_incidents(i);
                h.newest_ns()
            }
            _ => return,
        };
        // A sample for the span rates, so that they cover the time between page loads.
        if let Some(m) = self.spans.get() {
            m.rates();
        }
        // Nobody listening is no error.
        let _ = self.news.send(newest);
    }

    /// Reads the span rates from these counters (`forwarders`: the OTLP exporters' ids).
    pub fn count_spans(&self, telemetry: crate::telemetry::Telemetry, forwarders: Vec<String>) {
        let meter = SpanMeter {
            telemetry,
            forwarders,
            samples: Mutex::new(Default::default()),
        };
        meter.rates();
        let _ = self.spans.set(meter);
    }

    /// Spans per second in and forwarded, over about the last minute (none before counting).
    pub fn span_rates(&self) -> Option<(f64, f64)> {
        self.spans.get().map(SpanMeter::rates)
    }

    /// Whether the process forwards spans (has an OTLP exporter).
    pub fn forwards(&self) -> bool {
        self.spans.get().is_some_and(|m| !m.forwarders.is_empty())
    }

    /// Tells the pages following along that something changed (feedback, say).
    pub fn notify(&self) {
        let newest = self.history().newest_ns();
        let _ = self.news.send(newest);
    }

    /// Follows what arrives: the start of the newest window held, each time.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<u64> {
        self.news.subscribe()
    }

    /// The history, for a question or an update. A panic while it was held (none is expected)
    /// leaves it as it was then: still a history.
    pub fn history(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{names, Telemetry};

    #[test]
    fn span_rates_come_from_the_receivers_and_the_otlp_exporters_counters() {
        let t = Telemetry::new();
        let hub = ConsoleHub::new(&ConsoleConfig::default());
        assert_eq!(hub.span_rates(), None);
        let accepted = t.counter(
            names::RECEIVER_ACCEPTED,
            "",
            vec![("receiver", "otlp".into()), ("signal", "traces".into())],
        );
        let forwarded = t.counter(
            names::EXPORTER_SENT,
            "",
            vec![
                ("exporter", "otlp/down".into()),
                ("signal", "traces".into()),
            ],
        );
        let written = t.counter(
            names::EXPORTER_SENT,
            "",
            vec![("exporter", "file".into()), ("signal", "traces".into())],
        );
        let logs = t.counter(
            names::RECEIVER_ACCEPTED,
            "",
            vec![("receiver", "otlp".into()), ("signal", "logs".into())],
        );
        hub.count_spans(t, vec!["otlp/down".into()]);
        assert!(hub.forwards());
        accepted.add(500);
        forwarded.add(300);
        written.add(10_000);
        logs.add(10_000);
        // Within the first second: over one second.
        let (i, f) = hub.span_rates().unwrap();
        assert_eq!((i, f), (500.0, 300.0));
    }
}
