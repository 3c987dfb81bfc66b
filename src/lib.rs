//! otelwatch: an OTLP pipeline that sits between instrumented services and their collector,
//! forwards everything unchanged, and finds anomalies as they happen.
//!
//! Data flows `receivers → processors → exporters` (see `ARCHITECTURE.md`). Each of the three
//! component folders has one table listing its components.

pub mod config;
pub mod exporters;
pub mod extensions;
#[doc(hidden)]
pub mod fuzzing;
pub mod model;
pub mod otlp;
pub mod pipeline;
pub mod processors;
pub mod receivers;
pub mod storage;
pub mod telemetry;
#[cfg(feature = "tools")]
pub mod tools;

/// The pipeline run when no `--config` is given.
pub const DEFAULT_PIPELINE: &str = include_str!("default-pipeline.yaml");
