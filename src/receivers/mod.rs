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

pub const TYPES: &[&str] = &["otlp", "otlpjsonfile"];

#[derive(Debug, Clone)]
pub enum ReceiverConfig {
    Otlp(otlp::OtlpReceiverConfig),
    OtlpJsonFile(otlpjsonfile::OtlpJsonFileConfig),
}

pub fn parse_config(
    id: &ComponentId,
    path: &str,
    value: serde_norway::Value,
) -> Result<ReceiverConfig, Vec<ConfigError>> {
    match id.kind.as_str() {
        "otlp" => otlp::OtlpReceiverConfig::parse(path, value).map(ReceiverConfig::Otlp),
        "otlpjsonfile" => {
            otlpjsonfile::OtlpJsonFileConfig::parse(path, value).map(ReceiverConfig::OtlpJsonFile)
        }
        other => Err(vec![ConfigError::new(
            path,
            format!(
                "unknown receiver type {other:?} (known: {})",
                TYPES.join(", ")
            ),
        )]),
    }
}

impl ReceiverConfig {
    /// The signals this receiver can produce.
    pub fn signals(&self) -> &'static [DataKind] {
        &DataKind::SIGNALS
    }

    /// The network endpoints it listens on, for the port-conflict check.
    pub fn listens(&self, path: &str) -> Vec<Listen> {
        match self {
            ReceiverConfig::Otlp(c) => c.listens(path),
            ReceiverConfig::OtlpJsonFile(_) => Vec::new(),
        }
    }
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
}

/// A started receiver. Its task ends once it has stopped and dropped its pipeline handles.
pub struct RunningReceiver {
    pub task: JoinHandle<()>,
    /// True for sources that end by themselves (files); when every receiver is finite and all
    /// have ended, otelwatch drains and exits.
    pub finite: bool,
}

pub async fn start(
    cfg: &ReceiverConfig,
    ctx: ReceiverContext,
) -> Result<RunningReceiver, ReceiverError> {
    match cfg {
        ReceiverConfig::Otlp(c) => otlp::start(c, ctx).await,
        ReceiverConfig::OtlpJsonFile(c) => otlpjsonfile::start(c, ctx).await,
    }
}
