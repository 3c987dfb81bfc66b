//! `otelwatch traffic` and `otelwatch generate-anomalies`: driving the target system.

use super::parse_duration;
use otelwatch::tools::target;
use std::time::Duration;

#[derive(clap::Args)]
pub struct TrafficArgs {
    #[arg(long, default_value = "http://localhost:5000")]
    target: String,
    /// Requests per second.
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
}

#[derive(clap::Args)]
pub struct AnomalyArgs {
    #[arg(long, default_value = "http://localhost:5000")]
    target: String,
    #[arg(long, default_value_t = 20)]
    count: usize,
    /// Time between two anomalies.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    spacing: Duration,
    /// Print the injections as JSON lines.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub async fn traffic(args: TrafficArgs) -> anyhow::Result<()> {
    let r = target::traffic(&args.target, args.rate, args.duration).await?;
    println!(
        "sent {} requests to {}: {} ok, {} failed",
        r.requests, args.target, r.ok, r.errors
    );
    Ok(())
}

pub async fn anomalies(args: AnomalyArgs) -> anyhow::Result<()> {
    let json = args.json;
    // Each injection is printed as it happens, so it can be watched live.
    let injections =
        target::generate_anomalies(&args.target, args.count, args.spacing, args.seed, |i| {
            if json {
                match serde_json::to_string(i) {
                    Ok(line) => println!("{line}"),
                    Err(e) => tracing::error!(error = %e, "cannot encode injection"),
                }
            } else {
                println!("{}", target::describe(i));
            }
        })
        .await?;
    if !json {
        println!("injected {} anomalies", injections.len());
    }
    Ok(())
}
