//! Malformed, oversized and mistyped requests get the OTLP-specified status, change nothing
//! else, and the server keeps serving.

use crate::support::*;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use otelwatch::otlp::status::RpcStatus;
use prost::Message;
use std::time::Duration;
use tonic::Code;

fn request(ids: &[(u8, u8)]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("bad-input-test".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: ids
                    .iter()
                    .map(|(t, s)| Span {
                        trace_id: vec![*t; 16],
                        span_id: vec![*s; 8],
                        name: format!("span-{t}-{s}"),
                        start_time_unix_nano: 1,
                        end_time_unix_nano: 2,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_specified_status_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let cfg = config(
        "otlp-size-limits-to-file.yaml",
        &[("GRPC", &grpc), ("HTTP", &http)],
    );
    let ow = tokio::task::spawn_blocking({
        let d = dir.path().to_path_buf();
        move || Otelwatch::start(&d, "ow", &cfg)
    })
    .await
    .unwrap();

    // --- gRPC ---
    let garbage = Bytes::from_static(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    let err = grpc_send(grpc, garbage.clone(), false, TRACES)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("malformed OTLP traces request"));

    let big = Bytes::from(vec![0u8; 2 * 1024 * 1024]);
    let err = grpc_send(grpc, big.clone(), false, TRACES)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let err = grpc_send(grpc, big, true, TRACES).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "gzip bomb: {err:?}");

    let err = grpc_send(grpc, Bytes::new(), false, METRICS)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unimplemented,
        "no metrics pipeline: {err:?}"
    );

    // Partial success: the span with an all-zero trace id is rejected, the other accepted.
    let mixed = Bytes::from(request(&[(1, 1), (0, 2)]).encode_to_vec());
    let resp = grpc_send(grpc, mixed, false, TRACES).await.unwrap();
    let ps = resp.partial_success.expect("partial success expected");
    assert_eq!(ps.rejected_spans, 1);
    assert!(ps.error_message.contains("trace_id"));

    // --- HTTP ---
    let good = request(&[(3, 3)]).encode_to_vec();
    let (st, _, _) = http_post(
        http,
        "/v1/traces",
        &[("content-type", "text/plain")],
        good.clone(),
    )
    .await;
    assert_eq!(st, 415);

    let (st, h, body) = http_post(
        http,
        "/v1/traces",
        &[("content-type", "application/x-protobuf")],
        garbage.to_vec(),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(h["content-type"], "application/x-protobuf");
    let status = RpcStatus::decode(body.as_slice()).expect("error body is a google.rpc.Status");
    assert_eq!(status.code, Code::InvalidArgument as i32);

    let (st, h, body) = http_post(
        http,
        "/v1/traces",
        &[("content-type", "application/json")],
        b"{\"resourceSpans\": [ {\"scopeSpans\": 5} ]}".to_vec(),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(h["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], Code::InvalidArgument as i32);

    let (st, _, _) = http_post(
        http,
        "/v1/traces",
        &[("content-type", "application/x-protobuf")],
        vec![0u8; 200_000],
    )
    .await;
    assert_eq!(st, 413, "oversized body");

    let (st, _, _) = http_post(
        http,
        "/v1/traces",
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "gzip"),
        ],
        gzip(&vec![0u8; 5_000_000]),
    )
    .await;
    assert_eq!(st, 413, "decompresses past the limit");

    let (st, _, _) = http_post(
        http,
        "/v1/traces",
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "br"),
        ],
        good.clone(),
    )
    .await;
    assert_eq!(st, 415, "unsupported encoding");

    let (st, _, _) = http_post(
        http,
        "/v1/metrics",
        &[("content-type", "application/x-protobuf")],
        good.clone(),
    )
    .await;
    assert_eq!(st, 404, "no metrics pipeline");

    // Valid requests still work, in every encoding.
    let (st, h, _) = http_post(
        http,
        "/v1/traces",
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "gzip"),
        ],
        gzip(&good),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(h["content-type"], "application/x-protobuf");
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"04040404040404040404040404040404","spanId":"0404040404040404","name":"json-span","kind":2}]}]}]}"#;
    let (st, h, body) = http_post(
        http,
        "/v1/traces",
        &[("content-type", "application/json")],
        json.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(h["content-type"], "application/json");
    let resp = grpc_send(
        grpc,
        Bytes::from(request(&[(5, 5)]).encode_to_vec()),
        true,
        TRACES,
    )
    .await
    .unwrap();
    assert!(resp.partial_success.is_none());
    let resp = grpc_send_with(
        grpc,
        Bytes::from(request(&[(6, 6)]).encode_to_vec()),
        Some(tonic::codec::CompressionEncoding::Zstd),
        TRACES,
    )
    .await
    .unwrap();
    assert!(resp.partial_success.is_none());

    // Only the valid spans were written: (1,1), (3,3), json (4,4), gzip (5,5), zstd (6,6).
    let file = dir.path().join("out.jsonl");
    let written = || read_spans(&file).0.len();
    assert!(wait_until(Duration::from_secs(5), || written() == 5));
    let (spans, dups) = read_spans(&file);
    assert_eq!(dups, 0);
    let ids: Vec<&str> = spans.keys().map(|(t, _)| &t[..2]).collect();
    assert_eq!(ids, ["01", "03", "04", "05", "06"]);

    let bad_grpc = ow.metric("otelwatch_receiver_bad_requests_total{receiver=\"otlp\",transport=\"grpc\",signal=\"traces\"}");
    let bad_http = ow.metric("otelwatch_receiver_bad_requests_total{receiver=\"otlp\",transport=\"http\",signal=\"traces\"}");
    assert_eq!(bad_grpc, 3.0, "malformed + 2 oversized");
    assert_eq!(bad_http, 6.0);
    let rejected = ow.metric("otelwatch_receiver_rejected_items_total{receiver=\"otlp\",transport=\"grpc\",signal=\"traces\"}");
    assert_eq!(rejected, 1.0);
}
