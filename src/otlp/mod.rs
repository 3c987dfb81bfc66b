//! What the three OTLP signals have in common for receiving, validating and forwarding.

pub mod codec;
pub mod compression;
pub mod records;
pub mod split;
pub mod status;
pub mod view;
pub mod wire;

use crate::pipeline::SignalKind;
use crate::pipeline::{Batch, Payload};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// A string attribute (`key: value`) of a resource, scope or item.
pub fn string_attribute(
    key: &str,
    value: &str,
) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// The outcome of checking a decoded request item by item.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checked {
    pub accepted: usize,
    pub rejected: usize,
    /// Why items were rejected (empty when none were).
    pub reason: String,
}

/// One OTLP signal: its message types, its gRPC and HTTP paths, and how to count and check items.
pub trait Signal:
    prost::Message + Default + Serialize + DeserializeOwned + Send + Sync + 'static
{
    const SIGNAL: SignalKind;
    /// gRPC service name, for routing (`opentelemetry.proto.collector.trace.v1.TraceService`).
    const SERVICE: &'static str;
    /// gRPC method path.
    const GRPC_PATH: &'static str;
    /// OTLP/HTTP default path.
    const HTTP_PATH: &'static str;
    type Response: prost::Message + Default + Serialize + Send + Sync + 'static;

    /// Counts the items and removes those that break the OTLP data model (ids of the wrong length).
    fn check(&mut self) -> Checked;
    fn response(rejected: usize, message: String) -> Self::Response;
    /// Items rejected by a peer, read from its response.
    fn rejected_in(response: &Self::Response) -> (i64, String);
    fn into_payload(self) -> Payload;

    /// A request received as protobuf, checked and made a batch. By default decoded and
    /// checked; a signal that can check its requests on the wire hands the bytes on as they
    /// are, for whoever needs the object tree to decode.
    fn receive(body: Bytes) -> Result<(Batch, Checked), Malformed> {
        let mut msg = <Self as prost::Message>::decode(body.clone())?;
        let checked = msg.check();
        Ok((batch_from(msg, Some(body), &checked), checked))
    }
}

/// Why a received request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error(transparent)]
    Decode(#[from] prost::DecodeError),
    #[error(transparent)]
    Wire(#[from] wire::WireError),
}

/// Builds a batch from a checked request. `encoded` is kept only if nothing was removed, so it
/// always matches the payload.
pub fn batch_from<S: Signal>(msg: S, encoded: Option<Bytes>, checked: &Checked) -> Batch {
    Batch {
        payload: msg.into_payload(),
        encoded: if checked.rejected == 0 { encoded } else { None },
        items: checked.accepted,
        held: Default::default(),
    }
}

fn valid_id(id: &[u8], len: usize) -> bool {
    id.len() == len && id.iter().any(|b| *b != 0)
}

fn optional_id(id: &[u8], len: usize) -> bool {
    id.is_empty() || valid_id(id, len)
}

/// Removes the items `keep` refuses from each group, counting both sides.
fn retain_counting<T>(items: &mut Vec<T>, keep: impl Fn(&T) -> bool, checked: &mut Checked) {
    let before = items.len();
    if items.iter().any(|i| !keep(i)) {
        items.retain(|i| keep(i));
    }
    checked.accepted += items.len();
    checked.rejected += before - items.len();
}

impl Signal for ExportTraceServiceRequest {
    const SIGNAL: SignalKind = SignalKind::Traces;
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    const HTTP_PATH: &'static str = "/v1/traces";
    type Response = ExportTraceServiceResponse;

    fn check(&mut self) -> Checked {
        let mut c = Checked::default();
        for rs in &mut self.resource_spans {
            for ss in &mut rs.scope_spans {
                retain_counting(
                    &mut ss.spans,
                    |s| {
                        valid_id(&s.trace_id, 16)
                            && valid_id(&s.span_id, 8)
                            && optional_id(&s.parent_span_id, 8)
                    },
                    &mut c,
                );
            }
        }
        if c.rejected > 0 {
            c.reason = format!(
                "{} span(s) rejected: trace_id must be 16 bytes, span_id and parent_span_id 8 bytes, not all zero",
                c.rejected
            );
        }
        c
    }

    fn response(rejected: usize, message: String) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (rejected > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: rejected as i64,
                error_message: message,
            }),
        }
    }

    fn rejected_in(r: &Self::Response) -> (i64, String) {
        r.partial_success
            .as_ref()
            .map(|p| (p.rejected_spans, p.error_message.clone()))
            .unwrap_or_default()
    }

    fn into_payload(self) -> Payload {
        Payload::Traces(crate::pipeline::Traces::decoded(self))
    }

    /// Checked on the wire (`view::check_traces`, which accepts exactly what the decoder
    /// accepts); decoded only when a span's ids are refused, to remove it.
    fn receive(body: Bytes) -> Result<(Batch, Checked), Malformed> {
        let count = view::check_traces(&body)?;
        if count.bad_ids > 0 {
            let mut msg = <Self as prost::Message>::decode(body.clone())?;
            let checked = msg.check();
            return Ok((batch_from(msg, Some(body), &checked), checked));
        }
        let checked = Checked {
            accepted: count.spans,
            ..Default::default()
        };
        let batch = Batch {
            payload: Payload::Traces(crate::pipeline::Traces::wire(body.clone())),
            encoded: Some(body),
            items: count.spans,
            held: Default::default(),
        };
        Ok((batch, checked))
    }
}

/// Data points in one metric, whatever its type.
pub fn data_points(m: &Metric) -> usize {
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

impl Signal for ExportMetricsServiceRequest {
    const SIGNAL: SignalKind = SignalKind::Metrics;
    const SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const GRPC_PATH: &'static str =
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    const HTTP_PATH: &'static str = "/v1/metrics";
    type Response = ExportMetricsServiceResponse;

    fn check(&mut self) -> Checked {
        let mut c = Checked::default();
        for rm in &mut self.resource_metrics {
            for sm in &mut rm.scope_metrics {
                let before: usize = sm.metrics.iter().map(data_points).sum();
                sm.metrics
                    .retain(|m| !m.name.is_empty() && m.data.is_some());
                let after: usize = sm.metrics.iter().map(data_points).sum();
                c.accepted += after;
                c.rejected += before - after;
            }
        }
        if c.rejected > 0 {
            c.reason = format!(
                "{} data point(s) rejected: every metric needs a name",
                c.rejected
            );
        }
        c
    }

    fn response(rejected: usize, message: String) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: (rejected > 0).then_some(ExportMetricsPartialSuccess {
                rejected_data_points: rejected as i64,
                error_message: message,
            }),
        }
    }

    fn rejected_in(r: &Self::Response) -> (i64, String) {
        r.partial_success
            .as_ref()
            .map(|p| (p.rejected_data_points, p.error_message.clone()))
            .unwrap_or_default()
    }

    fn into_payload(self) -> Payload {
        Payload::Metrics(Arc::new(self))
    }
}

impl Signal for ExportLogsServiceRequest {
    const SIGNAL: SignalKind = SignalKind::Logs;
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    const HTTP_PATH: &'static str = "/v1/logs";
    type Response = ExportLogsServiceResponse;

    fn check(&mut self) -> Checked {
        let mut c = Checked::default();
        for rl in &mut self.resource_logs {
            for sl in &mut rl.scope_logs {
                retain_counting(
                    &mut sl.log_records,
                    |l| optional_id(&l.trace_id, 16) && optional_id(&l.span_id, 8),
                    &mut c,
                );
            }
        }
        if c.rejected > 0 {
            c.reason = format!(
                "{} log record(s) rejected: trace_id must be empty or 16 bytes, span_id empty or 8 bytes",
                c.rejected
            );
        }
        c
    }

    fn response(rejected: usize, message: String) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: (rejected > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: rejected as i64,
                error_message: message,
            }),
        }
    }

    fn rejected_in(r: &Self::Response) -> (i64, String) {
        r.partial_success
            .as_ref()
            .map(|p| (p.rejected_log_records, p.error_message.clone()))
            .unwrap_or_default()
    }

    fn into_payload(self) -> Payload {
        Payload::Logs(Arc::new(self))
    }
}

/// Counts the items of a payload without checking them.
pub fn count_items(p: &Payload) -> usize {
    match p {
        Payload::Traces(t) => t
            .request()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum(),
        Payload::Metrics(m) => m
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(data_points)
            .sum(),
        Payload::Logs(l) => l
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum(),
        Payload::Windows(w) => w.len(),
        Payload::Incidents(e) => e.len(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JsonLineError {
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("expected an object with resourceSpans, resourceMetrics or resourceLogs")]
    UnknownSignal,
}

/// Decodes one line of OTLP/JSON (the file exporter's format), telling the signal by its
/// top-level key; the line is parsed once, straight into the message.
pub fn decode_json_line(line: &[u8]) -> Result<(Batch, Checked), JsonLineError> {
    fn finish<S: Signal>(line: &[u8]) -> Result<(Batch, Checked), JsonLineError> {
        let mut msg: S = serde_json::from_slice(line)?;
        let checked = msg.check();
        Ok((batch_from(msg, None, &checked), checked))
    }
    let key = match first_key(line) {
        Some(k) => k,
        None => {
            // Not a plain object start: let serde say what is wrong, or find the key anywhere.
            let value: serde_json::Value = serde_json::from_slice(line)?;
            let obj = value.as_object().ok_or(JsonLineError::UnknownSignal)?;
            ["resourceSpans", "resourceMetrics", "resourceLogs"]
                .into_iter()
                .find(|k| obj.contains_key(*k))
                .ok_or(JsonLineError::UnknownSignal)?
        }
    };
    match key {
        "resourceSpans" => finish::<ExportTraceServiceRequest>(line),
        "resourceMetrics" => finish::<ExportMetricsServiceRequest>(line),
        "resourceLogs" => finish::<ExportLogsServiceRequest>(line),
        _ => Err(JsonLineError::UnknownSignal),
    }
}

/// The first key of a JSON object if it is one of the three signal keys.
fn first_key(line: &[u8]) -> Option<&'static str> {
    let rest = line
        .trim_ascii_start()
        .strip_prefix(b"{")?
        .trim_ascii_start();
    ["resourceSpans", "resourceMetrics", "resourceLogs"]
        .into_iter()
        .find(|k| {
            rest.strip_prefix(b"\"")
                .and_then(|r| r.strip_prefix(k.as_bytes()))
                .is_some_and(|r| r.first() == Some(&b'"'))
        })
}

/// Encodes a payload as JSON lines: one OTLP/JSON export request, or one document per window
/// or incident change.
/// Every line but the last ends in a newline; the caller adds the final one.
pub fn encode_json_line(p: &Payload, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match p {
        Payload::Traces(t) => serde_json::to_writer(out, t.request()),
        Payload::Metrics(m) => serde_json::to_writer(out, m.as_ref()),
        Payload::Logs(l) => serde_json::to_writer(out, l.as_ref()),
        Payload::Windows(ws) => {
            for (i, w) in ws.iter().enumerate() {
                if i > 0 {
                    out.push(b'\n');
                }
                serde_json::to_writer(&mut *out, &w.to_document())?;
            }
            Ok(())
        }
        Payload::Incidents(es) => {
            for (i, e) in es.iter().enumerate() {
                if i > 0 {
                    out.push(b'\n');
                }
                serde_json::to_writer(&mut *out, &e.to_document())?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
