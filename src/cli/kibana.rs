//! `otelwatch kibana-setup`: the saved objects imported into Kibana.

use super::parse_duration;
use anyhow::Context as _;
use otelwatch::tools::kibana;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct KibanaArgs {
    /// e.g. http://localhost:5601
    #[arg(long, env = "KIBANA_URL")]
    kibana_url: String,
    #[arg(long, env = "KIBANA_USER")]
    user: Option<String>,
    #[arg(long, env = "KIBANA_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    #[arg(long, env = "KIBANA_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Saved objects to import instead of the shipped ones.
    #[arg(long)]
    file: Option<PathBuf>,
    /// How long to wait for Kibana to become ready.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    wait: Duration,
}

pub async fn run(args: KibanaArgs) -> anyhow::Result<()> {
    let ndjson = match &args.file {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        None => kibana::SAVED_OBJECTS.to_string(),
    };
    let auth = kibana::KibanaAuth {
        user: args.user,
        password: args.password,
        api_key: args.api_key,
    };
    let n = kibana::import(&args.kibana_url, &auth, &ndjson, args.wait).await?;
    println!(
        "imported {n} saved objects into {} (dashboard \"otelwatch: service anomalies\")",
        args.kibana_url
    );
    Ok(())
}
