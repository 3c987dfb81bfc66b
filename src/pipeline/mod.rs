//! The runtime that joins receivers, processors and exporters with bounded channels.

mod data;
mod fanout;
pub mod memory;
pub mod service;

pub use data::{Batch, DataKind, Payload, SignalKind, Traces};
pub use fanout::{FanOut, PipelineInput, Refused};
