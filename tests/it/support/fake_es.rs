//! A fake Elasticsearch that reproduces the documented `_bulk` semantics (create → 201, or 409
//! for a known id; per-item and whole-request errors) and can be told to fail: for the failure
//! paths a real engine will not produce on demand. The happy path is tested against a real engine.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Faults {
    /// Statuses for the next whole `_bulk` requests (e.g. 503, 429).
    pub request_statuses: VecDeque<u16>,
    /// How many of the next items to answer 429 (each once).
    pub item_429s: usize,
    /// Items whose document has `service.target` are refused as unparsable (400).
    pub reject_edges: bool,
    /// Delay before answering each `_bulk`.
    pub delay: Duration,
    /// Every item is refused with 429 with this probability (in percent), at random.
    pub item_429_percent: u32,
    /// Every item is refused with 429 until the instant passes.
    pub items_429_until: Option<std::time::Instant>,
    /// Whole `_bulk` requests get this status until the instant passes.
    pub status_until: Option<(u16, std::time::Instant)>,
    /// Bodies larger than this (uncompressed) get 413.
    pub max_body: Option<usize>,
}

#[derive(Default)]
pub struct FakeState {
    pub docs: HashMap<(String, String), Value>,
    pub faults: Faults,
    pub bulk_requests: usize,
    pub gzip_requests: usize,
    pub conflicts: usize,
    pub rejected: usize,
    pub templates: Vec<String>,
    pub too_large: usize,
    /// Items answered 429 (either fault).
    pub item_429s_answered: usize,
    /// Stored versions of documents written with `index` and an external version.
    pub versions: HashMap<(String, String), u64>,
    rng: u64,
}

impl FakeState {
    /// A small deterministic generator for the random faults.
    fn roll(&mut self, percent: u32) -> bool {
        self.rng = self
            .rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.rng >> 33) % 100) < percent as u64
    }
}

#[derive(Clone, Default)]
pub struct FakeEs(pub Arc<Mutex<FakeState>>);

impl FakeEs {
    pub fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.0.lock().unwrap()
    }

    pub fn count(&self, index: &str) -> usize {
        self.state().docs.keys().filter(|(i, _)| i == index).count()
    }

    /// Serves on `port` until the returned handle is aborted.
    pub async fn serve(&self, port: u16) -> tokio::task::JoinHandle<()> {
        let app = Router::new()
            .route("/", get(root))
            .route("/_index_template/{name}", put(template))
            .route("/_bulk", post(bulk))
            .with_state(self.clone());
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
    }
}

async fn root() -> impl IntoResponse {
    (
        [("content-type", "application/json")],
        json!({ "name": "fake", "version": { "number": "8.15.0" }, "tagline": "You Know, for Search" })
            .to_string(),
    )
}

async fn template(
    State(es): State<FakeEs>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> impl IntoResponse {
    es.state().templates.push(name);
    (
        [("content-type", "application/json")],
        json!({ "acknowledged": true }).to_string(),
    )
}

async fn bulk(State(es): State<FakeEs>, headers: HeaderMap, body: Bytes) -> Response {
    let delay = es.state().faults.delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let gz = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let text = if gz {
        let mut s = String::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut s)
            .is_err()
        {
            return (StatusCode::BAD_REQUEST, "bad gzip").into_response();
        }
        s
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    let mut st = es.state();
    st.bulk_requests += 1;
    st.gzip_requests += gz as usize;
    if let Some(status) = st.faults.request_statuses.pop_front() {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (code, [("retry-after", "0")], "{\"error\":\"busy\"}").into_response();
    }
    if let Some((status, until)) = st.faults.status_until {
        if std::time::Instant::now() < until {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return (code, "{\"error\":\"refused\"}").into_response();
        }
    }
    if st.faults.max_body.is_some_and(|max| text.len() > max) {
        st.too_large += 1;
        return (StatusCode::PAYLOAD_TOO_LARGE, "request entity too large").into_response();
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut items = Vec::new();
    let mut errors = false;
    for pair in lines.chunks(2) {
        let (Ok(action), Some(Ok(source))) = (
            serde_json::from_str::<Value>(pair[0]),
            pair.get(1).map(|s| serde_json::from_str::<Value>(s)),
        ) else {
            return (StatusCode::BAD_REQUEST, "malformed bulk body").into_response();
        };
        let replace = action.get("index").is_some();
        let op = if replace {
            action["index"].clone()
        } else {
            action["create"].clone()
        };
        let key = (
            op["_index"].as_str().unwrap_or("").to_string(),
            op["_id"].as_str().unwrap_or("").to_string(),
        );
        let percent = st.faults.item_429_percent;
        let (status, error) = if st.faults.item_429s > 0 {
            st.faults.item_429s -= 1;
            (429, Some("es_rejected_execution_exception"))
        } else if st
            .faults
            .items_429_until
            .is_some_and(|t| std::time::Instant::now() < t)
            || (percent > 0 && st.roll(percent))
        {
            (429, Some("es_rejected_execution_exception"))
        } else if replace {
            let version = op["version"].as_u64().unwrap_or(0);
            if st.versions.get(&key).is_some_and(|&v| v > version) {
                st.conflicts += 1;
                (409, Some("version_conflict_engine_exception"))
            } else {
                st.versions.insert(key.clone(), version);
                st.docs.insert(key.clone(), source);
                (200, None)
            }
        } else if st.faults.reject_edges && !source["service"]["target"].is_null() {
            st.rejected += 1;
            (400, Some("mapper_parsing_exception"))
        } else if st.docs.contains_key(&key) {
            st.conflicts += 1;
            (409, Some("version_conflict_engine_exception"))
        } else {
            st.docs.insert(key.clone(), source);
            (201, None)
        };
        errors |= error.is_some();
        st.item_429s_answered += (status == 429) as usize;
        let mut item = json!({ "_index": key.0, "_id": key.1, "status": status });
        if let Some(e) = error {
            item["error"] = json!({ "type": e, "reason": format!("{e} (fake)") });
        }
        items.push(json!({ if replace { "index" } else { "create" }: item }));
    }
    (
        [("content-type", "application/json")],
        json!({ "took": 1, "errors": errors, "items": items }).to_string(),
    )
        .into_response()
}
