//! TLS on both sides of otelwatch, with real peers: the OpenTelemetry Python SDK sends over TLS to
//! the gRPC and HTTP receivers; otelwatch exports over mutual TLS to the real OpenTelemetry
//! Collector; the Collector exports over mutual TLS into otelwatch. Certificates come from a
//! throwaway CA made with `openssl` for each test.

use crate::support::collector::*;
use crate::support::*;
use std::path::Path;
use std::time::Duration;

fn p(path: &Path) -> String {
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_sends_over_tls_and_plaintext_is_refused() {
    let Some(python) = sdk_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let certs = certs::make(dir.path());
    let (grpc, http) = (free_port(), free_port());
    // The certificates made in the work directory, served on both transports.
    let cfg = config("otlp-tls-to-file.yaml", &[("GRPC", &grpc), ("HTTP", &http)]);
    let d = dir.path().to_path_buf();
    let mut ow = tokio::task::spawn_blocking(move || Otelwatch::start(&d, "ow", &cfg))
        .await
        .unwrap();

    // A plaintext client gets no OTLP service on the TLS port.
    let mut ignored = SpanSet::new();
    let body = make_requests(1, 3, 1, &mut ignored).remove(0);
    assert!(grpc_send(grpc, body, false, TRACES).await.is_err());

    let ca = p(&certs.ca);
    let record = |n: &str| dir.path().join(n);
    let (r1, r2) = (record("grpc.sent"), record("http.sent"));
    let (py, ca2) = (python.clone(), ca.clone());
    let (over_grpc, over_http) = tokio::task::spawn_blocking(move || {
        let g = sdk_send_spans(
            &py,
            "grpc",
            &format!("localhost:{grpc}"),
            120,
            "svc-tls-grpc",
            &["--gzip", "--ca", &ca2],
            &r1,
        );
        let h = sdk_send_spans(
            &py,
            "http",
            &format!("https://localhost:{http}/v1/traces"),
            80,
            "svc-tls-http",
            &["--ca", &ca2],
            &r2,
        );
        (g, h)
    })
    .await
    .unwrap();
    let mut expected = over_grpc.unwrap();
    expected.extend(over_http.unwrap());
    assert_eq!(expected.len(), 200);

    let file = dir.path().join("spans.jsonl");
    let arrived = wait_until(Duration::from_secs(10), || {
        read_spans(&file).0.len() >= expected.len()
    });
    assert!(arrived, "{}", ow.stderr());
    assert_exactly(&file, &expected);
    assert!(ow.terminate().success(), "{}", ow.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otelwatch_exports_to_the_real_collector_over_mutual_tls() {
    let Some(bin) = collector_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let certs = certs::make(dir.path());
    let (c_port, grpc) = (free_port(), free_port());
    let out = dir.path().join("collector.jsonl");
    // The collector requires a client certificate from our CA.
    let collector_cfg = file_sink_config_with("grpc", c_port, &certs.server_tls(true), &out);
    let grpc2 = free_port();
    let cfg = config(
        "forward-over-mutual-tls.yaml",
        &[
            ("GRPC", &grpc),
            ("GRPC_ANONYMOUS", &grpc2),
            ("COLLECTOR", &c_port),
        ],
    );
    let (mut collector, mut ow) = start_pair(&bin, dir.path(), collector_cfg, cfg, true).await;

    let mut sent = SpanSet::new();
    for body in make_requests(20, 10, 41, &mut sent) {
        grpc_send(grpc, body, false, TRACES).await.unwrap();
    }
    // Without a client certificate the collector turns otelwatch away: nothing of this arrives.
    let mut anonymous = SpanSet::new();
    for body in make_requests(3, 10, 42, &mut anonymous) {
        grpc_send(grpc2, body, false, TRACES).await.unwrap();
    }
    wait_for_spans(&out, &sent, Duration::from_secs(20), || {
        format!("{}\n{}", ow.stderr(), collector.log())
    });
    // The refusal shows as a failed handshake (retried) or, when the collector's alert comes
    // after the client's handshake has finished, as a failed call: either way it is counted.
    let refused = wait_until(Duration::from_secs(10), || {
        let retries = ow.metric("otelwatch_exporter_retries_total{exporter=\"otlp/anonymous\"}");
        let failed = ow.metric(
            "otelwatch_exporter_failed_items_total{exporter=\"otlp/anonymous\",signal=\"traces\"}",
        );
        retries + failed > 0.0
    });
    assert!(
        refused,
        "the anonymous exporter was never refused:\n{}",
        ow.stderr()
    );
    let _ = ow.terminate();
    collector.stop();
    assert_exactly(&out, &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_collector_exports_into_otelwatch_over_mutual_tls() {
    let Some(bin) = collector_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let certs = certs::make(dir.path());
    let (c_port, grpc) = (free_port(), free_port());
    let cfg = config("otlp-mutual-tls-to-file.yaml", &[("GRPC", &grpc)]);
    // relay_config's endpoint is 127.0.0.1; the server certificate names it too.
    let collector_cfg = relay_config(c_port, grpc, &certs.client_tls(), "");
    let (mut collector, mut ow) = start_pair(&bin, dir.path(), collector_cfg, cfg, false).await;
    let mut sent = SpanSet::new();
    for body in make_requests(15, 10, 43, &mut sent) {
        grpc_send(c_port, body, false, TRACES).await.unwrap();
    }
    let file = dir.path().join("in.jsonl");
    wait_for_spans(&file, &sent, Duration::from_secs(20), || {
        format!("{}\n{}", ow.stderr(), collector.log())
    });
    collector.stop();
    assert!(ow.terminate().success(), "{}", ow.stderr());
    assert_exactly(&file, &sent);
}

#[test]
fn a_missing_certificate_stops_startup_naming_the_component_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config("missing-certificate.yaml", &[("HTTP", &free_port())]);
    let mut ow = Otelwatch::start_finite(dir.path(), "ow", &cfg);
    let status = ow.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    let err = ow.stderr();
    assert!(
        err.contains("receiver otlp") && err.contains("nope.pem"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlphttp_reaches_the_real_collector_over_mutual_tls() {
    let Some(bin) = collector_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let certs = certs::make(dir.path());
    let (c_port, grpc) = (free_port(), free_port());
    let out = dir.path().join("collector.jsonl");
    let collector_cfg = file_sink_config_with("http", c_port, &certs.server_tls(true), &out);
    let cfg = config(
        "otlphttp-over-mutual-tls.yaml",
        &[("GRPC", &grpc), ("COLLECTOR", &c_port)],
    );
    let (mut collector, mut ow) = start_pair(&bin, dir.path(), collector_cfg, cfg, true).await;
    let mut sent = SpanSet::new();
    for body in make_requests(15, 10, 44, &mut sent) {
        grpc_send(grpc, body, false, TRACES).await.unwrap();
    }
    wait_for_spans(&out, &sent, Duration::from_secs(20), || {
        format!("{}\n{}", ow.stderr(), collector.log())
    });
    assert!(ow.terminate().success(), "{}", ow.stderr());
    collector.stop();
    assert_exactly(&out, &sent);
}
