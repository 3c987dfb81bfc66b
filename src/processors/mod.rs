//! Processors: hooks run in order by the pipeline task that owns timers, flushing and shutdown.
//! This table is the only place that lists them.
//!
//! | type | takes | gives | what |
//! |---|---|---|---|
//! | `batch` | traces, metrics, logs | the same | merges small requests into larger ones |
//! | `window` | traces | windows | ten features per service / edge per tumbling window |
//! | `iforest` | windows | windows | scores, learns, explains anomalies |
//! | `incidents` | windows | windows + incidents | groups anomalies along the call graph, ranks root causes |

pub mod batch;
pub mod iforest;
pub mod incidents;
pub mod window;

use crate::config::error::ConfigError;
use crate::config::id::ComponentId;
use crate::pipeline::{Batch, DataKind};
use crate::telemetry::Telemetry;
use std::time::Duration;

pub const TYPES: &[&str] = &["batch", "window", "iforest", "incidents"];

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
}

#[derive(Debug, Clone)]
pub enum ProcessorConfig {
    Batch(batch::BatchConfig),
    Window(window::WindowConfig),
    IForest(iforest::IForestConfig),
    Incidents(incidents::IncidentsConfig),
}

/// What a processor is given when it is built.
pub struct ProcessorContext<'a> {
    pub id: &'a str,
    pub pipeline: &'a str,
    pub telemetry: &'a Telemetry,
}

pub fn parse_config(
    id: &ComponentId,
    path: &str,
    value: serde_norway::Value,
) -> Result<ProcessorConfig, Vec<ConfigError>> {
    match id.kind.as_str() {
        "batch" => batch::BatchConfig::parse(path, value).map(ProcessorConfig::Batch),
        "window" => window::WindowConfig::parse(path, value).map(ProcessorConfig::Window),
        "iforest" => iforest::IForestConfig::parse(path, value).map(ProcessorConfig::IForest),
        "incidents" => {
            incidents::IncidentsConfig::parse(path, value).map(ProcessorConfig::Incidents)
        }
        other => Err(vec![ConfigError::new(
            path,
            format!(
                "unknown processor type {other:?} (known: {})",
                TYPES.join(", ")
            ),
        )]),
    }
}

impl ProcessorConfig {
    /// The kind this processor emits for `input`, or what it accepts when it cannot take `input`.
    pub fn output_kind(&self, input: DataKind) -> Result<DataKind, String> {
        match self {
            ProcessorConfig::Batch(_) if input != DataKind::Windows => Ok(input),
            ProcessorConfig::Batch(_) => Err("traces, metrics, logs".into()),
            ProcessorConfig::Window(_) if input == DataKind::Traces => Ok(DataKind::Windows),
            ProcessorConfig::Window(_) => Err("traces".into()),
            ProcessorConfig::IForest(_) if input == DataKind::Windows => Ok(DataKind::Windows),
            ProcessorConfig::IForest(_) => {
                Err("windows (put the window processor before it)".into())
            }
            ProcessorConfig::Incidents(_) if input == DataKind::Windows => Ok(DataKind::Windows),
            ProcessorConfig::Incidents(_) => {
                Err("windows (put the window and iforest processors before it)".into())
            }
        }
    }

    pub fn build(&self, ctx: &ProcessorContext<'_>) -> Box<dyn Processor> {
        match self {
            ProcessorConfig::Batch(c) => Box::new(batch::BatchProcessor::new(c.clone())),
            ProcessorConfig::Window(c) => Box::new(window::WindowProcessor::new(
                c,
                &format!("{}@{}", ctx.id, ctx.pipeline),
                ctx.telemetry,
            )),
            ProcessorConfig::IForest(c) => Box::new(iforest::IForestProcessor::with_saved_models(
                c,
                &format!("{}@{}", ctx.id, ctx.pipeline),
                ctx.telemetry,
            )),
            ProcessorConfig::Incidents(c) => Box::new(incidents::IncidentsProcessor::new(
                c,
                &format!("{}@{}", ctx.id, ctx.pipeline),
                ctx.telemetry,
            )),
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
        for i in 0..self.stages.len() {
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
