//! The console's JSON API, on the extension's endpoint:
//!
//! | path | answer |
//! |---|---|
//! | `GET /` | the page (`page/index.html`, embedded): overview with the service map and incidents, a page per service, call and incident, updated live |
//! | `GET /api/summary` | windows and bytes held, series, anomalies in the last hour, open incidents |
//! | `GET /api/services` | the service map: each service's state, request and error rate in its latest window, and its calls |
//! | `GET /api/incidents` | the incidents kept, open ones first, each as the incident contract's `incident` object |
//! | `GET /api/incidents/{id}` | one incident, with `changed` (when it last changed) |
//! | `GET /api/series?service=S[&target=T][&signal=spans\|logs\|metrics][&metric=M][&from=&to=]` | one series' windows (start, features, score, threshold, flags, contributions, incident) and each feature's typical band; `from`/`to` are RFC 3339 times, by default the whole history |
//! | `GET /api/events` | Server-Sent Events: an `update` event, its data the newest window's start, each time windows or incidents arrive |
//!
//! Times are RFC 3339, rates per second. A request for a series or incident that is not held is
//! answered 404 with a JSON error, a malformed query 400.

use super::history::{Band, History, Point, ServiceView, Standing};
use super::ConsoleHub;
use crate::model::feedback::ExpectedRange;
use crate::model::incident::{Action, IncidentEvent};
use crate::model::time::{parse_rfc3339_ns, rfc3339};
use crate::model::window::{SeriesKey, Signal, TraceExample};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleServerError {
    #[error("console: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds now (so a taken port fails startup) and serves until `stop` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    hub: Arc<ConsoleHub>,
    stop: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ConsoleServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ConsoleServerError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ConsoleServerError::Bind { addr, source })?;
    let app = router(hub, stop.clone());
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "console server stopped");
        }
    });
    Ok((local, task))
}

/// The routes; live streams end when `stop` is cancelled (a graceful shutdown waits for every
/// open connection).
pub fn router(hub: Arc<ConsoleHub>, stop: CancellationToken) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/favicon.svg", get(favicon))
        .route("/api/summary", get(summary))
        .route("/api/services", get(services))
        .route("/api/incidents", get(incidents))
        .route("/api/incidents/{id}", get(incident))
        .route("/api/series", get(series))
        .route("/api/feedback", get(feedback))
        .route("/api/feedback/not-anomaly", post(not_anomaly))
        .route("/api/feedback/expected", post(expect))
        .route("/api/feedback/expected/{id}", delete(withdraw))
        .route(
            "/api/events",
            get(move |State(hub): State<Arc<ConsoleHub>>| events(hub, stop.clone())),
        )
        .layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            authenticate,
        ))
        .with_state(hub)
}

async fn events(
    hub: Arc<ConsoleHub>,
    stop: CancellationToken,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    use futures_util::StreamExt;
    use tokio::sync::broadcast::error::RecvError;
    let updates = futures_util::stream::unfold(hub.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ns) => {
                    let e = Event::default().event("update").data(rfc3339(ns));
                    return Some((Ok(e), rx));
                }
                // A slow reader missed some: the next one says as much.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let stream = updates.take_until(stop.cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// With an authenticator, a request without its credentials is refused before anything else:
/// 401 with the challenge, as the receivers do.
async fn authenticate(
    State(hub): State<Arc<ConsoleHub>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(a) = &hub.auth {
        if let Err(f) = a.check(req.headers()) {
            let mut r = error(StatusCode::UNAUTHORIZED, f.message());
            if let Ok(v) = axum::http::HeaderValue::from_str(&a.challenge()) {
                r.headers_mut()
                    .insert(axum::http::header::WWW_AUTHENTICATE, v);
            }
            return r;
        }
    }
    next.run(req).await
}

/// The tab's icon: a dot in the page's own blue.
async fn favicon() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "image/svg+xml")],
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="6" fill="#2f6fb2"/></svg>"##,
    )
        .into_response()
}

/// The page: one file, embedded, with no request anywhere but this server.
const PAGE: &str = include_str!("page/index.html");

async fn page() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        PAGE,
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn summary(State(hub): State<Arc<ConsoleHub>>) -> Json<Value> {
    let rates = hub.span_rates();
    let h = hub.history();
    let (windows, bytes) = h.size();
    let newest = h.newest_ns();
    Json(json!({
        "spans_per_second_in": rates.map(|r| round(r.0)),
        // None without an OTLP exporter: nothing is forwarded, by design.
        "spans_per_second_forwarded": rates.filter(|_| hub.forwards()).map(|r| round(r.1)),
        "series": h.keys().len(),
        "windows_held": windows,
        "bytes_held": bytes,
        "newest_window": (newest > 0).then(|| rfc3339(newest)),
        "anomalies_last_hour": h.anomalies_since(newest.saturating_sub(3_600_000_000_000)),
        "trace_url": hub.trace_url.as_deref(),
        "open_incidents": h.incidents().iter().filter(|s| s.incident.status == crate::model::incident::Status::Open).count(),
    }))
}

fn standing_json(s: &Standing) -> Value {
    json!({
        "state": s.state.as_str(),
        "request_rate": round(s.request_rate),
        "error_rate": round(s.error_rate),
        "window": rfc3339(s.start_ns),
    })
}

fn service_json(v: &ServiceView) -> Value {
    let mut doc = json!({
        "name": &*v.name,
        "state": v.state().as_str(),
        "calls": v.calls.iter().map(|(t, s)| {
            let mut c = standing_json(s);
            c["target"] = json!(&**t);
            c
        }).collect::<Vec<_>>(),
    });
    if let Some(s) = &v.spans {
        doc["spans"] = standing_json(s);
    }
    if let Some(o) = v.others {
        doc["logs_and_metrics"] = json!(o.as_str());
    }
    doc["series"] = v
        .series
        .iter()
        .map(|(k, st)| {
            let mut s = json!({
                "key": k.to_string(),
                "signal": k.signal.as_str(),
                "state": st.as_str(),
            });
            if let Some(t) = &k.target {
                s["target"] = json!(&**t);
            }
            if let Some(m) = k.metric_name() {
                s["metric"] = json!(m);
            }
            let labels: Map<String, Value> = k
                .labels
                .iter()
                .skip(k.metric_name().is_some() as usize)
                .map(|(a, b)| (a.to_string(), json!(&**b)))
                .collect();
            if !labels.is_empty() {
                s["labels"] = Value::Object(labels);
            }
            s
        })
        .collect();
    doc
}

async fn services(State(hub): State<Arc<ConsoleHub>>) -> Json<Value> {
    let views = hub.history().services();
    Json(json!({ "services": views.iter().map(service_json).collect::<Vec<_>>() }))
}

/// The incident contract's `incident` object for a kept incident.
fn incident_json(s: &super::history::IncidentState) -> Value {
    let doc = IncidentEvent {
        action: Action::Updated,
        at_ns: s.changed_ns,
        notable: false,
        incident: s.incident.clone(),
    }
    .to_document();
    let mut i = doc["incident"].clone();
    i["changed"] = json!(rfc3339(s.changed_ns));
    // The console can open every series it names: each with its signal (and metric).
    i["series"] = s
        .incident
        .series
        .iter()
        .map(|k| {
            let mut v = json!({
                "key": k.to_string(),
                "service": &*k.service,
                "signal": k.signal.as_str(),
            });
            if let Some(t) = &k.target {
                v["target"] = json!(&**t);
            }
            if let Some(m) = k.metric_name() {
                v["metric"] = json!(m);
            }
            v
        })
        .collect();
    i
}

async fn incidents(State(hub): State<Arc<ConsoleHub>>) -> Json<Value> {
    let h = hub.history();
    Json(json!({ "incidents": h.incidents().into_iter().map(incident_json).collect::<Vec<_>>() }))
}

/// Example traces listed with an incident.
const INCIDENT_EXAMPLES: usize = 12;

async fn incident(State(hub): State<Arc<ConsoleHub>>, Path(id): Path<String>) -> Response {
    let h = hub.history();
    match h.incident(&id) {
        Some(s) => {
            let examples: Vec<Value> = h
                .incident_examples(&id, INCIDENT_EXAMPLES)
                .into_iter()
                .map(|(key, start, e)| {
                    let mut doc = example_json(&e, hub.trace_url.as_deref());
                    doc["service"] = json!(&*key.service);
                    if let Some(t) = &key.target {
                        doc["target"] = json!(&**t);
                    }
                    doc["window"] = json!(rfc3339(start));
                    doc
                })
                .collect();
            Json(json!({ "incident": incident_json(s), "examples": examples })).into_response()
        }
        None => error(StatusCode::NOT_FOUND, format!("no incident {id:?} is held")),
    }
}

/// The series a query names: `key=` as the series' name reads (`svc [http.route=/x]`), or
/// `service=` with `target=`, `signal=`, `metric=`.
fn held_key(
    hub: &ConsoleHub,
    q: &HashMap<String, String>,
) -> Result<SeriesKey, (StatusCode, String)> {
    match q.get("key") {
        Some(name) => match hub.history().find(name) {
            Some(k) => Ok((*k).clone()),
            None => Err((StatusCode::NOT_FOUND, format!("no series {name:?} is held"))),
        },
        None => series_key(q).map_err(|e| (StatusCode::BAD_REQUEST, e)),
    }
}

/// The series `service=`, `target=`, `signal=` and `metric=` name.
fn series_key(q: &HashMap<String, String>) -> Result<SeriesKey, String> {
    let service = q
        .get("service")
        .filter(|s| !s.is_empty())
        .ok_or("service= is required")?;
    let signal = match q.get("signal").map(String::as_str) {
        None | Some("spans") => Signal::Spans,
        Some(s) => Signal::parse(s).ok_or(format!("unknown signal {s:?}"))?,
    };
    Ok(match signal {
        Signal::Spans => match q.get("target") {
            Some(t) => SeriesKey::edge(service, t),
            None => SeriesKey::service(service),
        },
        Signal::Network => {
            let target = q.get("target").ok_or("target= is required for network")?;
            SeriesKey::network(service, target)
        }
        Signal::Logs => SeriesKey::logs(service),
        Signal::Metrics => {
            let metric = q.get("metric").ok_or("metric= is required for metrics")?;
            SeriesKey::metric(service, metric)
        }
    })
}

fn time_param(q: &HashMap<String, String>, name: &str, default: u64) -> Result<u64, String> {
    match q.get(name) {
        None => Ok(default),
        Some(t) => parse_rfc3339_ns(t).ok_or(format!("{name}={t:?} is not an RFC 3339 time")),
    }
}

/// An example trace, with the link to it where the console has a `trace_url`.
fn example_json(e: &TraceExample, trace_url: Option<&str>) -> Value {
    let id = e.trace_id_hex();
    let mut doc = json!({
        "trace_id": id,
        "duration_ms": round(e.duration_ms),
        "error": e.error,
    });
    if let Some(t) = trace_url {
        doc["url"] = json!(t.replace("{trace_id}", &id));
    }
    doc
}

fn point_json(p: &Point, names: &[&str], trace_url: Option<&str>) -> Value {
    let features: Map<String, Value> = names
        .iter()
        .zip(p.features.iter())
        .map(|(n, v)| (n.to_string(), json!(round(*v as f64))))
        .collect();
    let mut doc = json!({
        "start": rfc3339(p.start_ns),
        "features": features,
        "score": round(p.score as f64),
        "threshold": round(p.threshold as f64),
        "is_anomaly": p.is_anomaly,
        "warming_up": p.warming_up,
    });
    if p.partial {
        doc["partial"] = json!(true);
    }
    if p.expected {
        doc["expected"] = json!(true);
    }
    if p.dismissed {
        doc["dismissed"] = json!(true);
    }
    if !p.contributions.is_empty() {
        doc["contributions"] = p
            .contributions
            .iter()
            .map(|(i, actual, typical)| {
                json!({
                    "feature": names.get(*i as usize).copied().unwrap_or(""),
                    "actual": round(*actual as f64),
                    "typical": round(*typical as f64),
                })
            })
            .collect();
    }
    if !p.templates.is_empty() {
        doc["templates"] = p
            .templates
            .iter()
            .map(|t| {
                let mut j = json!({
                    "template": &*t.template,
                    "count": t.count,
                    "level": t.level.as_str(),
                    "new": t.new,
                });
                if let Some(m) = t.missing {
                    j["missing"] = json!({
                        "traces": m.traces,
                        "expected": (m.expected * 100.0).round() / 100.0,
                        "of": m.of,
                    });
                }
                j
            })
            .collect();
    }
    if !p.examples.is_empty() {
        doc["examples"] = p
            .examples
            .iter()
            .map(|e| example_json(e, trace_url))
            .collect();
    }
    if let Some(i) = &p.incident {
        doc["incident"] = json!(&**i);
    }
    doc
}

fn band_json(b: &[Band]) -> Value {
    b.iter()
        .map(|b| {
            json!({
                "start": rfc3339(b.start_ns),
                "low": round(b.low),
                "typical": round(b.typical),
                "high": round(b.high),
            })
        })
        .collect()
}

async fn series(
    State(hub): State<Arc<ConsoleHub>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let key = match held_key(&hub, &q) {
        Ok(k) => k,
        Err((status, e)) => return error(status, e),
    };
    let (from, to) = match (time_param(&q, "from", 0), time_param(&q, "to", u64::MAX)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let h = hub.history();
    match series_doc(&h, &key, from, to, hub.trace_url.as_deref()) {
        Some(doc) => Json(doc).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no series {key} is held")),
    }
}

fn series_doc(
    h: &History,
    key: &SeriesKey,
    from: u64,
    to: u64,
    trace_url: Option<&str>,
) -> Option<Value> {
    let s = h.series(key)?;
    let names = key.signal.feature_names();
    let bands: Map<String, Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), band_json(&s.band(i, from, to))))
        .collect();
    Some(json!({
        "series": key.to_string(),
        "service": &*key.service,
        "target": key.target.as_deref(),
        "signal": key.signal.as_str(),
        "metric": key.metric_name(),
        "interval_s": s.interval_ns as f64 / 1e9,
        "windows": s.between(from, to).map(|p| point_json(p, names, trace_url)).collect::<Vec<_>>(),
        "bands": bands,
    }))
}

fn round(v: f64) -> f64 {
    if !v.is_finite() {
        return 0.0;
    }
    (v * 1e4).round() / 1e4
}

/// A JSON request body of type `T`. Only `application/json` is taken: a page elsewhere cannot
/// post it without the browser asking this server first (which it does not allow).
fn json_body<T: serde::de::DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<T, (StatusCode, String)> {
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as Content-Type: application/json".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("the body is not valid: {e}"),
        )
    })
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn range_json(r: &ExpectedRange) -> Value {
    json!({
        "id": r.id,
        "from": rfc3339(r.from_ns),
        "to": rfc3339(r.to_ns),
        "service": r.service,
        "note": r.note,
    })
}

/// The feedback held: windows said not to be anomalies (newest first) and expected ranges.
async fn feedback(State(hub): State<Arc<ConsoleHub>>) -> Json<Value> {
    let dismissed: Vec<Value> = hub
        .feedback
        .dismissals()
        .iter()
        .rev()
        .map(|d| {
            let mut v = json!({
                "service": &*d.series.service,
                "signal": d.series.signal.as_str(),
                "window": rfc3339(d.start_ns),
                "at": rfc3339(d.at_ns),
            });
            if let Some(t) = &d.series.target {
                v["target"] = json!(&**t);
            }
            if let Some(m) = d.series.metric_name() {
                v["metric"] = json!(m);
            }
            v
        })
        .collect();
    let expected: Vec<Value> = hub.feedback.expected().iter().map(range_json).collect();
    Json(json!({ "not_anomaly": dismissed, "expected": expected }))
}

/// `POST /api/feedback/not-anomaly`: `{"incident": id}`, or one window:
/// `{"key", "window": start}` or `{"service", "target"?, "signal"?, "metric"?, "window"}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NotAnomaly {
    incident: Option<String>,
    key: Option<String>,
    service: Option<String>,
    target: Option<String>,
    signal: Option<String>,
    metric: Option<String>,
    window: Option<String>,
}

async fn not_anomaly(
    State(hub): State<Arc<ConsoleHub>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let req: NotAnomaly = match json_body(&headers, &body) {
        Ok(r) => r,
        Err((status, e)) => return error(status, e),
    };
    let windows = match (&req.incident, &req.window) {
        (Some(id), None) => match hub.history().dismiss_incident(id) {
            Some(w) => w,
            None => return error(StatusCode::NOT_FOUND, format!("no incident {id:?} is held")),
        },
        (None, Some(start)) => {
            let mut q = HashMap::new();
            for (k, v) in [
                ("key", &req.key),
                ("service", &req.service),
                ("target", &req.target),
                ("signal", &req.signal),
                ("metric", &req.metric),
            ] {
                if let Some(v) = v {
                    q.insert(k.to_string(), v.clone());
                }
            }
            let key = match held_key(&hub, &q) {
                Ok(k) => k,
                Err((status, e)) => return error(status, e),
            };
            let Some(start_ns) = parse_rfc3339_ns(start) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("window={start:?} is not an RFC 3339 time"),
                );
            };
            match hub.history().dismiss(&key, start_ns) {
                Ok((key, features)) => vec![(key, start_ns, features)],
                Err(e) => return error(StatusCode::NOT_FOUND, e),
            }
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "name either an incident or one window (service and window)",
            )
        }
    };
    let at = now_ns();
    let taken = windows
        .into_iter()
        .filter(|(key, start, features)| hub.feedback.dismiss(key.clone(), *start, *features, at))
        .count();
    hub.notify();
    Json(json!({ "not_anomaly": taken })).into_response()
}

/// `POST /api/feedback/expected`: `{"from", "to", "service"?, "note"?}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    from: String,
    to: String,
    service: Option<String>,
    #[serde(default)]
    note: String,
}

/// The longest note kept with an expected range.
const MAX_NOTE_BYTES: usize = 500;

async fn expect(
    State(hub): State<Arc<ConsoleHub>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let req: Expect = match json_body(&headers, &body) {
        Ok(r) => r,
        Err((status, e)) => return error(status, e),
    };
    let mut q = HashMap::new();
    q.insert("from".to_string(), req.from);
    q.insert("to".to_string(), req.to);
    let (from, to) = match (time_param(&q, "from", 0), time_param(&q, "to", 0)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    if req.note.len() > MAX_NOTE_BYTES {
        return error(
            StatusCode::BAD_REQUEST,
            format!("the note is longer than {MAX_NOTE_BYTES} bytes"),
        );
    }
    let service = req.service.filter(|s| !s.is_empty());
    let range = match ExpectedRange::new(from, to, service, req.note) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match hub.feedback.expect(range) {
        Ok(r) => {
            hub.notify();
            let doc = json!({ "expected": range_json(&r) });
            (StatusCode::CREATED, Json(doc)).into_response()
        }
        Err(e) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

async fn withdraw(State(hub): State<Arc<ConsoleHub>>, Path(id): Path<String>) -> Response {
    if hub.feedback.withdraw(&id) {
        hub.notify();
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            format!("no expected range {id:?} is held"),
        )
    }
}
