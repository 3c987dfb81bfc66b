//! Receivers: where data enters. This table is the only place that lists them.
//!
//! | type | signals | what |
//! |---|---|---|
//! | `otlp` | traces, metrics, logs | OTLP/gRPC and OTLP/HTTP servers |
//! | `otlpjsonfile` | traces, metrics, logs | replays OTLP/JSON lines files (the `file` exporter's format) |

pub mod otlp;
pub mod otlpjsonfile;

use crate::config::error::ConfigError;
use crate::config::id::ComponentId;
use crate::config::listen::Listen;
use crate::pipeline::{DataKind, FanOut};
use crate::telemetry::Telemetry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the table needs of each receiver type; implemented by its config struct, in the
/// receiver's own module.
pub trait ReceiverType: Sized {
    /// The `type` in a component id.
    const NAME: &'static str;
    /// Decodes and checks the component's section, naming each problem's YAML path.
    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>>;
    /// The signals it can produce.
    fn signals(&self) -> &'static [DataKind] {
        &DataKind::SIGNALS
    }
    /// The network endpoints it listens on, for the port-conflict check.
    fn listens(&self, _path: &str) -> Vec<Listen> {
        Vec::new()
    }
    /// The authenticators it names: (YAML path, extension id).
    fn authenticators(&self, _path: &str) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Starts receiving; the task ends once it has stopped and let go of the pipelines.
    fn start(
        &self,
        ctx: ReceiverContext,
    ) -> impl std::future::Future<Output = Result<RunningReceiver, ReceiverError>> + Send;
}

/// The table: one line per receiver type.
macro_rules! receiver_table {
    ($($variant:ident($config:ty)),* $(,)?) => {
        // Built once from the config file: its size does not matter.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone)]
        pub enum ReceiverConfig {
            $($variant($config)),*
        }

        pub const TYPES: &[&str] = &[$(<$config as ReceiverType>::NAME),*];

        pub fn parse_config(
            id: &ComponentId,
            path: &str,
            value: serde_norway::Value,
        ) -> Result<ReceiverConfig, Vec<ConfigError>> {
            $(if id.kind == <$config as ReceiverType>::NAME {
                return <$config as ReceiverType>::parse(path, value).map(ReceiverConfig::$variant);
            })*
            Err(vec![ConfigError::new(
                path,
                format!(
                    "unknown receiver type {:?} (known: {})",
                    id.kind,
                    TYPES.join(", ")
                ),
            )])
        }

        impl ReceiverConfig {
            /// The signals this receiver can produce.
            pub fn signals(&self) -> &'static [DataKind] {
                match self {
                    $(Self::$variant(c) => c.signals()),*
                }
            }

            /// The network endpoints it listens on, for the port-conflict check.
            pub fn listens(&self, path: &str) -> Vec<Listen> {
                match self {
                    $(Self::$variant(c) => c.listens(path)),*
                }
            }

            /// The authenticators it names: (YAML path, extension id).
            pub fn authenticators(&self, path: &str) -> Vec<(String, String)> {
                match self {
                    $(Self::$variant(c) => <$config as ReceiverType>::authenticators(c, path)),*
                }
            }
        }

        pub async fn start(
            cfg: &ReceiverConfig,
            ctx: ReceiverContext,
        ) -> Result<RunningReceiver, ReceiverError> {
            match cfg {
                $(ReceiverConfig::$variant(c) => c.start(ctx).await),*
            }
        }
    };
}

receiver_table! {
    Otlp(otlp::OtlpReceiverConfig),
    OtlpJsonFile(otlpjsonfile::OtlpJsonFileConfig),
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("receiver {receiver}: cannot listen on {endpoint}: {source}")]
    Bind {
        receiver: String,
        endpoint: String,
        source: std::io::Error,
    },
    #[error("receiver {receiver}: {message}")]
    Start { receiver: String, message: String },
}

/// What a receiver is given when it starts.
pub struct ReceiverContext {
    pub id: ComponentId,
    /// Where each signal goes, indexed traces, metrics, logs; `None` where no pipeline wants it.
    pub consumers: [Option<FanOut>; 3],
    pub telemetry: Telemetry,
    /// Cancelled when the receiver must stop accepting data.
    pub stop: CancellationToken,
    /// The started extensions (authenticators).
    pub extensions: std::sync::Arc<crate::extensions::Extensions>,
    /// Where every accepted batch reserves its size (see `pipeline::memory`).
    pub memory: std::sync::Arc<crate::pipeline::memory::MemoryPool>,
}

/// A started receiver. Its task ends once it has stopped and dropped its pipeline handles.
pub struct RunningReceiver {
    pub task: JoinHandle<()>,
    /// True for sources that end by themselves (files); when every receiver is finite and all
    /// have ended, otelwatch drains and exits.
    pub finite: bool,
}
