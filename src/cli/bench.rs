//! `otelwatch bench …`: benchmarks with written reports (docs/benchmarks.md), not tests.

use otelwatch::tools::bench;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// The online isolation forest on the standard outlier data sets (the paper's protocol).
    Forest {
        /// Folder of `*.csv.gz` data sets (header f0..,label).
        #[arg(long)]
        datasets: PathBuf,
        /// Runs per data set (the median is reported).
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Only data sets whose file name contains one of these.
        #[arg(long, num_args = 1..)]
        only: Vec<String>,
    },
    /// Detection quality on labelled scenarios sent through the real pipeline over OTLP,
    /// next to a batch isolation forest trained once on the warm-up.
    Quality {
        /// Only scenarios whose name contains this.
        #[arg(long)]
        only: Option<String>,
    },
    /// The detector's cost per window and memory per series.
    Scoring {
        #[arg(long, default_value_t = 100)]
        series: usize,
        #[arg(long, default_value_t = 200)]
        windows: usize,
    },
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let table = match cmd {
        BenchCommand::Forest {
            datasets,
            runs,
            only,
        } => bench::forest_report(&datasets, runs, &only)?,
        BenchCommand::Quality { only } => bench::quality::report(only.as_deref()).await?,
        BenchCommand::Scoring { series, windows } => bench::scoring_cost(series, windows),
    };
    println!("{table}");
    Ok(())
}
