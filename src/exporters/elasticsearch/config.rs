//! The exporter's settings and their checks.

use crate::config::decode::decode_section;
use crate::config::duration::ConfigDuration;
use crate::config::error::ConfigError;
use crate::config::secret::Secret;
use crate::exporters::framework::{QueueSettings, RetrySettings, RunSettings};
use crate::pipeline::DataKind;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    DataStream,
    Index,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM file of the CA that signed the cluster's certificate.
    pub ca_file: String,
    /// Accept any certificate (test clusters only).
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DiskQueue {
    /// Where spool files live; unset: `data/<exporter id>-queue`; empty: in memory only
    /// (lost at a crash).
    pub directory: Option<String>,
    /// Queued bytes at which new batches wait (pushing back on the pipeline).
    pub max_bytes: u64,
}

impl Default for DiskQueue {
    fn default() -> Self {
        Self {
            directory: None,
            max_bytes: 1 << 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchConfig {
    pub endpoints: Vec<String>,
    pub user: String,
    pub password: Secret,
    pub api_key: Secret,
    pub tls: TlsSettings,
    pub mode: Mode,
    pub windows_index: String,
    pub anomalies_index: String,
    /// A plain index (or alias) in both modes: incident states replace each other by id.
    pub incidents_index: String,
    pub max_documents: usize,
    pub max_bytes: usize,
    /// Gather closed windows for up to this long (or `max_documents`) before writing; `0s`
    /// writes each set of windows as soon as it closes.
    pub flush_interval: ConfigDuration,
    pub compression: bool,
    pub timeout: ConfigDuration,
    pub retry_on_failure: RetrySettings,
    pub sending_queue: QueueSettings,
    pub queue: DiskQueue,
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://localhost:9200".into()],
            user: String::new(),
            password: Secret::default(),
            api_key: Secret::default(),
            tls: TlsSettings::default(),
            mode: Mode::DataStream,
            windows_index: "otelwatch-windows".into(),
            anomalies_index: "otelwatch-anomalies".into(),
            incidents_index: "otelwatch-incidents".into(),
            max_documents: 1000,
            max_bytes: 5 * 1024 * 1024,
            flush_interval: ConfigDuration::from_secs(0),
            compression: true,
            timeout: ConfigDuration::from_secs(30),
            retry_on_failure: RetrySettings {
                initial_interval: ConfigDuration::from_secs(1),
                ..RetrySettings::default()
            },
            sending_queue: QueueSettings {
                num_consumers: 2,
                ..QueueSettings::default()
            },
            queue: DiskQueue::default(),
        }
    }
}

fn valid_index_name(n: &str) -> bool {
    !n.is_empty()
        && n == n.to_lowercase()
        && !n.starts_with(['-', '_', '+'])
        && !n.contains([' ', '\\', '/', '*', '?', '"', '<', '>', '|', ',', '#', ':'])
}

impl crate::exporters::ExporterType for ElasticsearchConfig {
    type Exporter = super::ElasticsearchExporter;
    const NAME: &'static str = "elasticsearch";

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if cfg.endpoints.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.endpoints"),
                "list at least one endpoint",
            ));
        }
        for (i, e) in cfg.endpoints.iter().enumerate() {
            match url::Url::parse(e) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => errors.push(ConfigError::new(
                    format!("{path}.endpoints[{i}]"),
                    format!("invalid URL {e:?} (http:// or https://)"),
                )),
            }
        }
        if !cfg.api_key.is_empty() && !cfg.user.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.api_key"),
                "set either api_key or user/password, not both",
            ));
        }
        if cfg.user.is_empty() != cfg.password.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.password"),
                "user and password go together",
            ));
        }
        for (field, name) in [
            ("windows_index", &cfg.windows_index),
            ("anomalies_index", &cfg.anomalies_index),
            ("incidents_index", &cfg.incidents_index),
        ] {
            if !valid_index_name(name) {
                errors.push(ConfigError::new(
                    format!("{path}.{field}"),
                    format!("{name:?} is not a valid index name (lowercase, no spaces or \\/*?\"<>|,#:)"),
                ));
            }
        }
        if cfg.max_documents == 0 {
            errors.push(ConfigError::new(
                format!("{path}.max_documents"),
                "must be at least 1",
            ));
        }
        if cfg.max_bytes < 1024 {
            errors.push(ConfigError::new(
                format!("{path}.max_bytes"),
                "must be at least 1024",
            ));
        }
        crate::exporters::framework::validate_sending(
            path,
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
        id: &str,
        telemetry: &crate::telemetry::Telemetry,
    ) -> Result<Self::Exporter, crate::exporters::BuildError> {
        Ok(super::ElasticsearchExporter::new(self, id, telemetry)?)
    }

    fn run_settings(&self) -> RunSettings {
        RunSettings {
            queue: self.sending_queue.clone(),
            retry: self.retry_on_failure.clone(),
            // Item-level retries happen inside one export call; the framework's timeout covers
            // the whole call, so it is left to the client's per-request timeout.
            timeout: None,
            accumulate: (!self.flush_interval.get().is_zero())
                .then(|| (self.max_documents, self.flush_interval.get())),
            encoded_only: false,
        }
    }
}
