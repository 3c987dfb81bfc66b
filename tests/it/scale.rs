//! Beyond one instance: the real OpenTelemetry Collector's `loadbalancing` exporter (routing
//! by service) in front of three otelwatch instances, which forward to the downstream
//! collector and send their scored windows to one incidents aggregator (`records` →
//! `incidents`). The same spans sent to one otelwatch on its own must give the same windows,
//! scores and incidents.

use crate::support::collector::{collector_binary, file_sink_config, Collector};
use crate::support::*;
use prost::Message;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn docs(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn is_window(d: &Value) -> bool {
    d["event"]["dataset"] == "otelwatch.window"
}

/// A window's series and start.
fn key(d: &Value) -> (String, String) {
    let mut series = d["service"]["name"].as_str().unwrap().to_string();
    if let Some(t) = d["service"]["target"]["name"].as_str() {
        series += &format!(" -> {t}");
    }
    if let Some(l) = d["labels"].as_object() {
        series += &format!(" {l:?}");
    }
    (series, d["window"]["start"].as_str().unwrap().to_string())
}

/// What a window was judged: its score, its flag and its features.
fn verdict(d: &Value) -> String {
    format!(
        "{} {} {}",
        d["anomaly"]["score"], d["anomaly"]["is_anomaly"], d["features"]
    )
}

/// Each incident event: when, what, which incident, the ranked causes and the series.
fn incident_events(all: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = all
        .iter()
        .filter(|d| d["event"]["dataset"] == "otelwatch.incident")
        .map(|d| {
            let i = &d["incident"];
            let causes: Vec<&str> = i["root_cause"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["service"].as_str().unwrap())
                .collect();
            format!(
                "{} {} {} {:?} {}",
                d["@timestamp"], d["event"]["action"], i["id"], causes, i["series"]
            )
        })
        .collect();
    out.sort();
    out
}

// The heavy-test lock is held for the whole run (its await points included) on purpose.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_the_load_balancer_judge_as_one() {
    let Some(bin) = collector_binary() else {
        return;
    };
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let (down, agg, lb, single) = (free_port(), free_port(), free_port(), free_port());
    let ports = [free_port(), free_port(), free_port()];
    let downstream_file = d.join("downstream.jsonl");

    let setup = {
        let (d, bin, downstream_file) = (d.clone(), bin.clone(), downstream_file.clone());
        tokio::task::spawn_blocking(move || {
            let downstream = Collector::start(
                &bin,
                &d,
                "downstream",
                &file_sink_config(down, &downstream_file),
            );
            let aggregator = Otelwatch::start(
                &d,
                "aggregator",
                &config("scale-aggregator.yaml", &[("GRPC", &agg)]),
            );
            let instances: Vec<Otelwatch> = ports
                .iter()
                .enumerate()
                .map(|(n, port)| {
                    let name = format!("ow{n}");
                    let cfg = config(
                        "scale-instance.yaml",
                        &[
                            ("GRPC", port),
                            ("DOWNSTREAM", &down),
                            ("AGGREGATOR", &agg),
                            ("NAME", &name),
                        ],
                    );
                    Otelwatch::start(&d, &name, &cfg)
                })
                .collect();
            let backends = format!(
                "[{}]",
                ports
                    .iter()
                    .map(|p| format!("\"127.0.0.1:{p}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let front = Collector::start(
                &bin,
                &d,
                "front",
                &config(
                    "collector/load-balancer.yaml",
                    &[("PORT", &lb), ("BACKENDS", &backends)],
                ),
            );
            let single = Otelwatch::start(
                &d,
                "single",
                &config("scale-single.yaml", &[("GRPC", &single)]),
            );
            (downstream, aggregator, instances, front, single)
        })
    };
    let (mut downstream, mut aggregator, mut instances, mut front, mut single_ow) =
        setup.await.unwrap();

    // The shop's first 450 windows (five of its incidents), event time ending well before now.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut g = otelwatch::tools::scenario::Generator::new(
        otelwatch::tools::bench::quality::shop(),
        now - 3 * 3600 * 1_000_000_000,
    );
    let mut sent = SpanSet::new();
    let mut dups = 0;
    for _ in 0..450 {
        let req = g.next_window();
        spans_of(&req, &mut sent, &mut dups);
        let body: bytes::Bytes = req.encode_to_vec().into();
        grpc_send(lb, body.clone(), false, TRACES)
            .await
            .expect("the first tier accepts");
        grpc_send(single, body, false, TRACES)
            .await
            .expect("the single instance accepts");
    }
    assert_eq!(dups, 0);

    let (aggregator, single_ow, instances) = tokio::task::spawn_blocking(move || {
        wait_for_spans(&downstream_file, &sent, Duration::from_secs(60), || {
            front.log()
        });
        assert_exactly(&downstream_file, &sent);
        front.stop();
        // The instances stop first: they judge what they hold and send it to the aggregator.
        for ow in &mut instances {
            assert!(ow.terminate().success(), "{}", ow.stderr());
        }
        // What they sent has been accepted: nothing came twice or after its window was judged.
        for reason in ["duplicate", "late", "not_a_window", "invalid"] {
            let series = format!(
                "otelwatch_records_dropped_items_total{{processor=\"records@logs/incidents\",reason=\"{reason}\"}}"
            );
            assert!(aggregator.metrics().contains(&series), "{series} is not reported");
            assert_eq!(aggregator.metric(&series), 0.0, "{series}");
        }
        assert!(aggregator.terminate().success(), "{}", aggregator.stderr());
        assert!(single_ow.terminate().success(), "{}", single_ow.stderr());
        downstream.stop();
        (aggregator, single_ow, instances)
    })
    .await
    .unwrap();

    // Every series' window was scored by exactly one instance, and the services were spread.
    let mut scored: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut busy = 0;
    for n in 0..3 {
        let windows: Vec<Value> = docs(&d.join(format!("windows-ow{n}.jsonl")))
            .into_iter()
            .filter(is_window)
            .collect();
        busy += usize::from(!windows.is_empty());
        for w in windows {
            let prev = scored.insert(key(&w), verdict(&w));
            assert!(prev.is_none(), "{:?} was scored twice", key(&w));
        }
    }
    eprintln!(
        "{} series windows scored over {busy} instances",
        scored.len()
    );
    assert!(
        busy >= 2,
        "the load balancer sent every service to one instance"
    );

    // The same windows and verdicts as one instance on the same spans.
    let single_docs = docs(&d.join("single.jsonl"));
    let alone: BTreeMap<(String, String), String> = single_docs
        .iter()
        .filter(|d| is_window(d))
        .map(|w| (key(w), verdict(w)))
        .collect();
    assert_eq!(scored.len(), alone.len());
    for (k, v) in &alone {
        assert_eq!(scored.get(k), Some(v), "{k:?}");
    }

    // The aggregator judged every window once, and its incidents are the single instance's:
    // the same windows in the same incidents, the same events, the same ranked causes.
    let agg_docs = docs(&d.join("incidents.jsonl"));
    let joined: BTreeMap<(String, String), Value> = agg_docs
        .iter()
        .filter(|d| is_window(d))
        .map(|w| (key(w), w["incident"]["id"].clone()))
        .collect();
    assert_eq!(
        joined.len(),
        agg_docs.iter().filter(|d| is_window(d)).count(),
        "the aggregator judged a window twice"
    );
    let alone_incidents: BTreeMap<(String, String), Value> = single_docs
        .iter()
        .filter(|d| is_window(d))
        .map(|w| (key(w), w["incident"]["id"].clone()))
        .collect();
    assert_eq!(joined, alone_incidents);
    let events = incident_events(&agg_docs);
    let opened: BTreeSet<&String> = events.iter().filter(|e| e.contains("opened")).collect();
    assert!(
        opened.len() >= 4,
        "the shop's incidents should open incidents: {events:#?}"
    );
    assert_eq!(events, incident_events(&single_docs));
    drop((aggregator, single_ow, instances));
}
