//! The view against the full decoder: on generated requests, on requests whose messages are
//! given more than once or out of order, and on randomly damaged ones (whenever the decoder
//! takes one, the view reads the same values from it).

use super::*;
use crate::processors::iforest::forest::Rng;
use crate::processors::window::{classify, edge_target};
use crate::tools::loadgen::SpanFactory;
use crate::tools::scenario::{Generator, Scenario};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;

/// What detection reads of each span, as the decoded request says.
#[derive(Debug, PartialEq)]
struct Read {
    service: Option<String>,
    trace_id: Vec<u8>,
    kind: i32,
    times: (u64, u64),
    status: i32,
    classified: (bool, bool),
    target: Option<String>,
}

fn decoded(req: &ExportTraceServiceRequest) -> Vec<Read> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let service = rs.resource.as_ref().and_then(|r| {
            r.attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) if !s.is_empty() => Some(s.clone()),
                    _ => None,
                })
        });
        for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
            out.push(Read {
                service: service.clone(),
                trace_id: span.trace_id.clone(),
                kind: span.kind,
                times: (span.start_time_unix_nano, span.end_time_unix_nano),
                status: span.status.as_ref().map_or(0, |s| s.code),
                classified: classify(span),
                target: edge_target(span).map(str::to_string),
            });
        }
    }
    out
}

/// The same read from the view (the window processor's rules, on the view).
fn viewed(body: &[u8]) -> Result<Vec<Read>, WireError> {
    let mut out = Vec::new();
    let mut failed = None;
    for_each_span(body, |resource, span| {
        let read = (|| -> Result<Read, WireError> {
            let attrs = span.attributes();
            let int = |k: &str| -> Result<Option<i64>, WireError> {
                Ok(match attrs.get(k)? {
                    Some(AttrValue::Int(i)) => Some(i),
                    Some(AttrValue::Str(s)) => s.trim().parse().ok(),
                    Some(AttrValue::Double(d)) => Some(d as i64),
                    _ => None,
                })
            };
            let nonempty = |k: &str| -> Result<Option<&str>, WireError> {
                Ok(attrs.str(k)?.filter(|s| !s.is_empty()))
            };
            let http = match int("http.response.status_code")? {
                Some(c) => Some(c),
                None => int("http.status_code")?,
            };
            let grpc_error = int("rpc.grpc.status_code")?.is_some_and(|c| c != 0);
            let error = span.status_code == 2 || http.is_some_and(|c| c >= 500) || grpc_error;
            let client_error = http.is_some_and(|c| (400..500).contains(&c));
            let mut target = None;
            for k in [
                "peer.service",
                "server.address",
                "db.system",
                "messaging.system",
                "net.peer.name",
            ] {
                if let Some(t) = nonempty(k)? {
                    target = Some(t.to_string());
                    break;
                }
            }
            if target.is_none() {
                let url = match nonempty("url.full")? {
                    Some(u) => Some(u),
                    None => nonempty("http.url")?,
                };
                target = url.and_then(|url| {
                    let rest = url.split_once("://").map_or(url, |(_, r)| r);
                    let authority = rest.split(['/', '?', '#']).next()?;
                    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                    (!host.is_empty()).then(|| host.to_string())
                });
            }
            Ok(Read {
                service: resource.service.map(str::to_string),
                trace_id: span.trace_id.to_vec(),
                kind: span.kind,
                times: (span.start_time_unix_nano, span.end_time_unix_nano),
                status: span.status_code,
                classified: (error, client_error),
                target,
            })
        })();
        match read {
            Ok(r) => out.push(r),
            Err(e) => failed = Some(e),
        }
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

pub(super) fn requests() -> Vec<ExportTraceServiceRequest> {
    let mut out = Vec::new();
    let mut g = Generator::new(Scenario::target_system(4), 1_767_571_200_000_000_000);
    for _ in 0..3 {
        out.push(g.next_window());
    }
    let mut f = SpanFactory::new(8, 9);
    for n in [1, 20, 150] {
        out.push(f.request(n));
    }
    out
}

#[test]
fn the_view_reads_what_the_decoder_reads() {
    for req in requests() {
        let body = req.encode_to_vec();
        let want = decoded(&req);
        assert!(!want.is_empty());
        assert_eq!(viewed(&body).unwrap(), want);
        // One pass for several keys finds what a lookup per key finds.
        const KEYS: [&str; 4] = [
            "peer.service",
            "http.response.status_code",
            "nope",
            "url.full",
        ];
        for_each_span(&body, |_, span| {
            let attrs = span.attributes();
            let many = attrs.get_many(KEYS).unwrap();
            let one: Vec<Option<AttrValue>> = KEYS.iter().map(|k| attrs.get(k).unwrap()).collect();
            assert_eq!(many.to_vec(), one);
        })
        .unwrap();
    }
}

#[test]
fn messages_given_twice_are_merged_as_the_decoder_merges_them() {
    // Concatenated encodings of one message are that message merged: the request's resource
    // groups appended, a span's later scalars winning, its attributes appended, its status
    // merged. Built here by appending to each span's bytes a second, partial span.
    let req = requests().remove(3);
    let mut body = req.encode_to_vec();
    // The same request twice: every resource group twice.
    body.extend_from_slice(&req.encode_to_vec());
    let twice = ExportTraceServiceRequest::decode(&body[..]).unwrap();
    assert_eq!(viewed(&body).unwrap(), decoded(&twice));

    // One span merged with a partial one: a later kind, end time, status code and an attribute.
    use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span, Status};
    let mut r = req.clone();
    let span = &mut r.resource_spans[0].scope_spans[0].spans[0];
    let mut bytes = span.encode_to_vec();
    let later = Span {
        kind: SpanKind::Client as i32,
        end_time_unix_nano: span.end_time_unix_nano + 5,
        status: Some(Status {
            code: StatusCode::Error as i32,
            message: String::new(),
        }),
        attributes: vec![opentelemetry_proto::tonic::common::v1::KeyValue {
            key: "peer.service".into(),
            value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(any_value::Value::StringValue("later".into())),
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    bytes.extend_from_slice(&later.encode_to_vec());
    let merged = Span::decode(&bytes[..]).unwrap();
    *span = merged;
    let body = r.encode_to_vec();
    assert_eq!(viewed(&body).unwrap(), decoded(&r));
}

/// A request damaged as transmission or a hostile client would: one to three bytes replaced
/// or bit-flipped, or the request cut short.
pub(super) fn damaged(original: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut body = original.to_vec();
    for _ in 0..1 + (rng.unit() * 3.0) as usize {
        if body.is_empty() {
            break;
        }
        let at = (rng.unit() * body.len() as f64) as usize % body.len();
        match (rng.unit() * 3.0) as u8 {
            0 => body[at] = (rng.unit() * 256.0) as u8,
            1 => body[at] ^= 1 << ((rng.unit() * 8.0) as u8 % 8),
            _ => body.truncate(at),
        }
    }
    body
}

#[test]
fn damaged_requests_the_decoder_takes_read_the_same() {
    let mut rng = Rng::new(11);
    let originals: Vec<Vec<u8>> = requests().iter().map(|r| r.encode_to_vec()).collect();
    let mut taken = 0;
    for i in 0..4000 {
        let body = damaged(&originals[i % originals.len()], &mut rng);
        let Ok(req) = ExportTraceServiceRequest::decode(&body[..]) else {
            continue;
        };
        taken += 1;
        // Every request the decoder takes, the view reads, and reads the same.
        let v = viewed(&body).unwrap_or_else(|e| panic!("case {i}: {e}"));
        assert_eq!(v, decoded(&req), "case {i}");
    }
    // Enough of them to mean something (879 of the 4000 when this was written).
    assert!(taken > 100, "{taken}");
}
