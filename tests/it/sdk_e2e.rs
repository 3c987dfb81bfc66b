//! The official OpenTelemetry Python SDK exporters (gRPC and HTTP/protobuf, with and without
//! gzip) send to a running otelwatch; its `file` exporter output is checked span for span.

use crate::support::*;
use std::time::Duration;

#[test]
fn python_sdk_spans_arrive_span_for_span() {
    let Some(python) = sdk_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let cfg = config(
        "otlp-to-file-and-debug.yaml",
        &[("GRPC", &grpc), ("HTTP", &http)],
    );
    let mut ow = Otelwatch::start(dir.path(), "ow", &cfg);

    let runs = [
        ("grpc", format!("localhost:{grpc}"), false, "svc-grpc", 300),
        (
            "grpc",
            format!("localhost:{grpc}"),
            true,
            "svc-grpc-gzip",
            257,
        ),
        (
            "http",
            format!("http://127.0.0.1:{http}/v1/traces"),
            false,
            "svc-http",
            200,
        ),
        (
            "http",
            format!("http://127.0.0.1:{http}/v1/traces"),
            true,
            "svc-http-gzip",
            101,
        ),
    ];
    let mut expected = SpanSet::new();
    for (proto, endpoint, gzip, service, n) in runs {
        let record = dir.path().join(format!("{service}.sent"));
        match sdk_send_spans(
            &python,
            proto,
            &endpoint,
            n,
            service,
            if gzip { &["--gzip"] } else { &[] },
            &record,
        ) {
            Ok(sent) => expected.extend(sent),
            Err(e) => panic!("{e}\notelwatch:\n{}", ow.stderr()),
        }
    }
    assert_eq!(expected.len(), 300 + 257 + 200 + 101);

    let file = dir.path().join("out/spans.jsonl");
    let complete = wait_until(Duration::from_secs(10), || {
        read_spans(&file).0.len() >= expected.len()
    });
    assert!(
        complete,
        "not every span reached the file:\n{}",
        ow.stderr()
    );
    let (got, dups) = read_spans(&file);
    assert_eq!(dups, 0, "a span was written twice");
    assert_eq!(
        got, expected,
        "the file must hold exactly the spans the SDK sent"
    );

    // Self-telemetry counted them per transport.
    let grpc_in = ow.metric(
        "otelwatch_receiver_accepted_items_total{receiver=\"otlp\",transport=\"grpc\",signal=\"traces\"}",
    );
    let http_in = ow.metric(
        "otelwatch_receiver_accepted_items_total{receiver=\"otlp\",transport=\"http\",signal=\"traces\"}",
    );
    assert_eq!((grpc_in, http_in), (557.0, 301.0));
    // And the requests by content encoding: each run's compression, nothing else.
    for transport in ["grpc", "http"] {
        for (encoding, used) in [("identity", true), ("gzip", true), ("zstd", false)] {
            let n = ow.metric(&format!(
                "otelwatch_receiver_requests_total{{receiver=\"otlp\",transport=\"{transport}\",encoding=\"{encoding}\"}}"
            ));
            assert_eq!(n > 0.0, used, "{transport} {encoding}: {n}");
        }
    }
    assert!(
        ow.stdout().contains("traces: "),
        "debug exporter printed nothing"
    );

    let status = ow.terminate();
    assert!(status.success(), "exit {status}:\n{}", ow.stderr());
}
