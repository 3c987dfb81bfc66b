//! Exporter `webhook`: posts anomalies as JSON, for alerting (Slack, Mattermost, any HTTP hook).
//!
//! ```yaml
//! exporters:
//!   webhook/slack:
//!     endpoint: ${env:SLACK_WEBHOOK_URL}
//!     format: slack          # {"text": "..."}; or json: {"anomalies": [documents]}
//!     min_severity: major    # minor | major | critical
//!     send: incidents        # or anomalies (every anomalous window; the default)
//!     headers: { Authorization: "Bearer ${env:HOOK_TOKEN}" }
//!     timeout: 5s
//! ```
//! With `send: anomalies`, one request per batch of closed windows that holds anomalies (so a
//! retry never posts half a batch twice); windows without anomalies send nothing. With
//! `send: incidents` (put the `incidents` processor in the pipeline), one request per batch of
//! incident changes worth paging for — opened, worse or a new top cause, resolved — each with
//! the incident id as its `dedup_key`, so a pager rings once per incident, not once per window. 429 and 5xx answers and connection
//! failures are retried (honouring `Retry-After`); other 4xx answers are not.

use super::framework::{Delivered, Export, ExportError, QueueSettings, RetrySettings, RunSettings};
use crate::config::decode::decode_section;
use crate::config::duration::ConfigDuration;
use crate::config::error::ConfigError;
use crate::config::secret::Secret;
use crate::model::incident::{Action, IncidentEvent};
use crate::model::window::{Severity, WindowRecord};
use crate::pipeline::DataKind;
use crate::pipeline::{Batch, Payload};
use serde::Deserialize;
use std::collections::BTreeMap;

/// What the webhook posts.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Send {
    /// Every anomalous window.
    #[default]
    Anomalies,
    /// Incident changes worth paging for.
    Incidents,
}

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
    /// The URL is the credential for most chat webhooks: never printed.
    pub endpoint: Secret,
    pub format: Format,
    pub min_severity: MinSeverity,
    pub send: Send,
    /// Values are kept as secrets (never printed): they often carry credentials.
    pub headers: BTreeMap<String, Secret>,
    pub timeout: ConfigDuration,
    pub retry_on_failure: RetrySettings,
    pub sending_queue: QueueSettings,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            endpoint: Secret::default(),
            format: Format::Json,
            min_severity: MinSeverity::Minor,
            send: Send::Anomalies,
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

impl crate::exporters::ExporterType for WebhookConfig {
    type Exporter = WebhookExporter;
    const NAME: &'static str = "webhook";

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        match reqwest::Url::parse(cfg.endpoint.expose()) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            Ok(_) => errors.push(ConfigError::new(
                format!("{path}.endpoint"),
                "must be an http:// or https:// URL",
            )),
            Err(e) => errors.push(ConfigError::new(
                format!("{path}.endpoint"),
                format!("invalid URL: {e}"),
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

    fn accepts(&self) -> &'static [DataKind] {
        &[DataKind::Windows]
    }

    fn build(
        &self,
        _id: &str,
        _telemetry: &crate::telemetry::Telemetry,
    ) -> Result<Self::Exporter, crate::exporters::BuildError> {
        Ok(WebhookExporter::new(self)?)
    }

    fn run_settings(&self) -> RunSettings {
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
        // An anomaly in a range when anomalies are expected is recorded, not alerted.
        let Some(a) = w.anomaly.as_ref().filter(|a| a.is_anomaly && !a.expected) else {
            return false;
        };
        self.severe_enough(a.severity.unwrap_or(Severity::Minor))
    }

    fn severe_enough(&self, sev: Severity) -> bool {
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

/// The request body for incident changes: each with its `dedup_key` (the incident id).
pub fn incident_body(format: Format, events: &[&IncidentEvent]) -> serde_json::Value {
    match format {
        Format::Json => serde_json::json!({
            "incidents": events.iter().map(|e| serde_json::json!({
                "dedup_key": &*e.incident.id,
                "action": e.action.as_str(),
                "document": e.to_document(),
            })).collect::<Vec<_>>()
        }),
        Format::Slack => {
            let lines: Vec<String> = events
                .iter()
                .map(|e| {
                    let icon = match e.action {
                        Action::Resolved => ":white_check_mark:",
                        _ => ":rotating_light:",
                    };
                    format!("{icon} {}", e.summary())
                })
                .collect();
            serde_json::json!({ "text": lines.join("\n") })
        }
    }
}

impl Export for WebhookExporter {
    async fn export(&self, batch: &Batch) -> Result<Delivered, ExportError> {
        let body = match (&batch.payload, self.cfg.send) {
            (Payload::Windows(ws), Send::Anomalies) => {
                let anomalies: Vec<&WindowRecord> = ws.iter().filter(|w| self.wanted(w)).collect();
                if anomalies.is_empty() {
                    return Ok(Delivered::default());
                }
                body(self.cfg.format, &anomalies)
            }
            (Payload::Incidents(es), Send::Incidents) => {
                let events: Vec<&IncidentEvent> = es
                    .iter()
                    .filter(|e| e.notable && self.severe_enough(e.incident.severity))
                    .collect();
                if events.is_empty() {
                    return Ok(Delivered::default());
                }
                incident_body(self.cfg.format, &events)
            }
            (Payload::Windows(_) | Payload::Incidents(_), _) => return Ok(Delivered::default()),
            _ => return Err(ExportError::permanent("webhook takes window records only")),
        };
        let resp = self
            .client
            .post(self.cfg.endpoint.expose())
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                // Without the URL: for chat webhooks it is the secret.
                ExportError::retryable(format!("posting to the webhook: {}", e.without_url()))
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(Delivered::default());
        }
        let after = super::http::retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        Err(super::http::classify_status(
            status.as_u16(),
            "webhook",
            after,
            &text,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::incident::{Incident, Status};
    use crate::model::window::SeriesKey;
    use std::sync::Arc;

    fn event(action: Action) -> IncidentEvent {
        IncidentEvent {
            action,
            at_ns: 1_767_571_210_000_000_000,
            notable: true,
            incident: Incident {
                id: "3f9c0a7d51e2b864".into(),
                status: if action == Action::Resolved {
                    Status::Resolved
                } else {
                    Status::Open
                },
                start_ns: 1_767_571_200_000_000_000,
                end_ns: 1_767_571_210_000_000_000,
                severity: Severity::Major,
                series: vec![Arc::new(SeriesKey::service("service-b"))],
                root_cause: vec![],
                message: "service-b is the likely cause".into(),
            },
        }
    }

    #[test]
    fn incident_posts_carry_the_incident_id_as_dedup_key() {
        let (o, r) = (event(Action::Opened), event(Action::Resolved));
        let b = incident_body(Format::Json, &[&o, &r]);
        assert_eq!(b["incidents"][0]["dedup_key"], "3f9c0a7d51e2b864");
        assert_eq!(b["incidents"][0]["action"], "opened");
        assert_eq!(b["incidents"][1]["action"], "resolved");
        assert_eq!(
            b["incidents"][1]["document"]["incident"]["status"],
            "resolved"
        );
        let s = incident_body(Format::Slack, &[&o, &r]);
        let text = s["text"].as_str().unwrap();
        assert!(text.contains("incident 3f9c0a7d51e2b864 opened"), "{text}");
        assert!(text.contains(":white_check_mark:"), "{text}");
    }
}
