//! The Elasticsearch exporter against a real engine: templates and mappings installed, every
//! scored window written once (also across a replay of the same data), anomalies in their own
//! index, in data stream and daily-index modes.

use crate::support::search::SearchEngine;
use crate::support::*;
use otelwatch::pipeline::Payload;
use otelwatch::tools::scenario::{Generator, Incident, IncidentKind, Scenario};
use reqwest::Method;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A recording of `windows` windows of the target system with one latency incident.
fn recording(path: &std::path::Path, windows: u64) {
    let mut sc = Scenario::target_system(77);
    sc.incidents = vec![Incident {
        service: "service-b".into(),
        from: 50,
        to: 52,
        kind: IncidentKind::Latency { extra_ms: 700.0 },
    }];
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut g = Generator::new(sc, now - 6 * 3600 * 1_000_000_000);
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

fn es_config(es: &str, mode: &str, prefix: &str) -> String {
    config(
        "replay-detect-to-elasticsearch.yaml",
        &[("ES_URL", &es), ("MODE", &mode), ("PREFIX", &prefix)],
    )
}

fn run_replay(dir: &std::path::Path, name: &str, cfg: &str) -> String {
    let mut ow = Otelwatch::start_finite(dir, name, cfg);
    let status = ow.wait_exit(Duration::from_secs(120));
    assert!(status.success(), "{}", ow.stderr());
    ow.stderr()
}

fn file_docs(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The last state of each incident in the file, by id.
fn final_incidents(path: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    file_docs(path)
        .into_iter()
        .filter(|d| d["event"]["dataset"] == "otelwatch.incident")
        .map(|d| {
            let id = d["incident"]["id"].as_str().unwrap().to_string();
            (id, d["incident"]["status"].as_str().unwrap().to_string())
        })
        .collect()
}

/// Window documents and anomalies among them.
fn file_counts(path: &std::path::Path) -> (u64, u64) {
    let docs: Vec<serde_json::Value> = file_docs(path)
        .into_iter()
        .filter(|d| d["event"]["dataset"] != "otelwatch.incident")
        .collect();
    let anomalies = docs
        .iter()
        .filter(|d| d["anomaly"]["is_anomaly"] == true)
        .count() as u64;
    (docs.len() as u64, anomalies)
}

// The heavy-test guard orders whole tests; no task of this runtime takes it.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_and_anomalies_are_written_once_with_typed_mappings() {
    let _heavy = heavy();
    let Some(es) = tokio::task::spawn_blocking(SearchEngine::start)
        .await
        .unwrap()
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    recording(&dir.path().join("recording.jsonl"), 120);
    let prefix = format!("ow-{}", std::process::id());

    // Data stream mode, twice over the same data: ids are deterministic, nothing doubles.
    let d = dir.path().to_path_buf();
    let cfg = es_config(&es.url, "data_stream", &prefix);
    let first = {
        let (d, cfg) = (d.clone(), cfg.clone());
        tokio::task::spawn_blocking(move || run_replay(&d, "ds1", &cfg))
            .await
            .unwrap()
    };
    assert!(first.contains("index templates installed"), "{first}");
    let (windows, anomalies) = file_counts(&dir.path().join("windows-data_stream.jsonl"));
    assert!(windows >= 360, "{windows} windows");
    assert!(anomalies >= 1, "the incident is flagged");
    assert_eq!(es.count(&format!("{prefix}-windows")).await, windows);
    assert_eq!(es.count(&format!("{prefix}-anomalies")).await, anomalies);
    // Each incident once, in its last state (a state resent late never overwrites a newer one).
    let incidents = final_incidents(&dir.path().join("windows-data_stream.jsonl"));
    assert!(!incidents.is_empty(), "the incident is reported");
    let index = format!("{prefix}-incidents");
    assert_eq!(es.count(&index).await, incidents.len() as u64);
    let (_, stored) = es
        .call(
            Method::POST,
            &format!("/{prefix}-incidents/_search"),
            Some(serde_json::json!({ "size": 100 })),
        )
        .await;
    let stored: std::collections::BTreeMap<String, String> = stored["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let i = &h["_source"]["incident"];
            (
                i["id"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(stored, incidents);

    std::fs::remove_file(dir.path().join("windows-data_stream.jsonl")).unwrap();
    {
        let (d, cfg) = (d.clone(), cfg.clone());
        tokio::task::spawn_blocking(move || run_replay(&d, "ds2", &cfg))
            .await
            .unwrap();
    }
    assert_eq!(
        es.count(&format!("{prefix}-windows")).await,
        windows,
        "a replay of the same windows must not duplicate documents"
    );

    // The data stream's mappings are the template's.
    let (_, mapping) = es
        .call(Method::GET, &format!("/{prefix}-windows/_mapping"), None)
        .await;
    let index = mapping.as_object().unwrap().values().next().unwrap();
    let props = &index["mappings"]["properties"];
    assert_eq!(props["@timestamp"]["type"], "date");
    assert_eq!(props["service"]["properties"]["name"]["type"], "keyword");
    assert_eq!(
        props["features"]["properties"]["latency_p95_ms"]["type"],
        "double"
    );
    assert_eq!(
        props["anomaly"]["properties"]["is_anomaly"]["type"],
        "boolean"
    );
    let (_, ds) = es
        .call(
            Method::GET,
            &format!("/_data_stream/{prefix}-windows"),
            None,
        )
        .await;
    assert_eq!(ds["data_streams"][0]["name"], format!("{prefix}-windows"));

    // Documents are searchable by their typed fields.
    let (_, hits) = es
        .call(
            Method::POST,
            &format!("/{prefix}-anomalies/_search"),
            Some(serde_json::json!({
                "query": { "bool": { "filter": [
                    { "term": { "service.name": "service-b" } },
                    { "range": { "anomaly.score": { "gte": 0.5 } } }
                ]}}
            })),
        )
        .await;
    assert!(
        hits["hits"]["total"]["value"].as_u64().unwrap_or(0) >= 1,
        "{hits}"
    );

    // Training reads the stored windows back (scroll), as the prototype trained from the cluster.
    let out_dir = dir.path().join("from-es");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_otelwatch"))
        .args([
            "train",
            "--from-es",
            &es.url,
            "--index",
            &format!("{prefix}-windows"),
            "--out",
        ])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("4 series, {windows} windows")),
        "{stdout}"
    );
    assert!(
        out_dir.join("models.json").exists()
            && out_dir.join("service_anomaly_detection.png").exists()
    );

    // Daily index mode, for older clusters.
    let prefix2 = format!("{prefix}-idx");
    let cfg = es_config(&es.url, "index", &prefix2);
    tokio::task::spawn_blocking(move || run_replay(&d, "idx", &cfg))
        .await
        .unwrap();
    let (windows2, _) = file_counts(&dir.path().join("windows-index.jsonl"));
    assert_eq!(es.count(&format!("{prefix2}-windows-*")).await, windows2);
    let (_, indices) = es
        .call(
            Method::GET,
            &format!("/_cat/indices/{prefix2}-windows-*?format=json"),
            None,
        )
        .await;
    let names: Vec<String> = indices
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["index"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.len() == prefix2.len() + "-windows-YYYY.MM.DD".len()),
        "{names:?}"
    );
}
