//! The command line: one file per subcommand, each with its arguments and what it runs.

#[cfg(feature = "tools")]
mod bench;
#[cfg(feature = "tools")]
mod demo;
#[cfg(feature = "tools")]
mod kibana;
#[cfg(feature = "tools")]
mod loadgen;
mod run;
#[cfg(feature = "tools")]
mod traffic;
#[cfg(feature = "tools")]
mod train;
mod validate;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "otelwatch",
    version,
    about = "Sits between your services and your OpenTelemetry collector: forwards OTLP unchanged and finds anomalies as they happen."
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the pipelines (the default). Without --config, runs the embedded default pipeline.
    Run(run::RunArgs),
    #[cfg(feature = "tools")]
    /// The whole product in one command, nothing else needed: otelwatch with the target system
    /// (the real services when Python and Node.js are there, else the built-in simulator), 20
    /// injected anomalies printed live as they are found, and a summary at the end.
    Demo(demo::DemoArgs),
    /// Check a pipeline file and list every problem; exit 1 if there is any.
    Validate(validate::ValidateArgs),
    #[cfg(feature = "tools")]
    /// Build detection models offline, from recorded OTLP/JSON lines (--input) or from window
    /// documents stored in Elasticsearch/OpenSearch (--from-es); writes models.json,
    /// windows.jsonl and service_anomaly_detection.png into --out.
    Train(train::TrainArgs),
    #[cfg(feature = "tools")]
    /// Import the Kibana data views, visualizations and dashboard (idempotent).
    KibanaSetup(kibana::KibanaArgs),
    #[cfg(feature = "tools")]
    /// Send steady normal traffic to the target system's service A (/start and /test).
    Traffic(traffic::TrafficArgs),
    #[cfg(feature = "tools")]
    /// Send anomalous requests to the target system (400–800 ms extra latency or an error, in
    /// service A or B) and print what was injected and when.
    GenerateAnomalies(traffic::AnomalyArgs),
    #[cfg(feature = "tools")]
    /// Benchmarks with written reports (not tests): see docs/benchmarks.md.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    #[cfg(feature = "tools")]
    /// Send realistic spans over OTLP and report the rate achieved.
    Loadgen(loadgen::LoadgenArgs),
}

impl Command {
    /// Reads what must be read before logging starts; returns the log level the pipeline
    /// file asks for, when this command runs one.
    pub fn prepare(&mut self) -> Option<String> {
        match self {
            Command::Run(args) => args.prepare(),
            _ => None,
        }
    }

    pub async fn dispatch(self) -> anyhow::Result<()> {
        match self {
            Command::Run(args) => run::run(args).await,
            Command::Validate(args) => validate::run(args),
            #[cfg(feature = "tools")]
            Command::Demo(args) => demo::run(args).await,
            #[cfg(feature = "tools")]
            Command::Train(args) => train::run(args).await,
            #[cfg(feature = "tools")]
            Command::KibanaSetup(args) => kibana::run(args).await,
            #[cfg(feature = "tools")]
            Command::Traffic(args) => traffic::traffic(args).await,
            #[cfg(feature = "tools")]
            Command::GenerateAnomalies(args) => traffic::anomalies(args).await,
            #[cfg(feature = "tools")]
            Command::Bench(cmd) => bench::run(cmd).await,
            #[cfg(feature = "tools")]
            Command::Loadgen(args) => loadgen::run(args).await,
        }
    }
}

impl Default for Command {
    fn default() -> Self {
        Command::Run(run::RunArgs::default())
    }
}

#[cfg(feature = "tools")]
pub use otelwatch::config::duration::parse_duration;
