//! The `otelwatch` binary: parse the command line, start logging, run the subcommand.

mod cli;

use clap::Parser;
use cli::{Cli, LogFormat};
use std::process::ExitCode;

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut command = cli.command.unwrap_or_default();
    // The config may set the log level; read it before logging starts.
    let config_level = command.prepare();
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
    match runtime.block_on(command.dispatch()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otelwatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}
