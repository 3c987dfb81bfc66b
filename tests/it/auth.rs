//! Authentication on the receivers, with the OpenTelemetry Python SDK as the client: a bearer
//! token on OTLP/gRPC and HTTP Basic on OTLP/HTTP. Clients with the right credentials get
//! every span through; clients without them, or with wrong ones, are refused (gRPC
//! UNAUTHENTICATED, HTTP 401 with a challenge) before their data is read, counted, and none of
//! their spans arrive; the secrets never appear in the logs.

use crate::support::*;
use base64::Engine;
use std::time::Duration;

const TOKEN: &str = "tok-7f3a9c1e5b";
const USER: &str = "ingest";
const PASSWORD: &str = "pw-52d8e0b4";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_clients_with_credentials_get_in_on_both_protocols() {
    let Some(python) = sdk_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let cfg = config(
        "otlp-with-auth-to-file.yaml",
        &[
            ("GRPC", &grpc),
            ("HTTP", &http),
            ("TOKEN", &TOKEN),
            ("USER", &USER),
            ("PASSWORD", &PASSWORD),
        ],
    );
    let d = dir.path().to_path_buf();
    let mut ow = tokio::task::spawn_blocking(move || Otelwatch::start(&d, "ow", &cfg))
        .await
        .unwrap();

    // Raw requests: no credentials, wrong credentials.
    let mut ignored = SpanSet::new();
    let body = make_requests(1, 3, 1, &mut ignored).remove(0);
    let refused = grpc_send(grpc, body.clone(), false, TRACES)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let (status, headers, _) = http_post(
        http,
        "/v1/traces",
        &[("content-type", "application/x-protobuf")],
        body.to_vec(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Basic realm=\"otelwatch\"");
    let wrong = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:nope"));
    let (status, _, _) = http_post(
        http,
        "/v1/traces",
        &[
            ("content-type", "application/x-protobuf"),
            ("authorization", &format!("Basic {wrong}")),
        ],
        body.to_vec(),
    )
    .await;
    assert_eq!(status, 401);

    // The SDK, with and without credentials, on both protocols.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let record = |n: &str| dir.path().join(n);
    let (r1, r2, r3, r4) = (
        record("g.sent"),
        record("h.sent"),
        record("g-bad.sent"),
        record("h-bad.sent"),
    );
    let (py, encoded) = (python.clone(), basic.clone());
    let (g, h, g_bad, h_bad) = tokio::task::spawn_blocking(move || {
        let grpc_ep = format!("127.0.0.1:{grpc}");
        let http_ep = format!("http://127.0.0.1:{http}/v1/traces");
        let bearer = format!("authorization=Bearer {TOKEN}");
        let basic = format!("authorization=Basic {encoded}");
        (
            sdk_send_spans(
                &py,
                "grpc",
                &grpc_ep,
                100,
                "svc-auth-grpc",
                &["--header", &bearer],
                &r1,
            ),
            sdk_send_spans(
                &py,
                "http",
                &http_ep,
                60,
                "svc-auth-http",
                &["--header", &basic],
                &r2,
            ),
            sdk_send_spans(
                &py,
                "grpc",
                &grpc_ep,
                10,
                "svc-noauth-grpc",
                &["--header", "authorization=Bearer guess"],
                &r3,
            ),
            sdk_send_spans(&py, "http", &http_ep, 10, "svc-noauth-http", &[], &r4),
        )
    })
    .await
    .unwrap();
    let mut expected = g.unwrap();
    expected.extend(h.unwrap());
    assert!(
        g_bad.is_err() && h_bad.is_err(),
        "clients without credentials are refused"
    );

    let file = dir.path().join("spans.jsonl");
    wait_for_spans(&file, &expected, Duration::from_secs(20), || ow.stderr());
    let (got, dups) = read_spans(&file);
    assert_eq!(dups, 0);
    assert!(
        got.values().all(|(svc, _)| !svc.starts_with("svc-noauth")),
        "no refused span arrived"
    );
    assert_eq!(got.len(), expected.len());
    let series = |t: &str| {
        format!("otelwatch_receiver_unauthenticated_requests_total{{receiver=\"otlp\",transport=\"{t}\"}}")
    };
    assert!(ow.metric(&series("grpc")) >= 2.0, "{}", ow.metrics());
    assert!(ow.metric(&series("http")) >= 3.0, "{}", ow.metrics());

    ow.terminate();
    let logs = ow.stderr() + &ow.stdout();
    for secret in [TOKEN, PASSWORD, &basic] {
        assert!(!logs.contains(secret), "a secret is in the logs");
    }
}
