//! The whole product against the real target system: service A (Flask, OpenTelemetry Python SDK)
//! and service B (express, OpenTelemetry Node SDK) send their spans to otelwatch; normal traffic
//! runs through warm-up and a quiet stretch, then the 20 anomalies of the original prototype are
//! injected. At least 18 must fall in flagged windows of the affected services, and the quiet
//! stretch must have no anomaly at all. otelwatch forwards everything to the real OpenTelemetry
//! Collector, whose file must hold every span otelwatch accepted, in complete traces.

use crate::support;
use crate::support::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The interpreter with service A's requirements, and node with service B's modules.
fn services_available() -> Option<PathBuf> {
    let python = std::env::var_os("OTELWATCH_TARGET_PYTHON").map(PathBuf::from);
    let node_modules = root().join("target-system/service-b/node_modules");
    match python {
        Some(p) if p.exists() && node_modules.exists() => Some(p),
        _ => {
            if std::env::var("OTELWATCH_REQUIRE_TARGET").is_ok_and(|v| v == "1") {
                panic!("the target system is not installed: run ./scripts/test");
            }
            eprintln!("SKIPPED: target system not installed (run ./scripts/test)");
            None
        }
    }
}

/// Waits for `/healthz`; on time-out, panics with what the service wrote to `log`.
fn wait_http(port: u16, what: &str, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok((200, _)) = http_get(port, "/healthz") {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("{what} did not come up on port {port}:\n{log}");
}

/// Every span otelwatch accepted reached the collector, once, and every trace there is whole:
/// each parent is present, and the requests to service A reached service B.
fn forwarded_traces_are_complete(accepted: &std::path::Path, collected: &std::path::Path) {
    let (want, _) = read_spans(accepted);
    let (got, dups) = read_spans(collected);
    assert!(want.len() > 1000, "only {} spans accepted", want.len());
    assert_eq!(dups, 0, "the collector got a span twice");
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} spans did not reach the collector, e.g. {:?}",
        missing.len(),
        want.len(),
        missing.first()
    );
    assert_eq!(
        got.len(),
        want.len(),
        "the collector got spans otelwatch never accepted"
    );

    let mut spans = std::collections::HashMap::new();
    let text = std::fs::read(collected).unwrap();
    for line in complete_lines(&text) {
        let (batch, _) = otelwatch::otlp::decode_json_line(line).unwrap();
        if let otelwatch::pipeline::Payload::Traces(t) = &batch.payload {
            for rs in &t.request().resource_spans {
                let svc =
                    otelwatch::exporters::debug::service_name(rs.resource.as_ref()).to_string();
                for s in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                    spans.insert(
                        (s.trace_id.clone(), s.span_id.clone()),
                        (s.parent_span_id.clone(), svc.clone(), s.name.clone()),
                    );
                }
            }
        }
    }
    let orphans = spans
        .iter()
        .filter(|((trace, _), (parent, _, _))| {
            !parent.is_empty() && !spans.contains_key(&(trace.clone(), parent.clone()))
        })
        .count();
    assert_eq!(orphans, 0, "spans whose parent never arrived");
    // Requests to /start and /test (not /healthz) go on to service B.
    let mut traces: std::collections::HashMap<&[u8], (bool, bool)> = Default::default();
    for ((trace, _), (_, svc, name)) in &spans {
        let t = traces.entry(trace.as_slice()).or_default();
        t.0 |= svc == "service-a" && (name.ends_with("/start") || name.ends_with("/test"));
        t.1 |= svc == "service-b";
    }
    let calls = traces.values().filter(|(a, _)| *a).count();
    let one_sided = traces.values().filter(|(a, b)| *a && !*b).count();
    assert!(calls > 1000, "only {calls} traces of requests to service A");
    assert_eq!(one_sided, 0, "traces of service A without service B's part");
}

#[test]
fn injected_anomalies_in_the_real_services_are_flagged_and_quiet_traffic_is_not() {
    let Some(python) = services_available() else {
        return;
    };
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let (grpc, a_port, b_port) = (free_port(), free_port(), free_port());
    // The downstream collector, when built (always in CI).
    let c_port = free_port();
    let collected = dir.path().join("collector.jsonl");
    let collector = support::collector::collector_binary().map(|bin| {
        let cfg = support::collector::file_sink_config(c_port, &collected);
        support::collector::Collector::start(&bin, dir.path(), "collector", &cfg)
    });
    // Detection, and with the collector, everything forwarded to it.
    let cfg = match collector {
        Some(_) => config(
            "target-system-detect-and-forward.yaml",
            &[("GRPC", &grpc), ("COLLECTOR", &c_port)],
        ),
        None => config("target-system-detect.yaml", &[("GRPC", &grpc)]),
    };
    let mut ow = Otelwatch::start(dir.path(), "ow", &cfg);
    let otlp = format!("http://127.0.0.1:{grpc}");
    let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
    let _b = Killed(
        Command::new("node")
            .args(["--require", "./tracing.js", "server.js"])
            .current_dir(root().join("target-system/service-b"))
            .env("PORT", b_port.to_string())
            .env("HOST", "127.0.0.1")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp)
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .env("OTEL_BLRP_SCHEDULE_DELAY", "200")
            .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
            .stdout(log("b.log"))
            .stderr(log("b.err"))
            .spawn()
            .expect("node"),
    );
    let _a = Killed(
        Command::new(&python)
            .arg(root().join("target-system/service-a/app.py"))
            .env("PORT", a_port.to_string())
            .env("HOST", "127.0.0.1")
            .env("SERVICE_B_URL", format!("http://127.0.0.1:{b_port}"))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp)
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .env("OTEL_BLRP_SCHEDULE_DELAY", "200")
            .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
            .stdout(log("a.log"))
            .stderr(log("a.err"))
            .spawn()
            .expect("python"),
    );
    wait_http(b_port, "service B", &dir.path().join("b.err"));
    wait_http(a_port, "service A", &dir.path().join("a.err"));
    let target = format!("http://127.0.0.1:{a_port}");

    // Normal traffic for the whole run.
    let traffic = Killed(
        Command::new(env!("CARGO_BIN_EXE_otelwatch"))
            .args([
                "traffic",
                "--target",
                &target,
                "--rate",
                "20",
                "--duration",
                "170s",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Warm-up (30 windows of 1 s, and a margin), then a quiet stretch of 40 s.
    std::thread::sleep(Duration::from_secs(38));
    let quiet_from = now_ns();
    std::thread::sleep(Duration::from_secs(40));
    let quiet_to = now_ns();
    // The prototype's 20 anomalies, 3 s apart (three windows: each can resolve as its own
    // incident before the next).
    let out = Command::new(env!("CARGO_BIN_EXE_otelwatch"))
        .args([
            "generate-anomalies",
            "--target",
            &target,
            "--count",
            "20",
            "--spacing",
            "3s",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let injections: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(injections.len(), 20);
    std::thread::sleep(Duration::from_secs(6));
    drop(traffic);
    // The services export in batches every 200 ms: let the last ones arrive.
    std::thread::sleep(Duration::from_secs(2));
    assert!(ow.terminate().success(), "{}", ow.stderr());
    if let Some(mut c) = collector {
        c.stop();
        forwarded_traces_are_complete(&dir.path().join("accepted.jsonl"), &collected);
    }

    let docs: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("windows.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let start_ns = |d: &serde_json::Value| {
        otelwatch::model::time::parse_rfc3339_ns(d["window"]["start"].as_str().unwrap()).unwrap()
    };
    let flagged: Vec<&serde_json::Value> = docs
        .iter()
        .filter(|d| d["anomaly"]["is_anomaly"] == true)
        .collect();
    let quiet_flags: Vec<String> = flagged
        .iter()
        .filter(|d| start_ns(d) >= quiet_from && start_ns(d) + 1_000_000_000 <= quiet_to)
        .map(|d| d["anomaly"]["message"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        quiet_flags.is_empty(),
        "anomalies during the quiet stretch: {quiet_flags:#?}"
    );

    // Each incident's last state.
    let mut incidents: std::collections::HashMap<&str, &serde_json::Value> = Default::default();
    for d in docs
        .iter()
        .filter(|d| d["event"]["dataset"] == "otelwatch.incident")
    {
        incidents.insert(d["incident"]["id"].as_str().unwrap(), &d["incident"]);
    }
    // The logs and metrics pipelines' flagged windows, for the failure message.
    let other: Vec<serde_json::Value> = ["logwindows.jsonl", "metricwindows.jsonl"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.path().join(f)).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect::<Vec<serde_json::Value>>()
        })
        .filter(|d: &serde_json::Value| d["anomaly"]["is_anomaly"] == true)
        .collect();
    let mut detected = 0;
    let mut named_first = 0;
    let mut own_incident: std::collections::HashSet<&str> = Default::default();
    let mut wrong = Vec::new();
    let mut missed = Vec::new();
    for inj in &injections {
        let at = inj["at_ns"].as_u64().unwrap();
        let svc = inj["service"].as_str().unwrap();
        let window = at - at % 1_000_000_000;
        // A window of the injection's second or the two after it.
        let near = |d: &serde_json::Value| {
            let s = start_ns(d);
            s >= window && s <= window + 2_000_000_000
        };
        let hit = flagged.iter().any(|d| {
            let name = d["service"]["name"].as_str().unwrap_or("");
            let target = d["service"]["target"]["name"].as_str();
            // A fault in B shows in B, in A's calls to B and in A itself; a fault in A in A.
            let related = name == svc
                || (svc == "service-b" && (target == Some("service-b") || name == "service-a"));
            related && near(d)
        });
        // The incident the injection's flagged windows belong to names the injected service
        // first, and each injection is its own incident.
        let ids: std::collections::BTreeSet<&str> = flagged
            .iter()
            .filter(|d| near(d))
            .filter_map(|d| d["incident"]["id"].as_str())
            .collect();
        let first_cause = |id: &str| {
            incidents
                .get(id)
                .and_then(|i| i["root_cause"][0]["service"].as_str())
        };
        if ids.iter().any(|id| first_cause(id) == Some(svc)) {
            named_first += 1;
        } else if hit {
            let kind = inj["kind"].as_str().unwrap_or("");
            let causes: Vec<String> = ids
                .iter()
                .filter_map(|id| incidents.get(id))
                .map(|i| i["root_cause"].to_string())
                .collect();
            let records: Vec<String> = flagged
                .iter()
                .copied()
                .chain(other.iter())
                .filter(|d| near(d))
                .map(|d| {
                    format!(
                        "{} {} {} {}",
                        d["window"]["start"].as_str().unwrap_or(""),
                        d["window"]["signal"].as_str().unwrap_or("spans"),
                        d["service"],
                        d["anomaly"]["message"].as_str().unwrap_or("")
                    )
                })
                .collect();
            wrong.push(format!("{svc} {kind}: {causes:#?}\n{records:#?}"));
        }
        if let Some(id) = ids.iter().next() {
            own_incident.insert(id);
        }
        if hit {
            detected += 1;
        } else {
            // What the detector saw around it, for the failure message.
            let around: Vec<String> = docs
                .iter()
                .filter(|d| near(d))
                .map(|d| {
                    format!(
                        "{} {}{} n={} err={} p95={} score={:.2} thr={:.2} flagged={}",
                        d["window"]["start"].as_str().unwrap_or(""),
                        d["service"]["name"].as_str().unwrap_or(""),
                        d["service"]["target"]["name"]
                            .as_str()
                            .map(|t| format!("->{t}"))
                            .unwrap_or_default(),
                        d["features"]["request_count"],
                        d["features"]["error_rate"],
                        d["features"]["latency_p95_ms"],
                        d["anomaly"]["score"].as_f64().unwrap_or(0.0),
                        d["anomaly"]["threshold"].as_f64().unwrap_or(0.0),
                        d["anomaly"]["is_anomaly"]
                    )
                })
                .collect();
            missed.push(serde_json::json!({ "injection": inj, "windows": around }));
        }
    }
    assert!(
        detected >= 18,
        "only {detected} of 20 injected anomalies fall in flagged windows; missed: {missed:#?}"
    );
    assert!(
        named_first >= 18,
        "only {named_first} of 20 injections have an incident naming the injected service first: {wrong:#?}"
    );
    assert!(
        own_incident.len() >= 18,
        "{} distinct incidents for 20 injections",
        own_incident.len()
    );

    // The services' logs, through the Python logging bridge and pino's: a log window per
    // service per second, and each injected error logged by service B in the window it
    // happened in (with A's line about B's answer), its template quoted.
    let logs: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("logwindows.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for svc in ["service-a", "service-b"] {
        let served: f64 = logs
            .iter()
            .filter(|d| d["service"]["name"] == svc)
            .map(|d| d["features"]["log_count"].as_f64().unwrap_or(0.0))
            .sum();
        assert!(served > 1000.0, "{svc}: {served} log records");
    }
    let quiet_log_flags: Vec<&str> = logs
        .iter()
        .filter(|d| d["anomaly"]["is_anomaly"] == true)
        .filter(|d| start_ns(d) >= quiet_from && start_ns(d) + 1_000_000_000 <= quiet_to)
        .filter_map(|d| d["anomaly"]["message"].as_str())
        .collect();
    assert!(
        quiet_log_flags.is_empty(),
        "log anomalies during the quiet stretch: {quiet_log_flags:#?}"
    );
    for inj in injections.iter().filter(|i| i["kind"] == "error") {
        let at = inj["at_ns"].as_u64().unwrap();
        let window = at - at % 1_000_000_000;
        let logged = |svc: &str, words: &str| {
            logs.iter().any(|d| {
                let s = start_ns(d);
                d["service"]["name"] == svc
                    && s >= window
                    && s <= window + 1_000_000_000
                    && d["features"]["error_log_count"].as_f64().unwrap_or(0.0) >= 1.0
                    && d["logs"]["templates"].as_array().is_some_and(|ts| {
                        ts.iter()
                            .any(|t| t["template"].as_str().is_some_and(|t| t.contains(words)))
                    })
            })
        };
        assert!(
            logged("service-b", "injected failure answering /ping"),
            "service B's error log for {inj} is not in its log windows"
        );
        assert!(
            logged("service-a", "failed with HTTP"),
            "service A's error log for {inj} is not in its log windows"
        );
    }

    // Both services' metrics through the SDKs: request durations and the runtime, per service
    // and metric; none anomalous while the traffic was quiet.
    let metric_docs: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("metricwindows.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let has = |svc: &str, name_part: &str, feature: &str| {
        metric_docs.iter().any(|d| {
            d["window"]["signal"] == "metrics"
                && d["service"]["name"] == svc
                && d["metric"]["name"]
                    .as_str()
                    .is_some_and(|m| m.contains(name_part))
                && d["features"][feature].as_f64() > Some(0.0)
        })
    };
    assert!(
        has("service-a", "http.server", "metric_count"),
        "service A's request durations"
    );
    assert!(
        has("service-b", "http.server", "metric_count"),
        "service B's request durations"
    );
    assert!(
        has("service-a", "process.", "metric_value"),
        "service A's process metrics"
    );
    assert!(
        has("service-b", "nodejs.eventloop", "metric_points")
            || has("service-b", "v8js", "metric_points"),
        "service B's runtime metrics"
    );
    let quiet_metric_flags: Vec<&str> = metric_docs
        .iter()
        .filter(|d| d["anomaly"]["is_anomaly"] == true)
        .filter(|d| start_ns(d) >= quiet_from && start_ns(d) + 1_000_000_000 <= quiet_to)
        .filter_map(|d| d["anomaly"]["message"].as_str())
        .collect();
    assert!(
        quiet_metric_flags.is_empty(),
        "metric anomalies during the quiet stretch: {quiet_metric_flags:#?}"
    );
}
