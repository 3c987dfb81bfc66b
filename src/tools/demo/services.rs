//! The real target system for the demo: service A (Python, Flask) and service B (Node.js,
//! express) from `target-system/`, each with the OpenTelemetry SDK exporting to the demo's
//! otelwatch. Their packages are installed on first use (a virtualenv for A, `npm ci` for B);
//! whatever is missing is reported, and the demo then uses its simulator instead.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error("no target system at {0} (service-a/app.py and service-b/server.js)")]
    NotFound(PathBuf),
    #[error("{0} is not installed")]
    Missing(&'static str),
    #[error("{what} failed (see {log})")]
    Setup { what: String, log: PathBuf },
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{what} did not answer on /healthz within {secs} s (see {log})")]
    NotReady {
        what: &'static str,
        secs: u64,
        log: PathBuf,
    },
    #[error("{0}")]
    Io(String),
}

/// Both services, running; dropping this stops them.
pub struct Services {
    _a: Child,
    _b: Child,
    /// Service A's base URL, where traffic and anomalies go.
    pub target: String,
}

fn free_port() -> Result<u16, ServicesError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ServicesError::Io(e.to_string()))
}

/// Runs a setup step, its output going to `log`.
async fn step(what: &str, cmd: &mut Command, log: &Path) -> Result<(), ServicesError> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| ServicesError::Io(format!("{}: {e}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(|e| ServicesError::Io(e.to_string()))?;
    let failed = || ServicesError::Setup {
        what: what.to_string(),
        log: log.to_path_buf(),
    };
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .await
        .map_err(|_| failed())?;
    if status.success() {
        Ok(())
    } else {
        Err(failed())
    }
}

async fn works(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Installs what the services need, once: returns service A's Python interpreter.
async fn prepare(root: &Path, log: &Path) -> Result<PathBuf, ServicesError> {
    let (a, b) = (root.join("service-a"), root.join("service-b"));
    if !a.join("app.py").is_file() || !b.join("server.js").is_file() {
        return Err(ServicesError::NotFound(root.to_path_buf()));
    }
    if !works(Command::new("node").arg("--version")).await {
        return Err(ServicesError::Missing("Node.js (node)"));
    }
    let python = a.join(".venv/bin/python");
    let ready = works(Command::new(&python).args([
        "-c",
        "import flask, requests, opentelemetry.instrumentation.flask, opentelemetry.instrumentation.system_metrics",
    ]))
    .await;
    if !ready {
        if !works(Command::new("python3").arg("--version")).await {
            return Err(ServicesError::Missing("Python 3 (python3)"));
        }
        println!(
            "  installing service A's packages into {} (once)...",
            a.join(".venv").display()
        );
        step(
            "creating service A's virtualenv",
            Command::new("python3")
                .args(["-m", "venv"])
                .arg(a.join(".venv")),
            log,
        )
        .await?;
        step(
            "installing service A's packages",
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(a.join("requirements.txt")),
            log,
        )
        .await?;
    }
    // The newest package the server needs: an older install lacks it.
    if !b
        .join("node_modules/@opentelemetry/instrumentation-runtime-node")
        .is_dir()
    {
        println!("  installing service B's packages (npm ci, once)...");
        step(
            "installing service B's packages",
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&b),
            log,
        )
        .await?;
    }
    Ok(python)
}

async fn wait_healthy(
    port: u16,
    what: &'static str,
    child: &mut Child,
    log: &Path,
) -> Result<(), ServicesError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| ServicesError::Io(e.to_string()))?;
    let secs = 60;
    let not_ready = || ServicesError::NotReady {
        what,
        secs,
        log: log.to_path_buf(),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return Err(not_ready());
        }
        let ok = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(not_ready())
}

fn log_file(path: &Path) -> Result<std::fs::File, ServicesError> {
    std::fs::File::create(path).map_err(|e| ServicesError::Io(format!("{}: {e}", path.display())))
}

/// Installs (if needed) and starts both services, exporting OTLP/gRPC to `otlp_port`; their
/// output goes to `out_dir`.
pub async fn start(root: &Path, otlp_port: u16, out_dir: &Path) -> Result<Services, ServicesError> {
    let python = prepare(root, &out_dir.join("target-setup.log")).await?;
    let (a_port, b_port) = (free_port()?, free_port()?);
    let otlp = format!("http://127.0.0.1:{otlp_port}");
    let (a_log, b_log) = (out_dir.join("service-a.log"), out_dir.join("service-b.log"));
    let b_out = log_file(&b_log)?;
    let b_err = b_out
        .try_clone()
        .map_err(|e| ServicesError::Io(e.to_string()))?;
    let mut b = Command::new("node")
        .args(["--require", "./tracing.js", "server.js"])
        .current_dir(root.join("service-b"))
        .env("PORT", b_port.to_string())
        .env("HOST", "127.0.0.1")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp)
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("OTEL_BLRP_SCHEDULE_DELAY", "200")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
        .stdin(Stdio::null())
        .stdout(b_out)
        .stderr(b_err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ServicesError::Spawn {
            what: "service B",
            source,
        })?;
    let a_out = log_file(&a_log)?;
    let a_err = a_out
        .try_clone()
        .map_err(|e| ServicesError::Io(e.to_string()))?;
    let mut a = Command::new(&python)
        .arg(root.join("service-a/app.py"))
        .env("PORT", a_port.to_string())
        .env("HOST", "127.0.0.1")
        .env("SERVICE_B_URL", format!("http://127.0.0.1:{b_port}"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp)
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("OTEL_BLRP_SCHEDULE_DELAY", "200")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
        .stdin(Stdio::null())
        .stdout(a_out)
        .stderr(a_err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ServicesError::Spawn {
            what: "service A",
            source,
        })?;
    wait_healthy(b_port, "service B", &mut b, &b_log).await?;
    wait_healthy(a_port, "service A", &mut a, &a_log).await?;
    Ok(Services {
        _a: a,
        _b: b,
        target: format!("http://127.0.0.1:{a_port}"),
    })
}
