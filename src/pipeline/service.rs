//! Lifecycle in one place: build exporters, then pipelines (processors), then receivers; on
//! shutdown stop receivers first, let every stage drain, and flush exporters — all within one
//! deadline.

use super::fanout::{MemoryLimit, Skips};
use super::memory::MemoryPool;
use super::{Batch, DataKind, FanOut, PipelineInput};
use crate::config::listen::listen_addr;
use crate::config::{ComponentId, Config, Pipeline};
use crate::exporters::framework::{ExporterInput, PendingProbe};
use crate::exporters::ExporterError;
use crate::extensions::console::ConsoleHub;
use crate::processors::{Chain, ProcessorConfig, ProcessorContext};
use crate::receivers::{ReceiverContext, ReceiverError};
use crate::telemetry::{self, names, HealthState, Telemetry, TelemetryServerError};
use std::future::Future;
use std::sync::atomic::Ordering;
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
    #[error(transparent)]
    Extension(#[from] crate::extensions::ExtensionError),
    #[error(transparent)]
    Console(#[from] crate::extensions::console::server::ConsoleServerError),
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
    consoles: Vec<Arc<ConsoleHub>>,
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
        show(&consoles, &out);
        dispatch(&id, &exporters, &mut out).await;
    }
    // A stage shared with other pipelines waits for them (what the stages before it held is
    // emitted first), ticking meanwhile so what they deliver is judged as it comes.
    let mut from = 0;
    if let Some((at, gate)) = chain.stop_gate() {
        chain.shutdown_before(at, &mut out);
        show(&consoles, &out);
        dispatch(&id, &exporters, &mut out).await;
        gate.arrive();
        let all = gate.all_arrived();
        tokio::pin!(all);
        loop {
            match ticker.as_mut() {
                Some(t) => tokio::select! {
                    _ = &mut all => break,
                    _ = t.tick() => chain.on_tick(&mut out),
                },
                None => {
                    all.as_mut().await;
                    break;
                }
            }
            show(&consoles, &out);
            dispatch(&id, &exporters, &mut out).await;
        }
        from = at;
    }
    chain.shutdown_from(from, &mut out);
    show(&consoles, &out);
    dispatch(&id, &exporters, &mut out).await;
    tracing::debug!(pipeline = %id, "pipeline drained");
}

/// Hands a detection pipeline's windows and incident changes to the consoles.
fn show(consoles: &[Arc<ConsoleHub>], out: &[Batch]) {
    for c in consoles {
        for b in out {
            c.observe(b);
        }
    }
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
/// then drains.
pub async fn run(
    cfg: Config,
    telemetry: Telemetry,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, ServiceError> {
    let health = HealthState::default();
    // Cancelled when the shutdown begins: receivers stop taking data, exporters stop waiting
    // to retry.
    let stop = CancellationToken::new();
    let extensions = Arc::new(crate::extensions::Extensions::start(&cfg)?);
    let memory = MemoryPool::new();
    let probe = Arc::downgrade(&memory);
    telemetry.gauge_fn(
        names::MEMORY_HELD,
        "Bytes held by accepted batches not yet delivered or consumed (estimated).",
        Vec::new(),
        move || probe.upgrade().map_or(0.0, |m| m.used() as f64),
    );
    let Exporters {
        inputs,
        tasks: exporter_tasks,
        probes,
    } = start_exporters(&cfg, &telemetry, &extensions, &stop)?;
    let (pipeline_tasks, pipeline_inputs) =
        start_pipelines(&cfg, &telemetry, &inputs, &memory, &extensions);
    // From here on only pipelines hold exporter inputs: exporters end when pipelines do.
    drop(inputs);
    let shared = Shared { extensions, memory };
    let receivers = start_receivers(&cfg, &telemetry, &shared, &pipeline_inputs, &stop).await?;
    drop(pipeline_inputs);
    let telemetry_stop = CancellationToken::new();
    let telemetry_task = start_telemetry(&cfg, &telemetry, &health, &telemetry_stop)
        .await
        .inspect_err(|_| stop.cancel())?;
    let console_tasks = start_consoles(&cfg, &telemetry, &shared.extensions, &telemetry_stop)
        .await
        .inspect_err(|_| {
            stop.cancel();
            telemetry_stop.cancel();
        })?;
    health.set_ready(true);
    tracing::info!(
        pipelines = cfg.pipelines.len(),
        receivers = cfg.receivers.len(),
        exporters = cfg.exporters.len(),
        "otelwatch is running"
    );

    let Receivers {
        mut tasks,
        all_finite,
    } = receivers;
    let reason = wait_for_stop(shutdown, all_finite, &mut tasks).await;

    tracing::info!(?reason, deadline = ?cfg.shutdown_timeout.get(), "shutting down: draining pipelines and flushing exporters");
    health.set_ready(false);
    stop.cancel();
    let deadline = Instant::now() + cfg.shutdown_timeout.get();
    let stages = [tasks, pipeline_tasks, exporter_tasks];
    let lost_items = drain(stages, deadline, &probes).await;
    telemetry_stop.cancel();
    if let Some(t) = telemetry_task {
        let _ = t.await;
    }
    for t in console_tasks {
        let _ = t.await;
    }
    let drained = lost_items.is_none();
    if drained {
        tracing::info!("shutdown complete: every accepted item was delivered or accounted for");
    }
    Ok(RunReport {
        reason,
        drained,
        lost_items: lost_items.unwrap_or(0),
    })
}

struct Exporters {
    inputs: Vec<(ComponentId, ExporterInput)>,
    tasks: Vec<JoinHandle<()>>,
    /// What each exporter still holds, for the count of items lost at the deadline.
    probes: Vec<PendingProbe>,
}

/// Step 1: exporters, first, so that everything upstream has somewhere to send.
fn start_exporters(
    cfg: &Config,
    telemetry: &Telemetry,
    extensions: &crate::extensions::Extensions,
    stop: &CancellationToken,
) -> Result<Exporters, ServiceError> {
    let mut started = Exporters {
        inputs: Vec::new(),
        tasks: Vec::new(),
        probes: Vec::new(),
    };
    for (id, ec) in &cfg.exporters {
        let running = ec.start(id, telemetry, extensions, stop)?;
        started.probes.push(running.input.clone_probe());
        started.inputs.push((id.clone(), running.input));
        started.tasks.push(running.task);
    }
    Ok(started)
}

/// Step 2: pipelines, each with its processors and a bounded input queue.
fn start_pipelines<'c>(
    cfg: &'c Config,
    telemetry: &Telemetry,
    exporter_inputs: &[(ComponentId, ExporterInput)],
    memory: &Arc<MemoryPool>,
    extensions: &crate::extensions::Extensions,
) -> (Vec<JoinHandle<()>>, Vec<(&'c Pipeline, PipelineInput)>) {
    let mut tasks = Vec::new();
    let mut inputs = Vec::new();
    let shared = crate::processors::Shared::default();
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
        // A pipeline that turns its signal into window records is a detection pipeline.
        let detection = (p.output != p.signal).then(|| detection_skips(telemetry, &p.id));
        let stages = p
            .processors
            .iter()
            .filter_map(|id| cfg.processor(id).map(|pc| (id, pc)))
            .map(|(id, pc)| {
                pc.build(&ProcessorContext {
                    id: &id.to_string(),
                    pipeline: &p.id,
                    telemetry,
                    skipped: detection.as_ref().map(|d| d.items.clone()),
                    shared: &shared,
                    feedback: extensions.feedback(),
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
        let chain = Chain::new(stages);
        let consoles = match detection {
            Some(_) => extensions
                .consoles()
                .iter()
                .map(|(_, c)| c.clone())
                .collect(),
            None => Vec::new(),
        };
        tasks.push(tokio::spawn(run_pipeline(
            id.clone(),
            rx,
            chain,
            exporters,
            consoles,
        )));
        let limit = memory_limit(cfg, p, memory, telemetry);
        let input = PipelineInput {
            pipeline: id,
            tx,
            detection,
            limit,
        };
        inputs.push((p, input));
    }
    (tasks, inputs)
}

/// What the receivers share beyond the pipelines: the started extensions, the memory pool.
struct Shared {
    extensions: Arc<crate::extensions::Extensions>,
    memory: Arc<MemoryPool>,
}

/// The budget of a pipeline with a `memory_limiter` (the tightest, if it has several).
fn memory_limit(
    cfg: &Config,
    p: &Pipeline,
    memory: &Arc<MemoryPool>,
    telemetry: &Telemetry,
) -> Option<MemoryLimit> {
    let (id, soft) = p
        .processors
        .iter()
        .filter_map(|id| match cfg.processor(id) {
            Some(ProcessorConfig::MemoryLimiter(m)) => Some((id, m.soft_limit_bytes())),
            _ => None,
        })
        .min_by_key(|(_, soft)| *soft)?;
    let labels = vec![("processor", format!("{id}@{}", p.id))];
    let now = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let weak = Arc::downgrade(&now);
    telemetry.gauge_fn(
        names::MEMORY_LIMITED,
        "1 while a pipeline's memory limit refuses new data.",
        labels.clone(),
        move || weak.upgrade().is_some_and(|n| n.load(Ordering::Relaxed)) as u8 as f64,
    );
    Some(MemoryLimit {
        pool: memory.clone(),
        soft,
        refused: telemetry.counter(
            names::MEMORY_REFUSED,
            "Items refused (or skipped by detection) because a pipeline's memory limit was reached.",
            labels,
        ),
        now,
    })
}

/// The counter and the state of what a detection pipeline skips.
fn detection_skips(telemetry: &Telemetry, pipeline: &str) -> Skips {
    let labels = vec![("pipeline", pipeline.to_string())];
    let skips = Skips {
        items: telemetry.counter(
            names::PIPELINE_SKIPPED,
            "Items a detection pipeline skipped because it was full while forwarding went on.",
            labels.clone(),
        ),
        now: Default::default(),
    };
    let now = Arc::downgrade(&skips.now);
    telemetry.gauge_fn(
        names::PIPELINE_SKIPPING,
        "1 while a detection pipeline skips batches (its last one found it full).",
        labels,
        move || now.upgrade().is_some_and(|n| n.load(Ordering::Relaxed)) as u8 as f64,
    );
    skips
}

struct Receivers {
    tasks: Vec<JoinHandle<()>>,
    /// Every receiver is a finite source (a file read once): the service ends when they do.
    all_finite: bool,
}

/// Step 3: receivers, last: each signal a receiver produces goes to the pipelines that list it.
async fn start_receivers(
    cfg: &Config,
    telemetry: &Telemetry,
    shared: &Shared,
    pipeline_inputs: &[(&Pipeline, PipelineInput)],
    stop: &CancellationToken,
) -> Result<Receivers, ServiceError> {
    let mut started = Receivers {
        tasks: Vec::new(),
        all_finite: true,
    };
    for (rid, rc) in &cfg.receivers {
        let consumers = DataKind::SIGNALS.map(|kind| {
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
            extensions: shared.extensions.clone(),
            memory: shared.memory.clone(),
        };
        match crate::receivers::start(rc, ctx).await {
            Ok(r) => {
                started.all_finite &= r.finite;
                started.tasks.push(r.task);
            }
            Err(e) => {
                stop.cancel();
                return Err(e.into());
            }
        }
    }
    Ok(started)
}

/// Step 4: self-telemetry (`/metrics`, `/healthz`), unless its address is empty.
async fn start_telemetry(
    cfg: &Config,
    telemetry: &Telemetry,
    health: &HealthState,
    stop: &CancellationToken,
) -> Result<Option<JoinHandle<()>>, ServiceError> {
    if cfg.telemetry.metrics.address.is_empty() {
        return Ok(None);
    }
    let addr = listen_addr(&cfg.telemetry.metrics.address)
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let (local, task) =
        telemetry::serve(addr, telemetry.clone(), health.clone(), stop.clone()).await?;
    tracing::info!(address = %local, "self-telemetry on /metrics and /healthz");
    Ok(Some(task))
}

/// The consoles' servers: bound now, so a taken port fails startup.
async fn start_consoles(
    cfg: &Config,
    telemetry: &Telemetry,
    extensions: &crate::extensions::Extensions,
    stop: &CancellationToken,
) -> Result<Vec<JoinHandle<()>>, ServiceError> {
    let mut tasks = Vec::new();
    // Forwarding: the OTLP exporters (to the downstream collector).
    let forwarders: Vec<String> = cfg
        .exporters
        .iter()
        .filter(|(id, _)| id.kind == "otlp" || id.kind == "otlphttp")
        .map(|(id, _)| id.to_string())
        .collect();
    for (id, hub) in extensions.consoles() {
        hub.count_spans(telemetry.clone(), forwarders.clone());
        let addr = listen_addr(&hub.endpoint).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let (local, task) =
            crate::extensions::console::server::serve(addr, hub.clone(), stop.clone()).await?;
        tracing::info!(extension = %id, url = %format!("http://{local}/"), "console");
        tasks.push(task);
    }
    Ok(tasks)
}

/// Step 5: runs until told to stop, or until every finite source has ended (their tasks are then
/// done and removed).
async fn wait_for_stop(
    shutdown: impl Future<Output = ()>,
    all_finite: bool,
    receiver_tasks: &mut Vec<JoinHandle<()>>,
) -> StopReason {
    if !all_finite {
        shutdown.await;
        return StopReason::Signal;
    }
    let reason = tokio::select! {
        _ = shutdown => StopReason::Signal,
        _ = futures_util::future::join_all(receiver_tasks.iter_mut()) => StopReason::InputEnded,
    };
    // A finished task must not be awaited again (some may have ended before the signal).
    receiver_tasks.retain(|t| !t.is_finished());
    reason
}

/// Step 6: waits for receivers, then pipelines, then exporters to finish, until `deadline`; past it
/// aborts what is left and returns the items still queued in exporters (`None` when drained).
async fn drain(
    mut stages: [Vec<JoinHandle<()>>; 3],
    deadline: Instant,
    probes: &[PendingProbe],
) -> Option<u64> {
    let drained = tokio::time::timeout_at(deadline, async {
        for t in stages.iter_mut().flatten() {
            let _ = t.await;
        }
    })
    .await
    .is_ok();
    if drained {
        return None;
    }
    let lost: u64 = probes.iter().map(|p| p.pending_items()).sum();
    for t in stages.iter().flatten() {
        t.abort();
    }
    tracing::error!(
        lost_items = lost,
        "shutdown deadline passed before every exporter finished; undelivered items were dropped"
    );
    Some(lost)
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
