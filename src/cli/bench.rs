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
    /// Detection and root causes on real telemetry with injected faults (a day of the Nezha
    /// data, Train-Ticket or Online Boutique): converted to OTLP, replayed through the
    /// pipeline, scored.
    Real {
        /// The data set: its `.tar.gz` or the unpacked folder (with `rca_data/`).
        #[arg(long)]
        data: PathBuf,
        /// Where the replay file and the results go.
        #[arg(long, default_value = "out/real")]
        out: PathBuf,
        /// Window length in seconds.
        #[arg(long, default_value_t = 30)]
        interval: u64,
        /// Minutes of fault-free traffic before the first fault.
        #[arg(long, default_value_t = 10)]
        warmup: u64,
        /// Minutes of fault-free traffic between two faults.
        #[arg(long, default_value_t = 2)]
        gap: u64,
        /// Only the first this many faults.
        #[arg(long)]
        faults: Option<usize>,
    },
    /// How fast the console's API answers with a full history (filled in process, asked over
    /// HTTP).
    Console {
        #[arg(long, default_value_t = 1000)]
        series: usize,
        #[arg(long, default_value_t = 6)]
        hours: u64,
        /// Timed calls of each endpoint.
        #[arg(long, default_value_t = 30)]
        requests: usize,
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
        BenchCommand::Console {
            series,
            hours,
            requests,
        } => bench::console::run(series, hours, requests).await?,
        BenchCommand::Real {
            data,
            out,
            interval,
            warmup,
            gap,
            faults,
        } => {
            bench::real::run(bench::real::RealOptions {
                data,
                out,
                interval_s: interval,
                warmup_min: warmup,
                gap_min: gap,
                faults,
            })
            .await?
        }
    };
    println!("{table}");
    Ok(())
}
