//! The one exporter framework: queue → concurrent sends → retry with jittered exponential
//! backoff → count. An exporter only says how to send a batch and which failures are retryable
//! (the default is *not* retryable).
//!
//! ```yaml
//! retry_on_failure: { enabled: true, initial_interval: 5s, max_interval: 30s, max_elapsed_time: 300s,
//!                     multiplier: 1.5, randomization_factor: 0.5 }
//! sending_queue:    { num_consumers: 10, queue_size: 1000, storage: file_storage }
//! ```
//!
//! With `storage` (the id of a `file_storage` extension) the queue is kept on disk
//! ([`persistent`]): a batch is written there before the handover returns, is retried until the
//! peer takes it or refuses it for good (`max_elapsed_time` does not apply), and what is queued
//! at a stop is sent by the next start. Without it the queue is in memory and a stop waits
//! (up to `service.shutdown_timeout`) for it to drain.

pub mod persistent;
mod retry;

use crate::config::duration::ConfigDuration;
use crate::config::error::ConfigError;
use crate::pipeline::{Batch, DataKind};
use crate::telemetry::{names, Counter, Telemetry};
use persistent::StoredQueue;
pub use retry::{Backoff, RetrySettings};
use serde::Deserialize;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

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
    /// A storage extension to keep the queue in (only exporters that send OTLP).
    pub storage: Option<String>,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            num_consumers: 10,
            queue_size: 1000,
            storage: None,
        }
    }
}

impl QueueSettings {
    pub fn serial(queue_size: usize) -> Self {
        Self {
            num_consumers: 1,
            queue_size,
            storage: None,
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
    /// Batches in a queue in storage that could not be read (moved into `dead/`).
    unreadable: Counter,
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
    /// The queue in storage, when there is one (then `tx` carries nothing: it only tells the
    /// sending loop when every input has gone).
    stored: Option<Arc<StoredQueue>>,
}

impl ExporterInput {
    /// Queues a batch, waiting for room. Fails if the exporter has stopped, or its queue in
    /// storage cannot take the batch (said in the log).
    pub async fn send(&self, batch: Batch) -> Result<(), Batch> {
        if let Some(q) = &self.stored {
            if self.tx.is_closed() {
                return Err(batch);
            }
            let stored = match persistent::encode(&batch) {
                Ok(segment) => q.push(segment).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            return stored.map_err(|error| {
                tracing::error!(exporter = %self.id, dir = %q.dir().display(), %error, "the queue in storage did not take a batch");
                batch
            });
        }
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

/// Starts the exporter's loop. It ends after its input closes and everything queued is settled
/// (with `stored`, the queue in storage: once what is being sent is settled; the rest stays).
pub fn spawn<E: Export>(
    id: &str,
    exporter: E,
    settings: RunSettings,
    stored: Option<StoredQueue>,
    stop: CancellationToken,
    telemetry: &Telemetry,
) -> RunningExporter {
    let stored = stored.map(Arc::new);
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
        unreadable: telemetry.counter(
            names::EXPORTER_QUEUE_UNREADABLE,
            "Batches in a queue in storage that could not be read (moved into its dead/ directory).",
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
    let weak_stored = stored.as_ref().map(Arc::downgrade);
    let labels = vec![("component", id.to_string()), ("queue", "exporter".into())];
    telemetry.gauge_fn(
        names::QUEUE_LENGTH,
        "Batches waiting in a queue.",
        labels.clone(),
        move || match &weak_stored {
            Some(q) => q.upgrade().map_or(0.0, |q| q.len() as f64),
            None => weak
                .upgrade()
                .map(|s| (s.max_capacity() - s.capacity()) as f64)
                .unwrap_or(0.0),
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
        stored: stored.clone(),
    };
    let id: Arc<str> = id.into();
    let exporter = Arc::new(exporter);
    let task = match stored {
        Some(q) => tokio::spawn(run_stored(id, exporter, rx, settings, counters, q, stop)),
        None => tokio::spawn(run(id, exporter, rx, settings, counters, pending, stop)),
    };
    RunningExporter { input, task }
}

async fn run<E: Export>(
    id: Arc<str>,
    exporter: Arc<E>,
    mut rx: mpsc::Receiver<Batch>,
    settings: RunSettings,
    counters: Arc<Counters>,
    pending: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(settings.queue.num_consumers.max(1)));
    let accumulate = settings.accumulate;
    let settings = Arc::new(settings);
    let sender = Sender {
        id: id.clone(),
        exporter: exporter.clone(),
        settings: settings.clone(),
        counters: counters.clone(),
        stop: stop.clone(),
    };
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
            let (sender, pending) = (sender.clone(), pending.clone());
            inflight.spawn(async move {
                let items = batch.items as u64;
                sender.deliver(&batch, AtStop::RetryNow).await;
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

/// What a retry waiting for its next attempt does when the stop begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AtStop {
    /// Tries again at once (once), then goes on waiting out its backoff until the shutdown
    /// deadline: a queue in memory is lost if it is not sent.
    RetryNow,
    /// Stops: the batch stays in storage for the next start.
    Keep,
}

/// How a batch's delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Sent, or given up for good (permanent error, retries exhausted): counted either way.
    Settled,
    /// Not sent because the stop began (`AtStop::Keep`).
    Kept,
}

/// What every delivery of an exporter shares.
struct Sender<E> {
    id: Arc<str>,
    exporter: Arc<E>,
    settings: Arc<RunSettings>,
    counters: Arc<Counters>,
    stop: CancellationToken,
}

impl<E> Clone for Sender<E> {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            exporter: self.exporter.clone(),
            settings: self.settings.clone(),
            counters: self.counters.clone(),
            stop: self.stop.clone(),
        }
    }
}

impl<E: Export> Sender<E> {
    async fn deliver(&self, batch: &Batch, at_stop: AtStop) -> Outcome {
        deliver(
            &self.id,
            self.exporter.as_ref(),
            batch,
            &self.settings,
            &self.counters,
            &self.stop,
            at_stop,
        )
        .await
    }
}

async fn deliver<E: Export>(
    id: &str,
    exporter: &E,
    batch: &Batch,
    settings: &RunSettings,
    counters: &Counters,
    stop: &CancellationToken,
    at_stop: AtStop,
) -> Outcome {
    let c = counters.for_kind(batch.kind());
    let mut backoff = Backoff::new(&settings.retry);
    let mut woken = false;
    loop {
        let result = match settings.timeout {
            Some(t) => match tokio::time::timeout(t, exporter.export(batch)).await {
                Ok(r) => r,
                Err(_) => Err(ExportError::retryable(format!("timed out after {t:?}"))),
            },
            None => exporter.export(batch).await,
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
                return Outcome::Settled;
            }
            Err(ExportError::Permanent { message }) => {
                c.failed.add(batch.items as u64);
                tracing::warn!(exporter = id, items = batch.items, error = %message, "dropping batch: permanent error");
                return Outcome::Settled;
            }
            Err(ExportError::Retryable { message, after }) => {
                counters.failing.store(true, Ordering::Relaxed);
                if at_stop == AtStop::Keep && stop.is_cancelled() {
                    return Outcome::Kept;
                }
                let attempt = backoff.retries();
                let Some(wait) = backoff.next(after) else {
                    c.failed.add(batch.items as u64);
                    tracing::warn!(exporter = id, items = batch.items, attempts = attempt + 1, error = %message,
                        "dropping batch: {}", if settings.retry.enabled { "retries exhausted" } else { "retry disabled" });
                    return Outcome::Settled;
                };
                if attempt == 0 {
                    tracing::warn!(exporter = id, error = %message, retry_in = ?wait, "send failed; retrying");
                } else {
                    tracing::debug!(exporter = id, error = %message, attempt, retry_in = ?wait, "send failed again");
                }
                counters.retries.inc();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled(), if !woken => {
                        woken = true;
                        if at_stop == AtStop::Keep {
                            return Outcome::Kept;
                        }
                    }
                }
            }
        }
    }
}

/// The sending loop of a queue kept in storage: up to `num_consumers` stored batches in flight,
/// oldest first. At the stop it takes no more; batches being retried stay for the next start.
async fn run_stored<E: Export>(
    id: Arc<str>,
    exporter: Arc<E>,
    mut rx: mpsc::Receiver<Batch>,
    settings: RunSettings,
    counters: Arc<Counters>,
    queue: Arc<StoredQueue>,
    stop: CancellationToken,
) {
    let left = queue.len();
    if left > 0 {
        tracing::info!(exporter = %id, batches = left, dir = %queue.dir().display(), "sending what the last run left in the queue");
    }
    let consumers = settings.queue.num_consumers.max(1);
    let encoded_only = settings.encoded_only && settings.accumulate.is_none();
    // Kept in storage, a batch is retried until it is settled.
    let mut settings = settings;
    settings.retry.max_elapsed_time = ConfigDuration::from_secs(0);
    let settings = Arc::new(settings);
    let sender = Sender {
        id: id.clone(),
        exporter: exporter.clone(),
        settings: settings.clone(),
        counters: counters.clone(),
        stop: stop.clone(),
    };
    let mut inflight: JoinSet<(u64, Outcome)> = JoinSet::new();
    let mut inputs_open = true;
    loop {
        while !stop.is_cancelled() && inflight.len() < consumers {
            let Some(seq) = queue.take() else { break };
            let q = queue.clone();
            let read = tokio::task::spawn_blocking(move || q.read(seq))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    persistent::decode(&bytes, encoded_only).map_err(|e| e.to_string())
                });
            let batch = match read {
                Ok(b) => b,
                Err(error) => {
                    counters.unreadable.inc();
                    match queue.quarantine(seq) {
                        Ok(to) => {
                            tracing::error!(exporter = %id, %error, moved_to = %to.display(), "an unreadable batch in the queue was moved aside")
                        }
                        Err(e) => {
                            tracing::error!(exporter = %id, %error, "an unreadable batch in the queue could not be moved aside ({e}); removing it");
                            let _ = queue.remove(seq);
                        }
                    }
                    continue;
                }
            };
            let sender = sender.clone();
            inflight.spawn(async move {
                let outcome = sender.deliver(&batch, AtStop::Keep).await;
                (seq, outcome)
            });
        }
        if stop.is_cancelled() && inflight.is_empty() && !inputs_open {
            break;
        }
        if stop.is_cancelled() {
            queue.stop();
        }
        tokio::select! {
            r = rx.recv(), if inputs_open => {
                if r.is_none() {
                    inputs_open = false;
                }
            }
            _ = queue.added.notified() => {}
            _ = stop.cancelled(), if !queue.is_stopping() => {}
            Some(done) = inflight.join_next() => {
                if let Ok((seq, outcome)) = done {
                    match outcome {
                        Outcome::Settled => {
                            if let Err(e) = queue.remove(seq) {
                                tracing::error!(exporter = %id, error = %e, "could not remove a sent batch from the queue (it will be sent again)");
                            }
                        }
                        Outcome::Kept => queue.untake(seq),
                    }
                }
            }
        }
    }
    exporter.shutdown().await;
    let left = queue.len();
    if left > 0 {
        tracing::info!(exporter = %id, batches = left, dir = %queue.dir().display(), "batches left in the queue for the next start");
    }
    tracing::debug!(exporter = %id, "exporter stopped");
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
            payload: Payload::Traces(crate::pipeline::Traces::decoded(
                ExportTraceServiceRequest::default(),
            )),
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
        let running = spawn("test", exp, settings, None, CancellationToken::new(), &t);
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
        let running = spawn(
            "acc",
            Shared(exp.clone()),
            settings,
            None,
            CancellationToken::new(),
            &t,
        );
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

    /// Fails while `down` is set; records every batch it delivers.
    struct Flaky {
        down: std::sync::atomic::AtomicBool,
        delivered: Mutex<Vec<usize>>,
        attempts: AtomicU64,
    }

    impl Export for Arc<Flaky> {
        async fn export(&self, batch: &Batch) -> Result<Delivered, ExportError> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(ExportError::retryable("down"));
            }
            self.delivered.lock().unwrap().push(batch.items);
            Ok(Delivered::default())
        }
    }

    fn flaky(down: bool) -> Arc<Flaky> {
        Arc::new(Flaky {
            down: std::sync::atomic::AtomicBool::new(down),
            delivered: Mutex::new(Vec::new()),
            attempts: AtomicU64::new(0),
        })
    }

    fn slow_retry() -> RetrySettings {
        RetrySettings {
            initial_interval: ConfigDuration::from_secs(3600),
            max_interval: ConfigDuration::from_secs(3600),
            max_elapsed_time: ConfigDuration::from_secs(0),
            ..RetrySettings::default()
        }
    }

    fn stored_at(dir: &std::path::Path, capacity: usize) -> StoredQueue {
        let (files, left) = crate::storage::SegmentDir::open(dir, "batch", "otlp", false).unwrap();
        StoredQueue::new(files, left, capacity)
    }

    #[tokio::test]
    async fn a_stop_cuts_a_backoff_short_in_memory_and_keeps_the_batch_in_storage() {
        let t = Telemetry::new();
        let settings = || {
            RunSettings::remote(
                &QueueSettings::serial(8),
                &slow_retry(),
                Duration::from_secs(5),
            )
        };
        // In memory: the hour-long backoff is cut short by the stop and the retry delivers.
        let peer = flaky(true);
        let stop = CancellationToken::new();
        let running = spawn("mem", peer.clone(), settings(), None, stop.clone(), &t);
        running.input.send(batch(4)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        peer.down.store(false, Ordering::SeqCst);
        stop.cancel();
        drop(running.input);
        tokio::time::timeout(Duration::from_secs(5), running.task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*peer.delivered.lock().unwrap(), vec![4]);

        // In storage: the batch waiting to be retried at the stop stays for the next start,
        // and so do the ones queued behind it.
        let dir = tempfile::tempdir().unwrap();
        let peer = flaky(true);
        let stop = CancellationToken::new();
        let running = spawn(
            "disk",
            peer.clone(),
            settings(),
            Some(stored_at(dir.path(), 8)),
            stop.clone(),
            &t,
        );
        for n in [1, 2, 3] {
            running.input.send(batch(n)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.cancel();
        drop(running.input);
        tokio::time::timeout(Duration::from_secs(5), running.task)
            .await
            .unwrap()
            .unwrap();
        assert!(peer.delivered.lock().unwrap().is_empty());
        assert_eq!(
            peer.attempts.load(Ordering::SeqCst),
            1,
            "one attempt, then kept"
        );

        // The next start sends all three, oldest first, and empties the queue.
        let peer = flaky(false);
        let stop = CancellationToken::new();
        let queue = stored_at(dir.path(), 8);
        assert_eq!(queue.len(), 3);
        let running = spawn(
            "disk",
            peer.clone(),
            settings(),
            Some(queue),
            stop.clone(),
            &t,
        );
        let sent = wait(|| peer.delivered.lock().unwrap().len() == 3).await;
        assert!(sent, "{:?}", peer.delivered.lock().unwrap());
        assert_eq!(*peer.delivered.lock().unwrap(), vec![1, 2, 3]);
        stop.cancel();
        drop(running.input);
        running.task.await.unwrap();
        assert_eq!(stored_at(dir.path(), 8).len(), 0);
    }

    #[tokio::test]
    async fn an_unreadable_stored_batch_is_moved_aside_and_the_rest_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (files, _) =
                crate::storage::SegmentDir::open(dir.path(), "batch", "otlp", false).unwrap();
            files.write(0, b"not a batch").unwrap();
            files
                .write(1, &persistent::encode(&batch(5)).unwrap())
                .unwrap();
        }
        let t = Telemetry::new();
        let peer = flaky(false);
        let stop = CancellationToken::new();
        let settings = RunSettings::remote(
            &QueueSettings::serial(8),
            &slow_retry(),
            Duration::from_secs(5),
        );
        let running = spawn(
            "disk",
            peer.clone(),
            settings,
            Some(stored_at(dir.path(), 8)),
            stop.clone(),
            &t,
        );
        assert!(wait(|| peer.delivered.lock().unwrap().len() == 1).await);
        assert_eq!(*peer.delivered.lock().unwrap(), vec![5]);
        assert_eq!(t.sum(names::EXPORTER_QUEUE_UNREADABLE, &[]), 1);
        assert!(dir
            .path()
            .join("dead")
            .join("batch-00000000000000000000.otlp")
            .exists());
        stop.cancel();
        drop(running.input);
        running.task.await.unwrap();
    }

    async fn wait(mut f: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if f() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}
