//! The real OpenTelemetry Collector (built by `scripts/collector` from the published collector
//! modules), started as a process with a config written for the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The collector binary from `OTELWATCH_COLLECTOR` (set by `scripts/test`). Under
/// `OTELWATCH_REQUIRE_COLLECTOR=1` (CI) a missing binary fails the test instead of skipping it.
pub fn collector_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("OTELWATCH_COLLECTOR").map(PathBuf::from) {
        if p.exists() {
            return Some(p);
        }
    }
    if std::env::var("OTELWATCH_REQUIRE_COLLECTOR").is_ok_and(|v| v == "1") {
        panic!("the OpenTelemetry Collector is required: run ./scripts/test (it builds it with scripts/collector)");
    }
    eprintln!("SKIPPED: OpenTelemetry Collector not built; run ./scripts/test");
    None
}

/// A collector that receives OTLP/gRPC on `port` and appends every signal as OTLP/JSON lines to
/// `file` (flushed every 100 ms, so tests can poll it).
pub fn file_sink_config(port: u16, file: &Path) -> String {
    file_sink_config_with("grpc", port, "", file)
}

/// The same over `protocol` (`grpc` or `http`), with `tls` (a `tls:` line, or nothing) added to
/// the protocol's settings.
pub fn file_sink_config_with(protocol: &str, port: u16, tls: &str, file: &Path) -> String {
    crate::support::config(
        "collector/file-sink.yaml",
        &[
            ("PROTOCOL", &protocol),
            ("PORT", &port),
            ("TLS", &tls),
            ("FILE", &file.display()),
        ],
    )
}

/// The `tls:` line of an exporter that sends in plaintext.
pub const PLAINTEXT: &str = "tls: { insecure: true }";

/// A collector that receives OTLP/gRPC on `port` and sends everything on with its OTLP exporter
/// (gzip, its default) to `to`, with `tls` (a `tls:` line) and `extra` (more settings, or
/// nothing) as the exporter's settings.
pub fn relay_config(port: u16, to: u16, tls: &str, extra: &str) -> String {
    crate::support::config(
        "collector/relay.yaml",
        &[
            ("PORT", &port),
            ("TO", &to),
            ("TLS", &tls),
            ("EXTRA", &extra),
        ],
    )
}

pub struct Collector {
    child: Option<Child>,
    pub log_path: PathBuf,
    config_path: PathBuf,
}

impl Collector {
    /// Writes `config` and starts the collector; returns once it says it is ready.
    pub fn start(bin: &Path, dir: &Path, name: &str, config: &str) -> Self {
        let config_path = dir.join(format!("{name}.yaml"));
        std::fs::write(&config_path, config).unwrap();
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start the collector");
        let mut c = Self {
            child: Some(child),
            log_path,
            config_path,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if c.log().contains("Everything is ready") {
                return c;
            }
            if let Some(status) = c.child.as_mut().and_then(|ch| ch.try_wait().ok().flatten()) {
                panic!("the collector exited early ({status}):\n{}", c.log());
            }
            if Instant::now() > deadline {
                panic!("the collector did not start:\n{}", c.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Replaces its config and has it reload (SIGHUP, as an operator or a config watcher
    /// would); returns once it says it is ready again.
    pub fn reload(&mut self, config: &str) {
        let ready = |c: &Self| c.log().matches("Everything is ready").count();
        let before = ready(self);
        std::fs::write(&self.config_path, config).unwrap();
        let pid = self.child.as_ref().expect("not running").id();
        let ok = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -HUP failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        while ready(self) <= before {
            assert!(
                Instant::now() < deadline,
                "the collector did not reload:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Stops it as an operator would (SIGTERM: receivers close, exporters drain) and waits.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the collector did not stop in 30 s:\n{}", self.log());
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts a collector and an otelwatch off the async runtime, the collector first when it is
/// downstream (`collector_first`), otelwatch first when the collector sends into it.
pub async fn start_pair(
    bin: &Path,
    dir: &Path,
    collector_cfg: String,
    otelwatch_cfg: String,
    collector_first: bool,
) -> (Collector, crate::support::Otelwatch) {
    let (bin, dir) = (bin.to_path_buf(), dir.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let collector = || Collector::start(&bin, &dir, "collector", &collector_cfg);
        let otelwatch = || crate::support::Otelwatch::start(&dir, "ow", &otelwatch_cfg);
        if collector_first {
            let c = collector();
            (c, otelwatch())
        } else {
            let ow = otelwatch();
            (collector(), ow)
        }
    })
    .await
    .expect("starting the collector and otelwatch")
}
