//! The one envelope that travels on every edge of a pipeline.

use crate::windows::WindowRecord;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use std::fmt;
use std::sync::Arc;

/// What flows through a pipeline. A pipeline starts with its signal; a processor may change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataKind {
    Traces,
    Metrics,
    Logs,
    /// Window records (from the `window` processor), scored or not.
    Windows,
}

impl DataKind {
    pub const SIGNALS: [DataKind; 3] = [DataKind::Traces, DataKind::Metrics, DataKind::Logs];
    pub const ALL: [DataKind; 4] = [
        DataKind::Traces,
        DataKind::Metrics,
        DataKind::Logs,
        DataKind::Windows,
    ];

    pub fn from_signal_name(s: &str) -> Option<Self> {
        match s {
            "traces" => Some(Self::Traces),
            "metrics" => Some(Self::Metrics),
            "logs" => Some(Self::Logs),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Metrics => "metrics",
            Self::Logs => "logs",
            Self::Windows => "windows",
        }
    }

    /// Position among the OTLP signals (traces 0, metrics 1, logs 2); `None` for windows.
    pub fn signal_index(self) -> Option<usize> {
        match self {
            Self::Traces => Some(0),
            Self::Metrics => Some(1),
            Self::Logs => Some(2),
            Self::Windows => None,
        }
    }

    /// What one counted item is called in logs and metrics.
    pub fn item_name(self) -> &'static str {
        match self {
            Self::Traces => "spans",
            Self::Metrics => "data points",
            Self::Logs => "log records",
            Self::Windows => "windows",
        }
    }
}

impl fmt::Display for DataKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoded batch, shared between fan-out branches without copying.
#[derive(Debug, Clone)]
pub enum Payload {
    Traces(Arc<ExportTraceServiceRequest>),
    Metrics(Arc<ExportMetricsServiceRequest>),
    Logs(Arc<ExportLogsServiceRequest>),
    Windows(Arc<Vec<WindowRecord>>),
}

impl Payload {
    pub fn kind(&self) -> DataKind {
        match self {
            Payload::Traces(_) => DataKind::Traces,
            Payload::Metrics(_) => DataKind::Metrics,
            Payload::Logs(_) => DataKind::Logs,
            Payload::Windows(_) => DataKind::Windows,
        }
    }
}

/// One batch on a pipeline edge. Cloning is cheap (reference counts only).
#[derive(Debug, Clone)]
pub struct Batch {
    pub payload: Payload,
    /// The exact protobuf encoding of `payload` when the batch arrived as protobuf and nothing
    /// has changed it since: the `otlp` exporter forwards these bytes as they are instead of
    /// encoding again. Anything that modifies `payload` must set this to `None`.
    pub encoded: Option<Bytes>,
    /// Items in the batch (spans, metric data points or log records).
    pub items: usize,
}

impl Batch {
    pub fn kind(&self) -> DataKind {
        self.payload.kind()
    }
}
