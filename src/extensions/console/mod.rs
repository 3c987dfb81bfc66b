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
}

impl ConsoleHub {
    pub fn new(cfg: &ConsoleConfig) -> Self {
        Self {
            endpoint: cfg.endpoint.clone(),
            auth: None,
            trace_url: cfg.trace_url.clone(),
            feedback: Default::default(),
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
        // Nobody listening is no error.
        let _ = self.news.send(newest);
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
