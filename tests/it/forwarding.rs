//! otelwatch → a second otelwatch (standing in for the downstream collector) → file: every span
//! arrives exactly once, including across an outage of the downstream.

use crate::support::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_arrives_once_across_a_downstream_outage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let (p_down, p_fwd) = (free_port(), free_port());
    let (mut down, fwd) = tokio::task::spawn_blocking(move || {
        let down = config(
            "otlp-to-file.yaml",
            &[("GRPC", &p_down), ("HTTP", &free_port())],
        );
        let fwd = config(
            "forward-traces-with-queue.yaml",
            &[("GRPC", &p_fwd), ("DOWNSTREAM", &p_down)],
        );
        let down = Otelwatch::start(&d, "down", &down);
        let fwd = Otelwatch::start(&d, "fwd", &fwd);
        (down, fwd)
    })
    .await
    .unwrap();
    let out = dir.path().join("spans.jsonl");

    // Phase 1: downstream up.
    let mut sent = SpanSet::new();
    for body in make_requests(50, 20, 1, &mut sent) {
        grpc_send(p_fwd, body, false, TRACES)
            .await
            .expect("accepted");
    }
    assert_eq!(sent.len(), 1000);
    assert!(
        wait_until(Duration::from_secs(15), || read_spans(&out).0.len() >= 1000),
        "phase 1 incomplete:\n{}",
        fwd.stderr()
    );

    // Phase 2: downstream stopped; the forwarder accepts and holds everything.
    let status = tokio::task::spawn_blocking(move || {
        let s = down.terminate();
        (s, down)
    })
    .await
    .unwrap();
    assert!(status.0.success());
    let mut down = status.1;
    for body in make_requests(50, 20, 2, &mut sent) {
        grpc_send(p_fwd, body, true, TRACES)
            .await
            .expect("accepted while the downstream is down");
    }
    assert_eq!(sent.len(), 2000);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        read_spans(&out).0.len(),
        1000,
        "nothing can arrive while down"
    );
    let retries = fwd.metric("otelwatch_exporter_retries_total{exporter=\"otlp/collector\"}");
    assert!(retries > 0.0, "the forwarder must be retrying");

    // Phase 3: downstream back on the same port; the backlog drains.
    let down = tokio::task::spawn_blocking(move || {
        down.spawn();
        down
    })
    .await
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || read_spans(&out).0.len() >= 2000),
        "backlog not delivered:\n{}",
        fwd.stderr()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (got, dups) = read_spans(&out);
    assert_eq!(dups, 0, "a span arrived twice");
    let got_ids: Vec<_> = got.keys().collect();
    let sent_ids: Vec<_> = sent.keys().collect();
    assert_eq!(
        got_ids, sent_ids,
        "every span sent must arrive exactly once"
    );
    assert_eq!(
        fwd.metric(
            "otelwatch_exporter_failed_items_total{exporter=\"otlp/collector\",signal=\"traces\"}"
        ),
        0.0
    );
    assert_eq!(
        fwd.metric(
            "otelwatch_exporter_sent_items_total{exporter=\"otlp/collector\",signal=\"traces\"}"
        ),
        2000.0
    );
    drop(down);
}
