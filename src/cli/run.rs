//! `otelwatch run`: the pipelines, until SIGINT or SIGTERM.

use anyhow::Context as _;
use otelwatch::config;
use otelwatch::pipeline::service;
use otelwatch::telemetry::Telemetry;
use std::path::PathBuf;

#[derive(clap::Args, Default)]
pub struct RunArgs {
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The config, read before logging starts (it may set the log level).
    #[arg(skip)]
    loaded: Option<Result<config::Config, config::LoadError>>,
}

impl RunArgs {
    /// Reads the config and returns the log level it asks for.
    pub fn prepare(&mut self) -> Option<String> {
        let loaded = self
            .loaded
            .get_or_insert_with(|| load_config(self.config.as_ref()));
        loaded
            .as_ref()
            .ok()
            .and_then(|c| c.telemetry.logs.level.clone())
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<config::Config, config::LoadError> {
    match path {
        Some(p) => config::load_file(p),
        None => Ok(config::parse(otelwatch::DEFAULT_PIPELINE, &|n| {
            std::env::var(n).ok()
        })?),
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let cfg = match args.loaded {
        Some(loaded) => loaded?,
        None => load_config(args.config.as_ref())?,
    };
    let report = service::run(cfg, Telemetry::new(), shutdown_signal())
        .await
        .context("otelwatch could not start")?;
    if !report.drained {
        anyhow::bail!(
            "shutdown deadline passed with {} items undelivered",
            report.lost_items
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
