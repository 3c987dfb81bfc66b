//! Splitting an encoded export request that is larger than the downstream accepts, on the wire,
//! without decoding it into objects.
//!
//! The three OTLP export requests share one shape: field 1 repeats the resource groups
//! (`ResourceSpans`, `ResourceMetrics`, `ResourceLogs`); each group holds its resource (field 1),
//! its scope groups (field 2) and a schema URL (field 3); each scope group its scope (1), its
//! items — spans, metrics, log records — (2) and a schema URL (3). A request is split by whole
//! resource groups; a group too large alone by its scope groups, each part keeping the
//! group's resource; a scope group too large alone by its items, each part keeping the scope.
//! One item larger than the limit is sent alone (it cannot be split without changing it).

use super::wire::{self, put_len_field};

/// Why a body could not be read as protobuf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request is not valid protobuf: {0}")]
pub struct SplitError(&'static str);

/// The parts of `body`, each at most `limit` bytes where that is possible; `None` when the
/// body already fits.
pub fn split(body: &[u8], limit: usize) -> Result<Option<Vec<Vec<u8>>>, SplitError> {
    if body.len() <= limit {
        return Ok(None);
    }
    // Nothing to split by (no resource groups): it goes whole.
    split_message(body, 1, 0, limit).map(|parts| (!parts.is_empty()).then_some(parts))
}

/// What an exporter sends for an encoded request: its parts, or `None` to send it as it is
/// (it fits, has nothing to split by, or is not protobuf — the downstream answers for that).
pub fn parts_to_send(body: &[u8], limit: usize) -> Option<Vec<Vec<u8>>> {
    let parts = split(body, limit).ok().flatten()?;
    tracing::debug!(
        bytes = body.len(),
        parts = parts.len(),
        "request split for the downstream's limit"
    );
    Some(parts)
}

/// One field as it lies in the buffer.
struct Field<'a> {
    number: u64,
    /// The whole field: key, length and value.
    raw: &'a [u8],
    /// The value of a length-delimited field (empty for others).
    value: &'a [u8],
}

/// The deepest level that splits: the request (0), a resource group (1), a scope group (2).
const DEEPEST: u8 = 2;

/// Splits a message by its repeated field `child` (every other field goes into each part).
fn split_message(
    msg: &[u8],
    child: u64,
    depth: u8,
    limit: usize,
) -> Result<Vec<Vec<u8>>, SplitError> {
    let fields = fields(msg)?;
    let header: Vec<u8> = fields
        .iter()
        .filter(|f| f.number != child)
        .flat_map(|f| f.raw.iter().copied())
        .collect();
    let mut parts = Vec::new();
    let mut current = header.clone();
    let mut has_child = false;
    for f in fields.iter().filter(|f| f.number == child) {
        if current.len() + f.raw.len() <= limit {
            current.extend_from_slice(f.raw);
            has_child = true;
            continue;
        }
        if has_child {
            parts.push(std::mem::replace(&mut current, header.clone()));
            has_child = false;
        }
        // A header taking half the room or more would be copied into a part for every few
        // items (a request could grow many times over): such a child goes whole.
        let worth_splitting = depth < DEEPEST && 2 * (header.len() + MAX_KEY_AND_LEN) <= limit;
        if header.len() + f.raw.len() <= limit || !worth_splitting {
            current.extend_from_slice(f.raw);
            has_child = true;
            continue;
        }
        // Too large alone: split it, each piece under this message's header.
        let room = limit - header.len() - MAX_KEY_AND_LEN;
        let pieces = split_message(f.value, 2, depth + 1, room)?;
        if pieces.is_empty() {
            // Nothing to split it by (no items): it goes whole.
            current.extend_from_slice(f.raw);
            has_child = true;
            continue;
        }
        for piece in pieces {
            let mut part = header.clone();
            put_len_field(&mut part, child, &piece);
            parts.push(part);
        }
    }
    if has_child {
        parts.push(current);
    }
    Ok(parts)
}

/// A key and a length prefix take at most this many bytes here (field numbers below 16).
const MAX_KEY_AND_LEN: usize = 1 + 10;

fn fields(buf: &[u8]) -> Result<Vec<Field<'_>>, SplitError> {
    wire::fields(buf)
        .map(|f| {
            let f = f.map_err(|e| SplitError(e.0))?;
            Ok(Field {
                number: f.number,
                raw: f.raw,
                value: match f.value {
                    wire::Value::Bytes(b) => b,
                    _ => &[],
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    fn resource(name: &str) -> Option<Resource> {
        Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(name.into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn spans(n: usize, name_len: usize) -> Vec<Span> {
        (0..n)
            .map(|i| Span {
                trace_id: vec![1; 16],
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                name: "x".repeat(name_len),
                ..Default::default()
            })
            .collect()
    }

    fn span_ids(req: &ExportTraceServiceRequest) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for rs in &req.resource_spans {
            let svc = format!("{:?}", rs.resource);
            for s in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                out.push((svc.clone(), s.span_id.clone()));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_request_under_the_limit_is_left_alone() {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource("a"),
                scope_spans: vec![ScopeSpans {
                    spans: spans(10, 10),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert_eq!(split(&req.encode_to_vec(), 1 << 20), Ok(None));
    }

    #[test]
    fn every_span_keeps_its_resource_and_every_part_fits() {
        // Three services; one of them alone is far over the limit, in one scope.
        let req = ExportTraceServiceRequest {
            resource_spans: ["a", "b", "c"]
                .iter()
                .enumerate()
                .map(|(i, name)| ResourceSpans {
                    resource: resource(name),
                    scope_spans: vec![ScopeSpans {
                        spans: spans(if i == 1 { 2_000 } else { 50 }, 100),
                        ..Default::default()
                    }],
                    schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                })
                .collect(),
        };
        let body = req.encode_to_vec();
        let limit = 64 * 1024;
        let parts = split(&body, limit).unwrap().unwrap();
        assert!(parts.len() > 3, "{} parts", parts.len());
        let mut merged = ExportTraceServiceRequest::default();
        for p in &parts {
            assert!(p.len() <= limit, "a part of {} bytes", p.len());
            let part = ExportTraceServiceRequest::decode(p.as_slice()).unwrap();
            for rs in &part.resource_spans {
                assert!(rs.resource.is_some());
                assert_eq!(rs.schema_url, "https://opentelemetry.io/schemas/1.26.0");
            }
            merged.resource_spans.extend(part.resource_spans);
        }
        assert_eq!(span_ids(&merged), span_ids(&req));
    }

    #[test]
    fn logs_split_the_same_way_and_an_item_too_large_alone_goes_alone() {
        let record = |len: usize| LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue("y".repeat(len))),
            }),
            ..Default::default()
        };
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource("a"),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![record(10), record(5_000), record(10)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let parts = split(&req.encode_to_vec(), 1_000).unwrap().unwrap();
        let counts: Vec<usize> = parts
            .iter()
            .map(|p| {
                let r = ExportLogsServiceRequest::decode(p.as_slice()).unwrap();
                assert!(r.resource_logs[0].resource.is_some());
                r.resource_logs[0].scope_logs[0].log_records.len()
            })
            .collect();
        assert_eq!(counts, [1, 1, 1]);
    }

    #[test]
    fn a_resource_near_the_limit_is_not_copied_into_a_part_per_span() {
        // A resource of 3 KB against a 4 KB limit, with 1000 spans: splitting by span would
        // copy the resource a thousand times; the group goes whole instead.
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(&"r".repeat(3_000)),
                scope_spans: vec![ScopeSpans {
                    spans: spans(1_000, 10),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = req.encode_to_vec();
        let parts = split(&body, 4_096).unwrap().unwrap();
        let total: usize = parts.iter().map(Vec::len).sum();
        assert!(total <= 2 * body.len(), "{total} bytes from {}", body.len());
        // A resource larger than the limit with no spans at all is kept, not dropped.
        let bare = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(&"r".repeat(10_000)),
                ..Default::default()
            }],
        };
        let parts = split(&bare.encode_to_vec(), 4_096).unwrap().unwrap();
        assert_eq!(parts.len(), 1);
        let back = ExportTraceServiceRequest::decode(parts[0].as_slice()).unwrap();
        assert_eq!(back, bare);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(split(&[0x0a, 0xff, 0xff, 0xff], 1).is_err());
        assert!(split(&[0x0b; 8], 1).is_err());
        // Found by fuzzing: no resource groups at all must not come back as zero parts.
        let no_groups = [0x10, 0x01, 0x18, 0x02, 0x20, 0x03];
        assert_eq!(split(&no_groups, 2), Ok(None), "sent whole");
    }
}
