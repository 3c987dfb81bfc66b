//! `otelwatch validate`: every problem of a pipeline file, without starting anything.

use otelwatch::config;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ValidateArgs {
    #[arg(long, short)]
    config: PathBuf,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<()> {
    let cfg = config::load_file(&args.config)?;
    println!(
        "{}: valid ({} pipelines, {} receivers, {} processors, {} exporters)",
        args.config.display(),
        cfg.pipelines.len(),
        cfg.receivers.len(),
        cfg.processors.len(),
        cfg.exporters.len()
    );
    Ok(())
}
