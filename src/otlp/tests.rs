use super::*;
use crate::pipeline::DataKind;
use opentelemetry_proto::tonic::common::v1::any_value::Value;

/// An OTLP/JSON line as the specification writes it: hex ids, camelCase keys, enums as numbers,
/// 64-bit integers as strings.
const TRACE_LINE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},"scopeSpans":[{"scope":{"name":"t"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"","name":"GET /pay","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000250000000","attributes":[{"key":"http.response.status_code","value":{"intValue":"503"}},{"key":"ok","value":{"boolValue":false}},{"key":"ratio","value":{"doubleValue":0.5}}],"status":{"code":2,"message":"boom"}},{"traceId":"00000000000000000000000000000000","spanId":"eee19b7ec3c1b175","name":"bad"}]}]}]}"#;

#[test]
fn otlp_json_traces_decode_per_specification() {
    let (batch, checked) = decode_json_line(TRACE_LINE.as_bytes()).unwrap();
    assert_eq!(checked.accepted, 1);
    assert_eq!(checked.rejected, 1, "an all-zero trace id is invalid");
    assert!(checked.reason.contains("1 span(s) rejected"));
    assert_eq!(batch.items, 1);
    let Payload::Traces(t) = &batch.payload else {
        panic!("not traces")
    };
    let span = &t.request().resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.trace_id[..4], [0x5b, 0x8e, 0xff, 0xf7]);
    assert_eq!(span.span_id.len(), 8);
    assert_eq!(span.kind, 2);
    assert_eq!(span.end_time_unix_nano, 1_700_000_000_250_000_000);
    assert_eq!(span.status.as_ref().unwrap().code, 2);
    match span.attributes[0]
        .value
        .as_ref()
        .and_then(|v| v.value.as_ref())
    {
        Some(Value::IntValue(503)) => {}
        other => panic!("intValue as a string must decode: {other:?}"),
    }
}

#[test]
fn json_round_trips_through_the_file_format() {
    let (batch, _) = decode_json_line(TRACE_LINE.as_bytes()).unwrap();
    let mut line = Vec::new();
    encode_json_line(&batch.payload, &mut line).unwrap();
    let text = String::from_utf8(line.clone()).unwrap();
    assert!(
        text.contains("\"traceId\":\"5b8efff798038103d269b633813fc60c\""),
        "{text}"
    );
    assert!(text.contains("\"intValue\":\"503\""), "{text}");
    let (again, checked) = decode_json_line(&line).unwrap();
    assert_eq!(checked.rejected, 0);
    match (&batch.payload, &again.payload) {
        (Payload::Traces(a), Payload::Traces(b)) => assert_eq!(a.request(), b.request()),
        _ => panic!("kind changed"),
    }
}

#[test]
fn metrics_and_logs_lines_are_recognised() {
    let metrics = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":[{"asInt":"3","timeUnixNano":"5"},{"asDouble":1.5}]}}]}]}]}"#;
    let (b, c) = decode_json_line(metrics.as_bytes()).unwrap();
    assert_eq!(b.kind(), DataKind::Metrics);
    assert_eq!(c.accepted, 2);
    let logs = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hi"},"severityNumber":9,"traceId":"abcd"}]}]}]}"#;
    let (b, c) = decode_json_line(logs.as_bytes()).unwrap();
    assert_eq!(b.kind(), DataKind::Logs);
    assert_eq!(
        (c.accepted, c.rejected),
        (0, 1),
        "a 2-byte trace id is invalid"
    );
    // Whitespace before the key, and a key that is not first, still work.
    let spaced = r#" { "resourceSpans" : [] }"#;
    assert_eq!(
        decode_json_line(spaced.as_bytes()).unwrap().0.kind(),
        DataKind::Traces
    );
    let later = r#"{"extra":1,"resourceLogs":[]}"#;
    assert_eq!(
        decode_json_line(later.as_bytes()).unwrap().0.kind(),
        DataKind::Logs
    );
}

#[test]
fn bad_lines_are_errors_not_panics() {
    assert!(matches!(
        decode_json_line(b"{\"something\":1}"),
        Err(JsonLineError::UnknownSignal)
    ));
    assert!(matches!(
        decode_json_line(b"[1,2]"),
        Err(JsonLineError::UnknownSignal)
    ));
    assert!(matches!(
        decode_json_line(b"{not json"),
        Err(JsonLineError::Json(_))
    ));
    let bad_hex = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#;
    assert!(matches!(
        decode_json_line(bad_hex.as_bytes()),
        Err(JsonLineError::Json(_))
    ));
}

#[test]
fn protobuf_check_keeps_bytes_only_when_nothing_was_removed() {
    use prost::Message;
    let (batch, _) = decode_json_line(TRACE_LINE.as_bytes()).unwrap();
    let Payload::Traces(t) = batch.payload else {
        panic!()
    };
    let mut msg = t.request().clone();
    let bytes = bytes::Bytes::from(msg.encode_to_vec());
    let checked = msg.check();
    assert_eq!(checked.rejected, 0);
    assert!(batch_from(msg.clone(), Some(bytes.clone()), &checked)
        .encoded
        .is_some());
    let dirty = Checked {
        accepted: 1,
        rejected: 1,
        reason: String::new(),
    };
    assert!(batch_from(msg, Some(bytes), &dirty).encoded.is_none());
}

#[test]
fn partial_success_responses() {
    let r = <ExportTraceServiceRequest as Signal>::response(2, "bad ids".into());
    assert_eq!(
        <ExportTraceServiceRequest as Signal>::rejected_in(&r),
        (2, "bad ids".to_string())
    );
    let ok = <ExportLogsServiceRequest as Signal>::response(0, String::new());
    assert!(ok.partial_success.is_none());
}
