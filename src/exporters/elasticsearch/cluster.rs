//! The cluster as the exporter sees it: made ready once (templates installed), then written
//! to in `_bulk` requests whose refused items are retried alone.

use super::bulk::{self, ItemOutcome};
use super::client::json_request;
use super::{templates, Doc, ElasticsearchConfig};
use crate::exporters::framework::{Backoff, ExportError};
use crate::exporters::http::{classify_status, retry_after};
use crate::telemetry::Counter;
use elasticsearch::http::Method;
use elasticsearch::{BulkParts, Elasticsearch};
use serde_json::Value;
use tokio::sync::Mutex;

pub(super) struct Counters {
    pub written: Counter,
    pub duplicates: Counter,
    pub retried: Counter,
    pub rejected: Counter,
}

pub(super) struct Cluster {
    pub client: Elasticsearch,
    pub cfg: ElasticsearchConfig,
    pub ready: Mutex<bool>,
    pub counters: Counters,
}

impl Cluster {
    pub async fn request(
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
    pub async fn ensure_ready(&self) -> Result<(), ExportError> {
        let mut ready = self.ready.lock().await;
        if *ready {
            return Ok(());
        }
        let (status, info) = self.request(Method::Get, "/", None).await?;
        if status >= 400 {
            return Err(classify_status(status, "GET /", None, ""));
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
                let what = format!("installing index template {name}");
                return Err(classify_status(status, &what, None, &resp.to_string()));
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
    pub async fn write(&self, docs: Vec<Doc>) -> Result<usize, ExportError> {
        let mut pending = docs;
        let mut backoff = Backoff::new(&self.cfg.retry_on_failure);
        let mut rejected = 0usize;
        while !pending.is_empty() {
            let mut retry_next = Vec::new();
            for chunk in bulk::chunks(&pending, self.cfg.max_documents, self.cfg.max_bytes) {
                for (doc, outcome) in chunk.iter().zip(self.send(chunk).await?) {
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
            let Some(wait) = backoff.next(None) else {
                tracing::warn!(
                    documents = retry_next.len(),
                    "giving up on documents the cluster kept refusing"
                );
                self.counters.rejected.add(retry_next.len() as u64);
                rejected += retry_next.len();
                break;
            };
            self.counters.retried.add(retry_next.len() as u64);
            tracing::debug!(documents = retry_next.len(), retry_in = ?wait, "retrying refused documents");
            tokio::time::sleep(wait).await;
            pending = retry_next;
        }
        Ok(rejected)
    }

    /// One `_bulk` request; the outcome of each item, or why the whole request failed.
    async fn send(&self, chunk: &[Doc]) -> Result<Vec<ItemOutcome>, ExportError> {
        let resp = self
            .client
            .bulk(BulkParts::None)
            .body(vec![bulk::body(chunk)])
            .send()
            .await
            .map_err(|e| ExportError::retryable(format!("_bulk: {e}")))?;
        let status = resp.status_code().as_u16();
        if status >= 400 {
            let after = retry_after(resp.headers());
            let text = resp.text().await.unwrap_or_default();
            return Err(classify_status(status, "_bulk", after, &text));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|e| ExportError::retryable(format!("reading the _bulk response: {e}")))?;
        bulk::parse_bulk_response(&body, chunk.len()).map_err(ExportError::retryable)
    }
}
