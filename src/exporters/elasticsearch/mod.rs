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
//!     retry_on_failure: { initial_interval: 1s, max_interval: 30s }   # pace of resending
//!     sending_queue: { num_consumers: 2, queue_size: 1000 }          # _bulk requests at once
//!     queue: { directory: data/elasticsearch-queue, max_bytes: 1073741824 }  # "" : in memory
//! ```
//!
//! Writing is idempotent: every document has a deterministic `_id` (a hash of the series and
//! the window start) and is written with `create`, so a resent document never duplicates —
//! `409` on a known id counts as already written; incident states replace each other with an
//! external version (the time of the change), so a late resend never overwrites a newer state.
//!
//! Nothing is given up while the cluster may still take it. An exported batch is appended to
//! the queue — on disk by default (`data/<exporter id>-queue`), acknowledged once synced; in
//! memory with `directory: ""`, acknowledged once delivered — and the delivery task
//! ([`delivery`]) writes the queue in `_bulk` requests: refused items rejoin later requests,
//! whole-request failures pause and resend, 413 splits, and only documents refused for
//! themselves (and unreadable spool entries) go to `dead-letter.ndjson` in the queue directory.
//! A full queue (`queue.max_bytes`) pushes back on the pipeline. A shutdown leaves what is not
//! yet delivered on disk for the next start. Index templates (and, in data stream mode, the data
//! streams' mappings) are installed before the first request, idempotently; a cluster that is
//! down at start is tried again at the retry pace.

mod bulk;
mod client;
mod cluster;
mod config;
mod delivery;
mod documents;
mod spool;
mod templates;

pub use bulk::{parse_bulk_response, ItemOutcome};
pub use client::{build_client, json_request, read_windows};
pub use config::{DiskQueue, ElasticsearchConfig, Mode, TlsSettings};
pub use documents::{document_id, documents, incident_documents, target_index, Doc};
pub use spool::parse_segment as parse_spool_segment;

/// The type the windows index template gives field `path` (`features.latency_p95_ms`), if it
/// types it: for checks that documents and dashboards use typed fields.
pub fn mapped_type(path: &str) -> Option<String> {
    let mappings = templates::mappings();
    let mut node = &mappings["properties"];
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        node = &node[*p];
        if i + 1 < parts.len() {
            node = &node["properties"];
        }
    }
    node["type"].as_str().map(str::to_string)
}

use super::framework::{Delivered, Export, ExportError};
use crate::pipeline::{Batch, Payload};
use crate::telemetry::names;
use crate::telemetry::Telemetry;
use cluster::{Cluster, Counters};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum ElasticsearchError {
    #[error("invalid endpoint {0:?}: {1}")]
    Endpoint(String, String),
    #[error("reading the CA file {path}: {message}")]
    Ca { path: String, message: String },
    #[error("building the client: {0}")]
    Client(String),
    #[error("opening the disk queue: {0}")]
    Spool(#[from] crate::storage::StorageError),
}

pub struct ElasticsearchExporter {
    cluster: Arc<Cluster>,
    spool: Arc<spool::Spool>,
    stop: watch::Sender<bool>,
    delivery: tokio::task::JoinHandle<()>,
}

/// The disk queue's directory when the settings leave it unset: `data/<exporter id>-queue`
/// under the working directory.
pub fn default_queue_directory(id: &str) -> String {
    format!("data/{}-queue", id.replace(['/', '\\'], "-"))
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
        let counter = |result| telemetry.counter(names::ES_DOCUMENTS, help, labels(result));
        let cluster = Arc::new(Cluster {
            client,
            cfg: cfg.clone(),
            ready: Mutex::new(false),
            counters: Counters {
                written: counter("written"),
                duplicates: counter("duplicate"),
                retried: counter("retried"),
                rejected: counter("rejected"),
            },
        });
        let directory = cfg
            .queue
            .directory
            .clone()
            .unwrap_or_else(|| default_queue_directory(id));
        let spool = if directory.is_empty() {
            spool::Spool::memory(cfg.queue.max_bytes)
        } else {
            spool::Spool::open(std::path::Path::new(&directory), cfg.queue.max_bytes)?
        };
        let spool = Arc::new(spool);
        let probe = Arc::downgrade(&spool);
        telemetry.gauge_fn(
            "otelwatch_elasticsearch_queue_bytes",
            "Bytes of documents waiting in the exporter's queue (on disk or in memory).",
            vec![("exporter", id.to_string())],
            move || probe.upgrade().map(|s| s.bytes() as f64).unwrap_or(0.0),
        );
        let dead_help = "Documents and spool entries written to the dead-letter file, by reason.";
        let dead = delivery::DeadLetter {
            path: spool.dir().map(|d| d.join("dead-letter.ndjson")),
            counters: ["rejected", "too_large", "unreadable"].map(|reason| {
                telemetry.counter(
                    names::ES_DEAD_LETTERS,
                    dead_help,
                    vec![("exporter", id.to_string()), ("reason", reason.to_string())],
                )
            }),
        };
        let failing = Arc::new(AtomicBool::new(false));
        let weak = Arc::downgrade(&failing);
        telemetry.gauge_fn(
            names::EXPORTER_FAILING,
            "1 while the exporter's last attempt failed with a retryable error.",
            vec![("exporter", id.to_string()), ("stage", "bulk".to_string())],
            move || weak.upgrade().is_some_and(|f| f.load(Ordering::Relaxed)) as u8 as f64,
        );
        let held = Arc::new(AtomicUsize::new(0));
        let weak = Arc::downgrade(&held);
        telemetry.gauge_fn(
            "otelwatch_elasticsearch_documents_held",
            "Documents the delivery holds in memory: loaded, waiting to be retried, in flight.",
            vec![("exporter", id.to_string())],
            move || {
                weak.upgrade()
                    .map_or(0.0, |h| h.load(Ordering::Relaxed) as f64)
            },
        );
        let (stop, stop_rx) = watch::channel(false);
        let delivery = tokio::spawn(delivery::run(
            delivery::Delivery {
                cluster: cluster.clone(),
                spool: spool.clone(),
                dead,
                failing,
                held,
            },
            stop_rx,
        ));
        Ok(Self {
            cluster,
            spool,
            stop,
            delivery,
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
        let spool = &self.spool;
        // A full queue pushes back: wait for the delivery to make room.
        while spool.is_full() {
            let changed = spool.changed.notified();
            if !spool.is_full() {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), changed).await;
        }
        // Written and synced on a blocking thread, not on the runtime's workers.
        let seq = spool::blocking(spool, move |s| s.append(docs))
            .await
            .map_err(|e| ExportError::retryable(format!("writing the disk queue: {e}")))?;
        if spool.on_disk() {
            // Safe on disk: acknowledged now, delivered by the delivery task.
            return Ok(Delivered::default());
        }
        // In memory only: the batch counts as delivered once the cluster has it.
        let given_up = spool.settled(seq).await.unwrap_or(0);
        Ok(Delivered {
            rejected: given_up.min(batch.items),
        })
    }

    /// Gives the delivery a few seconds to empty the disk queue; what remains stays on disk
    /// and is sent at the next start.
    async fn shutdown(&self) {
        let spool = &self.spool;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while spool.bytes() > 0 && tokio::time::Instant::now() < deadline {
            let changed = spool.changed.notified();
            if spool.bytes() == 0 {
                break;
            }
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
        if spool.bytes() > 0 {
            tracing::warn!(
                bytes = spool.bytes(),
                segments = spool.len(),
                directory = %spool.dir().map(|d| d.display().to_string()).unwrap_or_default(),
                "documents remain in the disk queue; they are sent at the next start"
            );
        }
        let _ = self.stop.send(true);
    }
}

impl Drop for ElasticsearchExporter {
    fn drop(&mut self) {
        self.delivery.abort();
    }
}

#[cfg(test)]
mod tests;
