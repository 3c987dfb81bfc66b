//! The cluster as the exporter sees it: made ready once (templates installed), then written
//! to in `_bulk` requests, each answering per item or failing as a whole.

use super::bulk::{self, ItemOutcome};
use super::client::json_request;
use super::{templates, Doc, ElasticsearchConfig};
use crate::exporters::framework::ExportError;
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

    /// One `_bulk` request; the outcome of each item, or why the whole request failed.
    pub async fn send(&self, chunk: &[Doc]) -> Result<Vec<ItemOutcome>, BulkFailure> {
        let transport = |error| BulkFailure {
            status: None,
            error,
        };
        let resp = self
            .client
            .bulk(BulkParts::None)
            .body(vec![bulk::body(chunk)])
            .send()
            .await
            .map_err(|e| transport(ExportError::retryable(format!("_bulk: {e}"))))?;
        let status = resp.status_code().as_u16();
        if status >= 400 {
            let after = retry_after(resp.headers());
            let text = resp.text().await.unwrap_or_default();
            return Err(BulkFailure {
                status: Some(status),
                error: classify_status(status, "_bulk", after, &text),
            });
        }
        let body: Value = resp.json().await.map_err(|e| {
            transport(ExportError::retryable(format!(
                "reading the _bulk response: {e}"
            )))
        })?;
        bulk::parse_bulk_response(&body, chunk.len())
            .map_err(|e| transport(ExportError::retryable(e)))
    }
}

/// Why a whole `_bulk` request failed: its HTTP status, if it got one.
#[derive(Debug)]
pub(super) struct BulkFailure {
    pub status: Option<u16>,
    pub error: ExportError,
}
