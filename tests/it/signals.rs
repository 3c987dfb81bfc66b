//! Metrics and logs from the official Python SDK, over gRPC and HTTP, reach the file exporter.

use crate::support::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn python_sdk_metrics_and_logs_arrive_over_both_transports() {
    let Some(python) = sdk_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let cfg = config(
        "metrics-and-logs-to-files.yaml",
        &[("GRPC", &grpc), ("HTTP", &http)],
    );
    let mut ow = Otelwatch::start(dir.path(), "ow", &cfg);
    let (mut points, mut records) = (0, 0);
    for (proto, endpoint) in [
        ("grpc", format!("localhost:{grpc}")),
        ("http", format!("http://127.0.0.1:{http}")),
    ] {
        let out = Command::new(&python)
            .arg(sdk_script("send_metrics_logs.py"))
            .args(["--protocol", proto, "--endpoint", &endpoint, "--logs", "7"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{proto}: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            ow.stderr()
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        points += v["data_points"].as_u64().unwrap() as usize;
        records += v["log_records"].as_u64().unwrap() as usize;
    }
    assert!(points >= 4, "a counter and a histogram per run");
    assert_eq!(records, 14);
    // Exactly what the SDK reported as exported, no more, no less.
    let metrics = dir.path().join("metrics.jsonl");
    let logs = dir.path().join("logs.jsonl");
    let arrived = wait_until(Duration::from_secs(5), || {
        items_by_kind(&metrics).1 == points && items_by_kind(&logs).2 == records
    });
    assert!(
        arrived,
        "metrics {:?}, logs {:?}",
        items_by_kind(&metrics),
        items_by_kind(&logs)
    );
    assert_eq!(items_by_kind(&metrics), (0, points, 0));
    assert_eq!(items_by_kind(&logs), (0, 0, records));
    assert!(ow.terminate().success());
}

/// The Python SDK's logging bridge sends ordinary logs, then a burst of an ERROR statement never
/// seen before: the log window of the burst is flagged, from the logs alone, with the template
/// quoted; the ordinary windows after the warm-up are not.
#[test]
fn an_error_burst_in_the_python_sdks_logs_is_flagged_with_its_template() {
    let Some(python) = sdk_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let cfg = config("detect-logs-to-file.yaml", &[("GRPC", &grpc)]);
    let mut ow = Otelwatch::start(dir.path(), "ow", &cfg);
    let out = Command::new(&python)
        .arg(sdk_script("send_logs.py"))
        .args([
            "--endpoint",
            &format!("localhost:{grpc}"),
            "--service",
            "orders",
        ])
        .args(["--normal", "14", "--burst", "40", "--after", "3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        ow.stderr()
    );
    let sent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(ow.terminate().success(), "{}", ow.stderr());
    let docs: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("windows.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(docs
        .iter()
        .all(|d| d["window"]["signal"] == "logs" && d["service"]["name"] == "orders"));
    let counted: f64 = docs
        .iter()
        .map(|d| d["features"]["log_count"].as_f64().unwrap())
        .sum();
    assert_eq!(
        counted as u64,
        sent["records"].as_u64().unwrap(),
        "every record counted once"
    );
    let burst = (
        sent["burst_start_ns"].as_u64().unwrap(),
        sent["burst_end_ns"].as_u64().unwrap(),
    );
    let start_ns = |d: &serde_json::Value| {
        otelwatch::model::time::parse_rfc3339_ns(d["window"]["start"].as_str().unwrap()).unwrap()
    };
    let in_burst = |d: &serde_json::Value| {
        let s = start_ns(d);
        s + 1_000_000_000 > burst.0 && s <= burst.1
    };
    let flagged: Vec<&serde_json::Value> = docs
        .iter()
        .filter(|d| d["anomaly"]["is_anomaly"] == true)
        .collect();
    let burst_flags: Vec<&&serde_json::Value> = flagged.iter().filter(|d| in_burst(d)).collect();
    assert!(
        !burst_flags.is_empty(),
        "the burst was not flagged; windows:\n{}",
        docs.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let message = burst_flags[0]["anomaly"]["message"].as_str().unwrap();
    eprintln!(
        "{} windows, {} flagged; the burst: {message}",
        docs.len(),
        flagged.len()
    );
    // The SDK's logging bridge says where each record was written (the logger as the scope's
    // name, `code.lineno`): the template is that line of code's.
    assert!(
        message.contains("new ERROR template: `shop.orders#")
            && message.contains(" Connection refused to <*>` ×")
            && message.contains("first seen"),
        "{message}"
    );
    assert!(burst_flags[0]["logs"]["templates"][0]["new"] == true);
    // Ordinary windows after the warm-up and before the burst are quiet.
    let quiet_before: Vec<&&serde_json::Value> = flagged
        .iter()
        .filter(|d| start_ns(d) + 1_000_000_000 <= burst.0)
        .collect();
    assert!(
        quiet_before.is_empty(),
        "ordinary windows flagged: {quiet_before:?}"
    );
}
