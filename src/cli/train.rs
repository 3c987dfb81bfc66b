//! `otelwatch train`: detection models built offline from recorded telemetry or stored windows.

use otelwatch::config::secret::Secret;
use otelwatch::exporters::elasticsearch::ElasticsearchConfig;
use otelwatch::tools::train;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Recorded files (the file exporter's format); `*` and `?` allowed in the file name.
    #[arg(long, short, num_args = 1.., required_unless_present = "from_es", conflicts_with = "from_es")]
    input: Vec<String>,
    /// Read window documents from this cluster instead (e.g. http://localhost:9200).
    #[arg(long)]
    from_es: Option<String>,
    /// The windows index or data stream to read, with --from-es.
    #[arg(long, default_value = "otelwatch-windows")]
    index: String,
    #[arg(long, env = "ES_USER")]
    user: Option<String>,
    #[arg(long, env = "ES_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    #[arg(long, env = "ES_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Pipeline file whose window and iforest settings to use (defaults otherwise).
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[arg(long, short, default_value = "models")]
    out: PathBuf,
}

pub async fn run(args: TrainArgs) -> anyhow::Result<()> {
    let report = match args.from_es {
        Some(url) => {
            let source = ElasticsearchConfig {
                endpoints: vec![url],
                user: args.user.unwrap_or_default(),
                password: Secret::new(args.password.unwrap_or_default()),
                api_key: Secret::new(args.api_key.unwrap_or_default()),
                ..Default::default()
            };
            train::train_from_es(&source, &args.index, args.config.as_deref(), &args.out).await?
        }
        None => train::train(&args.input, args.config.as_deref(), &args.out)?,
    };
    println!(
        "trained on {} lines ({} skipped): {} series, {} windows, {} flagged as anomalous",
        report.lines, report.bad_lines, report.series, report.windows, report.anomalies
    );
    println!("models:  {}", report.model_path.display());
    println!("windows: {}", report.windows_path.display());
    println!("picture: {}", report.picture_path.display());
    Ok(())
}
