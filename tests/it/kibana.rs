//! `otelwatch kibana-setup` imports the shipped saved objects through the saved-objects API:
//! against a stand-in that checks the request as Kibana does, and against a real Kibana when
//! `KIBANA_URL` is set (e.g. the docker-compose stack).

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// One import request: authorization header, query string, body.
type Request = (Option<String>, String, String);

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request>>>);

/// Answers like Kibana's import API: requires `kbn-xsrf`, a multipart body with the NDJSON file.
async fn import(
    State(seen): State<Seen>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    if !headers.contains_key("kbn-xsrf") {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"message":"Request must contain a kbn-xsrf header."}"#,
        )
            .into_response();
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !ct.starts_with("multipart/form-data") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}").into_response();
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let count = text.lines().filter(|l| l.starts_with("{\"type\":")).count();
    seen.0
        .lock()
        .unwrap()
        .push((auth, q.unwrap_or_default(), text));
    (
        StatusCode::OK,
        format!(r#"{{"success":true,"successCount":{count},"successResults":[]}}"#),
    )
        .into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kibana_setup_imports_every_object_idempotently() {
    let seen = Seen::default();
    let app = Router::new()
        .route("/api/saved_objects/_import", post(import))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..2 {
        let out = tokio::task::spawn_blocking({
            let url = url.clone();
            move || {
                Command::new(env!("CARGO_BIN_EXE_otelwatch"))
                    .args([
                        "kibana-setup",
                        "--kibana-url",
                        &url,
                        "--user",
                        "elastic",
                        "--password",
                        "changeme",
                    ])
                    .env_remove("KIBANA_API_KEY")
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let objects = otelwatch::tools::kibana::SAVED_OBJECTS
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count();
        assert!(objects >= 10, "the shipped dashboard has its panels");
        assert!(
            stdout.contains(&format!("imported {objects} saved objects")),
            "{stdout}"
        );
    }
    let seen = seen.0.lock().unwrap();
    assert_eq!(
        seen.len(),
        2,
        "run twice, imported twice (overwrite makes it idempotent)"
    );
    for (auth, query, body) in seen.iter() {
        assert_eq!(query, "overwrite=true");
        assert!(auth.as_deref().is_some_and(|a| a.starts_with("Basic ")));
        assert!(body.contains("filename=\"otelwatch.ndjson\""));
        assert!(body.contains(
            otelwatch::tools::kibana::SAVED_OBJECTS
                .lines()
                .next()
                .unwrap()
        ));
    }
}

#[tokio::test]
async fn against_a_real_kibana_when_configured() {
    let Ok(url) = std::env::var("KIBANA_URL") else {
        eprintln!("SKIPPED: set KIBANA_URL (and KIBANA_USER/KIBANA_PASSWORD) to run against a real Kibana");
        return;
    };
    let auth = otelwatch::tools::kibana::KibanaAuth {
        user: std::env::var("KIBANA_USER").ok(),
        password: std::env::var("KIBANA_PASSWORD").ok(),
        api_key: std::env::var("KIBANA_API_KEY").ok(),
    };
    let n = otelwatch::tools::kibana::import(
        &url,
        &auth,
        otelwatch::tools::kibana::SAVED_OBJECTS,
        std::time::Duration::from_secs(120),
    )
    .await
    .expect("import");
    assert_eq!(n, 10);
}
