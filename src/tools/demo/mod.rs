//! `otelwatch demo`: the whole product in one command, with nothing else installed. otelwatch
//! runs its pipeline in this process (OTLP receivers, window, iforest, terminal and file
//! exporters). The traffic comes from the real target system (service A on Flask calling
//! service B on express, both with the OpenTelemetry SDK; see `services`) when Python and
//! Node.js are there, or else from the built-in simulator, which plays the same two services
//! over OTLP/gRPC. After the warm-up the demo injects the original prototype's 20 anomalies
//! (+400–800 ms of latency or an error, alternately in each service); the anomalies appear live
//! in the terminal, every scored window goes to a file, and a summary says how many injected
//! anomalies were detected.

mod services;

use crate::config;
use crate::model::time::now_ns;
use crate::tools::scenario::{Generator, Incident, IncidentKind, Scenario};
use prost::Message;
pub use services::ServicesError;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("config: {0}")]
    Config(#[from] config::ConfigErrors),
    #[error(transparent)]
    Service(#[from] crate::pipeline::service::ServiceError),
    #[error("the real target system cannot run: {0}")]
    Services(#[from] ServicesError),
    #[error("driving the target system: {0}")]
    Target(#[from] crate::tools::target::TargetError),
    #[error("{0}")]
    Io(String),
}

/// Where the demo's traffic comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TrafficSource {
    /// The real services if Python and Node.js can run them, else the simulator.
    Auto,
    /// The real services (service A: Flask, service B: express) from the target system.
    Services,
    /// The built-in simulator of the same two services.
    Simulator,
}

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Window length; the demo lasts about 100 windows.
    pub interval: Duration,
    pub out_dir: PathBuf,
    pub anomalies: usize,
    pub seed: u64,
    pub traffic: TrafficSource,
    /// The target system's directory (`target-system/`).
    pub target_system: PathBuf,
    /// Where the console listens (a free port when none).
    pub console_port: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct DemoSummary {
    /// `services` or `simulator`.
    pub source: &'static str,
    pub injected: usize,
    pub detected: usize,
    pub false_alarms: usize,
    /// Incidents opened during the demo.
    pub incidents: usize,
    /// Injections whose incident names the injected service as the likely cause.
    pub right_cause: usize,
    /// Each incident's likely cause (its final ranking's first), with how often.
    pub causes: BTreeMap<String, usize>,
    /// Flagged windows inside the demo by signal, in the order `spans`, `logs`, `metrics`,
    /// each signal listed even when none of its windows was flagged.
    pub flagged_by_signal: Vec<(&'static str, usize)>,
    pub windows_file: PathBuf,
    /// The picture of normal vs anomalous windows, when it could be drawn.
    pub picture: Option<PathBuf>,
}

const WARMUP_WINDOWS: u64 = 35;
const SPACING: u64 = 3;

fn free_port() -> Result<u16, DemoError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| DemoError::Io(e.to_string()))
}

pub async fn run(opts: DemoOptions) -> Result<DemoSummary, DemoError> {
    let interval_s = opts.interval.as_secs().max(1);
    let (grpc, http) = (free_port()?, free_port()?);
    let console = opts.console_port.unwrap_or(free_port()?);
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| DemoError::Io(e.to_string()))?;
    let windows_file = opts.out_dir.join("demo-windows.jsonl");
    let _ = std::fs::remove_file(&windows_file);
    let yaml = pipeline_yaml(
        grpc,
        http,
        console,
        interval_s,
        &opts.out_dir,
        &windows_file,
    );
    let cfg = config::parse(&yaml, &|_| None)?;
    let service = crate::pipeline::service::InProcess::spawn(cfg);
    println!("console (while the demo runs): http://127.0.0.1:{console}/\n");
    let services = start_services(&opts, grpc).await?;
    let interval_ns = interval_s * 1_000_000_000;
    let total_windows = WARMUP_WINDOWS + 10 + opts.anomalies as u64 * SPACING + 5;
    let (source, scenario, start) =
        drive(services.as_ref(), &opts, grpc, interval_s, total_windows).await?;
    // Stopping closes, scores and exports the windows still open.
    service.stop().await?;
    drop(services);
    let mut summary = summarise(&scenario, start, interval_ns, total_windows, &windows_file)?;
    summary.source = source;
    summary.picture = draw(&windows_file, &opts.out_dir.join("demo-anomalies.png"));
    Ok(summary)
}

/// The demo's pipeline: OTLP on the two ports; every span, log record and metric point to a
/// file, and the detection (window, iforest, one incidents for the spans, the logs and the
/// metrics) to the terminal, the windows file and the console. Each injection is one event (a
/// single slow or failing request) a few windows from the next, so incidents resolve after one
/// normal window and every anomaly is paged at once (`corroborate: false`; by default a lone
/// series' one window waits for a second piece of evidence).
fn pipeline_yaml(
    grpc: u16,
    http: u16,
    console: u16,
    interval_s: u64,
    out_dir: &Path,
    windows_file: &Path,
) -> String {
    format!(
        r#"
extensions:
  console: {{ endpoint: "127.0.0.1:{console}" }}
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
processors:
  window: {{ interval: {interval_s}s, allowed_lateness: 1s }}
  iforest: {{ warmup: 30 }}
  iforest/logs: {{ warmup: 30 }}
  iforest/metrics: {{ warmup: 30 }}
  incidents: {{ resolve_after: 1, corroborate: false }}
exporters:
  debug: {{}}
  file: {{ path: "{}", append: false }}
  file/windows: {{ path: "{}", append: false }}
service:
  extensions: [console]
  telemetry: {{ metrics: {{ address: "" }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [file] }}
    logs: {{ receivers: [otlp], exporters: [file] }}
    metrics: {{ receivers: [otlp], exporters: [file] }}
    traces/detect: {{ receivers: [otlp], processors: [window, iforest, incidents], exporters: [debug, file/windows] }}
    logs/detect: {{ receivers: [otlp], processors: [window, iforest/logs, incidents], exporters: [debug, file/windows] }}
    metrics/detect: {{ receivers: [otlp], processors: [window, iforest/metrics, incidents], exporters: [debug, file/windows] }}
"#,
        out_dir.join("demo-telemetry.jsonl").display(),
        windows_file.display()
    )
}

/// The real target system sending to the gRPC port, when the options ask for it and it can
/// run; none when the simulator plays it.
async fn start_services(
    opts: &DemoOptions,
    grpc: u16,
) -> Result<Option<services::Services>, DemoError> {
    Ok(match opts.traffic {
        TrafficSource::Simulator => None,
        TrafficSource::Services => {
            Some(services::start(&opts.target_system, grpc, &opts.out_dir).await?)
        }
        TrafficSource::Auto => {
            match services::start(&opts.target_system, grpc, &opts.out_dir).await {
                Ok(s) => Some(s),
                Err(e) => {
                    println!(
                        "the real target system cannot run here ({e});
the built-in simulator plays it instead.
"
                    );
                    None
                }
            }
        }
    })
}

/// Says what the demo will do, then drives the real services or the simulator through it.
/// Returns the traffic's source, the injections as a scenario and the first window's start.
async fn drive(
    services: Option<&services::Services>,
    opts: &DemoOptions,
    grpc: u16,
    interval_s: u64,
    total_windows: u64,
) -> Result<(&'static str, Scenario, u64), DemoError> {
    let interval_ns = interval_s * 1_000_000_000;
    match services {
        Some(s) => {
            println!(
                "otelwatch demo: service A (Flask) at {} calls service B (express); both send OTLP to otelwatch on 127.0.0.1:{grpc}.\n\
                 {interval_s}s windows; warm-up {} s at 20 requests/s; then {} anomalies (+400-800 ms or an error), one every {} s. About {} s in all.\n",
                s.target,
                WARMUP_WINDOWS * interval_s,
                opts.anomalies,
                SPACING * interval_s,
                total_windows * interval_s
            );
            let (scenario, start) =
                drive_services(&s.target, opts, interval_ns, total_windows).await?;
            Ok(("services", scenario, start))
        }
        None => {
            println!(
                "otelwatch demo: the simulated target system (service-a -> service-b) sends OTLP to otelwatch on 127.0.0.1:{grpc}.\n\
                 {interval_s}s windows; warm-up {} s; then {} anomalies of +400-800 ms, one every {} s. About {} s in all.\n",
                WARMUP_WINDOWS * interval_s,
                opts.anomalies,
                SPACING * interval_s,
                total_windows * interval_s
            );
            let (scenario, start) = drive_simulator(grpc, opts, interval_ns, total_windows).await?;
            Ok(("simulator", scenario, start))
        }
    }
}

/// The picture of normal vs anomalous windows (one panel per series); a failure to draw is
/// reported and leaves the demo's result alone.
fn draw(windows_file: &Path, picture: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(windows_file).ok()?;
    let records: Vec<crate::model::window::WindowRecord> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|d| {
            let mut r = crate::model::window::WindowRecord::from_document(&d)?;
            r.anomaly = crate::model::window::Anomaly::from_document(&d);
            Some(r)
        })
        // The picture is of request features.
        .filter(|r| r.series.signal == crate::model::window::Signal::Spans)
        .collect();
    match crate::tools::plot::render_png(&records, picture, 4) {
        Ok(()) => Some(picture.to_path_buf()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot draw the demo's picture");
            None
        }
    }
}

/// The first window boundary after now.
fn next_window(interval_ns: u64) -> u64 {
    let now = now_ns();
    now - now % interval_ns + interval_ns
}

/// Real traffic to service A for the whole demo; the anomalies after the warm-up. Returns the
/// injections as a scenario (window indexes from `start`) and `start`.
async fn drive_services(
    target: &str,
    opts: &DemoOptions,
    interval_ns: u64,
    total_windows: u64,
) -> Result<(Scenario, u64), DemoError> {
    let start = next_window(interval_ns);
    let end = start + total_windows * interval_ns;
    let traffic = {
        let target = target.to_string();
        // Stops a little before the last window ends, so no request straddles the boundary
        // into a window of its own (which would look like traffic collapsing).
        let duration = Duration::from_nanos(end.saturating_sub(now_ns() + interval_ns / 4));
        tokio::spawn(async move { crate::tools::target::traffic(&target, 20.0, duration).await })
    };
    let inject_at = start + (WARMUP_WINDOWS + 10) * interval_ns + interval_ns / 4;
    tokio::time::sleep(Duration::from_nanos(inject_at.saturating_sub(now_ns()))).await;
    let injections = crate::tools::target::generate_anomalies(
        target,
        opts.anomalies,
        Duration::from_nanos(SPACING * interval_ns),
        opts.seed,
        |i| println!("  >> injected {}", crate::tools::target::describe(i)),
    )
    .await?;
    match traffic.await {
        Ok(Ok(r)) => println!(
            "\ntraffic: {} requests to service A, {} answered with an error",
            r.requests, r.errors
        ),
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => return Err(DemoError::Io(e.to_string())),
    }
    // The services export every 200 ms: wait for their last spans, and stop before the
    // silence after the traffic fills a window of its own.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut scenario = Scenario::target_system(opts.seed);
    scenario.interval_s = interval_ns / 1_000_000_000;
    scenario.incidents = injections
        .iter()
        .map(|i| {
            let from = i.at_ns.saturating_sub(start) / interval_ns;
            Incident {
                service: i.service.clone(),
                from,
                to: from + 1,
                kind: if i.kind == "error" {
                    IncidentKind::Errors { rate: 1.0 }
                } else {
                    IncidentKind::Latency {
                        extra_ms: i.delay_ms as f64,
                    }
                },
            }
        })
        .collect();
    Ok((scenario, start))
}

/// The simulator's spans, window by window, in real time, with latency incidents after the
/// warm-up. Returns the scenario and its first window's start.
async fn drive_simulator(
    grpc: u16,
    opts: &DemoOptions,
    interval_ns: u64,
    total_windows: u64,
) -> Result<(Scenario, u64), DemoError> {
    let mut scenario = Scenario::target_system(opts.seed);
    scenario.interval_s = interval_ns / 1_000_000_000;
    scenario.incidents = (0..opts.anomalies as u64)
        .map(|i| Incident {
            service: if i % 2 == 0 { "service-b" } else { "service-a" }.into(),
            from: WARMUP_WINDOWS + 10 + i * SPACING,
            to: WARMUP_WINDOWS + 10 + i * SPACING + 1,
            kind: IncidentKind::Latency {
                extra_ms: 400.0 + ((i * 53) % 400) as f64,
            },
        })
        .collect();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc}"))
        .map_err(|e| DemoError::Io(e.to_string()))?
        .connect_lazy();
    let mut gen = Generator::new(scenario.clone(), next_window(interval_ns));
    let start = gen.window_start_ns(0);
    for w in 0..total_windows {
        // Send a window's spans once its end has passed, as live services would.
        let due = gen.window_start_ns(w) + interval_ns;
        let now = now_ns();
        if due > now {
            tokio::time::sleep(Duration::from_nanos(due - now)).await;
        }
        if let Some(inc) = scenario.incidents.iter().find(|i| i.from == w) {
            if let IncidentKind::Latency { extra_ms } = inc.kind {
                println!(
                    "  >> injecting +{extra_ms:.0} ms in {} at {}",
                    inc.service,
                    crate::model::time::rfc3339(gen.window_start_ns(w))
                );
            }
        }
        let body: bytes::Bytes = gen.next_window().encode_to_vec().into();
        if let Err(e) = crate::tools::loadgen::grpc_export(&channel, body, false).await {
            tracing::warn!(error = %e, "demo traffic refused");
        }
    }
    tokio::time::sleep(opts.interval + Duration::from_secs(2)).await;
    Ok((scenario, start))
}

/// Reads the scored windows back and compares them with what was injected, over the demo's
/// `windows` windows from `start_ns`.
pub fn summarise(
    scenario: &Scenario,
    start_ns: u64,
    interval_ns: u64,
    windows: u64,
    windows_file: &Path,
) -> Result<DemoSummary, DemoError> {
    let text = std::fs::read_to_string(windows_file).map_err(|e| DemoError::Io(e.to_string()))?;
    let span = DemoSpan {
        start_ns,
        interval_ns,
        windows,
    };
    let seen = Seen::read(&text, &span);
    let mut detected = 0;
    let mut right_cause = 0;
    for inc in &scenario.incidents {
        if seen.names_cause(inc, &span) {
            right_cause += 1;
        }
        if seen.flagged_during(inc) {
            detected += 1;
        }
    }
    let in_incident = |w: u64| {
        scenario
            .incidents
            .iter()
            .any(|i| w >= i.from && w <= i.to + 1)
    };
    let false_alarms = seen
        .flagged
        .iter()
        .filter(|(w, _)| !in_incident(*w))
        .count();
    Ok(DemoSummary {
        source: "simulator",
        injected: scenario.incidents.len(),
        detected,
        false_alarms,
        incidents: seen.incidents.len(),
        right_cause,
        causes: seen
            .incidents
            .values()
            .fold(BTreeMap::new(), |mut m, (_, _, top)| {
                *m.entry(top.clone()).or_default() += 1;
                m
            }),
        flagged_by_signal: SIGNALS
            .iter()
            .map(|s| (*s, seen.by_signal.get(s).copied().unwrap_or(0)))
            .collect(),
        windows_file: windows_file.to_path_buf(),
        picture: None,
    })
}

/// The demo's windows: `windows` of `interval_ns` from `start_ns`.
struct DemoSpan {
    start_ns: u64,
    interval_ns: u64,
    windows: u64,
}

impl DemoSpan {
    fn end_ns(&self) -> u64 {
        self.start_ns + self.windows * self.interval_ns
    }

    /// The window index of an event time inside the demo; none outside it.
    fn window_of(&self, ns: u64) -> Option<u64> {
        (ns >= self.start_ns && ns < self.end_ns()).then(|| (ns - self.start_ns) / self.interval_ns)
    }
}

/// The signals a window document can come from, in the order the summary lists them.
const SIGNALS: [&str; 3] = ["spans", "logs", "metrics"];

/// What the windows file says about the demo's span.
struct Seen {
    /// The flagged windows: (window index, service).
    flagged: BTreeSet<(u64, String)>,
    /// Each incident's last state: (start, end, top cause).
    incidents: BTreeMap<String, (u64, u64, String)>,
    /// Flagged windows by signal.
    by_signal: BTreeMap<&'static str, usize>,
}

impl Seen {
    fn read(text: &str, span: &DemoSpan) -> Seen {
        let mut seen = Seen {
            flagged: BTreeSet::new(),
            incidents: BTreeMap::new(),
            by_signal: BTreeMap::new(),
        };
        for line in text.lines().filter(|l| !l.is_empty()) {
            let Ok(doc) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if doc["event"]["dataset"] == "otelwatch.incident" {
                seen.note_incident(&doc["incident"], span);
            } else if doc["anomaly"]["is_anomaly"] == true {
                seen.note_flagged(&doc, span);
            }
        }
        seen
    }

    /// Keeps an incident's state when the incident overlaps the demo.
    fn note_incident(&mut self, i: &serde_json::Value, span: &DemoSpan) {
        let t = |k: &str| {
            i[k].as_str()
                .and_then(crate::model::time::parse_rfc3339_ns)
                .unwrap_or(0)
        };
        let (s, e) = (t("start"), t("end"));
        if e > span.start_ns && s < span.end_ns() {
            let top = i["root_cause"][0]["service"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let id = i["id"].as_str().unwrap_or("").to_string();
            self.incidents.insert(id, (s, e, top));
        }
    }

    /// Keeps a flagged window when it lies inside the demo.
    fn note_flagged(&mut self, doc: &serde_json::Value, span: &DemoSpan) {
        let Some(w) = doc["window"]["start"]
            .as_str()
            .and_then(crate::model::time::parse_rfc3339_ns)
            .and_then(|s| span.window_of(s))
        else {
            return;
        };
        let service = doc["service"]["name"].as_str().unwrap_or("").to_string();
        // A window without a signal is a span window (the contract's default).
        let signal = doc["window"]["signal"].as_str().unwrap_or("spans");
        if let Some(s) = SIGNALS.iter().find(|s| **s == signal) {
            *self.by_signal.entry(s).or_default() += 1;
        }
        self.flagged.insert((w, service));
    }

    /// Whether an incident around the injection (until two windows after it) names the
    /// injected service as its likely cause.
    fn names_cause(&self, inc: &Incident, span: &DemoSpan) -> bool {
        let (from, to) = (
            span.start_ns + inc.from * span.interval_ns,
            span.start_ns + (inc.to + 2) * span.interval_ns,
        );
        self.incidents
            .values()
            .filter(|(s, e, _)| *s < to && *e > from)
            .any(|(_, _, top)| *top == inc.service)
    }

    /// Whether the injected service, or service A in front of it, was flagged while the
    /// injection lasted or in the window after.
    fn flagged_during(&self, inc: &Incident) -> bool {
        self.flagged.iter().any(|(w, svc)| {
            *w >= inc.from && *w <= inc.to && (svc == &inc.service || svc == "service-a")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_flagged_windows_to_injections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.jsonl");
        let start = 1_767_571_200_000_000_000u64;
        let mut sc = Scenario::target_system(1);
        sc.interval_s = 1;
        sc.incidents = vec![Incident {
            service: "service-b".into(),
            from: 45,
            to: 46,
            kind: IncidentKind::Latency { extra_ms: 500.0 },
        }];
        let doc = |w: u64, svc: &str, flagged: bool| {
            serde_json::json!({
                "window": { "start": crate::model::time::rfc3339(start + w * 1_000_000_000) },
                "service": { "name": svc },
                "anomaly": { "is_anomaly": flagged }
            })
            .to_string()
        };
        let text = [
            doc(10, "service-a", false),
            doc(45, "service-b", true),
            doc(80, "service-a", true),
        ]
        .join("\n");
        std::fs::write(&path, text).unwrap();
        let s = summarise(&sc, start, 1_000_000_000, 100, &path).unwrap();
        assert_eq!((s.injected, s.detected, s.false_alarms), (1, 1, 1));
        // Windows outside the demo's span are not its business.
        let s = summarise(&sc, start, 1_000_000_000, 60, &path).unwrap();
        assert_eq!((s.injected, s.detected, s.false_alarms), (1, 1, 0));
    }

    #[test]
    fn flagged_windows_are_counted_by_signal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.jsonl");
        let start = 1_767_571_200_000_000_000u64;
        let sc = Scenario::target_system(1);
        let doc = |w: u64, signal: Option<&str>, flagged: bool| {
            let mut d = serde_json::json!({
                "window": { "start": crate::model::time::rfc3339(start + w * 1_000_000_000) },
                "service": { "name": "service-b" },
                "anomaly": { "is_anomaly": flagged }
            });
            if let Some(s) = signal {
                d["window"]["signal"] = serde_json::json!(s);
            }
            d.to_string()
        };
        let text = [
            doc(40, None, true),
            doc(41, None, false),
            doc(41, Some("logs"), true),
            doc(42, Some("logs"), true),
            doc(43, Some("logs"), false),
            doc(200, Some("logs"), true),
        ]
        .join("\n");
        std::fs::write(&path, text).unwrap();
        let s = summarise(&sc, start, 1_000_000_000, 100, &path).unwrap();
        assert_eq!(
            s.flagged_by_signal,
            [("spans", 1), ("logs", 2), ("metrics", 0)]
        );
    }
}
