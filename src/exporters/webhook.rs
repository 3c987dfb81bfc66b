//! Exporter `webhook`: posts anomalies as JSON, for alerting (Slack, Mattermost, any HTTP hook).
//!
//! ```yaml
//! exporters:
//!   webhook/slack:
//!     endpoint: ${env:SLACK_WEBHOOK_URL}
//!     format: slack          # {"text": "..."}; or json: {"anomalies": [documents]}
//!     min_severity: major    # minor | major | critical
//!     headers: { Authorization: "Bearer ${env:HOOK_TOKEN}" }
//!     timeout: 5s
//! ```
//! One request per batch of closed windows that holds anomalies (so a retry never posts half
//! a batch twice); windows without anomalies send nothing. 429 and 5xx answers and connection
//! failures are retried (honouring `Retry-After`); other 4xx answers are not.

use super::framework::{Delivered, Export, ExportError, QueueSettings, RetrySettings, RunSettings};
use crate::config::decode::decode_section;
use crate::config::duration::ConfigDuration;
use crate::config::error::ConfigError;
use crate::model::window::{Severity, WindowRecord};
use crate::pipeline::{Batch, Payload};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Slack,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MinSeverity {
    #[default]
    Minor,
    Major,
    Critical,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    pub endpoint: String,
    pub format: Format,
    pub min_severity: MinSeverity,
    pub headers: BTreeMap<String, String>,
    pub timeout: ConfigDuration,
    pub retry_on_failure: RetrySettings,
    pub sending_queue: QueueSettings,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            format: Format::Json,
            min_severity: MinSeverity::Minor,
            headers: BTreeMap::new(),
            timeout: ConfigDuration::from_secs(5),
            retry_on_failure: RetrySettings {
                initial_interval: ConfigDuration::from_secs(1),
                ..RetrySettings::default()
            },
            sending_queue: QueueSettings::serial(100),
        }
    }
}

impl WebhookConfig {
    pub fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        match reqwest::Url::parse(&cfg.endpoint) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            Ok(_) => errors.push(ConfigError::new(
                format!("{path}.endpoint"),
                "must be an http:// or https:// URL",
            )),
            Err(e) => errors.push(ConfigError::new(
                format!("{path}.endpoint"),
                format!("invalid URL {:?}: {e}", cfg.endpoint),
            )),
        }
        super::http::validate_headers(path, &cfg.headers, &mut errors);
        super::framework::validate_remote(
            path,
            &cfg.timeout,
            &cfg.retry_on_failure,
            &cfg.sending_queue,
            &mut errors,
        );
        crate::config::decode::validated(cfg, errors)
    }

    pub fn run_settings(&self) -> RunSettings {
        RunSettings::remote(
            &self.sending_queue,
            &self.retry_on_failure,
            self.timeout.get(),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

pub struct WebhookExporter {
    client: reqwest::Client,
    cfg: WebhookConfig,
}

impl WebhookExporter {
    pub fn new(cfg: &WebhookConfig) -> Result<Self, WebhookError> {
        let client = reqwest::Client::builder()
            .default_headers(super::http::header_map(&cfg.headers))
            .timeout(cfg.timeout.get())
            .user_agent(concat!("otelwatch/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            cfg: cfg.clone(),
        })
    }

    fn wanted(&self, w: &WindowRecord) -> bool {
        let Some(a) = w.anomaly.as_ref().filter(|a| a.is_anomaly) else {
            return false;
        };
        let sev = a.severity.unwrap_or(Severity::Minor);
        match self.cfg.min_severity {
            MinSeverity::Minor => true,
            MinSeverity::Major => sev >= Severity::Major,
            MinSeverity::Critical => sev >= Severity::Critical,
        }
    }
}

/// The request body for a set of anomalous windows.
pub fn body(format: Format, anomalies: &[&WindowRecord]) -> serde_json::Value {
    match format {
        Format::Json => serde_json::json!({
            "anomalies": anomalies.iter().map(|w| w.to_alert_document()).collect::<Vec<_>>()
        }),
        Format::Slack => {
            let lines: Vec<String> = anomalies
                .iter()
                .map(|w| {
                    let a = w.anomaly.as_ref();
                    format!(
                        ":rotating_light: *{}* anomaly at {} (score {:.2}): {}",
                        a.and_then(|a| a.severity)
                            .map(|s| s.as_str())
                            .unwrap_or("minor"),
                        crate::model::time::rfc3339(w.start_ns),
                        a.map(|a| a.score).unwrap_or(0.0),
                        a.map(|a| a.message.as_str()).unwrap_or("")
                    )
                })
                .collect();
            serde_json::json!({ "text": lines.join("\n") })
        }
    }
}

impl Export for WebhookExporter {
    async fn export(&self, batch: &Batch) -> Result<Delivered, ExportError> {
        let Payload::Windows(ws) = &batch.payload else {
            return Err(ExportError::permanent("webhook takes window records only"));
        };
        let anomalies: Vec<&WindowRecord> = ws.iter().filter(|w| self.wanted(w)).collect();
        if anomalies.is_empty() {
            return Ok(Delivered::default());
        }
        let resp = self
            .client
            .post(&self.cfg.endpoint)
            .json(&body(self.cfg.format, &anomalies))
            .send()
            .await
            .map_err(|e| ExportError::retryable(format!("posting to the webhook: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(Delivered::default());
        }
        let after = super::http::retry_after(&resp);
        let text = resp.text().await.unwrap_or_default();
        let message = format!(
            "webhook answered {status}: {}",
            text.chars().take(200).collect::<String>()
        );
        if status.as_u16() == 429 || status.is_server_error() {
            Err(ExportError::Retryable { message, after })
        } else {
            Err(ExportError::Permanent { message })
        }
    }
}
