//! otelwatch: an OTLP pipeline that sits between instrumented services and their collector,
//! forwards everything unchanged, and finds anomalies as they happen.
//!
//! Data flows `receivers → processors → exporters` (see `ARCHITECTURE.md`). Each of the three
//! component folders has one table listing its components.

pub mod bench;
pub mod config;
pub mod demo;
pub mod exporters;
pub mod kibana;
pub mod loadgen;
pub mod otlp;
pub mod pipeline;
pub mod plot;
pub mod processors;
pub mod quality;
pub mod receivers;
pub mod scenario;
pub mod target;
pub mod telemetry;
pub mod train;
pub mod windows;

/// The pipeline run when no `--config` is given.
pub const DEFAULT_PIPELINE: &str = include_str!("default-pipeline.yaml");
