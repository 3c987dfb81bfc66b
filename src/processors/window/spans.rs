//! What the window processor reads of each span: its service, kind, duration, outcome, trace
//! and, for a call, its callee. Read from the request's bytes when it arrived as protobuf
//! (`otlp::view`: no object tree, nothing allocated per span), else from the decoded request;
//! the same rules either way (`classify_by`, `edge_target_by`), and the tests compare the two.

use super::joins::span_number;
use super::{attr_str, attr_text, JoinAs, Names, Observation, Observed, WindowProcessor};
use crate::model::window::SeriesKey;
use crate::otlp::view::{for_each_span, AttrValue};
use crate::otlp::wire::WireError;
use crate::pipeline::Traces;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::borrow::Cow;
use std::sync::Arc;

/// Attributes read to classify a span's outcome, in `classify_by`'s order.
const OUTCOME_KEYS: [&str; 3] = [
    "http.response.status_code",
    "http.status_code",
    "rpc.grpc.status_code",
];

/// Attributes that name a call's callee, in `edge_target_by`'s order of preference.
const TARGET_KEYS: [&str; 7] = [
    "peer.service",
    "server.address",
    "db.system",
    "messaging.system",
    "net.peer.name",
    "url.full",
    "http.url",
];

/// Error and client error, from the span status, the HTTP status (stable and legacy names)
/// and the gRPC code; `int` reads an attribute as an integer.
fn classify_by(status_error: bool, int: impl Fn(&str) -> Option<i64>) -> (bool, bool) {
    let http = int(OUTCOME_KEYS[0]).or_else(|| int(OUTCOME_KEYS[1]));
    let grpc_error = int(OUTCOME_KEYS[2]).is_some_and(|c| c != 0);
    let error = status_error || http.is_some_and(|c| c >= 500) || grpc_error;
    let client_error = http.is_some_and(|c| (400..500).contains(&c));
    (error, client_error)
}

/// The callee of a CLIENT/PRODUCER span: `peer.service`, else `server.address`, else
/// `db.system` / `messaging.system`; for instrumentations that only record the legacy
/// attributes, `net.peer.name`, else the host (and port) of `url.full` / `http.url`. `text`
/// reads an attribute as a non-empty string.
fn edge_target_by<'a>(text: impl Fn(&str) -> Option<&'a str>) -> Option<&'a str> {
    TARGET_KEYS[..5].iter().find_map(|k| text(k)).or_else(|| {
        let url = text(TARGET_KEYS[5]).or_else(|| text(TARGET_KEYS[6]))?;
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let authority = rest.split(['/', '?', '#']).next()?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        (!host.is_empty()).then_some(host)
    })
}

fn attr_int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match super::attr(attrs, key) {
        Some(Value::IntValue(i)) => Some(*i),
        Some(Value::StringValue(s)) => s.trim().parse().ok(),
        Some(Value::DoubleValue(d)) => Some(*d as i64),
        _ => None,
    }
}

/// Error and client error of a decoded span.
pub fn classify(span: &Span) -> (bool, bool) {
    let status_error = span
        .status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32);
    classify_by(status_error, |k| attr_int(&span.attributes, k))
}

/// The callee of a decoded CLIENT/PRODUCER span (see `edge_target_by`).
pub fn edge_target(span: &Span) -> Option<&str> {
    edge_target_by(|k| attr_str(&span.attributes, k))
}

/// What the view read of an attribute, as `attr_int` reads a decoded one.
fn view_int(v: Option<AttrValue<'_>>) -> Option<i64> {
    match v? {
        AttrValue::Int(i) => Some(i),
        AttrValue::Str(s) => s.trim().parse().ok(),
        AttrValue::Double(d) => Some(d as i64),
        _ => None,
    }
}

/// As `attr_text` reads a decoded attribute.
fn view_text(v: Option<AttrValue<'_>>) -> Option<Cow<'_, str>> {
    match v? {
        AttrValue::Str(s) => Some(Cow::Borrowed(s)),
        AttrValue::Int(i) => Some(Cow::Owned(i.to_string())),
        AttrValue::Bool(b) => Some(Cow::Owned(b.to_string())),
        AttrValue::Double(d) => Some(Cow::Owned(d.to_string())),
        AttrValue::Other => None,
    }
}

/// One span, once read.
struct SpanRead<'a> {
    end_ns: u64,
    ms: f64,
    error: bool,
    client_error: bool,
    trace: [u8; 16],
    /// The callee, for a call.
    target: Option<&'a str>,
    join: Option<JoinAs>,
}

/// Whether a span of this kind makes a series: requests always, calls when edges are on.
fn tracked(kind: i32, edges: bool) -> Option<bool> {
    let is_request = kind == SpanKind::Server as i32 || kind == SpanKind::Consumer as i32;
    let is_call = kind == SpanKind::Client as i32 || kind == SpanKind::Producer as i32;
    (is_request || (is_call && edges)).then_some(is_call)
}

/// How a span takes part in the join of calls with the spans that served them: a CLIENT span
/// by its id, a SERVER span by its parent's (PRODUCER and CONSUMER spans are not waited on:
/// a message's consumer may run long after its producer's span ended).
fn join_as(network: bool, kind: i32, span_id: &[u8], parent: &[u8]) -> Option<JoinAs> {
    if !network {
        return None;
    }
    let (id, make): (_, fn(u64) -> JoinAs) = match kind {
        k if k == SpanKind::Client as i32 => (span_number(span_id), JoinAs::Call),
        k if k == SpanKind::Server as i32 => (span_number(parent), JoinAs::Served),
        _ => return None,
    };
    (id != 0).then(|| make(id))
}

fn duration_ms(start: u64, end: u64) -> f64 {
    end.saturating_sub(start) as f64 / 1e6
}

impl WindowProcessor {
    /// The observations of a traces request: from its bytes when it is held as them, else
    /// from the decoded request.
    pub(super) fn span_observations(&self, traces: &Traces, out: &mut Vec<Observation>) {
        if let Some(bytes) = traces.undecoded() {
            let before = out.len();
            match self.wire_observations(bytes, out) {
                Ok(()) => return,
                // Not for checked bytes; if it happens, the decoder says what it makes of them.
                Err(e) => {
                    tracing::debug!(error = %e, "a traces request read from its bytes failed; decoding it");
                    out.truncate(before);
                }
            }
        }
        self.decoded_observations(traces.request(), out);
    }

    fn decoded_observations(&self, req: &ExportTraceServiceRequest, out: &mut Vec<Observation>) {
        // Each distinct name is allocated once per request and shared by its spans' keys, so
        // a request's observations hold no more text than the request itself.
        let mut names = Names::with_known(&self.known);
        for rs in &req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| attr_str(&r.attributes, "service.name"))
                .unwrap_or("unknown_service");
            let service = names.get(service);
            for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                let Some(is_call) = tracked(span.kind, self.edges) else {
                    continue;
                };
                let target = match is_call {
                    true => match edge_target(span) {
                        Some(t) => Some(t),
                        None => continue,
                    },
                    false => None,
                };
                let (error, client_error) = classify(span);
                let read = SpanRead {
                    end_ns: span.end_time_unix_nano,
                    ms: duration_ms(span.start_time_unix_nano, span.end_time_unix_nano),
                    error,
                    client_error,
                    trace: <[u8; 16]>::try_from(span.trace_id.as_slice()).unwrap_or([0; 16]),
                    target,
                    join: join_as(self.network, span.kind, &span.span_id, &span.parent_span_id),
                };
                let labels = |k: &str| attr_text(&span.attributes, k);
                self.push_span(&mut names, &service, read, labels, out);
            }
        }
    }

    fn wire_observations<'a>(
        &self,
        body: &'a [u8],
        out: &mut Vec<Observation>,
    ) -> Result<(), WireError> {
        let mut names: Names<'a, '_> = Names::with_known(&self.known);
        let mut failed = None;
        let mut service: Option<(&'a str, Arc<str>)> = None;
        for_each_span(body, |resource, span| {
            if failed.is_some() {
                return;
            }
            let Some(is_call) = tracked(span.kind, self.edges) else {
                return;
            };
            let name = resource.service.unwrap_or("unknown_service");
            // Consecutive spans mostly share a resource: look its name up once per run.
            let svc = match &service {
                Some((n, s)) if std::ptr::eq(*n, name) => s.clone(),
                _ => {
                    let s = names.get(name);
                    service = Some((name, s.clone()));
                    s
                }
            };
            let attrs = span.attributes();
            let read = (|| -> Result<Option<SpanRead<'a>>, WireError> {
                // The outcome attributes, and for a call its callee's, in one pass over the
                // span's attributes (a request's are compared with three keys, not ten).
                let (outcome, target) = if is_call {
                    let [http, http_legacy, grpc, a, b, c, d, e, url, http_url] =
                        attrs.get_many([
                            OUTCOME_KEYS[0],
                            OUTCOME_KEYS[1],
                            OUTCOME_KEYS[2],
                            TARGET_KEYS[0],
                            TARGET_KEYS[1],
                            TARGET_KEYS[2],
                            TARGET_KEYS[3],
                            TARGET_KEYS[4],
                            TARGET_KEYS[5],
                            TARGET_KEYS[6],
                        ])?;
                    let found = [a, b, c, d, e, url, http_url];
                    let text = |k: &str| {
                        let i = TARGET_KEYS.iter().position(|t| *t == k)?;
                        match found[i] {
                            Some(AttrValue::Str(s)) if !s.is_empty() => Some(s),
                            _ => None,
                        }
                    };
                    match edge_target_by(text) {
                        Some(t) => ([http, http_legacy, grpc], Some(t)),
                        None => return Ok(None),
                    }
                } else {
                    (attrs.get_many(OUTCOME_KEYS)?, None)
                };
                let (error, client_error) =
                    classify_by(span.status_code == StatusCode::Error as i32, |k| {
                        view_int(outcome[OUTCOME_KEYS.iter().position(|o| *o == k)?])
                    });
                Ok(Some(SpanRead {
                    end_ns: span.end_time_unix_nano,
                    ms: duration_ms(span.start_time_unix_nano, span.end_time_unix_nano),
                    error,
                    client_error,
                    trace: <[u8; 16]>::try_from(span.trace_id).unwrap_or([0; 16]),
                    target,
                    join: join_as(self.network, span.kind, span.span_id, span.parent_span_id),
                }))
            })();
            match read {
                Ok(Some(read)) => {
                    let mut label_error = None;
                    let labels = |k: &str| match attrs.get(k) {
                        Ok(v) => view_text(v),
                        Err(e) => {
                            label_error = Some(e);
                            None
                        }
                    };
                    self.push_span(&mut names, &svc, read, labels, out);
                    failed = label_error;
                }
                Ok(None) => {}
                Err(e) => failed = Some(e),
            }
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The observations of one tracked span: its series, and its group's when the processor
    /// groups requests by attributes (`labels` reads one as text).
    fn push_span<'a>(
        &self,
        names: &mut Names<'a, '_>,
        service: &Arc<str>,
        read: SpanRead<'a>,
        mut labels: impl FnMut(&str) -> Option<Cow<'a, str>>,
        out: &mut Vec<Observation>,
    ) {
        let what = |join| Observed::Span {
            ms: read.ms,
            error: read.error,
            client_error: read.client_error,
            trace: read.trace,
            join,
        };
        let is_request = read.target.is_none();
        let base = SeriesKey {
            service: service.clone(),
            target: read.target.map(|t| names.get(t)),
            labels: Vec::new(),
            signal: Default::default(),
        };
        if !self.group_by.is_empty() && is_request {
            let labels: Vec<(Arc<str>, Arc<str>)> = self
                .group_by
                .iter()
                .filter_map(|k| labels(k).map(|v| (k.clone(), names.text(v))))
                .collect();
            if !labels.is_empty() {
                out.push(Observation {
                    key: SeriesKey {
                        labels,
                        ..base.clone()
                    },
                    end_ns: read.end_ns,
                    what: what(None),
                });
            }
        }
        out.push(Observation {
            key: base,
            end_ns: read.end_ns,
            what: what(read.join),
        });
    }
}
