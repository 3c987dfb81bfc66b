//! Exporter `elasticsearch`: scored windows into the windows index, anomalies also into the
//! anomalies index, through the official client (rustls). Works with Elasticsearch and
//! OpenSearch.
//!
//! ```yaml
//! exporters:
//!   elasticsearch:
//!     endpoints: [${env:ES_URL:-http://localhost:9200}]
//!     user: ${env:ES_USER:-}            # or api_key: ${env:ES_API_KEY:-}
//!     password: ${env:ES_PASSWORD:-}
//!     tls: { ca_file: "", insecure_skip_verify: false }
//!     mode: data_stream                 # or index: daily NAME-YYYY.MM.DD indices
//!     windows_index: otelwatch-windows
//!     anomalies_index: otelwatch-anomalies
//!     incidents_index: otelwatch-incidents  # a plain index in both modes (states replace by id)
//!     max_documents: 1000               # per _bulk request
//!     max_bytes: 5242880                # per _bulk request, before compression
//!     flush_interval: 0s                # gather windows this long before writing (0s: at once)
//!     compression: true                 # gzip request bodies
//!     timeout: 30s
//!     retry_on_failure: { initial_interval: 1s, max_interval: 30s, max_elapsed_time: 300s }
//!     sending_queue: { num_consumers: 2, queue_size: 1000 }
//!     queue: { directory: /var/lib/otelwatch/es-queue, max_bytes: 1073741824 }   # optional, on disk
//! ```
//!
//! Writing is idempotent: every document has a deterministic `_id` (a hash of the series and
//! the window start) and is written with `create`, so a retried request never duplicates —
//! `409` on a known id counts as already written. Per-item results are read: items refused with
//! 429/5xx are retried (alone) with jittered backoff, items refused as invalid (400, 404, …)
//! are logged with the reason and counted, never retried. A failure of the whole request
//! (connection refused, 429/5xx for the request) is retried by the exporter framework with the
//! batch kept in the bounded queue, so an outage pushes back on the pipeline instead of dropping.
//! Index templates (and, in data stream mode, the data streams' mappings) are installed on
//! start, idempotently; a cluster that is down at start is tried again before every send.

mod spool;
mod templates;

/// The mappings the index templates install (for checks that dashboards use mapped fields).
pub fn templates_mappings() -> Value {
    templates::mappings()
}

use super::framework::{Delivered, Export, ExportError, QueueSettings, RetrySettings, RunSettings};
use crate::config::decode::decode_section;
use crate::config::duration::ConfigDuration;
use crate::config::error::ConfigError;
use crate::model::incident::IncidentEvent;
use crate::model::window::WindowRecord;
use crate::pipeline::{Batch, Payload};
use crate::telemetry::{Counter, Telemetry};
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::transport::{
    MultiNodeConnectionPool, SingleNodeConnectionPool, TransportBuilder,
};
use elasticsearch::http::Method;
use elasticsearch::{BulkOperation, BulkParts, Elasticsearch};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::Mutex;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    DataStream,
    Index,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM file of the CA that signed the cluster's certificate.
    pub ca_file: String,
    /// Accept any certificate (test clusters only).
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DiskQueue {
    /// Where spool files live; empty: no disk queue (the bounded in-memory queue only).
    pub directory: String,
    /// Spooled bytes at which new batches wait (pushing back on the pipeline).
    pub max_bytes: u64,
}

impl Default for DiskQueue {
    fn default() -> Self {
        Self {
            directory: String::new(),
            max_bytes: 1 << 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchConfig {
    pub endpoints: Vec<String>,
    pub user: String,
    pub password: String,
    pub api_key: String,
    pub tls: TlsSettings,
    pub mode: Mode,
    pub windows_index: String,
    pub anomalies_index: String,
    /// A plain index (or alias) in both modes: incident states replace each other by id.
    pub incidents_index: String,
    pub max_documents: usize,
    pub max_bytes: usize,
    /// Gather closed windows for up to this long (or `max_documents`) before writing; `0s`
    /// writes each set of windows as soon as it closes.
    pub flush_interval: ConfigDuration,
    pub compression: bool,
    pub timeout: ConfigDuration,
    pub retry_on_failure: RetrySettings,
    pub sending_queue: QueueSettings,
    pub queue: DiskQueue,
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://localhost:9200".into()],
            user: String::new(),
            password: String::new(),
            api_key: String::new(),
            tls: TlsSettings::default(),
            mode: Mode::DataStream,
            windows_index: "otelwatch-windows".into(),
            anomalies_index: "otelwatch-anomalies".into(),
            incidents_index: "otelwatch-incidents".into(),
            max_documents: 1000,
            max_bytes: 5 * 1024 * 1024,
            flush_interval: ConfigDuration::from_secs(0),
            compression: true,
            timeout: ConfigDuration::from_secs(30),
            retry_on_failure: RetrySettings {
                initial_interval: ConfigDuration::from_secs(1),
                ..RetrySettings::default()
            },
            sending_queue: QueueSettings {
                num_consumers: 2,
                queue_size: 1000,
            },
            queue: DiskQueue::default(),
        }
    }
}

fn valid_index_name(n: &str) -> bool {
    !n.is_empty()
        && n == n.to_lowercase()
        && !n.starts_with(['-', '_', '+'])
        && !n.contains([' ', '\\', '/', '*', '?', '"', '<', '>', '|', ',', '#', ':'])
}

impl ElasticsearchConfig {
    pub fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if cfg.endpoints.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.endpoints"),
                "list at least one endpoint",
            ));
        }
        for (i, e) in cfg.endpoints.iter().enumerate() {
            match url::Url::parse(e) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => errors.push(ConfigError::new(
                    format!("{path}.endpoints[{i}]"),
                    format!("invalid URL {e:?} (http:// or https://)"),
                )),
            }
        }
        if !cfg.api_key.is_empty() && !cfg.user.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.api_key"),
                "set either api_key or user/password, not both",
            ));
        }
        if cfg.user.is_empty() != cfg.password.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.password"),
                "user and password go together",
            ));
        }
        for (field, name) in [
            ("windows_index", &cfg.windows_index),
            ("anomalies_index", &cfg.anomalies_index),
            ("incidents_index", &cfg.incidents_index),
        ] {
            if !valid_index_name(name) {
                errors.push(ConfigError::new(
                    format!("{path}.{field}"),
                    format!("{name:?} is not a valid index name (lowercase, no spaces or \\/*?\"<>|,#:)"),
                ));
            }
        }
        if cfg.max_documents == 0 {
            errors.push(ConfigError::new(
                format!("{path}.max_documents"),
                "must be at least 1",
            ));
        }
        if cfg.max_bytes < 1024 {
            errors.push(ConfigError::new(
                format!("{path}.max_bytes"),
                "must be at least 1024",
            ));
        }
        super::framework::validate_sending(
            path,
            &cfg.retry_on_failure,
            &cfg.sending_queue,
            &mut errors,
        );
        crate::config::decode::validated(cfg, errors)
    }

    pub fn run_settings(&self) -> RunSettings {
        RunSettings {
            queue: self.sending_queue.clone(),
            retry: self.retry_on_failure.clone(),
            // Item-level retries happen inside one export call; the framework's timeout covers
            // the whole call, so it is left to the client's per-request timeout.
            timeout: None,
            accumulate: (!self.flush_interval.get().is_zero())
                .then(|| (self.max_documents, self.flush_interval.get())),
            encoded_only: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ElasticsearchError {
    #[error("invalid endpoint {0:?}: {1}")]
    Endpoint(String, String),
    #[error("reading the CA file {path}: {message}")]
    Ca { path: String, message: String },
    #[error("building the client: {0}")]
    Client(String),
    #[error("opening the disk queue {path}: {source}")]
    Spool {
        path: String,
        source: std::io::Error,
    },
}

/// A client for the configured endpoints, credentials and TLS settings.
pub fn build_client(cfg: &ElasticsearchConfig) -> Result<Elasticsearch, ElasticsearchError> {
    let urls: Vec<url::Url> = cfg
        .endpoints
        .iter()
        .map(|e| {
            url::Url::parse(e)
                .map_err(|err| ElasticsearchError::Endpoint(e.clone(), err.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let mut builder = match urls.as_slice() {
        [one] => TransportBuilder::new(SingleNodeConnectionPool::new(one.clone())),
        _ => TransportBuilder::new(MultiNodeConnectionPool::round_robin(urls, None)),
    };
    if !cfg.api_key.is_empty() {
        builder = builder.auth(Credentials::EncodedApiKey(cfg.api_key.clone()));
    } else if !cfg.user.is_empty() {
        builder = builder.auth(Credentials::Basic(cfg.user.clone(), cfg.password.clone()));
    }
    if cfg.tls.insecure_skip_verify {
        builder = builder.cert_validation(CertificateValidation::None);
    } else if !cfg.tls.ca_file.is_empty() {
        let ca = |message: String| ElasticsearchError::Ca {
            path: cfg.tls.ca_file.clone(),
            message,
        };
        let pem = std::fs::read(&cfg.tls.ca_file).map_err(|e| ca(e.to_string()))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| ca(e.to_string()))?;
        builder = builder.cert_validation(CertificateValidation::Full(cert));
    }
    let transport = builder
        .request_body_compression(cfg.compression)
        .timeout(cfg.timeout.get())
        .build()
        .map_err(|e| ElasticsearchError::Client(e.to_string()))?;
    Ok(Elasticsearch::new(transport))
}

/// Sends one JSON request and returns the status and the JSON answer (Null if not JSON).
pub async fn json_request(
    client: &Elasticsearch,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), elasticsearch::Error> {
    let resp = client
        .transport()
        .send(
            method,
            path,
            HeaderMap::new(),
            Option::<&()>::None,
            body.map(elasticsearch::http::request::JsonBody::new),
            None,
        )
        .await?;
    let status = resp.status_code().as_u16();
    let value = resp.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, value))
}

/// Reads every window document of `index` back, oldest first, with the scroll API (supported
/// by Elasticsearch and OpenSearch alike).
pub async fn read_windows(
    client: &Elasticsearch,
    index: &str,
) -> Result<Vec<WindowRecord>, String> {
    let mut out = Vec::new();
    let (status, mut page) = json_request(
        client,
        Method::Post,
        &format!("/{index}/_search?scroll=2m"),
        Some(serde_json::json!({ "size": 1000, "sort": ["_doc"], "query": { "match_all": {} } })),
    )
    .await
    .map_err(|e| e.to_string())?;
    if status >= 400 {
        return Err(format!("searching {index}: HTTP {status}: {page}"));
    }
    loop {
        let hits = page["hits"]["hits"].as_array().cloned().unwrap_or_default();
        if hits.is_empty() {
            break;
        }
        out.extend(
            hits.iter()
                .filter_map(|h| WindowRecord::from_document(&h["_source"])),
        );
        let Some(scroll_id) = page["_scroll_id"].as_str().map(str::to_string) else {
            break;
        };
        let (status, next) = json_request(
            client,
            Method::Post,
            "/_search/scroll",
            Some(serde_json::json!({ "scroll": "2m", "scroll_id": scroll_id })),
        )
        .await
        .map_err(|e| e.to_string())?;
        if status >= 400 {
            return Err(format!("scrolling {index}: HTTP {status}: {next}"));
        }
        page = next;
    }
    if let Some(id) = page["_scroll_id"].as_str() {
        let _ = json_request(
            client,
            Method::Delete,
            "/_search/scroll",
            Some(serde_json::json!({ "scroll_id": [id] })),
        )
        .await;
    }
    out.sort_by(|a, b| a.start_ns.cmp(&b.start_ns).then(a.series.cmp(&b.series)));
    out.dedup_by(|a, b| a.start_ns == b.start_ns && a.series == b.series);
    Ok(out)
}

/// A deterministic document id: the same series and window always give the same id.
pub fn document_id(w: &WindowRecord) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    let mut eat = |bytes: &[u8]| {
        for &x in bytes.iter().chain(&[0xff]) {
            a ^= x as u64;
            a = a.wrapping_mul(0x0000_0100_0000_01b3);
            b ^= x as u64;
            b = b.wrapping_mul(0x0000_0100_0000_01b3).rotate_left(5);
        }
    };
    eat(w.series.service.as_bytes());
    eat(w.series.target.as_deref().unwrap_or("").as_bytes());
    for (k, v) in &w.series.labels {
        eat(k.as_bytes());
        eat(v.as_bytes());
    }
    eat(&w.start_ns.to_be_bytes());
    format!("{a:016x}{b:016x}")
}

/// The index (or data stream) a document goes to.
pub fn target_index(base: &str, mode: Mode, w: &WindowRecord) -> String {
    match mode {
        Mode::DataStream => base.to_string(),
        Mode::Index => {
            let day = &crate::model::time::rfc3339(w.start_ns)[..10];
            format!("{base}-{}", day.replace('-', "."))
        }
    }
}

/// One document to write.
#[derive(Debug, Clone)]
pub struct Doc {
    pub index: String,
    pub id: String,
    pub body: Value,
    /// Incident states replace the previous one (`index`); windows are written once (`create`).
    pub replace: bool,
}

/// The documents for a batch of windows: every window, and every anomaly again as an alert.
pub fn documents(cfg: &ElasticsearchConfig, windows: &[WindowRecord]) -> Vec<Doc> {
    let mut docs = Vec::with_capacity(windows.len());
    for w in windows {
        let id = document_id(w);
        docs.push(Doc {
            index: target_index(&cfg.windows_index, cfg.mode, w),
            id: id.clone(),
            body: w.to_document(),
            replace: false,
        });
        if w.is_anomaly() {
            docs.push(Doc {
                index: target_index(&cfg.anomalies_index, cfg.mode, w),
                id,
                body: w.to_alert_document(),
                replace: false,
            });
        }
    }
    docs
}

/// The documents for incident changes: one per incident in the incidents index, `_id` the
/// incident id, each change replacing the last (the final state is what stays).
pub fn incident_documents(cfg: &ElasticsearchConfig, events: &[IncidentEvent]) -> Vec<Doc> {
    events
        .iter()
        .map(|e| Doc {
            index: cfg.incidents_index.clone(),
            id: e.incident.id.to_string(),
            body: e.to_document(),
            replace: true,
        })
        .collect()
}

/// What happened to one item of a `_bulk` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    Written,
    /// 409: the id exists, so an earlier attempt wrote it.
    AlreadyWritten,
    Retry(u16),
    Rejected {
        status: u16,
        reason: String,
    },
}

/// Reads a `_bulk` response body into one outcome per item, in order.
pub fn parse_bulk_response(body: &Value, expected: usize) -> Result<Vec<ItemOutcome>, String> {
    let items = body["items"]
        .as_array()
        .ok_or_else(|| "the _bulk response has no items".to_string())?;
    if items.len() != expected {
        return Err(format!(
            "the _bulk response has {} items for {expected} documents",
            items.len()
        ));
    }
    Ok(items
        .iter()
        .map(|item| {
            let op = item
                .as_object()
                .and_then(|o| o.values().next())
                .cloned()
                .unwrap_or(Value::Null);
            let status = op["status"].as_u64().unwrap_or(0) as u16;
            match status {
                200..=299 => ItemOutcome::Written,
                409 => ItemOutcome::AlreadyWritten,
                429 | 500..=599 => ItemOutcome::Retry(status),
                _ => ItemOutcome::Rejected {
                    status,
                    reason: format!(
                        "{}: {}",
                        op["error"]["type"].as_str().unwrap_or("error"),
                        op["error"]["reason"].as_str().unwrap_or("no reason given")
                    ),
                },
            }
        })
        .collect())
}

struct Counters {
    written: Counter,
    duplicates: Counter,
    retried: Counter,
    rejected: Counter,
}

pub struct ElasticsearchExporter {
    inner: std::sync::Arc<Inner>,
    spool: Option<std::sync::Arc<spool::Spool>>,
    drain: Option<tokio::task::JoinHandle<()>>,
}

struct Inner {
    client: Elasticsearch,
    cfg: ElasticsearchConfig,
    ready: Mutex<bool>,
    counters: Counters,
}

impl ElasticsearchExporter {
    pub fn new(
        cfg: &ElasticsearchConfig,
        id: &str,
        telemetry: &Telemetry,
    ) -> Result<Self, ElasticsearchError> {
        let client = build_client(cfg)?;
        let labels =
            |result: &str| vec![("exporter", id.to_string()), ("result", result.to_string())];
        let help = "Documents by outcome: written, duplicate (already written), retried, rejected.";
        let inner = std::sync::Arc::new(Inner {
            client,
            cfg: cfg.clone(),
            ready: Mutex::new(false),
            counters: Counters {
                written: telemetry.counter(
                    "otelwatch_elasticsearch_documents_total",
                    help,
                    labels("written"),
                ),
                duplicates: telemetry.counter(
                    "otelwatch_elasticsearch_documents_total",
                    help,
                    labels("duplicate"),
                ),
                retried: telemetry.counter(
                    "otelwatch_elasticsearch_documents_total",
                    help,
                    labels("retried"),
                ),
                rejected: telemetry.counter(
                    "otelwatch_elasticsearch_documents_total",
                    help,
                    labels("rejected"),
                ),
            },
        });
        let (spool, drain) = if cfg.queue.directory.is_empty() {
            (None, None)
        } else {
            let spool = std::sync::Arc::new(
                spool::Spool::open(
                    std::path::Path::new(&cfg.queue.directory),
                    cfg.queue.max_bytes,
                )
                .map_err(|source| ElasticsearchError::Spool {
                    path: cfg.queue.directory.clone(),
                    source,
                })?,
            );
            let probe = std::sync::Arc::downgrade(&spool);
            telemetry.gauge_fn(
                "otelwatch_elasticsearch_disk_queue_bytes",
                "Bytes waiting in the exporter's disk queue.",
                vec![("exporter", id.to_string())],
                move || probe.upgrade().map(|s| s.bytes() as f64).unwrap_or(0.0),
            );
            let drain = tokio::spawn(drain(inner.clone(), spool.clone()));
            (Some(spool), Some(drain))
        };
        Ok(Self {
            inner,
            spool,
            drain,
        })
    }
}

/// Writes spooled files to the cluster, oldest first, until the exporter is dropped.
async fn drain(inner: std::sync::Arc<Inner>, spool: std::sync::Arc<spool::Spool>) {
    let mut attempt = 0u32;
    loop {
        let changed = spool.changed.notified();
        let next = match spool.oldest() {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "reading the disk queue failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some((path, docs)) = next else {
            changed.await;
            continue;
        };
        let result = match inner.ensure_ready().await {
            Ok(()) => inner.write(docs).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                attempt = 0;
                if let Err(e) = spool.remove(&path) {
                    tracing::error!(error = %e, path = %path.display(), "cannot remove a written spool file");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Err(e) => {
                let wait = match &e {
                    ExportError::Retryable { after: Some(a), .. } => *a,
                    _ => inner.cfg.retry_on_failure.backoff(attempt.min(16)),
                };
                if attempt == 0 {
                    tracing::warn!(error = %e, retry_in = ?wait, "disk queue: send failed; retrying (documents stay on disk)");
                }
                attempt += 1;
                tokio::time::sleep(wait).await;
            }
        }
    }
}

impl Inner {
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), ExportError> {
        json_request(&self.client, method, path, body)
            .await
            .map_err(|e| ExportError::retryable(format!("{path}: {e}")))
    }

    /// Checks the cluster and installs the templates, once; retryable until it works.
    async fn ensure_ready(&self) -> Result<(), ExportError> {
        let mut ready = self.ready.lock().await;
        if *ready {
            return Ok(());
        }
        let (status, info) = self.request(Method::Get, "/", None).await?;
        if status >= 400 {
            return Err(classify_status(status, "GET /"));
        }
        let version = info["version"]["number"].as_str().unwrap_or("?");
        let distribution = info["version"]["distribution"]
            .as_str()
            .unwrap_or("elasticsearch");
        for (name, body) in templates::all(&self.cfg) {
            let (status, resp) = self
                .request(Method::Put, &format!("/_index_template/{name}"), Some(body))
                .await?;
            if status >= 400 {
                let err = classify_status(status, &format!("installing index template {name}"));
                return Err(match err {
                    ExportError::Permanent { message } => ExportError::Permanent {
                        message: format!("{message}: {resp}"),
                    },
                    other => other,
                });
            }
        }
        tracing::info!(
            distribution,
            version,
            "search cluster ready; index templates installed"
        );
        *ready = true;
        Ok(())
    }

    /// Sends the documents, retrying items refused as retryable; returns how many were given up.
    async fn write(&self, docs: Vec<Doc>) -> Result<usize, ExportError> {
        let mut pending = docs;
        let mut attempt = 0u32;
        let started = tokio::time::Instant::now();
        let mut rejected = 0usize;
        while !pending.is_empty() {
            let mut retry_next = Vec::new();
            for chunk in chunks(&pending, self.cfg.max_documents, self.cfg.max_bytes) {
                let ops: Vec<BulkOperation<Value>> = chunk
                    .iter()
                    .map(|d| {
                        if d.replace {
                            BulkOperation::index(d.body.clone())
                                .id(d.id.as_str())
                                .index(d.index.as_str())
                                .into()
                        } else {
                            BulkOperation::create(d.body.clone())
                                .id(d.id.as_str())
                                .index(d.index.as_str())
                                .into()
                        }
                    })
                    .collect();
                let resp = self
                    .client
                    .bulk(BulkParts::None)
                    .body(ops)
                    .send()
                    .await
                    .map_err(|e| ExportError::retryable(format!("_bulk: {e}")))?;
                let status = resp.status_code().as_u16();
                if status >= 400 {
                    let after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = resp.text().await.unwrap_or_default();
                    return Err(match classify_status(status, "_bulk") {
                        ExportError::Retryable { message, .. } => {
                            ExportError::Retryable { message, after }
                        }
                        ExportError::Permanent { message } => ExportError::Permanent {
                            message: format!(
                                "{message}: {}",
                                text.chars().take(300).collect::<String>()
                            ),
                        },
                    });
                }
                let body: Value = resp.json().await.map_err(|e| {
                    ExportError::retryable(format!("reading the _bulk response: {e}"))
                })?;
                let outcomes =
                    parse_bulk_response(&body, chunk.len()).map_err(ExportError::retryable)?;
                for (doc, outcome) in chunk.iter().zip(outcomes) {
                    match outcome {
                        ItemOutcome::Written => self.counters.written.inc(),
                        ItemOutcome::AlreadyWritten => self.counters.duplicates.inc(),
                        ItemOutcome::Retry(_) => retry_next.push(doc.clone()),
                        ItemOutcome::Rejected { status, reason } => {
                            rejected += 1;
                            self.counters.rejected.inc();
                            tracing::warn!(index = %doc.index, id = %doc.id, status, %reason, "document rejected");
                        }
                    }
                }
            }
            if retry_next.is_empty() {
                break;
            }
            let retry = &self.cfg.retry_on_failure;
            let wait = retry.backoff(attempt);
            let limit = retry.max_elapsed_time.get();
            if !retry.enabled || (!limit.is_zero() && started.elapsed() + wait > limit) {
                tracing::warn!(
                    documents = retry_next.len(),
                    "giving up on documents the cluster kept refusing"
                );
                self.counters.rejected.add(retry_next.len() as u64);
                rejected += retry_next.len();
                break;
            }
            self.counters.retried.add(retry_next.len() as u64);
            tracing::debug!(documents = retry_next.len(), retry_in = ?wait, "retrying refused documents");
            tokio::time::sleep(wait).await;
            attempt += 1;
            pending = retry_next;
        }
        Ok(rejected)
    }
}

/// Whole-request statuses: 429 and 5xx are worth retrying, the rest is not.
fn classify_status(status: u16, what: &str) -> ExportError {
    let message = format!("{what}: HTTP {status}");
    if status == 429 || status >= 500 {
        ExportError::retryable(message)
    } else {
        ExportError::permanent(message)
    }
}

/// Splits documents into requests of at most `max_docs` documents and about `max_bytes`.
fn chunks(docs: &[Doc], max_docs: usize, max_bytes: usize) -> Vec<&[Doc]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, d) in docs.iter().enumerate() {
        let size = d.body.to_string().len() + d.index.len() + d.id.len() + 48;
        if i > start && (i - start >= max_docs || bytes + size > max_bytes) {
            out.push(&docs[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < docs.len() {
        out.push(&docs[start..]);
    }
    out
}

impl Export for ElasticsearchExporter {
    async fn export(&self, batch: &Batch) -> Result<Delivered, ExportError> {
        let docs = match &batch.payload {
            Payload::Windows(windows) => documents(&self.inner.cfg, windows),
            Payload::Incidents(events) => incident_documents(&self.inner.cfg, events),
            _ => {
                return Err(ExportError::permanent(
                    "elasticsearch takes window records and incidents only",
                ))
            }
        };
        if let Some(spool) = &self.spool {
            // A full disk queue pushes back: wait for the drain to make room.
            while spool.is_full() {
                let changed = spool.changed.notified();
                if !spool.is_full() {
                    break;
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), changed).await;
            }
            spool
                .append(&docs)
                .map_err(|e| ExportError::retryable(format!("writing the disk queue: {e}")))?;
            return Ok(Delivered::default());
        }
        self.inner.ensure_ready().await?;
        let rejected = self.inner.write(docs).await?;
        // A window counts as failed if any of its documents was given up.
        Ok(Delivered {
            rejected: rejected.min(batch.items),
        })
    }

    /// With a disk queue, gives the drain a few seconds to empty it; what remains stays on
    /// disk and is sent at the next start.
    async fn shutdown(&self) {
        let Some(spool) = &self.spool else {
            return;
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while spool.bytes() > 0 && tokio::time::Instant::now() < deadline {
            let changed = spool.changed.notified();
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
        if spool.bytes() > 0 {
            tracing::warn!(
                bytes = spool.bytes(),
                directory = %self.inner.cfg.queue.directory,
                "documents remain in the disk queue; they are sent at the next start"
            );
        }
        if let Some(d) = &self.drain {
            d.abort();
        }
    }
}

impl Drop for ElasticsearchExporter {
    fn drop(&mut self) {
        if let Some(d) = &self.drain {
            d.abort();
        }
    }
}

#[cfg(test)]
mod tests;
