//! Processors: hooks run in order by the pipeline task that owns timers, flushing and shutdown.
//! This table is the only place that lists them.
//!
//! | type | takes | gives | what |
//! |---|---|---|---|
//! | `memory_limiter` | traces, metrics, logs | the same | refuses new data while held bytes are above a budget |
//! | `batch` | traces, metrics, logs | the same | merges small requests into larger ones |
//! | `window` | traces, metrics, logs | windows | ten features per series (service, edge, group, log or metric) per tumbling window |
//! | `iforest` | windows | windows | scores, learns, explains anomalies |
//! | `incidents` | windows | windows + incidents | groups anomalies along the call graph, ranks root causes; one instance per id across the pipelines that list it |

pub mod batch;
pub mod iforest;
pub mod incidents;
pub mod memory_limiter;
pub mod records;
pub mod window;

use crate::config::error::ConfigError;
use crate::config::id::ComponentId;
use crate::pipeline::{Batch, DataKind};
use crate::telemetry::Telemetry;
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A processor is driven by its pipeline's task; it never spawns or sleeps itself.
pub trait Processor: Send {
    /// Takes one batch and pushes what it passes on (zero, one or many batches) to `out`.
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>);
    /// How often `on_tick` runs; `None` for never.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }
    fn on_tick(&mut self, _out: &mut Vec<Batch>) {}
    /// Called once when the pipeline's input has closed: emit everything still held.
    fn on_shutdown(&mut self, _out: &mut Vec<Batch>) {}
    /// For a processor shared with other pipelines (a joined `incidents`): a gate where this
    /// pipeline, its input closed and what the stages before it held emitted, waits until every
    /// pipeline sharing it has got there too (ticking meanwhile) before this stage stops, so
    /// what the others still hold is joined with what this one held, whatever order the
    /// pipelines finish in.
    fn stop_gate(&self) -> Option<StopGate> {
        None
    }
}

/// Pipelines sharing a processor meet here when they stop (see `Processor::stop_gate`).
#[derive(Clone)]
pub struct StopGate {
    /// Pipelines arrived, of how many.
    arrived: Arc<tokio::sync::watch::Sender<usize>>,
    total: Arc<std::sync::atomic::AtomicUsize>,
    /// The longest wait for the others (a pipeline that cannot stop must not hold the rest).
    wait: Duration,
}

impl StopGate {
    pub fn new(wait: Duration) -> Self {
        Self {
            arrived: Arc::new(tokio::sync::watch::Sender::new(0)),
            total: Default::default(),
            wait,
        }
    }

    /// One more pipeline shares it.
    pub fn join(&self) {
        self.total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// This pipeline has arrived.
    pub fn arrive(&self) {
        self.arrived.send_modify(|n| *n += 1);
    }

    /// Resolves when every pipeline sharing it has arrived, or after the longest wait.
    pub async fn all_arrived(&self) {
        let total = self.total.load(std::sync::atomic::Ordering::Relaxed);
        let mut rx = self.arrived.subscribe();
        let _ = tokio::time::timeout(self.wait, rx.wait_for(|n| *n >= total)).await;
    }
}

/// What the table needs of each processor type; implemented by its config struct, in the
/// processor's own module.
pub trait ProcessorType: Sized {
    /// The `type` in a component id.
    const NAME: &'static str;
    /// Decodes and checks the component's section, naming each problem's YAML path.
    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>>;
    /// The kind emitted for `input`, or what it takes when it cannot take `input`.
    fn output_kind(&self, input: DataKind) -> Result<DataKind, &'static str>;
    fn build(&self, ctx: &ProcessorContext<'_>) -> Box<dyn Processor>;
}

/// What a processor is given when it is built.
pub struct ProcessorContext<'a> {
    pub id: &'a str,
    pub pipeline: &'a str,
    pub telemetry: &'a Telemetry,
    /// Items the pipeline skipped before its processors (a detection pipeline shedding load).
    pub skipped: Option<crate::telemetry::Counter>,
    /// State the instances of one component id share across the pipelines that list it.
    pub shared: &'a Shared,
    /// The process's feedback on anomalies (from the console's API).
    pub feedback: &'a Arc<crate::model::feedback::FeedbackBoard>,
}

/// State shared by the instances of one component id in several pipelines (the `incidents`
/// processor joins the windows of the traces, logs and metrics pipelines that list it).
#[derive(Default)]
pub struct Shared(std::sync::Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>);

impl Shared {
    /// The state of component `id`, made by `make` for its first instance.
    pub fn get_or_insert<T: Any + Send + Sync>(
        &self,
        id: &str,
        make: impl FnOnce() -> T,
    ) -> Arc<T> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = map.get(id).and_then(|a| a.clone().downcast::<T>().ok()) {
            return found;
        }
        let made = Arc::new(make());
        map.insert(id.to_string(), made.clone());
        made
    }
}

impl ProcessorContext<'_> {
    /// `id@pipeline`: the label of this instance's metrics.
    pub fn instance(&self) -> String {
        format!("{}@{}", self.id, self.pipeline)
    }
}

/// The table: one line per processor type.
macro_rules! processor_table {
    ($($variant:ident($config:ty)),* $(,)?) => {
        #[derive(Debug, Clone)]
        pub enum ProcessorConfig {
            $($variant($config)),*
        }

        pub const TYPES: &[&str] = &[$(<$config as ProcessorType>::NAME),*];

        pub fn parse_config(
            id: &ComponentId,
            path: &str,
            value: serde_norway::Value,
        ) -> Result<ProcessorConfig, Vec<ConfigError>> {
            $(if id.kind == <$config as ProcessorType>::NAME {
                return <$config>::parse(path, value).map(ProcessorConfig::$variant);
            })*
            Err(vec![ConfigError::new(
                path,
                format!(
                    "unknown processor type {:?} (known: {})",
                    id.kind,
                    TYPES.join(", ")
                ),
            )])
        }

        impl ProcessorConfig {
            /// The kind this processor emits for `input`, or what it accepts when it cannot
            /// take `input`.
            pub fn output_kind(&self, input: DataKind) -> Result<DataKind, &'static str> {
                match self {
                    $(Self::$variant(c) => c.output_kind(input)),*
                }
            }

            pub fn build(&self, ctx: &ProcessorContext<'_>) -> Box<dyn Processor> {
                match self {
                    $(Self::$variant(c) => c.build(ctx)),*
                }
            }
        }
    };
}

processor_table! {
    MemoryLimiter(memory_limiter::MemoryLimiterConfig),
    Batch(batch::BatchConfig),
    Window(window::WindowConfig),
    IForest(iforest::IForestConfig),
    Incidents(incidents::IncidentsConfig),
    Records(records::RecordsConfig),
}

impl ProcessorConfig {
    /// The file this processor saves its state to, if any (`iforest`'s `model_path`).
    pub fn saved_models(&self) -> Option<&str> {
        match self {
            ProcessorConfig::IForest(c) if !c.model_path.is_empty() => Some(&c.model_path),
            _ => None,
        }
    }
}

/// Processors in order; what one emits is what the next one takes.
pub struct Chain {
    stages: Vec<Box<dyn Processor>>,
    scratch: Vec<Batch>,
}

impl Chain {
    pub fn new(stages: Vec<Box<dyn Processor>>) -> Self {
        Self {
            stages,
            scratch: Vec::new(),
        }
    }

    /// The shortest tick interval of any stage.
    pub fn tick_interval(&self) -> Option<Duration> {
        self.stages.iter().filter_map(|s| s.tick_interval()).min()
    }

    pub fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        let mut current = vec![batch];
        self.run_from(0, &mut current);
        out.append(&mut current);
    }

    pub fn on_tick(&mut self, out: &mut Vec<Batch>) {
        for i in 0..self.stages.len() {
            let mut emitted = Vec::new();
            self.stages[i].on_tick(&mut emitted);
            self.run_from(i + 1, &mut emitted);
            out.append(&mut emitted);
        }
    }

    pub fn on_shutdown(&mut self, out: &mut Vec<Batch>) {
        self.shutdown_from(0, out);
    }

    /// The first stage with a stop gate, and the gate.
    pub fn stop_gate(&self) -> Option<(usize, StopGate)> {
        self.stages
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.stop_gate().map(|g| (i, g)))
    }

    /// Stops stages `..to` (what they hold is emitted through the rest), leaving the others
    /// running.
    pub fn shutdown_before(&mut self, to: usize, out: &mut Vec<Batch>) {
        for i in 0..to.min(self.stages.len()) {
            let mut emitted = Vec::new();
            self.stages[i].on_shutdown(&mut emitted);
            self.run_from(i + 1, &mut emitted);
            out.append(&mut emitted);
        }
    }

    /// Stops stages `from..`.
    pub fn shutdown_from(&mut self, from: usize, out: &mut Vec<Batch>) {
        for i in from..self.stages.len() {
            let mut emitted = Vec::new();
            self.stages[i].on_shutdown(&mut emitted);
            self.run_from(i + 1, &mut emitted);
            out.append(&mut emitted);
        }
    }

    /// Passes `batches` through stages `from..`, leaving the final output in `batches`.
    fn run_from(&mut self, from: usize, batches: &mut Vec<Batch>) {
        for stage in self.stages.iter_mut().skip(from) {
            self.scratch.clear();
            for b in batches.drain(..) {
                stage.process(b, &mut self.scratch);
            }
            std::mem::swap(batches, &mut self.scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StopGate;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn a_stop_gate_opens_when_every_pipeline_sharing_it_has_arrived() {
        let gate = StopGate::new(Duration::from_secs(600));
        gate.join();
        gate.join();
        gate.arrive();
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.all_arrived().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "one of two has arrived");
        gate.arrive();
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("it opens when the second arrives")
            .expect("the waiting task ends");
    }

    #[tokio::test]
    async fn a_stop_gate_waits_no_longer_than_its_wait() {
        let gate = StopGate::new(Duration::from_millis(200));
        gate.join();
        gate.join();
        gate.arrive();
        let t = Instant::now();
        gate.all_arrived().await;
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
    }
}
