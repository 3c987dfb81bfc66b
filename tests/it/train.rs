//! `otelwatch train` builds models from a recording; a pipeline started with those models is
//! warm from its first window.

use crate::support::*;
use otelwatch::pipeline::Payload;
use otelwatch::tools::scenario::{Generator, Incident, IncidentKind, Scenario};
use prost::Message;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn record(
    path: &std::path::Path,
    windows: u64,
    start_ns: u64,
    incidents: Vec<Incident>,
) -> Generator {
    let mut sc = Scenario::target_system(5);
    sc.incidents = incidents;
    let mut g = Generator::new(sc, start_ns);
    let mut text = Vec::new();
    for _ in 0..windows {
        let req = g.next_window();
        otelwatch::otlp::encode_json_line(
            &Payload::Traces(otelwatch::pipeline::Traces::decoded(req)),
            &mut text,
        )
        .unwrap();
        text.push(b'\n');
    }
    std::fs::write(path, text).unwrap();
    g
}

#[test]
fn train_writes_models_windows_and_a_picture_and_a_pipeline_starts_warm() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let day_ago = now - 24 * 3600 * 1_000_000_000;
    let rec = dir.path().join("recorded.jsonl");
    record(
        &rec,
        240,
        day_ago,
        vec![Incident {
            service: "service-b".into(),
            from: 120,
            to: 124,
            kind: IncidentKind::Latency { extra_ms: 500.0 },
        }],
    );
    let out_dir = dir.path().join("models");
    // One pipeline file for training and for the live pipeline: the models are trained with
    // the window and iforest settings they are loaded with.
    let grpc = free_port();
    let cfg = config(
        "detect-with-saved-models.yaml",
        &[
            ("GRPC", &grpc),
            ("MODELS", &out_dir.join("models.json").display()),
        ],
    );
    let cfg_path = write_config(dir.path(), "pipeline", &cfg, free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_otelwatch"))
        .args(["train", "--input"])
        .arg(&rec)
        .arg("--config")
        .arg(&cfg_path)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("trained on 240 lines (0 skipped): 4 series"),
        "{stdout}"
    );

    let png = std::fs::read(out_dir.join("service_anomaly_detection.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 10_000, "the picture is suspiciously small");

    let docs: Vec<serde_json::Value> = std::fs::read_to_string(out_dir.join("windows.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let flagged_b: Vec<&serde_json::Value> = docs
        .iter()
        .filter(|d| d["anomaly"]["is_anomaly"] == true && d["service"]["name"] == "service-b")
        .filter(|d| d["service"]["target"].is_null())
        .collect();
    assert!(
        flagged_b.len() >= 3,
        "the recorded incident was found ({})",
        flagged_b.len()
    );
    assert!(
        docs.iter()
            .filter(|d| d["anomaly"]["is_anomaly"] == true)
            .count()
            <= 12,
        "only the incident is flagged"
    );

    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("models.json")).unwrap()).unwrap();
    assert_eq!(model["format"], "otelwatch-iforest");
    assert_eq!(model["series"].as_array().unwrap().len(), 4);

    // A live pipeline loads the models and is past warm-up from the first window.
    let mut ow = Otelwatch::start(dir.path(), "live", &cfg);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut sc = Scenario::target_system(6);
    sc.incidents.clear();
    let mut g = Generator::new(sc, now - 3600 * 1_000_000_000);
    rt.block_on(async {
        for _ in 0..5 {
            let body = g.next_window().encode_to_vec();
            grpc_send(grpc, body.into(), false, TRACES).await.unwrap();
        }
    });
    assert!(ow.terminate().success());
    let live_docs: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("live.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(live_docs.len() >= 12, "{} windows", live_docs.len());
    assert!(
        live_docs
            .iter()
            .all(|d| d["anomaly"]["warming_up"] == false),
        "a loaded model must not warm up again"
    );
    assert!(
        ow.stderr().contains("loaded saved models"),
        "{}",
        ow.stderr()
    );
}
