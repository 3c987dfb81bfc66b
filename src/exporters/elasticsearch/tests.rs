use super::bulk::next_request;
use super::*;
use crate::exporters::ExporterType;
use crate::model::window::{Anomaly, SeriesKey, Severity, WindowRecord, N_FEATURES};
use std::sync::Arc;

fn window(service: &str, start_s: u64, anomalous: bool) -> WindowRecord {
    WindowRecord {
        series: Arc::new(SeriesKey::service(service)),
        start_ns: start_s * 1_000_000_000,
        interval_ns: 10_000_000_000,
        features: [1.0; N_FEATURES],
        anomaly: Some(Anomaly {
            score: if anomalous { 0.9 } else { 0.3 },
            threshold: 0.6,
            is_anomaly: anomalous,
            severity: anomalous.then_some(Severity::Major),
            warming_up: false,
            contributions: vec![],
            message: String::new(),
            incident: None,
            expected: false,
        }),
        partial: false,
        templates: Vec::new(),
        traces: 0,
        examples: Vec::new(),
        presence: Default::default(),
    }
}

#[test]
fn ids_are_deterministic_and_distinct() {
    let a = window("checkout", 1_767_571_200, false);
    assert_eq!(document_id(&a), document_id(&a.clone()));
    assert_eq!(document_id(&a).len(), 32);
    assert_ne!(
        document_id(&a),
        document_id(&window("checkout", 1_767_571_210, false))
    );
    assert_ne!(
        document_id(&a),
        document_id(&window("payments", 1_767_571_200, false))
    );
    // The service's log window is another document.
    let logs = WindowRecord {
        series: Arc::new(crate::model::window::SeriesKey::logs("checkout")),
        ..a.clone()
    };
    assert_ne!(document_id(&a), document_id(&logs));
}

#[test]
fn anomalies_go_to_both_indices_and_index_mode_is_daily() {
    let mut cfg = ElasticsearchConfig::default();
    let ws = vec![
        window("a", 1_767_571_200, false),
        window("b", 1_767_571_200, true),
    ];
    let docs = documents(&cfg, &ws);
    let targets: Vec<&str> = docs.iter().map(|d| d.index.as_str()).collect();
    assert_eq!(
        targets,
        [
            "otelwatch-windows",
            "otelwatch-windows",
            "otelwatch-anomalies"
        ]
    );
    assert_eq!(docs[2].json()["event"]["kind"], "alert");
    cfg.mode = Mode::Index;
    let docs = documents(&cfg, &ws);
    assert_eq!(docs[0].index, "otelwatch-windows-2026.01.05");
    assert_eq!(docs[2].index, "otelwatch-anomalies-2026.01.05");
}

#[test]
fn bulk_items_are_classified() {
    let body = serde_json::json!({ "errors": true, "items": [
        { "create": { "status": 201 } },
        { "create": { "status": 409, "error": { "type": "version_conflict_engine_exception" } } },
        { "create": { "status": 429, "error": { "type": "es_rejected_execution_exception" } } },
        { "create": { "status": 400, "error": { "type": "mapper_parsing_exception", "reason": "failed to parse [features.request_count]" } } },
        { "index": { "status": 503 } }
    ]});
    let out = parse_bulk_response(&body, 5).unwrap();
    assert_eq!(out[0], ItemOutcome::Written);
    assert_eq!(out[1], ItemOutcome::AlreadyWritten);
    assert_eq!(out[2], ItemOutcome::Retry(429));
    assert!(
        matches!(&out[3], ItemOutcome::Rejected { status: 400, reason } if reason.contains("features.request_count"))
    );
    assert_eq!(out[4], ItemOutcome::Retry(503));
    assert!(parse_bulk_response(&body, 4).is_err());
}

#[test]
fn requests_are_split_by_count_and_size() {
    let cfg = ElasticsearchConfig::default();
    let ws: Vec<WindowRecord> = (0..10)
        .map(|i| window("a", 1_767_571_200 + i * 10, false))
        .collect();
    let docs = documents(&cfg, &ws);
    let requests = |max_docs, max_bytes| {
        let mut rest = &docs[..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let n = next_request(rest, max_docs, max_bytes);
            out.push(n);
            rest = &rest[n..];
        }
        out
    };
    assert_eq!(requests(3, 1 << 20), [3, 3, 3, 1]);
    let one = docs[0].body.get().len();
    let by_size = requests(100, one * 2 + 300);
    assert!(by_size.iter().all(|&n| n == 2), "{by_size:?}");
    assert_eq!(
        requests(100, 1),
        vec![1; 10],
        "one document even when larger"
    );
}

#[test]
fn config_errors_name_their_paths() {
    let v: serde_norway::Value = serde_norway::from_str(
        "endpoints: [\"htp:/x\"]\nwindows_index: Bad Name\nuser: elastic\nmax_documents: 0\n",
    )
    .unwrap();
    let errs: Vec<String> = ElasticsearchConfig::parse("exporters.elasticsearch", v)
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
    for e in [
        "exporters.elasticsearch.endpoints[0]: invalid URL",
        "exporters.elasticsearch.windows_index:",
        "exporters.elasticsearch.password: user and password go together",
        "exporters.elasticsearch.max_documents:",
    ] {
        assert!(
            errs.iter().any(|g| g.starts_with(e)),
            "missing {e} in {errs:?}"
        );
    }
}

#[test]
fn templates_type_every_contract_field() {
    let cfg = ElasticsearchConfig::default();
    let t = templates::all(&cfg);
    assert_eq!(t.len(), 3);
    assert_eq!(t[0].1["index_patterns"][0], "otelwatch-windows");
    // Incidents: a plain index (states replace each other by id), never a data stream.
    assert_eq!(t[2].1["index_patterns"][0], "otelwatch-incidents");
    assert!(t[2].1.get("data_stream").is_none());
    let i = &t[2].1["template"]["mappings"]["properties"]["incident"]["properties"];
    assert_eq!(i["id"]["type"], "keyword");
    assert_eq!(i["root_cause"]["properties"]["service"]["type"], "keyword");
    assert!(t[0].1["data_stream"].is_object());
    let m = &t[0].1["template"]["mappings"]["properties"];
    assert_eq!(m["@timestamp"]["type"], "date");
    assert_eq!(m["service"]["properties"]["name"]["type"], "keyword");
    for f in crate::model::window::FEATURE_NAMES
        .iter()
        .chain(crate::model::window::LOG_FEATURE_NAMES.iter())
        .chain(crate::model::window::METRIC_FEATURE_NAMES.iter())
    {
        assert_eq!(m["features"]["properties"][f]["type"], "double");
    }
    assert_eq!(m["window"]["properties"]["signal"]["type"], "keyword");
    assert_eq!(m["metric"]["properties"]["name"]["type"], "keyword");
    assert_eq!(
        m["logs"]["properties"]["templates"]["properties"]["count"]["type"],
        "long"
    );
    assert_eq!(m["anomaly"]["properties"]["is_anomaly"]["type"], "boolean");
}

#[test]
fn incident_documents_replace_by_id_in_the_incidents_index() {
    use crate::model::incident::{Action, Incident, IncidentEvent, Status};
    let ev = IncidentEvent {
        action: Action::Opened,
        at_ns: 1_767_571_210_000_000_000,
        notable: true,
        incident: Incident {
            id: "3f9c0a7d51e2b864".into(),
            status: Status::Open,
            start_ns: 1_767_571_200_000_000_000,
            end_ns: 1_767_571_210_000_000_000,
            severity: Severity::Major,
            series: vec![Arc::new(SeriesKey::service("checkout"))],
            root_cause: vec![],
            message: String::new(),
        },
    };
    let docs = incident_documents(&ElasticsearchConfig::default(), &[ev]);
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].index, "otelwatch-incidents");
    assert_eq!(docs[0].id, "3f9c0a7d51e2b864");
    assert!(docs[0].replace);
    assert_eq!(docs[0].json()["incident"]["id"], "3f9c0a7d51e2b864");
}

#[test]
fn the_password_and_api_key_are_not_printed_with_the_config() {
    let v: serde_norway::Value =
        serde_norway::from_str("user: elastic\npassword: hunter2\n").unwrap();
    let cfg = ElasticsearchConfig::parse("exporters.elasticsearch", v).unwrap();
    assert_eq!(cfg.password.expose(), "hunter2");
    assert!(!format!("{cfg:?}").contains("hunter2"));
}

/// Property: for any sizes and limits, the requests cover every document once, in order, each
/// within `max_documents`, and within `max_bytes` unless it is one document alone.
#[test]
fn requests_partition_any_documents_within_their_limits() {
    let mut rng = crate::processors::iforest::forest::Rng::new(0x2545_f491_4f6c_dd1du64);
    let mut next = move || rng.next_u64();
    for _ in 0..300 {
        let docs: Vec<Doc> = (0..next() % 200)
            .map(|i| {
                let body = serde_json::json!({ "pad": "x".repeat((next() % 3000) as usize) });
                Doc::new("i".into(), format!("{i}"), &body, false)
            })
            .collect();
        let (max_docs, max_bytes) = (1 + (next() % 50) as usize, 1 + (next() % 20_000) as usize);
        let mut at = 0;
        while at < docs.len() {
            let n = next_request(&docs[at..], max_docs, max_bytes);
            assert!(n >= 1 && n <= max_docs && at + n <= docs.len());
            let bytes: usize = docs[at..at + n].iter().map(super::bulk::size).sum();
            assert!(
                n == 1 || bytes <= max_bytes,
                "{n} documents, {bytes} bytes > {max_bytes}"
            );
            at += n;
        }
        assert_eq!(at, docs.len());
    }
}

/// The leaf paths of a document (`a.b.c`), arrays walked into.
fn leaves(v: &serde_json::Value, path: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(x, p, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| leaves(x, path.clone(), out)),
        _ => out.push(path),
    }
}

#[test]
fn every_field_of_every_signals_window_document_is_typed_by_the_template() {
    use crate::model::window::{
        Contribution, LogLevel, Missing, Signal, TemplateCount, TraceExample,
    };
    let series = [
        SeriesKey::service("checkout"),
        SeriesKey::edge("frontend", "checkout"),
        SeriesKey::logs("checkout"),
        SeriesKey::metric("checkout", "k8s.pod.cpu.utilization"),
        SeriesKey::network("frontend", "checkout"),
    ];
    let signals: std::collections::BTreeSet<Signal> = series.iter().map(|s| s.signal).collect();
    assert_eq!(signals.len(), Signal::ALL.len(), "a series of every signal");
    for key in series {
        let mut w = window("checkout", 10, true);
        w.series = Arc::new(key);
        w.features = [2.5; N_FEATURES];
        w.partial = true;
        w.traces = 4;
        w.templates = vec![TemplateCount {
            template: "shop.orders#74 Connection refused to <*>".into(),
            count: 3,
            level: LogLevel::Error,
            new: false,
            missing: Some(Missing {
                traces: 0,
                expected: 3.5,
                of: 4,
            }),
        }];
        w.examples = vec![TraceExample {
            trace_id: [7; 16],
            duration_ms: 812.5,
            error: true,
        }];
        if let Some(a) = w.anomaly.as_mut() {
            a.message = "checkout is slow".into();
            a.contributions = vec![Contribution {
                feature: "latency_p95_ms",
                actual: 812.0,
                typical: 95.0,
            }];
            a.incident = Some("f485c46a238f8c73".into());
        }
        let doc = w.to_document();
        let mut paths = Vec::new();
        leaves(&doc, String::new(), &mut paths);
        for p in paths {
            assert!(
                mapped_type(&p).is_some(),
                "{} window field {p} is not typed by the template",
                w.series.signal.as_str()
            );
        }
    }
}
