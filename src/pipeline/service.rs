//! Lifecycle in one place: build exporters, then pipelines (processors), then receivers; on
//! shutdown stop receivers first, let every stage drain, and flush exporters — all within one
//! deadline.

use super::{Batch, FanOut, PipelineInput};
use crate::config::listen::listen_addr;
use crate::config::Config;
use crate::exporters::framework::ExporterInput;
use crate::exporters::ExporterError;
use crate::processors::{Chain, ProcessorContext};
use crate::receivers::{ReceiverContext, ReceiverError};
use crate::telemetry::{self, names, HealthState, Telemetry, TelemetryServerError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Batches a pipeline's input queue holds before its receivers wait and then refuse.
pub const PIPELINE_QUEUE_BATCHES: usize = 128;
/// How long a receiver waits for room in a full pipeline before refusing a request.
pub const BACKPRESSURE_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Receiver(#[from] ReceiverError),
    #[error(transparent)]
    Exporter(#[from] ExporterError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryServerError),
    #[error("internal: {0}")]
    Internal(String),
}

/// Why the service stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT/SIGTERM (or the caller's shutdown future).
    Signal,
    /// Every receiver was a finite source and all have ended.
    InputEnded,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub reason: StopReason,
    /// False when the shutdown deadline passed before everything was flushed.
    pub drained: bool,
    /// Items still queued in exporters when the deadline passed (0 when drained).
    pub lost_items: u64,
}

async fn run_pipeline(
    id: Arc<str>,
    mut rx: mpsc::Receiver<Batch>,
    mut chain: Chain,
    exporters: Vec<ExporterInput>,
) {
    let mut out = Vec::new();
    let mut ticker = chain.tick_interval().map(|d| {
        let mut t = tokio::time::interval(d);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        t
    });
    loop {
        let next = match ticker.as_mut() {
            Some(t) => tokio::select! {
                b = rx.recv() => b.map(Some),
                _ = t.tick() => Some(None),
            },
            None => rx.recv().await.map(Some),
        };
        match next {
            Some(Some(batch)) => chain.process(batch, &mut out),
            Some(None) => chain.on_tick(&mut out),
            None => break,
        }
        dispatch(&id, &exporters, &mut out).await;
    }
    chain.on_shutdown(&mut out);
    dispatch(&id, &exporters, &mut out).await;
    tracing::debug!(pipeline = %id, "pipeline drained");
}

/// Hands each batch to every exporter in turn, waiting for room: a slow exporter slows the
/// pipeline, which fills its input queue, which makes receivers refuse with a retryable status.
async fn dispatch(pipeline: &str, exporters: &[ExporterInput], out: &mut Vec<Batch>) {
    for batch in out.drain(..) {
        if let Some((last, rest)) = exporters.split_last() {
            for e in rest {
                if let Err(b) = e.send(batch.clone()).await {
                    tracing::error!(pipeline, exporter = %e.id, items = b.items, "exporter has stopped; batch lost");
                }
            }
            if let Err(b) = last.send(batch).await {
                tracing::error!(pipeline, exporter = %last.id, items = b.items, "exporter has stopped; batch lost");
            }
        }
    }
}

/// Runs the configured pipelines until `shutdown` resolves (or every finite source has ended),
/// then drains. `on_ready` is told the self-telemetry address once everything listens.
pub async fn run(
    cfg: Config,
    telemetry: Telemetry,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, ServiceError> {
    let health = HealthState::default();

    // 1. Exporters.
    let mut exporter_inputs = Vec::new();
    let mut exporter_tasks = Vec::new();
    let mut pending_probes = Vec::new();
    for (id, ec) in &cfg.exporters {
        let running = ec.start(id, &telemetry)?;
        pending_probes.push(running.input.clone_probe());
        exporter_inputs.push((id.clone(), running.input));
        exporter_tasks.push(running.task);
    }

    // 2. Pipelines, each with its processors and a bounded input queue.
    let mut pipeline_inputs = Vec::new();
    let mut pipeline_tasks = Vec::new();
    for p in &cfg.pipelines {
        let (tx, rx) = mpsc::channel(PIPELINE_QUEUE_BATCHES);
        let weak = tx.downgrade();
        telemetry.gauge_fn(
            names::QUEUE_LENGTH,
            "Batches waiting in a queue.",
            vec![("component", p.id.clone()), ("queue", "pipeline".into())],
            move || {
                weak.upgrade()
                    .map(|s| (s.max_capacity() - s.capacity()) as f64)
                    .unwrap_or(0.0)
            },
        );
        let stages = p
            .processors
            .iter()
            .filter_map(|id| cfg.processor(id).map(|pc| (id, pc)))
            .map(|(id, pc)| {
                pc.build(&ProcessorContext {
                    id: &id.to_string(),
                    pipeline: &p.id,
                    telemetry: &telemetry,
                })
            })
            .collect();
        let exporters: Vec<ExporterInput> = p
            .exporters
            .iter()
            .filter_map(|id| exporter_inputs.iter().find(|(e, _)| e == id))
            .map(|(_, input)| input.clone())
            .collect();
        let id: Arc<str> = p.id.as_str().into();
        pipeline_tasks.push(tokio::spawn(run_pipeline(
            id.clone(),
            rx,
            Chain::new(stages),
            exporters,
        )));
        pipeline_inputs.push((p, PipelineInput { pipeline: id, tx }));
    }
    // From here on only pipelines hold exporter inputs: exporters end when pipelines do.
    drop(exporter_inputs);

    // 3. Receivers, last.
    let stop = CancellationToken::new();
    let mut receiver_tasks = Vec::new();
    let mut all_finite = true;
    for (rid, rc) in &cfg.receivers {
        let consumers = crate::pipeline::DataKind::SIGNALS.map(|kind| {
            let targets: Vec<PipelineInput> = pipeline_inputs
                .iter()
                .filter(|(p, _)| p.signal == kind && p.receivers.contains(rid))
                .map(|(_, input)| input.clone())
                .collect();
            (!targets.is_empty()).then(|| FanOut::new(targets, BACKPRESSURE_WAIT))
        });
        let ctx = ReceiverContext {
            id: rid.clone(),
            consumers,
            telemetry: telemetry.clone(),
            stop: stop.child_token(),
        };
        match crate::receivers::start(rc, ctx).await {
            Ok(r) => {
                all_finite &= r.finite;
                receiver_tasks.push(r.task);
            }
            Err(e) => {
                stop.cancel();
                return Err(e.into());
            }
        }
    }
    drop(pipeline_inputs);

    // 4. Self-telemetry.
    let telemetry_stop = CancellationToken::new();
    let mut telemetry_task = None;
    if !cfg.telemetry.metrics.address.is_empty() {
        let addr = listen_addr(&cfg.telemetry.metrics.address)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let (local, task) = telemetry::serve(
            addr,
            telemetry.clone(),
            health.clone(),
            telemetry_stop.clone(),
        )
        .await
        .inspect_err(|_| stop.cancel())?;
        tracing::info!(address = %local, "self-telemetry on /metrics and /healthz");
        telemetry_task = Some(task);
    }
    health.set_ready(true);
    tracing::info!(
        pipelines = cfg.pipelines.len(),
        receivers = cfg.receivers.len(),
        exporters = cfg.exporters.len(),
        "otelwatch is running"
    );

    // 5. Run until told to stop, or until every finite source has ended.
    let reason = if all_finite {
        tokio::select! {
            _ = shutdown => StopReason::Signal,
            _ = futures_util::future::join_all(receiver_tasks.iter_mut()) => {
                receiver_tasks.clear();
                StopReason::InputEnded
            }
        }
    } else {
        shutdown.await;
        StopReason::Signal
    };

    // 6. Stop receivers first, then let pipelines and exporters drain, within one deadline.
    tracing::info!(?reason, deadline = ?cfg.shutdown_timeout.get(), "shutting down: draining pipelines and flushing exporters");
    health.set_ready(false);
    stop.cancel();
    let deadline = Instant::now() + cfg.shutdown_timeout.get();
    let mut all: Vec<&mut JoinHandle<()>> = Vec::new();
    all.extend(receiver_tasks.iter_mut());
    all.extend(pipeline_tasks.iter_mut());
    all.extend(exporter_tasks.iter_mut());
    let drained = tokio::time::timeout_at(deadline, async {
        for t in all {
            let _ = t.await;
        }
    })
    .await
    .is_ok();
    let lost_items = if drained {
        0
    } else {
        let lost: u64 = pending_probes.iter().map(|p| p.pending_items()).sum();
        for t in receiver_tasks
            .iter()
            .chain(&pipeline_tasks)
            .chain(&exporter_tasks)
        {
            t.abort();
        }
        tracing::error!(
            lost_items = lost,
            "shutdown deadline passed before every exporter finished; undelivered items were dropped"
        );
        lost
    };
    telemetry_stop.cancel();
    if let Some(t) = telemetry_task {
        let _ = t.await;
    }
    if drained {
        tracing::info!("shutdown complete: every accepted item was delivered or accounted for");
    }
    Ok(RunReport {
        reason,
        drained,
        lost_items,
    })
}

/// A pipeline running in this process (the demo and the quality benchmark), stopped on demand.
pub struct InProcess {
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<Result<RunReport, ServiceError>>,
}

impl InProcess {
    pub fn spawn(cfg: Config) -> Self {
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(cfg, Telemetry::new(), async {
            let _ = stop_rx.await;
        }));
        Self { stop, task }
    }

    /// Stops it as a signal would, and waits for the drain.
    pub async fn stop(self) -> Result<RunReport, ServiceError> {
        let _ = self.stop.send(());
        self.task
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?
    }
}
