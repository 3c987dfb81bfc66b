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
use crate::extensions::Extensions;
use crate::pipeline::DataKind;
use crate::telemetry::Telemetry;
use framework::persistent::StoredQueue;
use framework::{RunSettings, RunningExporter};
use tokio_util::sync::CancellationToken;

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
    /// Whether its `sending_queue` can be kept in a storage extension (it sends OTLP batches).
    const STORES_QUEUE: bool = false;
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

        /// The types whose `sending_queue` can name a `storage`.
        pub fn storing_types() -> Vec<&'static str> {
            let all = [$((<$config as ExporterType>::NAME, <$config as ExporterType>::STORES_QUEUE)),*];
            all.into_iter().filter(|(_, s)| *s).map(|(n, _)| n).collect()
        }

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

            /// The storage extension its `sending_queue` names, if any.
            pub fn queue_storage(&self) -> Option<String> {
                match self {
                    $(Self::$variant(c) => c.run_settings().queue.storage),*
                }
            }

            pub fn can_store_queue(&self) -> bool {
                match self {
                    $(Self::$variant(_) => <$config as ExporterType>::STORES_QUEUE),*
                }
            }

            /// Builds the exporter and starts its loop.
            /// (`stop` begins the shutdown: retries stop waiting.)
            pub fn start(
                &self,
                id: &ComponentId,
                telemetry: &Telemetry,
                extensions: &Extensions,
                stop: &CancellationToken,
            ) -> Result<RunningExporter, ExporterError> {
                let name = id.to_string();
                let started = match self {
                    $(Self::$variant(c) => {
                        let settings = c.run_settings();
                        open_stored(&name, &settings, extensions).and_then(|stored| {
                            let exporter = c.build(&name, telemetry)?;
                            Ok(framework::spawn(&name, exporter, settings, stored, stop.clone(), telemetry))
                        })
                    }),*
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

/// The exporter's queue in storage, when its `sending_queue` names one.
fn open_stored(
    id: &str,
    settings: &RunSettings,
    extensions: &Extensions,
) -> Result<Option<StoredQueue>, BuildError> {
    let Some(name) = &settings.queue.storage else {
        return Ok(None);
    };
    let storage = extensions
        .storage(name)
        .ok_or_else(|| format!("storage {name:?} is not running"))?;
    let (files, left) = storage.open_queue(id)?;
    Ok(Some(StoredQueue::new(
        files,
        left,
        settings.queue.queue_size,
    )))
}

#[derive(Debug, thiserror::Error)]
#[error("exporter {id}: {source}")]
pub struct ExporterError {
    pub id: String,
    pub source: BuildError,
}
