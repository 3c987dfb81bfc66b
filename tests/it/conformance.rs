//! Every registered component type has a minimal pipeline file of its own,
//! `configs/components/<kind>-<type>.yaml`, in which the component's id is its type. Each file
//! passes `otelwatch validate`, starts, shows a series of the component's own on `/metrics`,
//! stops cleanly on SIGTERM, and does all of it a second time over the state the first run left
//! in its work directory (saved models, a disk queue, an output file), without a warning. A type
//! added to a component table without such a file fails here, naming it.
//!
//! Besides `{DIR}` and `{METRICS}`, the files may use:
//! - `{GRPC}`, `{HTTP}`: free ports for otelwatch's own OTLP receivers. Where there is `{GRPC}`,
//!   each run is sent a few traces, so that processors and exporters have work and leave state;
//! - `{NOTHING_LISTENS}`: a port where nothing listens, for the peer of an exporter that needs
//!   one. Such a file is sent nothing: what it accepted could not be delivered;
//! - `{FAKE_ES}`: the port of a fake Elasticsearch (`support::fake_es`);
//! - `{RECORDING}`: a file of recorded traces (OTLP/JSON lines) in the work directory.

use crate::support::fake_es::FakeEs;
use crate::support::*;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every component table, by the kind its `/metrics` label is named after.
const KINDS: [(&str, &[&str]); 3] = [
    ("receiver", otelwatch::receivers::TYPES),
    ("processor", otelwatch::processors::TYPES),
    ("exporter", otelwatch::exporters::TYPES),
];

/// Components that report no series of their own yet; each must still pass everything else.
/// The test checks that they still report nothing, so an entry goes once its component counts.
const WITHOUT_SERIES: &[&str] = &[];

fn components_dir() -> PathBuf {
    configs_dir().join("components")
}

#[test]
fn every_registered_component_type_has_a_conformance_config() {
    let registered: Vec<String> = KINDS
        .iter()
        .flat_map(|(kind, types)| types.iter().map(move |t| format!("{kind}-{t}.yaml")))
        .collect();
    let missing: Vec<&String> = registered
        .iter()
        .filter(|f| !components_dir().join(f).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "registered component types without a conformance config in {}: {missing:?}",
        components_dir().display()
    );
    let stale: Vec<String> = std::fs::read_dir(components_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| !registered.contains(f))
        .collect();
    assert!(
        stale.is_empty(),
        "conformance configs for no registered component type: {stale:?}"
    );
}

#[test]
fn every_receiver_validates_starts_reports_and_stops_twice() {
    conform_all("receiver");
}

#[test]
fn every_processor_validates_starts_reports_and_stops_twice() {
    conform_all("processor");
}

#[test]
fn every_exporter_validates_starts_reports_and_stops_twice() {
    conform_all("exporter");
}

fn conform_all(kind: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake_es = free_port();
    let server = rt.block_on(FakeEs::default().serve(fake_es));
    let (_, types) = KINDS.iter().find(|(k, _)| *k == kind).unwrap();
    for t in types.iter() {
        conform(&rt, kind, t, fake_es);
    }
    server.abort();
}

/// Validates, then runs twice in one work directory: start, check `/metrics`, send traces where
/// the file allows, SIGTERM, exit 0, no warning or error in the log.
fn conform(rt: &tokio::runtime::Runtime, kind: &str, ty: &str, fake_es: u16) {
    let name = format!("{kind}-{ty}");
    let file = format!("components/{name}.yaml");
    let text = std::fs::read_to_string(configs_dir().join(&file)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut values: Vec<(String, String)> = Vec::new();
    for p in placeholders(&text) {
        let value = match p.as_str() {
            "DIR" | "METRICS" => continue,
            "GRPC" | "HTTP" | "NOTHING_LISTENS" => free_port().to_string(),
            "FAKE_ES" => fake_es.to_string(),
            "RECORDING" => recording(dir.path()).display().to_string(),
            other => panic!("{file}: {{{other}}} is not a placeholder the conformance test fills"),
        };
        values.push((p, value));
    }
    let value = |key: &str| values.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let feed: Option<u16> = match value("NOTHING_LISTENS") {
        Some(_) => None,
        None => value("GRPC").map(|p| p.parse().unwrap()),
    };
    let given: Vec<(&str, &dyn Display)> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v as &dyn Display))
        .collect();
    let mut ow = Otelwatch::prepare(dir.path(), &name, &config(&file, &given));

    let rendered: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(&ow.config_path).unwrap()).unwrap();
    assert!(
        rendered[format!("{kind}s").as_str()]
            .as_mapping()
            .is_some_and(|m| m.contains_key(ty)),
        "{file} must define the {kind} {ty:?} (its id being its type)"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_otelwatch"))
        .args(["validate", "--config"])
        .arg(&ow.config_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("valid"),
        "{file}: otelwatch validate: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for run in 1u64..=2 {
        let log_from = ow.stderr().len();
        ow.spawn();
        let metrics = ow.metrics();
        let own = own_series(&metrics, kind, ty);
        if WITHOUT_SERIES.contains(&name.as_str()) {
            assert!(
                own.is_empty(),
                "{name} now reports {own:?}: take it off WITHOUT_SERIES"
            );
        } else {
            assert!(
                !own.is_empty(),
                "{name}, run {run}: no series labelled {kind}=\"{ty}\" on /metrics:\n{metrics}"
            );
        }
        if let Some(port) = feed {
            let mut sent = SpanSet::new();
            for body in make_requests(3, 20, run, &mut sent) {
                rt.block_on(grpc_send(port, body, false, TRACES))
                    .unwrap_or_else(|e| panic!("{name}, run {run}: traces refused: {e}"));
            }
        }
        let status = ow.terminate();
        let log = ow.stderr()[log_from..].to_string();
        assert!(
            status.success(),
            "{name}, run {run}: exit {status} after SIGTERM:\n{log}"
        );
        let complaints: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        assert!(complaints.is_empty(), "{name}, run {run}: {complaints:#?}");
    }
}

/// The series on `/metrics` labelled with the component: `receiver="otlp"`, and for processors,
/// which count per pipeline, `processor="window@traces"`.
fn own_series<'a>(metrics: &'a str, kind: &str, ty: &str) -> Vec<&'a str> {
    let exact = format!("{kind}=\"{ty}\"");
    let in_pipeline = format!("{kind}=\"{ty}@");
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && (l.contains(&exact) || l.contains(&in_pipeline)))
        .collect()
}

/// A few requests of traces as the `file` exporter writes them, for a file receiver to replay.
fn recording(dir: &Path) -> PathBuf {
    let mut text = Vec::new();
    let mut f = otelwatch::tools::loadgen::SpanFactory::new(3, 7);
    for _ in 0..3 {
        let payload = otelwatch::pipeline::Payload::Traces(otelwatch::pipeline::Traces::decoded(
            f.request(20),
        ));
        otelwatch::otlp::encode_json_line(&payload, &mut text).unwrap();
        text.push(b'\n');
    }
    let path = dir.join("recording.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}
