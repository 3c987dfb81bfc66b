//! Exporters: where data leaves. This table is the only place that lists them.
//!
//! | type | takes | what |
//! |---|---|---|
//! | `otlp` | traces, metrics, logs | OTLP/gRPC to a downstream collector (forwarding) |
//! | `otlphttp` | traces, metrics, logs | OTLP/HTTP to a downstream collector (forwarding) |
//! | `debug` | traces, metrics, logs, windows | prints to the terminal (anomalies as coloured lines) |
//! | `file` | traces, metrics, logs, windows | OTLP/JSON lines; window documents |
//! | `nop` | traces, metrics, logs, windows | discards (benchmarks) |
//! | `webhook` | windows | posts anomalies (JSON or Slack `text`) |
//! | `elasticsearch` | windows | window and anomaly documents into Elasticsearch / OpenSearch |

pub mod debug;
pub mod elasticsearch;
pub mod file;
pub mod framework;
pub mod http;
pub mod nop;
pub mod otlp;
pub mod otlphttp;
pub mod webhook;

use crate::config::error::ConfigError;
use crate::config::id::ComponentId;
use crate::pipeline::DataKind;
use crate::telemetry::Telemetry;
use framework::{QueueSettings, RetrySettings, RunSettings, RunningExporter};

pub const TYPES: &[&str] = &[
    "otlp",
    "otlphttp",
    "debug",
    "file",
    "nop",
    "webhook",
    "elasticsearch",
];

#[derive(Debug, Clone)]
pub enum ExporterConfig {
    Otlp(otlp::OtlpExporterConfig),
    OtlpHttp(otlphttp::OtlpHttpConfig),
    Debug(debug::DebugConfig),
    File(file::FileConfig),
    Nop,
    Webhook(webhook::WebhookConfig),
    Elasticsearch(elasticsearch::ElasticsearchConfig),
}

pub fn parse_config(
    id: &ComponentId,
    path: &str,
    value: serde_norway::Value,
) -> Result<ExporterConfig, Vec<ConfigError>> {
    match id.kind.as_str() {
        "otlp" => otlp::OtlpExporterConfig::parse(path, value).map(ExporterConfig::Otlp),
        "otlphttp" => otlphttp::OtlpHttpConfig::parse(path, value).map(ExporterConfig::OtlpHttp),
        "debug" => debug::DebugConfig::parse(path, value).map(ExporterConfig::Debug),
        "file" => file::FileConfig::parse(path, value).map(ExporterConfig::File),
        "webhook" => webhook::WebhookConfig::parse(path, value).map(ExporterConfig::Webhook),
        "elasticsearch" => elasticsearch::ElasticsearchConfig::parse(path, value)
            .map(ExporterConfig::Elasticsearch),
        "nop" => match value {
            serde_norway::Value::Null => Ok(ExporterConfig::Nop),
            serde_norway::Value::Mapping(m) if m.is_empty() => Ok(ExporterConfig::Nop),
            _ => Err(vec![ConfigError::new(path, "nop takes no settings")]),
        },
        other => Err(vec![ConfigError::new(
            path,
            format!(
                "unknown exporter type {other:?} (known: {})",
                TYPES.join(", ")
            ),
        )]),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error("exporter {id}: {source}")]
    Otlp {
        id: String,
        source: otlp::OtlpExporterError,
    },
    #[error("exporter {id}: {source}")]
    OtlpHttp {
        id: String,
        source: otlphttp::OtlpHttpError,
    },
    #[error("exporter {id}: {source}")]
    File {
        id: String,
        source: file::FileExporterError,
    },
    #[error("exporter {id}: {source}")]
    Elasticsearch {
        id: String,
        source: elasticsearch::ElasticsearchError,
    },
    #[error("exporter {id}: {source}")]
    Webhook {
        id: String,
        source: webhook::WebhookError,
    },
}

/// Local exporters send one batch at a time, in order, and never retry for long.
fn local_settings() -> RunSettings {
    RunSettings {
        queue: QueueSettings::serial(256),
        retry: RetrySettings::disabled(),
        timeout: None,
        accumulate: None,
        encoded_only: false,
    }
}

impl ExporterConfig {
    /// The data kinds this exporter can take.
    pub fn accepts(&self) -> &'static [DataKind] {
        match self {
            ExporterConfig::Otlp(_) | ExporterConfig::OtlpHttp(_) => &DataKind::SIGNALS,
            ExporterConfig::Debug(_) | ExporterConfig::File(_) | ExporterConfig::Nop => {
                &DataKind::ALL
            }
            ExporterConfig::Webhook(_) | ExporterConfig::Elasticsearch(_) => &[DataKind::Windows],
        }
    }

    /// Builds the exporter and starts its loop.
    pub fn start(
        &self,
        id: &ComponentId,
        telemetry: &Telemetry,
    ) -> Result<RunningExporter, ExporterError> {
        let name = id.to_string();
        Ok(match self {
            ExporterConfig::Otlp(c) => {
                let exp = otlp::OtlpExporter::new(c).map_err(|source| ExporterError::Otlp {
                    id: name.clone(),
                    source,
                })?;
                framework::spawn(&name, exp, c.run_settings(), telemetry)
            }
            ExporterConfig::OtlpHttp(c) => {
                let exp = otlphttp::OtlpHttpExporter::new(c).map_err(|source| {
                    ExporterError::OtlpHttp {
                        id: name.clone(),
                        source,
                    }
                })?;
                framework::spawn(&name, exp, c.run_settings(), telemetry)
            }
            ExporterConfig::Debug(c) => framework::spawn(
                &name,
                debug::DebugExporter::new(c),
                local_settings(),
                telemetry,
            ),
            ExporterConfig::File(c) => {
                let exp = file::FileExporter::new(c).map_err(|source| ExporterError::File {
                    id: name.clone(),
                    source,
                })?;
                framework::spawn(&name, exp, local_settings(), telemetry)
            }
            ExporterConfig::Nop => {
                framework::spawn(&name, nop::NopExporter, local_settings(), telemetry)
            }
            ExporterConfig::Webhook(c) => {
                let exp =
                    webhook::WebhookExporter::new(c).map_err(|source| ExporterError::Webhook {
                        id: name.clone(),
                        source,
                    })?;
                framework::spawn(&name, exp, c.run_settings(), telemetry)
            }
            ExporterConfig::Elasticsearch(c) => {
                let exp = elasticsearch::ElasticsearchExporter::new(c, &name, telemetry).map_err(
                    |source| ExporterError::Elasticsearch {
                        id: name.clone(),
                        source,
                    },
                )?;
                framework::spawn(&name, exp, c.run_settings(), telemetry)
            }
        })
    }
}
