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

mod bulk;
mod client;
mod cluster;
mod config;
mod documents;
mod spool;
mod templates;

pub use bulk::{parse_bulk_response, ItemOutcome};
pub use client::{build_client, json_request, read_windows};
pub use config::{DiskQueue, ElasticsearchConfig, Mode, TlsSettings};
pub use documents::{document_id, documents, incident_documents, target_index, Doc};

/// The mappings the index templates install (for checks that dashboards use mapped fields).
pub fn templates_mappings() -> serde_json::Value {
    templates::mappings()
}

use super::framework::{Delivered, Export, ExportError};
use crate::pipeline::{Batch, Payload};
use crate::telemetry::Telemetry;
use cluster::{Cluster, Counters};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

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

pub struct ElasticsearchExporter {
    cluster: Arc<Cluster>,
    spool: Option<Arc<spool::Spool>>,
    drain: Option<tokio::task::JoinHandle<()>>,
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
        let cluster = Arc::new(Cluster {
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
            let spool = Arc::new(
                spool::Spool::open(
                    std::path::Path::new(&cfg.queue.directory),
                    cfg.queue.max_bytes,
                )
                .map_err(|source| ElasticsearchError::Spool {
                    path: cfg.queue.directory.clone(),
                    source,
                })?,
            );
            let probe = Arc::downgrade(&spool);
            telemetry.gauge_fn(
                "otelwatch_elasticsearch_disk_queue_bytes",
                "Bytes waiting in the exporter's disk queue.",
                vec![("exporter", id.to_string())],
                move || probe.upgrade().map(|s| s.bytes() as f64).unwrap_or(0.0),
            );
            let drain = tokio::spawn(spool::drain(cluster.clone(), spool.clone()));
            (Some(spool), Some(drain))
        };
        Ok(Self {
            cluster,
            spool,
            drain,
        })
    }
}

impl Export for ElasticsearchExporter {
    async fn export(&self, batch: &Batch) -> Result<Delivered, ExportError> {
        let docs = match &batch.payload {
            Payload::Windows(windows) => documents(&self.cluster.cfg, windows),
            Payload::Incidents(events) => incident_documents(&self.cluster.cfg, events),
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
            // Written and synced on a blocking thread, not on the runtime's workers.
            spool::blocking(spool, move |s| s.append(&docs))
                .await
                .map_err(|e| ExportError::retryable(format!("writing the disk queue: {e}")))?;
            return Ok(Delivered::default());
        }
        self.cluster.ensure_ready().await?;
        let rejected = self.cluster.write(docs).await?;
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
                directory = %self.cluster.cfg.queue.directory,
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
