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

/// Detection's exporters down (an Elasticsearch that refuses connections, a webhook that never
/// answers) while clients send as fast as they are answered: the detection pipeline fills and
/// sheds, counted; forwarding refuses nothing and the real Collector gets every span once.
/// `OTELWATCH_OUTAGE_SECS` sets how long the clients send (default 15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)] // held for the whole test: it must not run beside other heavy ones
async fn forwarding_goes_on_at_full_rate_while_detections_exporters_are_down() {
    use crate::support::collector::{collector_binary, file_sink_config, Collector};
    let Some(bin) = collector_binary() else {
        return;
    };
    let _heavy = heavy();
    let secs: u64 = std::env::var("OTELWATCH_OUTAGE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    // A webhook that takes connections and never answers.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = hook.local_addr().unwrap().port();
    let held = std::thread::spawn(move || hook.incoming().take(64).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let (c_port, grpc, es_port) = (free_port(), free_port(), free_port());
    let out = dir.path().join("collector.jsonl");
    let cfg = config(
        "forward-while-detection-exporters-down.yaml",
        &[
            ("GRPC", &grpc),
            ("DOWNSTREAM", &c_port),
            ("ES_PORT", &es_port),
            ("HOOK", &hook_port),
        ],
    );
    let d = dir.path().to_path_buf();
    let cfg_c = file_sink_config(c_port, &out);
    let (mut collector, ow) = tokio::task::spawn_blocking(move || {
        let c = Collector::start(&bin, &d, "collector", &cfg_c);
        (c, Otelwatch::start(&d, "ow", &cfg))
    })
    .await
    .unwrap();

    let end = std::time::Instant::now() + Duration::from_secs(secs);
    let clients: Vec<_> = (0..2u64)
        .map(|k| {
            tokio::spawn(async move {
                use prost::Message;
                let mut f = otelwatch::tools::loadgen::SpanFactory::new(4, 100 + k);
                let (mut sent, mut dups, mut refused) = (SpanSet::new(), 0, 0usize);
                while std::time::Instant::now() < end {
                    let r = f.request(50);
                    let body = bytes::Bytes::from(r.encode_to_vec());
                    match grpc_send(grpc, body, false, TRACES).await {
                        Ok(_) => spans_of(&r, &mut sent, &mut dups),
                        Err(_) => refused += 1,
                    }
                }
                (sent, refused)
            })
        })
        .collect();
    let mut sent = SpanSet::new();
    let mut refused = 0;
    for c in clients {
        let (s, r) = c.await.unwrap();
        sent.extend(s);
        refused += r;
    }
    let skipped = ow.metric("otelwatch_pipeline_skipped_items_total{pipeline=\"traces/detect\"}");
    eprintln!(
        "{secs} s: {} spans accepted ({:.0}/s), {refused} refused, {skipped} skipped by detection",
        sent.len(),
        sent.len() as f64 / secs as f64
    );
    assert_eq!(refused, 0, "forwarding refused requests:\n{}", ow.stderr());
    assert!(
        skipped > 0.0,
        "detection never filled, so this tested nothing:\n{}",
        ow.metrics()
    );
    wait_for_spans(&out, &sent, Duration::from_secs(60), || ow.stderr());
    collector.stop();
    assert_exactly(&out, &sent);
    drop(ow);
    drop(held);
}
