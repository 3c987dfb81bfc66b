//! The one exporter framework: queue → concurrent sends → retry with jittered exponential
//! backoff → count. An exporter only says how to send a batch and which failures are retryable
//! (the default is *not* retryable).
//!
//! ```yaml
//! retry_on_failure: { enabled: true, initial_interval: 5s, max_interval: 30s, max_elapsed_time: 300s,
//!                     multiplier: 1.5, randomization_factor: 0.5 }
//! sending_queue:    { num_consumers: 10, queue_size: 1000 }
//! ```

mod retry;

use crate::config::duration::ConfigDuration;
use crate::config::error::ConfigError;
use crate::pipeline::{Batch, DataKind};
use crate::telemetry::{names, Counter, Telemetry};
pub use retry::{Backoff, RetrySettings};
use serde::Deserialize;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

/// Why a send failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExportError {
    #[error("{message}")]
    Retryable {
        message: String,
        /// The peer's requested delay (gRPC RetryInfo, HTTP Retry-After).
        after: Option<Duration>,
    },
    #[error("{message}")]
    Permanent { message: String },
}

impl ExportError {
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
        }
    }
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable {
            message: message.into(),
            after: None,
        }
    }
}

/// What a successful send reports: items the peer accepted the request but refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub rejected: usize,
}

/// The part each exporter writes.
pub trait Export: Send + Sync + 'static {
    fn export(&self, batch: &Batch) -> impl Future<Output = Result<Delivered, ExportError>> + Send;
    /// Called once after the last batch, before the exporter stops (flush files, close streams).
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// Batches sent at the same time.
    pub num_consumers: usize,
    /// Batches waiting to be sent; when full, the pipeline waits (and receivers refuse with a
    /// retryable status) instead of dropping.
    pub queue_size: usize,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            num_consumers: 10,
            queue_size: 1000,
        }
    }
}

impl QueueSettings {
    pub fn serial(queue_size: usize) -> Self {
        Self {
            num_consumers: 1,
            queue_size,
        }
    }

    pub fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.num_consumers == 0 {
            errors.push(ConfigError::new(
                format!("{path}.num_consumers"),
                "must be at least 1",
            ));
        }
        if self.queue_size == 0 {
            errors.push(ConfigError::new(
                format!("{path}.queue_size"),
                "must be at least 1",
            ));
        }
    }
}

/// Checks what every exporter that sends over the network has: a per-attempt `timeout`, and the
/// `retry_on_failure` and `sending_queue` sections.
pub fn validate_remote(
    path: &str,
    timeout: &ConfigDuration,
    retry: &RetrySettings,
    queue: &QueueSettings,
    errors: &mut Vec<ConfigError>,
) {
    if timeout.get().is_zero() {
        errors.push(ConfigError::new(
            format!("{path}.timeout"),
            "must be longer than 0",
        ));
    }
    validate_sending(path, retry, queue, errors);
}

/// Checks the shared `retry_on_failure` and `sending_queue` sections of an exporter.
pub fn validate_sending(
    path: &str,
    retry: &RetrySettings,
    queue: &QueueSettings,
    errors: &mut Vec<ConfigError>,
) {
    retry.validate(&format!("{path}.retry_on_failure"), errors);
    queue.validate(&format!("{path}.sending_queue"), errors);
}

#[derive(Debug, Clone)]
pub struct RunSettings {
    pub queue: QueueSettings,
    pub retry: RetrySettings,
    /// Per attempt; `None` for no limit.
    pub timeout: Option<Duration>,
    /// Merge queued batches until this many items or this long has passed since the first,
    /// then send them as one (`None`: send each batch as it comes).
    pub accumulate: Option<(usize, Duration)>,
    /// The exporter sends `Batch::encoded` when present and never reads the payload then: its
    /// queue keeps only the bytes (see `Batch::encoded_only`).
    pub encoded_only: bool,
}

impl RunSettings {
    /// A local exporter's settings (terminal, file, nop): one batch at a time, in order, no
    /// retrying.
    pub fn local() -> Self {
        Self {
            queue: QueueSettings::serial(256),
            retry: RetrySettings::disabled(),
            timeout: None,
            accumulate: None,
            encoded_only: false,
        }
    }

    /// A network exporter's settings: its queue and retry sections, a per-attempt timeout.
    pub fn remote(queue: &QueueSettings, retry: &RetrySettings, timeout: Duration) -> Self {
        Self {
            queue: queue.clone(),
            retry: retry.clone(),
            timeout: Some(timeout),
            accumulate: None,
            encoded_only: false,
        }
    }
}

#[derive(Clone)]
struct KindCounters {
    sent: Counter,
    failed: Counter,
}

struct Counters {
    by_kind: Vec<(DataKind, KindCounters)>,
    retries: Counter,
    /// The last attempt failed with a retryable error (the health report names it).
    failing: Arc<AtomicBool>,
}

impl Counters {
    fn for_kind(&self, k: DataKind) -> &KindCounters {
        self.by_kind
            .iter()
            .find(|(kk, _)| *kk == k)
            .map(|(_, c)| c)
            .unwrap_or(&self.by_kind[0].1)
    }
}

/// The sending side of a running exporter, shared by every pipeline that uses it.
#[derive(Clone)]
pub struct ExporterInput {
    pub id: Arc<str>,
    tx: mpsc::Sender<Batch>,
    encoded_only: bool,
    /// Items handed over and not yet sent or failed: what a forced stop would lose.
    pending: Arc<AtomicU64>,
}

impl ExporterInput {
    /// Queues a batch, waiting for room. Fails only if the exporter has stopped.
    pub async fn send(&self, batch: Batch) -> Result<(), Batch> {
        let batch = if self.encoded_only {
            batch.encoded_only()
        } else {
            batch
        };
        let items = batch.items as u64;
        self.pending.fetch_add(items, Ordering::Relaxed);
        match self.tx.send(batch).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.pending.fetch_sub(items, Ordering::Relaxed);
                Err(e.0)
            }
        }
    }

    pub fn pending_items(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// A handle that reads the pending count without keeping the exporter's input open.
    pub fn clone_probe(&self) -> PendingProbe {
        PendingProbe(self.pending.clone())
    }
}

#[derive(Clone)]
pub struct PendingProbe(Arc<AtomicU64>);

impl PendingProbe {
    pub fn pending_items(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct RunningExporter {
    pub input: ExporterInput,
    pub task: JoinHandle<()>,
}

/// Starts the exporter's loop. It ends after its input closes and everything queued is settled.
pub fn spawn<E: Export>(
    id: &str,
    exporter: E,
    settings: RunSettings,
    telemetry: &Telemetry,
) -> RunningExporter {
    let (tx, rx) = mpsc::channel(settings.queue.queue_size.max(1));
    let pending = Arc::new(AtomicU64::new(0));
    let counters = Arc::new(Counters {
        by_kind: DataKind::ALL
            .iter()
            .map(|k| {
                let labels = vec![("exporter", id.to_string()), ("signal", k.to_string())];
                (
                    *k,
                    KindCounters {
                        sent: telemetry.counter(
                            names::EXPORTER_SENT,
                            "Items delivered by the exporter.",
                            labels.clone(),
                        ),
                        failed: telemetry.counter(
                            names::EXPORTER_FAILED,
                            "Items the exporter gave up on (permanent errors, rejected items, retries exhausted).",
                            labels,
                        ),
                    },
                )
            })
            .collect(),
        retries: telemetry.counter(
            names::EXPORTER_RETRIES,
            "Send attempts retried after a retryable failure.",
            vec![("exporter", id.to_string())],
        ),
        failing: Arc::new(AtomicBool::new(false)),
    });
    let failing = Arc::downgrade(&counters.failing);
    telemetry.gauge_fn(
        names::EXPORTER_FAILING,
        "1 while the exporter's last attempt failed with a retryable error.",
        vec![("exporter", id.to_string())],
        move || failing.upgrade().is_some_and(|f| f.load(Ordering::Relaxed)) as u8 as f64,
    );
    let weak = tx.downgrade();
    let labels = vec![("component", id.to_string()), ("queue", "exporter".into())];
    telemetry.gauge_fn(
        names::QUEUE_LENGTH,
        "Batches waiting in a queue.",
        labels.clone(),
        move || {
            weak.upgrade()
                .map(|s| (s.max_capacity() - s.capacity()) as f64)
                .unwrap_or(0.0)
        },
    );
    let cap = settings.queue.queue_size as f64;
    telemetry.gauge_fn(
        names::QUEUE_CAPACITY,
        "Capacity of a queue, in batches.",
        labels,
        move || cap,
    );
    let input = ExporterInput {
        id: id.into(),
        tx,
        // Merging batches needs their payloads.
        encoded_only: settings.encoded_only && settings.accumulate.is_none(),
        pending: pending.clone(),
    };
    let id: Arc<str> = id.into();
    let exporter = Arc::new(exporter);
    let task = tokio::spawn(run(id, exporter, rx, settings, counters, pending));
    RunningExporter { input, task }
}

async fn run<E: Export>(
    id: Arc<str>,
    exporter: Arc<E>,
    mut rx: mpsc::Receiver<Batch>,
    settings: RunSettings,
    counters: Arc<Counters>,
    pending: Arc<AtomicU64>,
) {
    let slots = Arc::new(Semaphore::new(settings.queue.num_consumers.max(1)));
    let accumulate = settings.accumulate;
    let settings = Arc::new(settings);
    let mut inflight = JoinSet::new();
    let mut held: Option<(Batch, tokio::time::Instant)> = None;
    loop {
        // With accumulation, wait for more only until the held batch is due.
        let next = match (&held, accumulate) {
            (Some((_, due)), Some(_)) => tokio::select! {
                b = rx.recv() => Some(b),
                _ = tokio::time::sleep_until(*due) => None,
            },
            _ => Some(rx.recv().await),
        };
        let ready = match (next, accumulate) {
            (Some(None), _) => held.take().map(|(b, _)| b),
            (Some(Some(batch)), Some((max_items, wait))) => match held.take() {
                None if batch.items >= max_items => Some(batch),
                None => {
                    held = Some((batch, tokio::time::Instant::now() + wait));
                    None
                }
                Some((mut acc, due)) => match acc.merge(batch) {
                    Ok(()) if acc.items >= max_items => Some(acc),
                    Ok(()) => {
                        held = Some((acc, due));
                        None
                    }
                    Err(other) => {
                        held = Some((other, tokio::time::Instant::now() + wait));
                        Some(acc)
                    }
                },
            },
            (Some(Some(batch)), None) => Some(batch),
            (None, _) => held.take().map(|(b, _)| b),
        };
        let closed = rx.is_closed() && rx.is_empty() && held.is_none();
        if let Some(batch) = ready {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let (id, exporter, settings, counters, pending) = (
                id.clone(),
                exporter.clone(),
                settings.clone(),
                counters.clone(),
                pending.clone(),
            );
            inflight.spawn(async move {
                let items = batch.items as u64;
                deliver(&id, exporter.as_ref(), batch, &settings, &counters).await;
                pending.fetch_sub(items, Ordering::Relaxed);
                drop(permit);
            });
            while inflight.try_join_next().is_some() {}
        }
        if closed {
            break;
        }
    }
    while inflight.join_next().await.is_some() {}
    exporter.shutdown().await;
    tracing::debug!(exporter = %id, "exporter stopped");
}

async fn deliver<E: Export>(
    id: &str,
    exporter: &E,
    batch: Batch,
    settings: &RunSettings,
    counters: &Counters,
) {
    let c = counters.for_kind(batch.kind());
    let mut backoff = Backoff::new(&settings.retry);
    loop {
        let result = match settings.timeout {
            Some(t) => match tokio::time::timeout(t, exporter.export(&batch)).await {
                Ok(r) => r,
                Err(_) => Err(ExportError::retryable(format!("timed out after {t:?}"))),
            },
            None => exporter.export(&batch).await,
        };
        match result {
            Ok(d) => {
                counters.failing.store(false, Ordering::Relaxed);
                let rejected = d.rejected.min(batch.items);
                c.sent.add((batch.items - rejected) as u64);
                if rejected > 0 {
                    c.failed.add(rejected as u64);
                }
                if backoff.retries() > 0 {
                    tracing::info!(
                        exporter = id,
                        attempts = backoff.retries() + 1,
                        "delivered after retrying"
                    );
                }
                return;
            }
            Err(ExportError::Permanent { message }) => {
                c.failed.add(batch.items as u64);
                tracing::warn!(exporter = id, items = batch.items, error = %message, "dropping batch: permanent error");
                return;
            }
            Err(ExportError::Retryable { message, after }) => {
                counters.failing.store(true, Ordering::Relaxed);
                let attempt = backoff.retries();
                let Some(wait) = backoff.next(after) else {
                    c.failed.add(batch.items as u64);
                    tracing::warn!(exporter = id, items = batch.items, attempts = attempt + 1, error = %message,
                        "dropping batch: {}", if settings.retry.enabled { "retries exhausted" } else { "retry disabled" });
                    return;
                };
                if attempt == 0 {
                    tracing::warn!(exporter = id, error = %message, retry_in = ?wait, "send failed; retrying");
                } else {
                    tracing::debug!(exporter = id, error = %message, attempt, retry_in = ?wait, "send failed again");
                }
                counters.retries.inc();
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Payload;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use std::sync::Mutex;

    /// Fails with the scripted errors, then succeeds; records every attempt.
    struct Scripted {
        script: Mutex<Vec<ExportError>>,
        attempts: AtomicU64,
    }

    impl Export for Scripted {
        async fn export(&self, _batch: &Batch) -> Result<Delivered, ExportError> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            match self.script.lock().unwrap().pop() {
                Some(e) => Err(e),
                None => Ok(Delivered::default()),
            }
        }
    }

    fn batch(items: usize) -> Batch {
        Batch {
            payload: Payload::Traces(Arc::new(ExportTraceServiceRequest::default())),
            encoded: None,
            items,
            held: Default::default(),
        }
    }

    fn fast_retry() -> RetrySettings {
        RetrySettings {
            initial_interval: ConfigDuration::from_millis(1),
            max_interval: ConfigDuration::from_millis(5),
            ..RetrySettings::default()
        }
    }

    async fn run_one(script: Vec<ExportError>, retry: RetrySettings) -> (u64, Telemetry) {
        let t = Telemetry::new();
        let exp = Scripted {
            script: Mutex::new(script),
            attempts: AtomicU64::new(0),
        };
        let settings = RunSettings {
            queue: QueueSettings::serial(4),
            retry,
            timeout: None,
            accumulate: None,
            encoded_only: false,
        };
        let running = spawn("test", exp, settings, &t);
        running.input.send(batch(7)).await.unwrap();
        assert!(running.input.pending_items() > 0);
        let input = running.input.clone();
        drop(running.input);
        drop(input);
        running.task.await.unwrap();
        (t.sum(names::EXPORTER_RETRIES, &[]), t)
    }

    #[tokio::test]
    async fn retryable_errors_are_retried_until_delivered() {
        let (retries, t) = run_one(
            vec![
                ExportError::retryable("down"),
                ExportError::retryable("down"),
            ],
            fast_retry(),
        )
        .await;
        assert_eq!(retries, 2);
        assert_eq!(t.sum(names::EXPORTER_SENT, &[("signal", "traces")]), 7);
        assert_eq!(t.sum(names::EXPORTER_FAILED, &[]), 0);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let (retries, t) = run_one(vec![ExportError::permanent("bad")], fast_retry()).await;
        assert_eq!(retries, 0);
        assert_eq!(t.sum(names::EXPORTER_FAILED, &[]), 7);
        assert_eq!(t.sum(names::EXPORTER_SENT, &[]), 0);
    }

    #[tokio::test]
    async fn retries_stop_at_max_elapsed_time() {
        let retry = RetrySettings {
            max_elapsed_time: ConfigDuration::from_millis(20),
            ..fast_retry()
        };
        let script = (0..10_000)
            .map(|_| ExportError::retryable("down"))
            .collect();
        let (_, t) = run_one(script, retry).await;
        assert_eq!(t.sum(names::EXPORTER_FAILED, &[]), 7);
    }

    /// Records the item count of every batch it is given.
    struct Sizes(Mutex<Vec<usize>>);

    impl Export for Sizes {
        async fn export(&self, batch: &Batch) -> Result<Delivered, ExportError> {
            self.0.lock().unwrap().push(batch.items);
            Ok(Delivered::default())
        }
    }

    #[tokio::test]
    async fn accumulation_merges_batches_up_to_the_size_or_the_interval() {
        let t = Telemetry::new();
        let exp = std::sync::Arc::new(Sizes(Mutex::new(Vec::new())));
        struct Shared(std::sync::Arc<Sizes>);
        impl Export for Shared {
            async fn export(&self, batch: &Batch) -> Result<Delivered, ExportError> {
                self.0.export(batch).await
            }
        }
        let settings = RunSettings {
            queue: QueueSettings::serial(16),
            retry: RetrySettings::disabled(),
            timeout: None,
            accumulate: Some((10, Duration::from_millis(50))),
            encoded_only: false,
        };
        let running = spawn("acc", Shared(exp.clone()), settings, &t);
        for _ in 0..4 {
            running.input.send(batch(3)).await.unwrap(); // 3+3+3+3: sent at 12
        }
        running.input.send(batch(2)).await.unwrap(); // held, then sent by the interval
        tokio::time::sleep(Duration::from_millis(150)).await;
        running.input.send(batch(1)).await.unwrap(); // held until the input closes
        drop(running.input);
        running.task.await.unwrap();
        assert_eq!(*exp.0.lock().unwrap(), vec![12, 2, 1]);
        assert_eq!(t.sum(names::EXPORTER_SENT, &[]), 15);
    }
}
