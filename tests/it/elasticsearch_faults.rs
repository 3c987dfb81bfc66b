//! The Elasticsearch exporter's failure paths, against the fake engine: whole-request 503/429,
//! per-item 429, invalid documents, a cluster that is down at start — every scored window
//! arrives exactly once, bad documents are reported and not retried forever, shutdown flushes.

use crate::support::fake_es::FakeEs;
use crate::support::*;
use otelwatch::pipeline::Payload;
use otelwatch::tools::scenario::{Generator, Scenario};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn recording(path: &std::path::Path, windows: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut g = Generator::new(Scenario::target_system(88), now - 6 * 3600 * 1_000_000_000);
    let mut text = Vec::new();
    for _ in 0..windows {
        otelwatch::otlp::encode_json_line(&Payload::Traces(Arc::new(g.next_window())), &mut text)
            .unwrap();
        text.push(b'\n');
    }
    std::fs::write(path, text).unwrap();
}

/// The pipeline against the fake on `port`, with a disk queue in `queue` (empty: none).
fn es_config(port: u16, queue: &str) -> String {
    config(
        "replay-detect-to-flaky-elasticsearch.yaml",
        &[("ES_PORT", &port), ("QUEUE_DIR", &queue)],
    )
}

fn windows_written(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_window_arrives_once_across_faults_and_bad_documents_are_not_retried_forever() {
    let fake = FakeEs::default();
    {
        let mut st = fake.state();
        st.faults.request_statuses = [503, 429, 503].into_iter().collect();
        st.faults.item_429s = 7;
        st.faults.reject_edges = true;
    }
    let port = free_port();
    let server = fake.serve(port).await;
    let dir = tempfile::tempdir().unwrap();
    recording(&dir.path().join("recording.jsonl"), 60);
    let (d, cfg) = (dir.path().to_path_buf(), es_config(port, ""));
    let stderr = tokio::task::spawn_blocking(move || {
        let mut ow = Otelwatch::start_finite(&d, "ow", &cfg);
        let status = ow.wait_exit(Duration::from_secs(90));
        assert!(status.success(), "{}", ow.stderr());
        ow.stderr()
    })
    .await
    .unwrap();
    server.abort();

    let docs = windows_written(&dir.path().join("windows.jsonl"));
    let services = docs
        .iter()
        .filter(|d| d["service"]["target"].is_null())
        .count();
    let edges = docs.len() - services;
    assert!(
        services >= 120 && edges >= 60,
        "{services} service and {edges} edge windows"
    );
    let st = fake.state();
    let stored = st
        .docs
        .keys()
        .filter(|(i, _)| i == "otelwatch-windows")
        .count();
    assert_eq!(stored, services, "every service window exactly once");
    assert_eq!(
        st.rejected, edges,
        "each invalid document refused once, never retried"
    );
    assert!(st.bulk_requests > 3, "the refused requests were retried");
    assert_eq!(
        st.gzip_requests, st.bulk_requests,
        "bodies are gzip-compressed"
    );
    assert!(
        st.templates
            .contains(&"otelwatch-windows-template".to_string())
            && st
                .templates
                .contains(&"otelwatch-anomalies-template".to_string())
    );
    assert!(
        stderr.contains("document rejected"),
        "rejections are logged with the reason"
    );
    assert!(stderr.contains("mapper_parsing_exception"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_is_down_at_start_gets_everything_once_it_is_up() {
    let fake = FakeEs::default();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    recording(&dir.path().join("recording.jsonl"), 40);
    let (d, cfg) = (dir.path().to_path_buf(), es_config(port, ""));
    let run = tokio::task::spawn_blocking(move || {
        let mut ow = Otelwatch::start_finite(&d, "ow", &cfg);
        let status = ow.wait_exit(Duration::from_secs(90));
        (status, ow.stderr())
    });
    // Nothing listens for three seconds: connections are refused.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.state().bulk_requests, 0);
    let server = fake.serve(port).await;
    let (status, stderr) = run.await.unwrap();
    server.abort();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("send failed; retrying"), "{stderr}");
    let docs = windows_written(&dir.path().join("windows.jsonl"));
    assert_eq!(
        fake.count("otelwatch-windows"),
        docs.len(),
        "all windows, once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_queue_keeps_windows_across_an_outage_and_a_restart() {
    let fake = FakeEs::default();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    recording(&dir.path().join("recording.jsonl"), 40);
    let queue = dir.path().join("es-queue");
    let cfg = es_config(port, &queue.display().to_string());
    // 1. The cluster is down for the whole run: everything is accepted and spooled to disk.
    let (d, c) = (dir.path().to_path_buf(), cfg.clone());
    let stderr = tokio::task::spawn_blocking(move || {
        let mut ow = Otelwatch::start_finite(&d, "first", &c);
        let status = ow.wait_exit(Duration::from_secs(60));
        assert!(status.success(), "{}", ow.stderr());
        ow.stderr()
    })
    .await
    .unwrap();
    assert!(
        stderr.contains("documents remain in the disk queue"),
        "{stderr}"
    );
    let spooled = std::fs::read_dir(&queue).unwrap().count();
    assert!(spooled > 0, "spool files are left for the next start");
    let windows = windows_written(&dir.path().join("windows.jsonl")).len();

    // 2. Restart with nothing new to send, cluster up: the spool drains, every window once.
    let server = fake.serve(port).await;
    std::fs::write(dir.path().join("recording.jsonl"), "").unwrap();
    let (d, c) = (dir.path().to_path_buf(), cfg);
    tokio::task::spawn_blocking(move || {
        let mut ow = Otelwatch::start_finite(&d, "second", &c);
        let status = ow.wait_exit(Duration::from_secs(60));
        assert!(status.success(), "{}", ow.stderr());
    })
    .await
    .unwrap();
    server.abort();
    assert_eq!(
        fake.count("otelwatch-windows"),
        windows,
        "every spooled window arrived once"
    );
    assert_eq!(
        std::fs::read_dir(&queue).unwrap().count(),
        0,
        "the spool is empty"
    );
}
