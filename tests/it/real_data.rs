//! The real-data benchmark on a small slice of the Nezha Train-Ticket day: the conversion to
//! OTLP (kinds and `peer.service` derived from the pods), the replay through the real pipeline,
//! and the report. The full day is a benchmark (`otelwatch bench real`, docs/benchmarks.md).

use crate::support;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn data() -> Option<PathBuf> {
    let p = std::env::var_os("OTELWATCH_NEZHA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/datasets/nezha/trainticket-2023-01-30.tar.gz")
        });
    if p.exists() {
        Some(p)
    } else if std::env::var("OTELWATCH_REQUIRE_NEZHA").is_ok_and(|v| v == "1") {
        panic!("the Nezha data set is not at {}", p.display());
    } else {
        eprintln!("SKIPPED: no Nezha data set at {}", p.display());
        None
    }
}

#[test]
fn a_slice_of_the_real_data_converts_replays_and_is_scored() {
    let Some(data) = data() else { return };
    let _heavy = support::heavy();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("real");
    let run = Command::new(env!("CARGO_BIN_EXE_otelwatch"))
        .args(["bench", "real", "--faults", "2", "--warmup", "5", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(report.contains("2 faults"), "{report}");
    assert!(report.contains("| otelwatch"), "{report}");
    assert!(report.contains("| baseline"), "{report}");
    assert!(
        report.contains("| otelwatch, log windows alone"),
        "{report}"
    );
    assert!(
        report.contains("| otelwatch, metric windows, whole day (default selection"),
        "{report}"
    );

    // The pods' log lines as OTLP logs: a level, a message without its header, trace context.
    let logs = std::fs::read_to_string(out.join("replay-logs.jsonl")).unwrap();
    let mut records = 0;
    for line in logs.lines() {
        let req: Value = serde_json::from_str(line).unwrap();
        for rl in req["resourceLogs"].as_array().unwrap() {
            for r in rl["scopeLogs"][0]["logRecords"].as_array().unwrap() {
                let body = r["body"]["stringValue"].as_str().unwrap();
                assert!(!body.contains("TraceID:"), "{body}");
                records += 1;
            }
        }
    }
    assert!(records > 1000, "{records} log records");
    // All three signals went through one shared `incidents`, into one file.
    let all = std::fs::read_to_string(out.join("windows-traces-logs-metrics.jsonl")).unwrap();
    let all: Vec<Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(all.iter().any(
        |d| d["window"]["signal"] == "logs" && d["features"]["log_count"].as_f64() > Some(0.0)
    ));
    // The pods' metrics as OTLP gauges, windowed per service and metric.
    let cpu = all
        .iter()
        .filter(|d| {
            d["window"]["signal"] == "metrics"
                && d["metric"]["name"] == "k8s.pod.cpu.usage"
                && d["features"]["metric_points"].as_f64() > Some(0.0)
        })
        .count();
    assert!(cpu > 10, "{cpu} CPU windows");
    let metrics = std::fs::read_to_string(out.join("replay-metrics.jsonl")).unwrap();
    let first: Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert!(first["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["gauge"].is_object());

    // The replay is OTLP/JSON with derived kinds: SERVER spans, CLIENT spans naming their peer.
    let replay = std::fs::read_to_string(out.join("replay-traces.jsonl")).unwrap();
    let (mut server, mut client_with_peer) = (0, 0);
    for line in replay.lines() {
        let req: Value = serde_json::from_str(line).unwrap();
        for rs in req["resourceSpans"].as_array().unwrap() {
            let svc = &rs["resource"]["attributes"][0];
            assert_eq!(svc["key"], "service.name");
            assert!(svc["value"]["stringValue"]
                .as_str()
                .unwrap()
                .starts_with("ts-"));
            for s in rs["scopeSpans"][0]["spans"].as_array().unwrap() {
                match s["kind"].as_i64() {
                    Some(2) => server += 1,
                    Some(3) => {
                        let peer = s["attributes"][0]["value"]["stringValue"].as_str();
                        assert!(peer.is_some_and(|p| p.starts_with("ts-")), "{s}");
                        client_with_peer += 1;
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(
        server > 1000 && client_with_peer > 1000,
        "{server} {client_with_peer}"
    );

    // Windows were scored and the faults' anomalies grouped into incidents, the anomalous
    // windows naming theirs.
    let results = std::fs::read_to_string(out.join("windows-traces.jsonl")).unwrap();
    let docs: Vec<Value> = results
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let incidents: Vec<&Value> = docs
        .iter()
        .filter(|d| d["event"]["dataset"] == "otelwatch.incident")
        .collect();
    assert!(!incidents.is_empty(), "{report}");
    let anomalous: Vec<&Value> = docs
        .iter()
        .filter(|d| d["anomaly"]["is_anomaly"] == true)
        .collect();
    assert!(!anomalous.is_empty());
    assert!(anomalous.iter().any(|d| d["incident"]["id"].is_string()));
    // An anomalous window without an incident is a lone reading, waiting for a second piece of
    // evidence: nothing anomalous beside it in its window speaks of its services.
    let services = |d: &Value| -> Vec<String> {
        [&d["service"]["name"], &d["service"]["target"]["name"]]
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    for lone in anomalous
        .iter()
        .filter(|d| !d["incident"]["id"].is_string())
    {
        let mine = services(lone);
        let beside = anomalous.iter().filter(|d| {
            d["window"]["start"] == lone["window"]["start"]
                && !std::ptr::eq(**d, *lone)
                && services(d).iter().any(|s| mine.contains(s))
        });
        assert_eq!(beside.count(), 0, "{lone}");
    }
    assert!(incidents.iter().any(|d| d["event"]["action"] == "opened"));
    assert!(incidents
        .iter()
        .all(|d| d["incident"]["root_cause"].as_array().is_some()));
}
