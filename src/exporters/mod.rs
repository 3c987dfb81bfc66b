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
use framework::{RunSettings, RunningExporter};

/// A failure building an exporter, reported by its own module's error type.
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// What the table needs of each exporter type; implemented by its config struct, in the
/// exporter's own module.
pub trait ExporterType: Sized {
    /// The `type` in a component id.
    const NAME: &'static str;
    /// Decodes and checks the component's section, naming each problem's YAML path.
    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>>;
    /// What sends: the framework runs it with a queue, consumers, retries and counters.
    type Exporter: framework::Export;
    /// The data kinds it can take.
    fn accepts(&self) -> &'static [DataKind];
    /// Its queue, retry and timeout (local exporters: one batch at a time, no retrying).
    fn run_settings(&self) -> RunSettings {
        RunSettings::local()
    }
    /// Builds the exporter (`id`: its component id, for metrics and logs).
    fn build(&self, id: &str, telemetry: &Telemetry) -> Result<Self::Exporter, BuildError>;
}

/// The table: one line per exporter type.
macro_rules! exporter_table {
    ($($variant:ident($config:ty)),* $(,)?) => {
        #[derive(Debug, Clone)]
        pub enum ExporterConfig {
            $($variant($config)),*
        }

        pub const TYPES: &[&str] = &[$(<$config as ExporterType>::NAME),*];

        pub fn parse_config(
            id: &ComponentId,
            path: &str,
            value: serde_norway::Value,
        ) -> Result<ExporterConfig, Vec<ConfigError>> {
            $(if id.kind == <$config as ExporterType>::NAME {
                return <$config as ExporterType>::parse(path, value).map(ExporterConfig::$variant);
            })*
            Err(vec![ConfigError::new(
                path,
                format!(
                    "unknown exporter type {:?} (known: {})",
                    id.kind,
                    TYPES.join(", ")
                ),
            )])
        }

        impl ExporterConfig {
            /// The data kinds this exporter can take.
            pub fn accepts(&self) -> &'static [DataKind] {
                match self {
                    $(Self::$variant(c) => c.accepts()),*
                }
            }

            /// Builds the exporter and starts its loop.
            pub fn start(
                &self,
                id: &ComponentId,
                telemetry: &Telemetry,
            ) -> Result<RunningExporter, ExporterError> {
                let name = id.to_string();
                let started = match self {
                    $(Self::$variant(c) => c.build(&name, telemetry).map(|exporter| {
                        framework::spawn(&name, exporter, c.run_settings(), telemetry)
                    })),*
                };
                started.map_err(|source| ExporterError { id: name, source })
            }
        }
    };
}

exporter_table! {
    Otlp(otlp::OtlpExporterConfig),
    OtlpHttp(otlphttp::OtlpHttpConfig),
    Debug(debug::DebugConfig),
    File(file::FileConfig),
    Nop(nop::NopConfig),
    Webhook(webhook::WebhookConfig),
    Elasticsearch(elasticsearch::ElasticsearchConfig),
}

#[derive(Debug, thiserror::Error)]
#[error("exporter {id}: {source}")]
pub struct ExporterError {
    pub id: String,
    pub source: BuildError,
}
