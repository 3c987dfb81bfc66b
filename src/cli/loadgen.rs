//! `otelwatch loadgen`: realistic spans, log records or metric points over OTLP at a given rate.

use super::parse_duration;
use otelwatch::tools::loadgen::{self, LoadSignal, LoadgenOptions, Protocol};
use std::time::Duration;

#[derive(clap::Args)]
pub struct LoadgenArgs {
    /// gRPC `host:port`, or the HTTP base URL with --protocol http.
    #[arg(long, default_value = "localhost:4317")]
    endpoint: String,
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    protocol: Protocol,
    /// What to send: spans, log records or metric points.
    #[arg(long, value_enum, default_value_t = LoadSignal::Traces)]
    signal: LoadSignal,
    /// Items (spans, log records or metric points) per second (0: as fast as possible).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// How long to send, e.g. 10s, 1m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Number of services to simulate.
    #[arg(long, default_value_t = 5)]
    services: usize,
    /// Items per request (metric points are capped at 18 per service).
    #[arg(long, default_value_t = 512)]
    batch_size: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Compress requests with gzip.
    #[arg(long)]
    gzip: bool,
    /// Build this many requests up front and resend them (keeps generator CPU out of
    /// throughput measurements).
    #[arg(long, default_value_t = 0)]
    pregenerate: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub async fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    let report = loadgen::run(LoadgenOptions {
        endpoint: args.endpoint,
        protocol: args.protocol,
        signal: args.signal,
        rate: args.rate,
        duration: args.duration,
        services: args.services,
        batch_size: args.batch_size,
        concurrency: args.concurrency,
        gzip: args.gzip,
        pregenerate: args.pregenerate,
        seed: args.seed,
    })
    .await?;
    println!("{report}");
    if report.items_sent == 0 {
        anyhow::bail!(
            "no {} was accepted",
            report.signal.items().trim_end_matches('s')
        );
    }
    Ok(())
}
