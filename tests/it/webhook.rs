//! Anomalies reach an HTTP webhook (Slack `text` and JSON formats), and a failing hook is
//! retried rather than losing the alert.

use crate::support::*;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use otelwatch::tools::scenario::{Generator, Incident, IncidentKind, Scenario};
use prost::Message;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Default)]
struct Hook {
    received: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    slack_calls: Arc<AtomicUsize>,
}

async fn slack(State(h): State<Hook>, body: Bytes) -> impl IntoResponse {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    // The first call fails as an overloaded hook would.
    if h.slack_calls.fetch_add(1, Ordering::SeqCst) == 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "1")],
            "busy",
        )
            .into_response();
    }
    h.received.lock().unwrap().push(("slack".into(), v));
    StatusCode::OK.into_response()
}

async fn json(State(h): State<Hook>, body: Bytes) -> impl IntoResponse {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    h.received.lock().unwrap().push(("json".into(), v));
    StatusCode::NO_CONTENT
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomalies_are_posted_and_a_failing_hook_is_retried() {
    let hook = Hook::default();
    let app = Router::new()
        .route("/services/T0S3CR3T/B0S3CR3T/slack-S3cr3t-0815", post(slack))
        .route("/json", post(json))
        .with_state(hook.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let cfg = config(
        "detect-to-webhooks.yaml",
        &[("GRPC", &grpc), ("HOOK", &hook_port)],
    );
    let d = dir.path().to_path_buf();
    let mut ow = tokio::task::spawn_blocking(move || Otelwatch::start(&d, "ow", &cfg))
        .await
        .unwrap();
    let mut sc = Scenario::target_system(31);
    sc.incidents = vec![Incident {
        service: "service-b".into(),
        from: 60,
        to: 62,
        kind: IncidentKind::Latency { extra_ms: 700.0 },
    }];
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut g = Generator::new(sc, now - 2 * 3600 * 1_000_000_000);
    for _ in 0..80 {
        let body = g.next_window().encode_to_vec();
        grpc_send(grpc, body.into(), false, TRACES).await.unwrap();
    }
    let (status, ow) = tokio::task::spawn_blocking(move || (ow.terminate(), ow))
        .await
        .unwrap();
    assert!(status.success(), "{}", ow.stderr());

    let received = hook.received.lock().unwrap().clone();
    let slack: Vec<&serde_json::Value> = received
        .iter()
        .filter(|(k, _)| k == "slack")
        .map(|(_, v)| v)
        .collect();
    let json: Vec<&serde_json::Value> = received
        .iter()
        .filter(|(k, _)| k == "json")
        .map(|(_, v)| v)
        .collect();
    assert!(
        hook.slack_calls.load(Ordering::SeqCst) >= 2,
        "the failed post was retried"
    );
    assert!(!slack.is_empty(), "{}", ow.stderr());
    let text: String = slack
        .iter()
        .map(|v| v["text"].as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("service-b: latency_"), "{text}");
    let docs: Vec<&serde_json::Value> = json
        .iter()
        .flat_map(|v| v["anomalies"].as_array().unwrap())
        .collect();
    assert!(!docs.is_empty());
    assert!(docs
        .iter()
        .all(|d| d["event"]["kind"] == "alert" && d["anomaly"]["is_anomaly"] == true));
    assert!(docs.iter().any(|d| d["service"]["name"] == "service-b"));
    // Every window with an anomaly reached both hooks, the same ones.
    let slack_lines = text.lines().count();
    assert_eq!(slack_lines, docs.len(), "{text}");
}
