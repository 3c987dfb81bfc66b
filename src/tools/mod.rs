//! Not the pipeline: what the CLI's other subcommands and the tests drive it with — the scenario
//! generator, the load generator, the target system's driver, the demo, offline training, the
//! Kibana setup, the picture and the benchmarks. Tools use the pipeline; the pipeline never uses
//! them. Behind the default-on `tools` feature, so a production build can leave them out.

pub mod bench;
pub mod demo;
pub mod kibana;
pub mod loadgen;
pub mod plot;
pub mod scenario;
pub mod target;
pub mod train;
