//! Detection end to end: labelled spans sent over OTLP/gRPC to the real binary, windowed and
//! scored, written as window documents; the injected incidents must come out flagged, with the
//! right explanation, and the normal stretch must stay quiet.

use crate::support::*;
use otelwatch::tools::scenario::{Generator, Incident, IncidentKind, Scenario};
use prost::Message;
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_incidents_are_flagged_and_explained_and_normal_traffic_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let cfg = config("detect-traces.yaml", &[("GRPC", &grpc)]);
    let d = dir.path().to_path_buf();
    let mut ow = tokio::task::spawn_blocking(move || Otelwatch::start(&d, "ow", &cfg))
        .await
        .unwrap();

    let mut sc = Scenario::target_system(11);
    sc.incidents = vec![
        Incident {
            service: "service-b".into(),
            from: 150,
            to: 153,
            kind: IncidentKind::Latency { extra_ms: 600.0 },
        },
        Incident {
            service: "service-a".into(),
            from: 200,
            to: 203,
            kind: IncidentKind::NetworkDelay {
                callee: "service-b".into(),
                extra_ms: 1500.0,
            },
        },
    ];
    // Event time starts three hours ago: 260 windows of 10 s end well before now.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut g = Generator::new(sc, now - 3 * 3600 * 1_000_000_000);
    let t0 = g.window_start_ns(0);
    for _ in 0..260 {
        let req = g.next_window();
        grpc_send(grpc, req.encode_to_vec().into(), false, TRACES)
            .await
            .expect("accepted");
    }
    let status = tokio::task::spawn_blocking(move || {
        let s = ow.terminate();
        (s, ow)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{}", status.1.stderr());
    let ow = status.1;

    let docs = read_docs(&dir.path().join("windows.jsonl"));
    let window_of =
        |doc: &Value| -> u64 { docs_index(doc["window"]["start"].as_str().unwrap(), t0) };
    let series = |doc: &Value| -> String {
        let name = match doc["service"]["target"]["name"].as_str() {
            Some(t) => format!("{} -> {t}", doc["service"]["name"].as_str().unwrap()),
            None => doc["service"]["name"].as_str().unwrap().to_string(),
        };
        match doc["window"]["signal"].as_str() {
            Some(signal) => format!("{name} ({signal})"),
            None => name,
        }
    };
    // Every series has every window, scored: the edge's time between the two services too.
    for s in [
        "service-a",
        "service-b",
        "service-a -> service-b",
        "service-a -> service-b (network)",
    ] {
        let n = docs.iter().filter(|d| series(d) == s).count();
        assert!((259..=261).contains(&n), "{s}: {n} windows");
    }
    assert!(docs.iter().all(|d| d["anomaly"]["score"].is_number()));
    assert!(docs
        .iter()
        .filter(|d| window_of(d) < 30)
        .all(|d| d["anomaly"]["warming_up"] == true));

    let flagged: Vec<(u64, String, &Value)> = docs
        .iter()
        .filter(|d| d["anomaly"]["is_anomaly"] == true)
        .map(|d| (window_of(d), series(d), d))
        .collect();
    let quiet: Vec<_> = flagged
        .iter()
        .filter(|(w, _, _)| (30..150).contains(w))
        .collect();
    assert!(
        quiet.is_empty(),
        "anomalies in the normal stretch: {quiet:#?}"
    );

    // The latency spike on service-b: flagged, latency first.
    for w in 150..153 {
        let hit = flagged
            .iter()
            .find(|(fw, s, _)| *fw == w && s == "service-b")
            .unwrap_or_else(|| {
                panic!(
                    "window {w}: service-b latency spike not flagged; flagged: {:?}",
                    flagged
                        .iter()
                        .map(|f| (f.0, f.1.clone()))
                        .collect::<Vec<_>>()
                )
            });
        let top = hit.2["anomaly"]["contributions"][0]["feature"]
            .as_str()
            .unwrap();
        assert!(
            top.starts_with("latency_"),
            "window {w}: top contribution {top}"
        );
        assert!(hit.2["anomaly"]["message"]
            .as_str()
            .unwrap()
            .starts_with("service-b: latency_"));
    }
    // The network delay: only the callers' view shows it.
    for w in 200..203 {
        assert!(
            flagged
                .iter()
                .any(|(fw, s, _)| *fw == w && s == "service-a -> service-b"),
            "window {w}: delay not flagged on the edge"
        );
        assert!(
            flagged
                .iter()
                .any(|(fw, s, _)| *fw == w && s == "service-a -> service-b (network)"),
            "window {w}: delay not flagged as time between the two services"
        );
        assert!(
            !flagged
                .iter()
                .any(|(fw, s, _)| *fw == w && s == "service-b"),
            "window {w}: service-b's own spans were fast"
        );
    }
    assert!(
        ow.stdout().contains("ANOMALY"),
        "the debug exporter prints anomalies"
    );
}

/// Window index from an RFC 3339 start (`2026-01-05T00:00:10Z`).
fn docs_index(start: &str, t0_ns: u64) -> u64 {
    let ns = otelwatch::model::time::parse_rfc3339_ns(start).expect("an RFC 3339 window start");
    (ns - t0_ns) / 10_000_000_000
}
