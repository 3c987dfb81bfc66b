//! `otelwatch demo`: the whole product in one command.

use super::parse_duration;
use otelwatch::tools::demo::{self, DemoOptions, TrafficSource};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Window length (the demo lasts about 100 windows).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    interval: Duration,
    /// Where the demo writes its telemetry and scored windows.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    #[arg(long, default_value_t = 20)]
    anomalies: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where the traffic comes from.
    #[arg(long, value_enum, default_value = "auto")]
    traffic: TrafficSource,
    /// The target system's directory (service-a/, service-b/).
    #[arg(long, default_value = "target-system")]
    target_system: PathBuf,
    /// The console's port (default: a free one; the URL is printed).
    #[arg(long)]
    console_port: Option<u16>,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let summary = demo::run(DemoOptions {
        interval: args.interval,
        out_dir: args.out,
        anomalies: args.anomalies,
        seed: args.seed,
        traffic: args.traffic,
        target_system: args.target_system,
        console_port: args.console_port,
    })
    .await?;
    println!(
        "\nsummary ({}): {} anomalies injected, {} detected; {} windows flagged outside the injections.\nscored windows: {}",
        summary.source,
        summary.injected,
        summary.detected,
        summary.false_alarms,
        summary.windows_file.display()
    );
    let causes: Vec<String> = summary
        .causes
        .iter()
        .map(|(c, n)| format!("{c} ×{n}"))
        .collect();
    println!(
        "incidents: {} opened; likely causes: {}; the injected service named first for {} of {} injections",
        summary.incidents,
        if causes.is_empty() { "–".to_string() } else { causes.join(", ") },
        summary.right_cause,
        summary.injected
    );
    let by_signal: Vec<String> = summary
        .flagged_by_signal
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    println!("flagged windows by signal: {}", by_signal.join(", "));
    if let Some(p) = &summary.picture {
        println!("picture of normal vs anomalous windows: {}", p.display());
    }
    Ok(())
}
