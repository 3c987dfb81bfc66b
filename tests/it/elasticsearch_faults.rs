//! The Elasticsearch exporter's failure paths, against the fake engine: whole-request 503/429,
//! per-item 429 (a few, and a fifth of all items), invalid documents, 413 for large requests,
//! 401 for a while, a cluster that is down at start, poison spool files, `kill -9` during spool
//! writes — every scored window arrives exactly once, bad documents go to the dead-letter file
//! and are never retried forever, a shutdown with a backlog leaves it on disk for the next start.

use crate::support::fake_es::FakeEs;
use crate::support::*;
use otelwatch::pipeline::Payload;
use otelwatch::tools::scenario::{Generator, Scenario};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn recording(path: &std::path::Path, windows: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut g = Generator::new(Scenario::target_system(88), now - 6 * 3600 * 1_000_000_000);
    let mut text = Vec::new();
    for _ in 0..windows {
        otelwatch::otlp::encode_json_line(
            &Payload::Traces(otelwatch::pipeline::Traces::decoded(g.next_window())),
            &mut text,
        )
        .unwrap();
        text.push(b'\n');
    }
    std::fs::write(path, text).unwrap();
}

/// The pipeline against the fake on `port`, with a disk queue in `queue` (empty: in memory).
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
    assert!(
        !spooled_ids(&queue).is_empty(),
        "spool files are left for the next start"
    );
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
    assert!(spooled_ids(&queue).is_empty(), "the spool is empty");
}

fn run_to_end(dir: &std::path::Path, name: &str, cfg: &str) -> String {
    let mut ow = Otelwatch::start_finite(dir, name, cfg);
    let status = ow.wait_exit(Duration::from_secs(120));
    assert!(status.success(), "{name}: {}", ow.stderr());
    ow.stderr()
}

/// The (index, id) of every document in the spool files of `queue`; panics on a torn file.
fn spooled_ids(queue: &std::path::Path) -> std::collections::HashSet<(String, String)> {
    let mut ids = std::collections::HashSet::new();
    for e in std::fs::read_dir(queue).unwrap().filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("spool-") && name.ends_with(".ndjson")) {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap();
        assert!(text.ends_with('\n'), "{name} is torn");
        for line in text.lines() {
            let doc: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|err| panic!("{name}: {err}"));
            ids.insert((
                doc["index"].as_str().unwrap().to_string(),
                doc["id"].as_str().unwrap().to_string(),
            ));
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifth_of_items_refused_and_a_stop_right_after_lose_nothing() {
    // OTELWATCH_ES_REPLAY_WINDOWS=720 replays two hours (docs/reliability.md).
    let replay: u64 = std::env::var("OTELWATCH_ES_REPLAY_WINDOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(180);
    let fake = FakeEs::default();
    {
        let mut st = fake.state();
        st.faults.request_statuses = [429, 429, 429].into_iter().collect();
        st.faults.item_429_percent = 20;
    }
    let port = free_port();
    let server = fake.serve(port).await;
    let dir = tempfile::tempdir().unwrap();
    recording(&dir.path().join("recording.jsonl"), replay);
    let queue = dir.path().join("es-queue");
    let cfg = es_config(port, &queue.display().to_string());
    let (d, c) = (dir.path().to_path_buf(), cfg.clone());
    let started = std::time::Instant::now();
    tokio::task::spawn_blocking(move || run_to_end(&d, "first", &c))
        .await
        .unwrap();
    let first_run = started.elapsed();
    let after_first = (fake.count("otelwatch-windows"), spooled_ids(&queue).len());
    // Whatever the first run could not deliver in time is on disk; the next start sends it.
    std::fs::write(dir.path().join("recording.jsonl"), "").unwrap();
    let (d, c) = (dir.path().to_path_buf(), cfg);
    tokio::task::spawn_blocking(move || run_to_end(&d, "second", &c))
        .await
        .unwrap();
    server.abort();
    let windows = windows_written(&dir.path().join("windows.jsonl"));
    let anomalies = windows
        .iter()
        .filter(|w| w["anomaly"]["is_anomaly"] == true)
        .count();
    let st = fake.state();
    eprintln!(
        "{} windows scored; first run {:.1} s: {} stored, {} documents left on disk; after the restart: {} stored; {} _bulk requests, {} item 429s answered",
        windows.len(),
        first_run.as_secs_f64(),
        after_first.0,
        after_first.1,
        st.docs.keys().filter(|(i, _)| i == "otelwatch-windows").count(),
        st.bulk_requests,
        st.item_429s_answered,
    );
    drop(st);
    assert!(
        windows.len() as u64 > replay * 2,
        "{} windows",
        windows.len()
    );
    assert_eq!(
        fake.count("otelwatch-windows"),
        windows.len(),
        "every window, once"
    );
    assert_eq!(fake.count("otelwatch-anomalies"), anomalies);
    assert!(spooled_ids(&queue).is_empty(), "the queue is empty");
    let st = fake.state();
    assert!(st.item_429s_answered > 0 && st.bulk_requests > 20);
    assert_eq!(st.rejected, 0);
}

/// Long faults one after the other while otelwatch keeps running (the traces arrive over OTLP
/// at the start): the cluster down (connections refused) for T, then up but answering every
/// item 429 for T, then refusing the login (401) for T/2. Every window arrives once, and the
/// stop after it exits 0. T is `OTELWATCH_ES_FAULT_SECS` (default 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_outages_429s_and_refused_logins_lose_nothing() {
    let t: f64 = std::env::var("OTELWATCH_ES_FAULT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    let phase = Duration::from_secs_f64(t);
    let fake = FakeEs::default();
    let (port, grpc) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let recorded = dir.path().join("recording.jsonl");
    recording(&recorded, 60);
    let cfg = config(
        "detect-to-flaky-elasticsearch.yaml",
        &[("ES_PORT", &port), ("GRPC", &grpc)],
    );
    let d = dir.path().to_path_buf();
    let mut ow = tokio::task::spawn_blocking(move || Otelwatch::start(&d, "ow", &cfg))
        .await
        .unwrap();
    for line in std::fs::read(&recorded).unwrap().split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let (batch, _) = otelwatch::otlp::decode_json_line(line).unwrap();
        let Payload::Traces(req) = batch.payload else {
            panic!("traces")
        };
        let body = bytes::Bytes::from(prost::Message::encode_to_vec(req.request()));
        grpc_send(grpc, body, false, TRACES).await.unwrap();
    }
    tokio::time::sleep(phase).await;
    assert_eq!(fake.state().bulk_requests, 0);
    // Items are refused until the login is refused too (so the count below is taken inside).
    fake.state().faults.items_429_until = Some(std::time::Instant::now() + phase + phase / 2);
    let server = fake.serve(port).await;
    tokio::time::sleep(phase).await;
    let during_429s = fake.count("otelwatch-windows");
    fake.state().faults.status_until = Some((401, std::time::Instant::now() + phase / 2));
    tokio::time::sleep(phase / 2).await;
    // The replay's last windows close with the wall clock: wait for the file to stop growing.
    let scored = || {
        std::fs::read_to_string(dir.path().join("windows.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let all_in = wait_until(Duration::from_secs(120), || {
        let n = scored();
        n >= 180 && fake.count("otelwatch-windows") == n
    });
    let answered_429 = fake.state().item_429s_answered;
    let (status, ow) = tokio::task::spawn_blocking(move || (ow.terminate(), ow))
        .await
        .unwrap();
    server.abort();
    let stderr = ow.stderr();
    assert!(status.success(), "{stderr}");
    eprintln!(
        "T = {t} s: {} windows scored, {} stored, {answered_429} item 429s answered",
        scored(),
        fake.count("otelwatch-windows")
    );
    assert!(
        all_in,
        "{} of {} stored:\n{stderr}",
        fake.count("otelwatch-windows"),
        scored()
    );
    assert_eq!(
        during_429s, 0,
        "nothing is stored while every item is refused"
    );
    assert!(
        answered_429 > 0 && stderr.contains("refuses otelwatch's credentials"),
        "{stderr}"
    );
    assert_eq!(
        fake.count("otelwatch-windows"),
        scored(),
        "every window, once"
    );
    drop(ow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_too_large_are_split_and_a_refused_login_only_delays() {
    let fake = FakeEs::default();
    {
        let mut st = fake.state();
        st.faults.max_body = Some(3 * 1024);
        st.faults.status_until =
            Some((401, std::time::Instant::now() + Duration::from_millis(2500)));
    }
    let port = free_port();
    let server = fake.serve(port).await;
    let dir = tempfile::tempdir().unwrap();
    recording(&dir.path().join("recording.jsonl"), 60);
    // In memory: every batch waits until the cluster has it.
    let cfg = es_config(port, "");
    let (d, c) = (dir.path().to_path_buf(), cfg);
    let stderr = tokio::task::spawn_blocking(move || run_to_end(&d, "ow", &c))
        .await
        .unwrap();
    server.abort();
    let windows = windows_written(&dir.path().join("windows.jsonl"));
    assert_eq!(fake.count("otelwatch-windows"), windows.len(), "{stderr}");
    assert!(fake.state().too_large > 0, "large requests were refused");
    assert!(stderr.contains("smaller requests from now on"), "{stderr}");
    assert!(
        stderr.contains("refuses otelwatch's credentials"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_spool_files_go_to_the_dead_letter_file_and_block_nothing() {
    let fake = FakeEs::default();
    let port = free_port();
    let server = fake.serve(port).await;
    let dir = tempfile::tempdir().unwrap();
    recording(&dir.path().join("recording.jsonl"), 20);
    let queue = dir.path().join("es-queue");
    std::fs::create_dir_all(&queue).unwrap();
    // Left by an earlier run: one good document and a broken line, and a file that cannot
    // be read at all.
    let good = r#"{"index":"otelwatch-windows","id":"left-over","body":{"service":{"name":"x"}}}"#;
    std::fs::write(
        queue.join("spool-00000000000000000000.ndjson"),
        format!("{good}\n{{\"index\": broken\n"),
    )
    .unwrap();
    std::fs::create_dir(queue.join("spool-00000000000000000001.ndjson")).unwrap();
    let cfg = es_config(port, &queue.display().to_string());
    let (d, c) = (dir.path().to_path_buf(), cfg);
    let stderr = tokio::task::spawn_blocking(move || run_to_end(&d, "ow", &c))
        .await
        .unwrap();
    server.abort();
    let windows = windows_written(&dir.path().join("windows.jsonl"));
    assert_eq!(
        fake.count("otelwatch-windows"),
        windows.len() + 1,
        "every window and the good left-over document: {stderr}"
    );
    let dead = std::fs::read_to_string(queue.join("dead-letter.ndjson")).unwrap();
    let reasons: Vec<String> = dead
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["reason"].to_string())
        .collect();
    assert_eq!(reasons.len(), 2, "{dead}");
    assert!(reasons.iter().any(|r| r.contains("unreadable line")));
    assert!(reasons.iter().any(|r| r.contains("unreadable spool file")));
    assert!(queue
        .join("dead/spool-00000000000000000001.ndjson")
        .exists());
    assert!(spooled_ids(&queue).is_empty());
}

// The heavy-test guard orders whole tests; no task of this runtime takes it.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_spool_writes_never_tears_a_file_and_the_next_start_sends_all() {
    let _heavy = heavy();
    let runs: usize = std::env::var("OTELWATCH_KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    recording(&dir.path().join("recording.jsonl"), 120);
    let queue = dir.path().join("es-queue");
    let cfg = es_config(port, &queue.display().to_string());
    let (d, c) = (dir.path().to_path_buf(), cfg.clone());
    let seen = tokio::task::spawn_blocking(move || {
        let mut seen = std::collections::HashSet::new();
        let mut rng = otelwatch::processors::iforest::forest::Rng::new(0x9e37_79b9_7f4a_7c15);
        for i in 0..runs {
            let mut ow = Otelwatch::start_finite(&d, &format!("run{i}"), &c);
            std::thread::sleep(Duration::from_millis(100 + rng.next_u64() % 900));
            ow.signal("KILL");
            ow.wait_exit(Duration::from_secs(10));
            // Every file whole; the next start removes temporary files.
            seen.extend(spooled_ids(&d.join("es-queue")));
        }
        seen
    })
    .await
    .unwrap();
    assert!(!seen.is_empty(), "some batches were spooled");
    let fake = FakeEs::default();
    let server = fake.serve(port).await;
    std::fs::write(dir.path().join("recording.jsonl"), "").unwrap();
    // Each start sends for a few seconds at its stop; a large backlog takes a few starts.
    for i in 0..5 {
        let (d, c) = (dir.path().to_path_buf(), cfg.clone());
        tokio::task::spawn_blocking(move || run_to_end(&d, &format!("last{i}"), &c))
            .await
            .unwrap();
        if spooled_ids(&queue).is_empty() {
            break;
        }
    }
    server.abort();
    let stored: std::collections::HashSet<(String, String)> =
        fake.state().docs.keys().cloned().collect();
    assert_eq!(stored, seen, "every spooled document arrived");
    assert!(spooled_ids(&queue).is_empty());
}
