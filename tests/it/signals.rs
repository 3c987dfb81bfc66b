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
