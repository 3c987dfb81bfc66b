use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use otelwatch::config;
use otelwatch::loadgen::{self, LoadgenOptions, Protocol};
use otelwatch::pipeline::service;
use otelwatch::telemetry::Telemetry;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "otelwatch",
    version,
    about = "Sits between your services and your OpenTelemetry collector: forwards OTLP unchanged and finds anomalies as they happen."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipelines (the default). Without --config, runs the embedded default pipeline.
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// The whole product in one command, nothing else needed: otelwatch with the target system
    /// (the real services when Python and Node.js are there, else the built-in simulator), 20
    /// injected anomalies printed live as they are found, and a summary at the end.
    Demo {
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
        traffic: otelwatch::demo::TrafficSource,
        /// The target system's directory (service-a/, service-b/).
        #[arg(long, default_value = "target-system")]
        target_system: PathBuf,
    },
    /// Check a pipeline file and list every problem; exit 1 if there is any.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Build detection models offline, from recorded OTLP/JSON lines (--input) or from window
    /// documents stored in Elasticsearch/OpenSearch (--from-es); writes models.json,
    /// windows.jsonl and service_anomaly_detection.png into --out.
    Train {
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
    },
    /// Import the Kibana data views, visualizations and dashboard (idempotent).
    KibanaSetup {
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
    },
    /// Send steady normal traffic to the target system's service A (/start and /test).
    Traffic {
        #[arg(long, default_value = "http://localhost:5000")]
        target: String,
        /// Requests per second.
        #[arg(long, default_value_t = 5.0)]
        rate: f64,
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: Duration,
    },
    /// Send anomalous requests to the target system (400–800 ms extra latency or an error, in
    /// service A or B) and print what was injected and when.
    GenerateAnomalies {
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
    },
    /// Benchmarks with written reports (not tests): see docs/benchmarks.md.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Send realistic spans over OTLP and report the rate achieved.
    Loadgen {
        /// gRPC `host:port`, or the HTTP base URL with --protocol http.
        #[arg(long, default_value = "localhost:4317")]
        endpoint: String,
        #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
        protocol: Protocol,
        /// Spans per second (0: as fast as possible).
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// How long to send, e.g. 10s, 1m.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Number of services to simulate.
        #[arg(long, default_value_t = 5)]
        services: usize,
        /// Spans per request.
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
    },
}

#[derive(Subcommand)]
enum BenchCommand {
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

fn parse_duration(s: &str) -> Result<Duration, String> {
    config::duration::parse_duration(s)
}

fn init_logging(format: LogFormat, level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(level.unwrap_or("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
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

fn load_config(path: Option<&PathBuf>) -> Result<config::Config, config::LoadError> {
    match path {
        Some(p) => config::load_file(p),
        None => Ok(config::parse(otelwatch::DEFAULT_PIPELINE, &|n| {
            std::env::var(n).ok()
        })?),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run { config: None });
    // The config may set the log level; read it before logging starts.
    let (config_result, config_level) = match &command {
        Command::Run { config } => {
            let r = load_config(config.as_ref());
            let level = r.as_ref().ok().and_then(|c| c.telemetry.logs.level.clone());
            (Some(r), level)
        }
        _ => (None, None),
    };
    init_logging(
        cli.log_format,
        cli.log_level.as_deref().or(config_level.as_deref()),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("otelwatch: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Run { config } => {
                let cfg = match config_result {
                    Some(Ok(cfg)) => cfg,
                    Some(Err(e)) => return Err(anyhow::Error::new(e)),
                    None => load_config(config.as_ref())?,
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
            Command::Validate { config } => match config::load_file(&config) {
                Ok(cfg) => {
                    println!(
                        "{}: valid ({} pipelines, {} receivers, {} processors, {} exporters)",
                        config.display(),
                        cfg.pipelines.len(),
                        cfg.receivers.len(),
                        cfg.processors.len(),
                        cfg.exporters.len()
                    );
                    Ok(())
                }
                Err(e) => Err(anyhow::Error::new(e)),
            },
            Command::Train {
                input,
                from_es,
                index,
                user,
                password,
                api_key,
                config,
                out,
            } => {
                let report = match from_es {
                    Some(url) => {
                        let source = otelwatch::exporters::elasticsearch::ElasticsearchConfig {
                            endpoints: vec![url],
                            user: user.unwrap_or_default(),
                            password: password.unwrap_or_default(),
                            api_key: api_key.unwrap_or_default(),
                            ..Default::default()
                        };
                        otelwatch::train::train_from_es(&source, &index, config.as_deref(), &out)
                            .await?
                    }
                    None => otelwatch::train::train(&input, config.as_deref(), &out)?,
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
            Command::Demo {
                interval,
                out,
                anomalies,
                seed,
                traffic,
                target_system,
            } => {
                let summary = otelwatch::demo::run(otelwatch::demo::DemoOptions {
                    interval,
                    out_dir: out,
                    anomalies,
                    seed,
                    traffic,
                    target_system,
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
                if let Some(p) = &summary.picture {
                    println!("picture of normal vs anomalous windows: {}", p.display());
                }
                Ok(())
            }
            Command::Traffic {
                target,
                rate,
                duration,
            } => {
                let r = otelwatch::target::traffic(&target, rate, duration).await?;
                println!("sent {} requests to {target}: {} ok, {} failed", r.requests, r.ok, r.errors);
                Ok(())
            }
            Command::GenerateAnomalies {
                target,
                count,
                spacing,
                json,
                seed,
            } => {
                // Each injection is printed as it happens, so it can be watched live.
                let injections =
                    otelwatch::target::generate_anomalies(&target, count, spacing, seed, |i| {
                        if json {
                            match serde_json::to_string(i) {
                                Ok(line) => println!("{line}"),
                                Err(e) => tracing::error!(error = %e, "cannot encode injection"),
                            }
                        } else {
                            println!("{}", otelwatch::target::describe(i));
                        }
                    })
                    .await?;
                if !json {
                    println!("injected {} anomalies", injections.len());
                }
                Ok(())
            }
            Command::KibanaSetup {
                kibana_url,
                user,
                password,
                api_key,
                file,
                wait,
            } => {
                let ndjson = match file {
                    Some(f) => std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?,
                    None => otelwatch::kibana::SAVED_OBJECTS.to_string(),
                };
                let auth = otelwatch::kibana::KibanaAuth {
                    user,
                    password,
                    api_key,
                };
                let n = otelwatch::kibana::import(&kibana_url, &auth, &ndjson, wait).await?;
                println!("imported {n} saved objects into {kibana_url} (dashboard \"otelwatch: service anomalies\")");
                Ok(())
            }
            Command::Bench(BenchCommand::Forest {
                datasets,
                runs,
                only,
            }) => {
                let table = otelwatch::bench::forest_report(&datasets, runs, &only)?;
                println!("{table}");
                Ok(())
            }
            Command::Bench(BenchCommand::Quality { only }) => {
                let table = otelwatch::quality::report(only.as_deref()).await?;
                println!("{table}");
                Ok(())
            }
            Command::Bench(BenchCommand::Scoring { series, windows }) => {
                println!("{}", otelwatch::bench::scoring_cost(series, windows));
                Ok(())
            }
            Command::Loadgen {
                endpoint,
                protocol,
                rate,
                duration,
                services,
                batch_size,
                concurrency,
                gzip,
                pregenerate,
                seed,
            } => {
                let report = loadgen::run(LoadgenOptions {
                    endpoint,
                    protocol,
                    rate,
                    duration,
                    services,
                    batch_size,
                    concurrency,
                    gzip,
                    pregenerate,
                    seed,
                })
                .await?;
                println!("{report}");
                if report.spans_sent == 0 {
                    anyhow::bail!("no span was accepted");
                }
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otelwatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}
