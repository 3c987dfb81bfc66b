//! The one envelope that travels on every edge of a pipeline.

use crate::model::incident::IncidentEvent;
use crate::model::window::WindowRecord;
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
    /// Detection output: window records (from the `window` processor), scored or not, and
    /// the incident events the `incidents` processor adds to them.
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

    /// The OTLP signal this kind is; `None` for windows.
    pub fn signal(self) -> Option<SignalKind> {
        match self {
            Self::Traces => Some(SignalKind::Traces),
            Self::Metrics => Some(SignalKind::Metrics),
            Self::Logs => Some(SignalKind::Logs),
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

/// The three OTLP signals: what receivers produce and forwarding exporters send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignalKind {
    Traces,
    Metrics,
    Logs,
}

impl SignalKind {
    pub const ALL: [SignalKind; 3] = [SignalKind::Traces, SignalKind::Metrics, SignalKind::Logs];

    /// Position in per-signal tables: traces 0, metrics 1, logs 2.
    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn data_kind(self) -> DataKind {
        match self {
            Self::Traces => DataKind::Traces,
            Self::Metrics => DataKind::Metrics,
            Self::Logs => DataKind::Logs,
        }
    }
}

impl fmt::Display for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.data_kind().as_str())
    }
}

/// A traces request, shared between fan-out branches without copying: decoded, or — received
/// as protobuf and checked on the wire (`otlp::view::check_traces`) — only its bytes, decoded
/// the first time something needs the object tree. Forwarding and detection read the bytes;
/// the debug and file exporters and the processors that change data decode.
#[derive(Debug, Clone, Default)]
pub struct Traces(Arc<TracesRepr>);

#[derive(Debug, Default)]
struct TracesRepr {
    wire: Option<Bytes>,
    decoded: std::sync::OnceLock<ExportTraceServiceRequest>,
}

impl Traces {
    pub fn decoded(request: ExportTraceServiceRequest) -> Self {
        Traces(Arc::new(TracesRepr {
            wire: None,
            decoded: request.into(),
        }))
    }

    /// A request as its protobuf bytes, which the caller has checked decode.
    pub fn wire(bytes: Bytes) -> Self {
        Traces(Arc::new(TracesRepr {
            wire: Some(bytes),
            decoded: Default::default(),
        }))
    }

    /// The protobuf bytes, when the request is held as them and not yet decoded.
    pub fn undecoded(&self) -> Option<&Bytes> {
        match self.0.decoded.get() {
            Some(_) => None,
            None => self.0.wire.as_ref(),
        }
    }

    /// The request, decoded now if it is only bytes. Bytes that were checked always decode;
    /// if they did not, the failure is logged and the request reads as empty.
    pub fn request(&self) -> &ExportTraceServiceRequest {
        self.0.decoded.get_or_init(|| {
            let bytes = self.0.wire.as_deref().unwrap_or_default();
            prost::Message::decode(bytes).unwrap_or_else(|e| {
                tracing::error!(error = %e, bytes = bytes.len(), "a checked traces request did not decode; its spans are not read");
                ExportTraceServiceRequest::default()
            })
        })
    }

    /// Changes the request: decoded, and no longer tied to the bytes it came as.
    pub fn modify<R>(&mut self, f: impl FnOnce(&mut ExportTraceServiceRequest) -> R) -> R {
        let mut request = std::mem::take(self).into_request();
        let out = f(&mut request);
        *self = Traces::decoded(request);
        out
    }

    /// The request, owned (a copy only if it is shared).
    pub fn into_request(self) -> ExportTraceServiceRequest {
        match Arc::try_unwrap(self.0) {
            Ok(mut repr) => match repr.decoded.take() {
                Some(r) => r,
                None => Traces(Arc::new(repr)).request().clone(),
            },
            Err(shared) => Traces(shared).request().clone(),
        }
    }
}

/// A decoded batch, shared between fan-out branches without copying.
#[derive(Debug, Clone)]
pub enum Payload {
    Traces(Traces),
    Metrics(Arc<ExportMetricsServiceRequest>),
    Logs(Arc<ExportLogsServiceRequest>),
    Windows(Arc<Vec<WindowRecord>>),
    /// Incident changes; of the `windows` kind (they travel with the records they group).
    Incidents(Arc<Vec<IncidentEvent>>),
}

impl Payload {
    pub fn kind(&self) -> DataKind {
        match self {
            Payload::Traces(_) => DataKind::Traces,
            Payload::Metrics(_) => DataKind::Metrics,
            Payload::Logs(_) => DataKind::Logs,
            Payload::Windows(_) | Payload::Incidents(_) => DataKind::Windows,
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
    /// Its share of the memory pool (received batches); released with the last copy.
    pub held: super::memory::Held,
}

impl Batch {
    pub fn kind(&self) -> DataKind {
        self.payload.kind()
    }

    /// The batch as an exporter that sends only `encoded` needs it: when the bytes are there,
    /// the decoded payload is replaced by an empty request of the same signal, so a queue of
    /// such batches holds the wire bytes and not also the (several times larger) decoded copy.
    /// The one exception to "payload and encoded agree"; only for such exporters' queues.
    pub fn encoded_only(self) -> Batch {
        let payload = match (&self.encoded, &self.payload) {
            (Some(_), Payload::Traces(_)) => Payload::Traces(Traces::default()),
            (Some(_), Payload::Metrics(_)) => Payload::Metrics(Arc::default()),
            (Some(_), Payload::Logs(_)) => Payload::Logs(Arc::default()),
            _ => return self,
        };
        Batch { payload, ..self }
    }

    /// Appends `b` to `a` when both carry the same kind of data; gives `b` back otherwise.
    pub fn merge(&mut self, b: Batch) -> Result<(), Batch> {
        let merged = match (&mut self.payload, b.payload) {
            (Payload::Traces(x), Payload::Traces(y)) => {
                x.modify(|x| x.resource_spans.extend(y.into_request().resource_spans));
                true
            }
            (Payload::Metrics(x), Payload::Metrics(y)) => {
                Arc::make_mut(x)
                    .resource_metrics
                    .extend(owned(y).resource_metrics);
                true
            }
            (Payload::Logs(x), Payload::Logs(y)) => {
                Arc::make_mut(x)
                    .resource_logs
                    .extend(owned(y).resource_logs);
                true
            }
            (_, other) => {
                return Err(Batch {
                    payload: other,
                    encoded: b.encoded,
                    items: b.items,
                    held: b.held,
                })
            }
        };
        if merged {
            self.items += b.items;
            self.held.absorb(b.held);
            self.encoded = None;
        }
        Ok(())
    }

    /// Merges batches of one kind in order, all at once. When every one has its bytes they are
    /// merged on the wire: a request's only field is its repeated list of resources, so the
    /// concatenation of the requests' bytes is exactly the merged request's encoding (made
    /// once; merging pairwise would copy what was gathered at every step). Traces held as bytes
    /// stay bytes; otherwise the payloads are merged decoded and keep the joined bytes, or none
    /// when a batch had none. Batches that cannot merge (records) stay apart.
    pub fn merge_all(batches: Vec<Batch>) -> Vec<Batch> {
        if batches.len() < 2 {
            return batches;
        }
        let joined = batches
            .iter()
            .map(|b| b.encoded.as_ref())
            .collect::<Option<Vec<&Bytes>>>()
            .map(|parts| {
                let mut buf = bytes::BytesMut::with_capacity(parts.iter().map(|p| p.len()).sum());
                for p in parts {
                    buf.extend_from_slice(p);
                }
                buf.freeze()
            });
        let undecoded = batches
            .iter()
            .all(|b| matches!(&b.payload, Payload::Traces(t) if t.undecoded().is_some()));
        let mut it = batches.into_iter();
        let Some(mut first) = it.next() else {
            return Vec::new();
        };
        if let (Some(bytes), true) = (&joined, undecoded) {
            for b in it {
                first.items += b.items;
                first.held.absorb(b.held);
            }
            first.payload = Payload::Traces(Traces::wire(bytes.clone()));
            first.encoded = joined;
            return vec![first];
        }
        let mut out = vec![first];
        for b in it {
            if let Some(Err(b)) = out.last_mut().map(|last| last.merge(b)) {
                out.push(b);
            }
        }
        if let [merged] = out.as_mut_slice() {
            merged.encoded = joined;
        }
        out
    }
}

fn owned<T: Clone>(a: Arc<T>) -> T {
    Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    #[test]
    fn encoded_only_keeps_the_bytes_and_drops_the_decoded_copy() {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        name: "GET /".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = Bytes::from(req.encode_to_vec());
        let batch = Batch {
            payload: Payload::Traces(Traces::decoded(req.clone())),
            encoded: Some(bytes.clone()),
            items: 1,
            held: Default::default(),
        };
        let slim = batch.encoded_only();
        assert_eq!(slim.encoded.as_ref(), Some(&bytes));
        assert_eq!(slim.items, 1);
        assert_eq!(slim.kind(), DataKind::Traces);
        assert!(
            matches!(&slim.payload, Payload::Traces(t) if t.request().resource_spans.is_empty())
        );
        // Without bytes there is nothing to send but the payload: it stays.
        let kept = Batch {
            payload: Payload::Traces(Traces::decoded(req)),
            encoded: None,
            items: 1,
            held: Default::default(),
        }
        .encoded_only();
        assert!(
            matches!(&kept.payload, Payload::Traces(t) if t.request().resource_spans.len() == 1)
        );
    }
}
