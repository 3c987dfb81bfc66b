use super::*;
use crate::model::window::FEATURE_NAMES;
use crate::processors::ProcessorType;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

const T0: u64 = 1_700_000_000_000_000_000; // a multiple of 10 s
const S: u64 = 1_000_000_000;

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

struct SpanSpec {
    kind: SpanKind,
    end: u64,
    ms: u64,
    attrs: Vec<KeyValue>,
    error_status: bool,
}

fn server(end: u64, ms: u64) -> SpanSpec {
    SpanSpec {
        kind: SpanKind::Server,
        end,
        ms,
        attrs: vec![],
        error_status: false,
    }
}

fn batch(service: &str, specs: Vec<SpanSpec>) -> Batch {
    let spans = specs
        .into_iter()
        .enumerate()
        .map(|(i, s)| Span {
            trace_id: vec![(i % 255) as u8 + 1; 16],
            span_id: vec![2; 8],
            kind: s.kind as i32,
            start_time_unix_nano: s.end - s.ms * 1_000_000,
            end_time_unix_nano: s.end,
            attributes: s.attrs,
            status: s.error_status.then(|| Status {
                code: StatusCode::Error as i32,
                message: String::new(),
            }),
            ..Default::default()
        })
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue(service.into()))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Batch {
        items: 0,
        payload: Payload::Traces(crate::pipeline::Traces::decoded(req)),
        encoded: None,
        held: Default::default(),
    }
}

fn processor(cfg: WindowConfig) -> (WindowProcessor, Telemetry) {
    let t = Telemetry::new();
    (WindowProcessor::new(&cfg, "window", &t), t)
}

fn records(out: Vec<Batch>) -> Vec<WindowRecord> {
    out.into_iter()
        .flat_map(|b| match b.payload {
            Payload::Windows(w) => (*w).clone(),
            _ => panic!("window emits windows only"),
        })
        .collect()
}

fn f(r: &WindowRecord, name: &str) -> f64 {
    r.feature(name).unwrap()
}

#[test]
fn windows_align_to_the_epoch_by_end_time_and_close_after_lateness() {
    let (mut p, _) = processor(WindowConfig::default());
    let mut out = Vec::new();
    // End times 3 s and 9.999 s into the window; the span *starting* before T0 still counts here.
    p.process(
        batch(
            "a",
            vec![server(T0 + 3 * S, 100), server(T0 + 10 * S - 1, 5000)],
        ),
        &mut out,
    );
    // Watermark = 14 s - 5 s lateness = 9 s: the window [0,10) is still open.
    p.process(batch("a", vec![server(T0 + 14 * S, 10)]), &mut out);
    assert!(records(std::mem::take(&mut out)).is_empty());
    // 15 s - 5 s = 10 s: closes [0,10).
    p.process(batch("a", vec![server(T0 + 15 * S, 10)]), &mut out);
    let rs = records(out);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].start_ns, T0);
    assert_eq!(rs[0].interval_ns, 10 * S);
    assert_eq!(f(&rs[0], "request_count"), 2.0);
    assert_eq!(&*rs[0].series.service, "a");
}

#[test]
fn errors_from_both_semantic_convention_generations_and_grpc() {
    let (mut p, _) = processor(WindowConfig::default());
    let mut specs = vec![
        SpanSpec {
            attrs: vec![kv("http.response.status_code", Value::IntValue(503))],
            ..server(T0 + S, 10)
        },
        SpanSpec {
            attrs: vec![kv("http.status_code", Value::StringValue("404".into()))],
            ..server(T0 + S, 10)
        },
        SpanSpec {
            attrs: vec![kv("http.status_code", Value::IntValue(500))],
            ..server(T0 + S, 10)
        },
        SpanSpec {
            attrs: vec![kv("rpc.grpc.status_code", Value::IntValue(14))],
            ..server(T0 + S, 10)
        },
        SpanSpec {
            attrs: vec![kv("rpc.grpc.status_code", Value::IntValue(0))],
            ..server(T0 + S, 10)
        },
        SpanSpec {
            error_status: true,
            ..server(T0 + S, 10)
        },
        SpanSpec {
            attrs: vec![kv("http.response.status_code", Value::IntValue(429))],
            ..server(T0 + S, 10)
        },
    ];
    specs.push(server(T0 + S, 10)); // plain OK
    let mut out = Vec::new();
    p.process(batch("svc", specs), &mut out);
    p.on_shutdown(&mut out);
    let rs = records(out);
    assert_eq!(rs.len(), 1);
    assert_eq!(f(&rs[0], "request_count"), 8.0);
    assert_eq!(
        f(&rs[0], "error_rate"),
        4.0 / 8.0,
        "503, legacy 500, gRPC 14, status ERROR"
    );
    assert_eq!(
        f(&rs[0], "client_error_rate"),
        2.0 / 8.0,
        "404 (legacy, string) and 429"
    );
}

#[test]
fn latency_features_from_the_histogram_and_exact_sums() {
    let (mut p, _) = processor(WindowConfig::default());
    // 1..=100 ms, one span each.
    let specs = (1..=100).map(|ms| server(T0 + 2 * S, ms)).collect();
    let mut out = Vec::new();
    p.process(batch("svc", specs), &mut out);
    p.on_shutdown(&mut out);
    let r = &records(out)[0];
    let close = |a: f64, b: f64| (a - b).abs() <= b * 0.01 + 1e-9;
    assert!(close(f(r, "latency_mean_ms"), 50.5));
    assert!(
        close(f(r, "latency_p50_ms"), 50.0),
        "{}",
        f(r, "latency_p50_ms")
    );
    assert!(
        close(f(r, "latency_p95_ms"), 95.0),
        "{}",
        f(r, "latency_p95_ms")
    );
    assert!(
        close(f(r, "latency_p99_ms"), 99.0),
        "{}",
        f(r, "latency_p99_ms")
    );
    assert_eq!(f(r, "latency_max_ms"), 100.0);
    // Population standard deviation of 1..=100.
    assert!(
        close(f(r, "latency_stddev_ms"), 28.866),
        "{}",
        f(r, "latency_stddev_ms")
    );
    assert_eq!(FEATURE_NAMES.len(), 10);
}

#[test]
fn silent_services_get_empty_windows_and_throughput_change_follows_counts() {
    let (mut p, _) = processor(WindowConfig::default());
    let mut out = Vec::new();
    p.process(
        batch("a", (0..4).map(|_| server(T0 + S, 5)).collect()),
        &mut out,
    );
    p.process(batch("b", vec![server(T0 + S, 5)]), &mut out);
    // Only "b" speaks again, 30 s later: "a" gets empty windows [10,20) and [20,30).
    p.process(
        batch("b", (0..2).map(|_| server(T0 + 36 * S, 5)).collect()),
        &mut out,
    );
    let rs = records(out);
    let a: Vec<_> = rs.iter().filter(|r| &*r.series.service == "a").collect();
    assert_eq!(a.len(), 3, "{a:?}");
    assert_eq!(f(a[0], "request_count"), 4.0);
    assert_eq!(f(a[0], "throughput_change"), 1.0, "no previous window");
    assert_eq!(f(a[1], "request_count"), 0.0);
    assert_eq!(f(a[1], "throughput_change"), 0.0);
    assert_eq!(f(a[1], "latency_p95_ms"), 0.0);
    assert_eq!(f(a[2], "throughput_change"), 1.0, "empty after empty");
    assert_eq!(a[1].start_ns, T0 + 10 * S);
}

#[test]
fn late_spans_are_counted_not_merged() {
    let (mut p, t) = processor(WindowConfig::default());
    let mut out = Vec::new();
    p.process(batch("a", vec![server(T0 + S, 5)]), &mut out);
    p.process(batch("a", vec![server(T0 + 16 * S, 5)]), &mut out);
    assert_eq!(records(std::mem::take(&mut out)).len(), 1);
    // A span for the closed window [0,10).
    p.process(batch("a", vec![server(T0 + 9 * S, 5)]), &mut out);
    assert_eq!(t.sum("otelwatch_window_late_spans_total", &[]), 1);
    p.on_shutdown(&mut out);
    let rs = records(out);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].start_ns, T0 + 10 * S);
    assert_eq!(f(&rs[0], "request_count"), 1.0);
}

#[test]
fn client_spans_make_edges_named_by_peer_server_or_db() {
    let (mut p, _) = processor(WindowConfig::default());
    let client = |attrs| SpanSpec {
        kind: SpanKind::Client,
        attrs,
        ..server(T0 + S, 1500)
    };
    let specs = vec![
        client(vec![
            kv("peer.service", Value::StringValue("service-b".into())),
            kv("server.address", Value::StringValue("10.0.0.7".into())),
        ]),
        client(vec![kv(
            "server.address",
            Value::StringValue("service-b".into()),
        )]),
        client(vec![kv(
            "db.system",
            Value::StringValue("postgresql".into()),
        )]),
        client(vec![]), // no target: not an edge
        client(vec![kv(
            "http.url",
            Value::StringValue("http://user@service-c:3001/ping?x=1".into()),
        )]),
        SpanSpec {
            kind: SpanKind::Internal,
            ..server(T0 + S, 5)
        },
        server(T0 + S, 50),
    ];
    let mut out = Vec::new();
    p.process(batch("service-a", specs), &mut out);
    p.on_shutdown(&mut out);
    let rs = records(out);
    let by: BTreeMap<String, f64> = rs
        .iter()
        .map(|r| (r.series.to_string(), f(r, "request_count")))
        .collect();
    assert_eq!(
        by,
        BTreeMap::from([
            ("service-a".to_string(), 1.0),
            ("service-a → postgresql".to_string(), 1.0),
            ("service-a → service-b".to_string(), 2.0),
            ("service-a → service-c:3001".to_string(), 1.0),
        ])
    );
    let edge = rs
        .iter()
        .find(|r| r.series.target.as_deref() == Some("service-b"))
        .unwrap();
    assert!((f(edge, "latency_p50_ms") - 1500.0).abs() <= 15.0);
    assert_eq!(edge.to_document()["service"]["target"]["name"], "service-b");
}

#[test]
fn group_by_adds_a_series_per_value() {
    let (mut p, _) = processor(WindowConfig {
        group_by: vec!["http.route".into()],
        ..Default::default()
    });
    let route = |r: &str| SpanSpec {
        attrs: vec![kv("http.route", Value::StringValue(r.into()))],
        ..server(T0 + S, 5)
    };
    let mut out = Vec::new();
    p.process(
        batch("a", vec![route("/start"), route("/start"), route("/test")]),
        &mut out,
    );
    p.on_shutdown(&mut out);
    let by: BTreeMap<String, f64> = records(out)
        .iter()
        .map(|r| (r.series.to_string(), f(r, "request_count")))
        .collect();
    assert_eq!(by["a"], 3.0);
    assert_eq!(by["a [http.route=/start]"], 2.0);
    assert_eq!(by["a [http.route=/test]"], 1.0);
}

#[test]
fn the_series_cap_and_ttl_bound_memory() {
    let (mut p, t) = processor(WindowConfig {
        max_services: 2,
        service_ttl: ConfigDuration::from_secs(30),
        ..Default::default()
    });
    let mut out = Vec::new();
    p.process(batch("a", vec![server(T0 + S, 5)]), &mut out);
    p.process(batch("b", vec![server(T0 + 2 * S, 5)]), &mut out);
    // At the cap, the least recently seen series ("a") makes room for the new one.
    p.process(batch("c", vec![server(T0 + 2 * S, 5)]), &mut out);
    assert_eq!(p.series_count(), 2);
    assert_eq!(t.sum("otelwatch_window_series_evicted_total", &[]), 1);
    assert_eq!(t.sum("otelwatch_window_evicted_spans_total", &[]), 1);
    // Only "b" keeps talking; after the TTL "c" is forgotten.
    for k in 1..8 {
        p.process(batch("b", vec![server(T0 + k * 10 * S + S, 5)]), &mut out);
    }
    assert_eq!(p.series_count(), 1);
    let recs = records(out);
    let windows_of = |name: &str| recs.iter().filter(|r| &*r.series.service == name).count();
    assert_eq!(windows_of("a"), 0, "evicted with its open window");
    assert!(
        (3..=5).contains(&windows_of("c")),
        "c got {} windows before being forgotten",
        windows_of("c")
    );
}

#[test]
fn a_known_service_name_is_shared_not_allocated_again_and_forgotten_with_its_series() {
    let (mut p, _) = processor(WindowConfig {
        max_services: 1,
        ..Default::default()
    });
    let mut out = Vec::new();
    p.process(batch("svc", vec![server(T0 + S, 5)]), &mut out);
    let held = p
        .known
        .get("svc")
        .cloned()
        .expect("the series' name is known");
    // Read from a decoded request and from its bytes, the next request's spans share it.
    let Payload::Traces(decoded) = batch("svc", vec![server(T0 + 2 * S, 5)]).payload else {
        unreachable!("a traces batch")
    };
    let wire =
        crate::pipeline::Traces::wire(prost::Message::encode_to_vec(decoded.request()).into());
    for traces in [&decoded, &wire] {
        let mut obs = Vec::new();
        p.span_observations(traces, &mut obs);
        assert_eq!(obs.len(), 1);
        assert!(Arc::ptr_eq(&obs[0].key.service, &held));
    }
    drop(held);
    // At the cap, "svc" makes room for "other", and its name goes with it.
    p.process(batch("other", vec![server(T0 + 2 * S, 5)]), &mut out);
    assert!(!p.known.contains("svc"));
    assert!(p.known.contains("other"));
}

#[test]
fn a_flood_of_one_off_names_does_not_keep_a_new_real_service_out() {
    let (mut p, _) = processor(WindowConfig {
        max_services: 100,
        ..Default::default()
    });
    let mut out = Vec::new();
    for i in 0..10_000u64 {
        p.process(
            batch(&format!("junk-{i}"), vec![server(T0 + S + i * 1000, 5)]),
            &mut out,
        );
        assert!(p.series_count() <= 100);
    }
    p.process(
        batch(
            "checkout",
            vec![server(T0 + 2 * S, 5), server(T0 + 3 * S, 7)],
        ),
        &mut out,
    );
    p.on_shutdown(&mut out);
    let checkout: Vec<_> = records(out)
        .into_iter()
        .filter(|r| &*r.series.service == "checkout")
        .collect();
    assert_eq!(checkout.len(), 1);
    assert_eq!(f(&checkout[0], "request_count"), 2.0);
}

#[test]
fn spans_far_in_the_future_are_refused() {
    let (mut p, t) = processor(WindowConfig::default());
    let mut out = Vec::new();
    let future = now_ns() + 3600 * S;
    p.process(batch("a", vec![server(future, 5)]), &mut out);
    assert_eq!(t.sum("otelwatch_window_future_spans_total", &[]), 1);
    assert_eq!(p.series_count(), 0);
}

#[test]
fn config_checks() {
    let v: serde_norway::Value =
        serde_norway::from_str("interval: 1ms\nmax_services: 0\n").unwrap();
    let errs = WindowConfig::parse("processors.window", v).unwrap_err();
    let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(msgs.contains(&"processors.window.interval: must be at least 10ms".to_string()));
    assert!(msgs.contains(&"processors.window.max_services: must be at least 1".to_string()));
}

#[test]
fn one_span_from_a_fast_clock_does_not_make_the_real_spans_late() {
    let (mut p, t) = processor(WindowConfig::default());
    let mut out = Vec::new();
    let now = now_ns();
    p.process(batch("a", vec![server(now - 2 * S, 5)]), &mut out);
    // A client whose clock is four minutes ahead.
    p.process(batch("b", vec![server(now + 240 * S, 5)]), &mut out);
    p.on_tick(&mut out);
    p.process(batch("a", vec![server(now - S, 5)]), &mut out);
    p.on_tick(&mut out);
    assert_eq!(t.sum("otelwatch_window_late_spans_total", &[]), 0);
    assert_eq!(t.sum("otelwatch_window_spans_ahead_total", &[]), 1);
    assert!(
        records(out)
            .iter()
            .all(|r| r.series.service.as_ref() != "a"),
        "a's open window was not closed early (nor emptied)"
    );
    // Nothing accepted is lost: shutdown emits both services' windows.
    let mut rest = Vec::new();
    p.on_shutdown(&mut rest);
    let rest = records(rest);
    let count = |svc: &str| -> f64 {
        rest.iter()
            .filter(|r| r.series.service.as_ref() == svc && r.series.target.is_none())
            .map(|r| f(r, "request_count"))
            .sum()
    };
    assert_eq!((count("a"), count("b")), (2.0, 1.0));
}

#[test]
fn a_huge_service_name_is_kept_once_and_cut_to_a_name() {
    let (mut p, _) = processor(WindowConfig::default());
    let mut out = Vec::new();
    let name = "é".repeat(100_000); // 200 KB, two bytes a character
    let end = 20 * S;
    p.process(
        batch(&name, (0..10_000).map(|_| server(end, 5)).collect()),
        &mut out,
    );
    p.on_shutdown(&mut out);
    let recs = records(out);
    assert_eq!(p.series_count(), 1);
    assert_eq!(recs.len(), 1);
    let kept = &recs[0].series.service;
    assert_eq!(kept.len(), 256);
    assert!(name.starts_with(kept.as_ref()));
    assert_eq!(f(&recs[0], "request_count"), 10_000.0);
}

#[test]
fn windows_that_lost_spans_to_skipping_are_marked_partial() {
    let (mut p, _) = processor(WindowConfig::default());
    let skipped = Counter::default();
    p.skipped = Some(skipped.clone());
    let mut out = Vec::new();
    p.process(batch("a", vec![server(T0 + S, 5)]), &mut out);
    // The pipeline skipped spans while this window was open.
    skipped.add(40);
    p.process(batch("a", vec![server(T0 + 2 * S, 5)]), &mut out);
    // Two windows later, nothing skipped.
    p.process(batch("a", vec![server(T0 + 25 * S, 5)]), &mut out);
    p.on_shutdown(&mut out);
    let recs = records(out);
    let partial: Vec<bool> = recs.iter().map(|r| r.partial).collect();
    // The last window is partial too: the shutdown cut it short (see below).
    assert_eq!(partial, [true, false, true], "{partial:?}");
    assert_eq!(recs[0].to_document()["window"]["partial"], true);
    assert!(recs[1].to_document()["window"].get("partial").is_none());
}

#[test]
fn windows_cut_short_by_the_shutdown_are_marked_partial() {
    let (mut p, _) = processor(WindowConfig::default());
    let mut out = Vec::new();
    p.process(batch("a", vec![server(T0 + S, 5)]), &mut out);
    p.process(batch("b", vec![server(T0 + 2 * S, 5)]), &mut out);
    p.process(batch("a", vec![server(T0 + 15 * S, 5)]), &mut out);
    p.on_shutdown(&mut out);
    let partial: Vec<(String, u64, bool)> = records(out)
        .iter()
        .map(|r| {
            (
                r.series.service.to_string(),
                (r.start_ns - T0) / S,
                r.partial,
            )
        })
        .collect();
    // The first windows' time was over by the newest span; the one it lies in was not.
    assert!(partial.contains(&("a".into(), 0, false)), "{partial:?}");
    assert!(partial.contains(&("b".into(), 0, false)), "{partial:?}");
    assert!(partial.contains(&("a".into(), 10, true)), "{partial:?}");
}

#[test]
fn late_spans_are_counted_by_the_service_that_sent_them() {
    let (mut p, t) = processor(WindowConfig::default());
    let mut out = Vec::new();
    p.process(batch("a", vec![server(T0 + S, 5)]), &mut out);
    // Far ahead: the window of T0 closes.
    p.process(batch("a", vec![server(T0 + 60 * S, 5)]), &mut out);
    p.process(batch("lagging", vec![server(T0 + 61 * S, 5)]), &mut out);
    p.process(batch("a", vec![server(T0 + 2 * S, 5)]), &mut out);
    assert_eq!(t.sum("otelwatch_window_late_spans_total", &[]), 1);
    assert_eq!(p.late.by_service.get("a").map(|e| e.0), Some(1));
    p.late.report();
    assert!(p.late.by_service.is_empty(), "reported, then forgotten");
}

/// A logs batch of `service`: (time, severity number, severity text, message) per record.
fn log_batch(service: &str, records: &[(u64, i32, &str, &str)]) -> Batch {
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    let log_records = records
        .iter()
        .map(|(t, n, text, msg)| LogRecord {
            time_unix_nano: *t,
            severity_number: *n,
            severity_text: (*text).into(),
            body: Some(AnyValue {
                value: Some(Value::StringValue((*msg).into())),
            }),
            ..Default::default()
        })
        .collect();
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue(service.into()))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Batch {
        items: records.len(),
        payload: Payload::Logs(Arc::new(req)),
        encoded: None,
        held: Default::default(),
    }
}

#[test]
fn log_windows_count_the_traces_their_lines_came_from() {
    let (mut p, _) = processor(WindowConfig::default());
    let mut out = Vec::new();
    // Three requests writing four lines each, a 64-bit trace id among them (the high half
    // zero), and two lines without a trace context.
    let mut batch = log_batch(
        "food",
        &(0..14)
            .map(|i| (T0 + i * S / 2, 9, "INFO", "step done"))
            .collect::<Vec<_>>(),
    );
    if let Payload::Logs(req) = &mut batch.payload {
        let req = Arc::get_mut(req).unwrap();
        let records = &mut req.resource_logs[0].scope_logs[0].log_records;
        for (i, r) in records.iter_mut().enumerate().take(12) {
            r.trace_id = match i / 4 {
                0 => vec![1; 16],
                1 => [vec![0; 8], vec![7; 8]].concat(),
                _ => vec![3; 16],
            };
        }
        records[12].trace_id = vec![0; 16];
    }
    p.process(batch, &mut out);
    p.on_shutdown(&mut out);
    let rs = records(out);
    assert_eq!(rs.len(), 1);
    assert_eq!(f(&rs[0], "log_count"), 14.0);
    assert_eq!(rs[0].traces, 5, "3 traces and 2 records without one");
    let doc = rs[0].to_document();
    assert_eq!(doc["logs"]["traces"], 5);
    assert_eq!(WindowRecord::from_document(&doc).unwrap().traces, 5);
}

#[test]
fn log_windows_count_the_traces_that_wrote_each_template() {
    let (mut p, _) = processor(WindowConfig::default());
    let mut out = Vec::new();
    // Three requests each write `request received` twice; two of them also `price found`;
    // one line of `price found` has no trace context (an event of its own). A fourth request
    // writes only an error: it took no ordinary path, and does not thin their shares.
    let mut lines: Vec<(u64, i32, &str, &str)> = (0..9)
        .map(|i| {
            let text = if i < 6 {
                "request received"
            } else {
                "price found"
            };
            (T0 + i * S / 2, 9, "INFO", text)
        })
        .collect();
    lines.push((T0 + 5 * S, 17, "ERROR", "payment failed"));
    let mut batch = log_batch("price", &lines);
    if let Payload::Logs(req) = &mut batch.payload {
        let req = Arc::get_mut(req).unwrap();
        let records = &mut req.resource_logs[0].scope_logs[0].log_records;
        for (i, trace) in [1u8, 1, 2, 2, 3, 3, 1, 2, 0, 4].iter().enumerate() {
            records[i].trace_id = vec![*trace; 16];
        }
    }
    p.process(batch, &mut out);
    p.on_shutdown(&mut out);
    let rs = records(out);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].traces, 5, "four traces and one line without");
    assert_eq!(rs[0].presence.traces, 4, "the error-only request left out");
    let got: Vec<(&str, u32, u32)> = rs[0]
        .presence
        .templates
        .iter()
        .map(|t| (&*t.text, t.traces, t.records))
        .collect();
    assert_eq!(
        got,
        vec![
            ("request received", 3, 6),
            ("price found", 3, 3),
            ("payment failed", 1, 1)
        ],
        "by traces"
    );
    assert_ne!(
        rs[0].presence.templates[0].id,
        rs[0].presence.templates[1].id
    );
}

#[test]
fn two_lines_of_code_that_log_the_same_words_are_two_templates() {
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    let (mut p, _) = processor(WindowConfig::default());
    let mut out = Vec::new();
    // The same message from lines 366 and 372 of one logger (two code paths), and from a
    // record that says nothing of where it was written.
    let mut batch = log_batch(
        "travel",
        &(0..5)
            .map(|i| (T0 + i * S, 9, "INFO", "[getTickets][Calculate distance]"))
            .collect::<Vec<_>>(),
    );
    if let Payload::Logs(req) = &mut batch.payload {
        let req = Arc::get_mut(req).unwrap();
        let scopes = &mut req.resource_logs[0].scope_logs;
        let mut records = std::mem::take(&mut scopes[0].log_records);
        let line = |n: i64| {
            vec![KeyValue {
                key: "code.line.number".into(),
                value: Some(AnyValue {
                    value: Some(Value::IntValue(n)),
                }),
                ..Default::default()
            }]
        };
        let plain = records.split_off(4);
        for (i, r) in records.iter_mut().enumerate() {
            r.attributes = line(if i < 2 { 366 } else { 372 });
        }
        scopes[0].scope = Some(InstrumentationScope {
            name: "t.s.TravelServiceImpl".into(),
            ..Default::default()
        });
        scopes[0].log_records = records;
        scopes.push(opentelemetry_proto::tonic::logs::v1::ScopeLogs {
            log_records: plain,
            ..Default::default()
        });
    }
    p.process(batch, &mut out);
    p.on_shutdown(&mut out);
    let rs = records(out);
    assert_eq!(rs.len(), 1);
    assert_eq!(f(&rs[0], "template_count"), 3.0);
    let mut texts: Vec<&str> = rs[0].presence.templates.iter().map(|t| &*t.text).collect();
    texts.sort();
    assert_eq!(
        texts,
        vec![
            "[getTickets][Calculate distance]",
            "t.s.TravelServiceImpl#366 [getTickets][Calculate distance]",
            "t.s.TravelServiceImpl#372 [getTickets][Calculate distance]",
        ]
    );
}

#[test]
fn log_windows_count_levels_and_templates_and_name_new_error_templates() {
    let (mut p, _) = processor(WindowConfig::default());
    let mut out = Vec::new();
    // Five windows of ordinary logs: INFO order saves, one WARN slow query (its level from
    // the text: no number).
    for w in 0..5u64 {
        let t = T0 + w * 10 * S;
        let mut recs: Vec<(u64, i32, &str, String)> = (0..5)
            .map(|i| {
                (
                    t + i * S,
                    9,
                    "INFO",
                    format!("Order {} saved for user{}", w * 10 + i, i),
                )
            })
            .collect();
        recs.push((
            t + 6 * S,
            0,
            "WARN",
            format!("Slow query took {} ms", 300 + w),
        ));
        if w == 4 {
            for i in 0..3 {
                recs.push((
                    t + 7 * S,
                    17,
                    "ERROR",
                    format!("Connection refused to db-{i}:5432"),
                ));
            }
        }
        let recs: Vec<(u64, i32, &str, &str)> = recs
            .iter()
            .map(|(a, b, c, d)| (*a, *b, *c, d.as_str()))
            .collect();
        p.process(log_batch("food", &recs), &mut out);
    }
    p.on_shutdown(&mut out);
    let rs = records(out);
    assert!(rs.iter().all(|r| r.series.signal == Signal::Logs));
    assert_eq!(rs.len(), 5);
    let first = &rs[0];
    assert_eq!(first.series.to_string(), "food (logs)");
    assert_eq!(f(first, "log_count"), 6.0);
    assert_eq!(f(first, "warning_log_count"), 1.0);
    assert!((f(first, "warning_log_rate") - 1.0 / 6.0).abs() < 1e-9);
    assert_eq!(f(first, "template_count"), 2.0);
    assert_eq!(
        f(first, "new_template_count"),
        0.0,
        "the first windows are the vocabulary"
    );
    assert_eq!(f(first, "log_count_change"), 1.0);
    let last = &rs[4];
    assert_eq!(f(last, "log_count"), 9.0);
    assert_eq!(f(last, "error_log_count"), 3.0);
    assert_eq!(f(last, "new_template_count"), 1.0);
    assert_eq!(f(last, "new_error_template_count"), 1.0);
    assert_eq!(f(last, "top_error_template_count"), 3.0);
    assert_eq!(f(last, "log_count_change"), 1.5);
    let top = &last.templates[0];
    assert_eq!(&*top.template, "Connection refused to <*>");
    assert_eq!((top.count, top.level, top.new), (3, LogLevel::Error, true));
    assert_eq!(&*last.templates[1].template, "Slow query took <*> ms");
    assert_eq!(&*last.templates[2].template, "Order <*> saved for <*>");
    // A window without logs is an empty log window, not a span window.
    let (mut p, _) = processor(WindowConfig::default());
    let mut out = Vec::new();
    p.process(log_batch("a", &[(T0, 9, "", "started")]), &mut out);
    p.process(log_batch("a", &[(T0 + 25 * S, 9, "", "started")]), &mut out);
    p.on_shutdown(&mut out);
    let rs = records(out);
    assert_eq!(rs.len(), 3);
    assert_eq!(f(&rs[1], "log_count"), 0.0);
    assert_eq!(f(&rs[2], "log_count_change"), 1.0);
}

mod metric_windows {
    use super::*;
    use crate::model::window::{metric_feature, Signal};
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, number_data_point, AggregationTemporality, Gauge, Histogram,
        HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };

    fn point(t: u64, v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint {
            start_time_unix_nano: T0 - 60 * S,
            time_unix_nano: t,
            value: Some(number_data_point::Value::AsDouble(v)),
            attributes: attrs,
            ..Default::default()
        }
    }

    fn request(pod: &str, metrics: Vec<Metric>) -> Batch {
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", Value::StringValue("a".into())),
                        kv("k8s.pod.name", Value::StringValue(pod.into())),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Batch {
            items: 1,
            payload: Payload::Metrics(Arc::new(req)),
            encoded: None,
            held: Default::default(),
        }
    }

    fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
        Metric {
            name: name.into(),
            data: Some(Data::Gauge(Gauge {
                data_points: points,
            })),
            ..Default::default()
        }
    }

    fn counter(name: &str, points: Vec<NumberDataPoint>) -> Metric {
        Metric {
            name: name.into(),
            data: Some(Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        }
    }

    fn by_metric<'a>(rs: &'a [WindowRecord], name: &str) -> Vec<&'a WindowRecord> {
        rs.iter()
            .filter(|r| r.series.metric_name() == Some(name))
            .collect()
    }

    #[test]
    fn gauges_sums_and_histograms_become_metric_windows() {
        let (mut p, _) = processor(WindowConfig::default());
        let mut out = Vec::new();
        let histogram = Metric {
            name: "http.server.request.duration".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    start_time_unix_nano: T0,
                    time_unix_nano: T0 + 9 * S,
                    count: 10,
                    sum: Some(1.5),
                    explicit_bounds: vec![0.1, 0.5],
                    bucket_counts: vec![8, 2, 0],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Delta as i32,
            })),
            ..Default::default()
        };
        p.process(
            request(
                "a-1",
                vec![
                    gauge(
                        "process.cpu.utilization",
                        vec![point(T0 + S, 0.2, vec![]), point(T0 + 6 * S, 0.4, vec![])],
                    ),
                    // Cumulative: the first point is the baseline, the second 30 more.
                    counter(
                        "process.runtime.jvm.gc.count",
                        vec![
                            point(T0 + S, 100.0, vec![]),
                            point(T0 + 6 * S, 130.0, vec![]),
                        ],
                    ),
                    histogram,
                    gauge("my.business.metric", vec![point(T0 + S, 7.0, vec![])]),
                ],
            ),
            &mut out,
        );
        // A point 16 s in closes [0, 10 s).
        p.process(
            request(
                "a-1",
                vec![gauge(
                    "process.cpu.utilization",
                    vec![point(T0 + 16 * S, 0.3, vec![])],
                )],
            ),
            &mut out,
        );
        let rs = records(out);
        assert!(rs.iter().all(|r| r.series.signal == Signal::Metrics));
        assert!(
            by_metric(&rs, "my.business.metric").is_empty(),
            "not selected"
        );
        let cpu = by_metric(&rs, "process.cpu.utilization");
        assert_eq!(cpu.len(), 1);
        let cpu = cpu[0];
        assert!((cpu.features[metric_feature::VALUE] - 0.3).abs() < 1e-12);
        assert_eq!(cpu.features[metric_feature::POINTS], 2.0);
        assert_eq!(cpu.features[metric_feature::MAX], 0.4);
        let gc = by_metric(&rs, "process.runtime.jvm.gc.count")[0];
        assert_eq!(
            gc.features[metric_feature::VALUE],
            3.0,
            "30 in a 10 s window"
        );
        let h = by_metric(&rs, "http.server.request.duration")[0];
        assert_eq!(h.features[metric_feature::COUNT], 10.0);
        assert!((h.features[metric_feature::VALUE] - 0.15).abs() < 1e-12);
        assert!(h.features[metric_feature::P95] > 0.1 && h.features[metric_feature::P95] <= 0.5);
        // The document names the metric and its features.
        let doc = cpu.to_document();
        assert_eq!(doc["window"]["signal"], "metrics");
        assert_eq!(doc["metric"]["name"], "process.cpu.utilization");
        assert_eq!(doc["features"]["metric_value"], 0.3);
        assert!(doc.get("labels").is_none());
        let back = WindowRecord::from_document(&doc).unwrap();
        assert_eq!(back.series, cpu.series);
    }

    #[test]
    fn an_attribute_splits_a_services_metric_into_series() {
        let cfg = WindowConfig {
            metrics: metrics::MetricsConfig {
                attribute: "k8s.pod.name".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        let (mut p, _) = processor(cfg);
        let mut out = Vec::new();
        for pod in ["a-1", "a-2"] {
            p.process(
                request(
                    pod,
                    vec![gauge("k8s.pod.cpu.usage", vec![point(T0 + S, 1.0, vec![])])],
                ),
                &mut out,
            );
        }
        p.on_shutdown(&mut out);
        let rs = records(out);
        let pods: Vec<String> = rs
            .iter()
            .map(|r| r.series.labels[1].1.to_string())
            .collect();
        assert_eq!(pods, ["a-1", "a-2"]);
        assert_eq!(
            rs[0].to_document()["labels"]["k8s.pod.name"],
            "a-1",
            "the attribute is a label of the document"
        );
    }

    #[test]
    fn the_metrics_selection_is_checked() {
        let yaml: serde_norway::Value =
            serde_norway::from_str("metrics: { include: [\"\"], max_streams: 0 }").unwrap();
        let errors = WindowConfig::parse("processors.window", yaml).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert!(
            paths.contains(&"processors.window.metrics.max_streams"),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"processors.window.metrics.include[0]"),
            "{paths:?}"
        );
    }
}

#[test]
fn a_pipeline_held_up_downstream_does_not_make_its_next_batch_late() {
    // 1 s windows, 1 s lateness: a second of silence from the sources closes a window, but
    // two seconds in which the pipeline did not call the processor at all (its exporter was
    // full) are not silence.
    let (mut p, _) = processor(WindowConfig {
        interval: crate::config::duration::ConfigDuration::from_millis(1000),
        allowed_lateness: crate::config::duration::ConfigDuration::from_millis(1000),
        ..Default::default()
    });
    let mut out = Vec::new();
    p.process(batch("a", vec![server(T0 + S / 10, 5)]), &mut out);
    std::thread::sleep(Duration::from_millis(2000));
    // The pipeline's first call after the hold-up may be its tick.
    p.on_tick(&mut out);
    p.process(batch("a", vec![server(T0 + S / 5, 5)]), &mut out);
    p.on_shutdown(&mut out);
    let rs = records(out);
    let first = rs.iter().find(|r| r.start_ns == T0).expect("the window");
    assert_eq!(f(first, "request_count"), 2.0, "{rs:?}");
}

#[test]
fn a_batch_does_not_make_its_own_older_records_of_a_new_series_late() {
    // A request groups its records by resource: service a's newest come before service b's
    // first, 19 s older. Lateness is judged against what was closed before the batch.
    let (mut p, _) = processor(WindowConfig::default());
    let mut out = Vec::new();
    let mut req = batch("a", vec![server(T0 + 20 * S, 5)]);
    let Payload::Traces(t) = &mut req.payload else {
        unreachable!()
    };
    let b = batch("b", vec![server(T0 + S, 5)]);
    let Payload::Traces(bt) = &b.payload else {
        unreachable!()
    };
    t.modify(|t| {
        t.resource_spans
            .extend(bt.request().resource_spans.iter().cloned())
    });
    p.process(req, &mut out);
    p.on_shutdown(&mut out);
    let rs = records(out);
    let b_first = rs
        .iter()
        .find(|r| &*r.series.service == "b" && r.start_ns == T0)
        .expect("b's window");
    assert_eq!(f(b_first, "request_count"), 1.0);
}

#[test]
fn a_window_keeps_its_failing_and_slowest_traces_as_examples() {
    let (mut p, _t) = processor(WindowConfig::default());
    let mut specs: Vec<SpanSpec> = [10, 50, 20, 80, 30]
        .iter()
        .map(|ms| server(T0 + S, *ms))
        .collect();
    specs[2].error_status = true;
    let mut out = Vec::new();
    p.process(batch("svc", specs), &mut out);
    p.on_shutdown(&mut out);
    let recs = records(out);
    let r = recs.iter().find(|r| r.start_ns == T0).unwrap();
    let got: Vec<(u8, f64, bool)> = r
        .examples
        .iter()
        .map(|e| (e.trace_id[0], e.duration_ms, e.error))
        .collect();
    // The failing span first; then the three slowest, longest first.
    assert_eq!(
        got,
        [
            (3, 20.0, true),
            (4, 80.0, false),
            (2, 50.0, false),
            (5, 30.0, false)
        ]
    );
    assert_eq!(r.examples[1].trace_id_hex(), "04".repeat(16));
}

#[test]
fn spans_read_from_the_wire_make_the_same_windows_as_decoded_ones() {
    use crate::tools::loadgen::SpanFactory;
    use crate::tools::scenario::{Generator, Scenario};
    use prost::Message;
    // Requests with every kind of span the processor reads: the scenario's (errors, client
    // errors, routes, edges) and the load generator's (HTTP attributes as the SDKs send them),
    // one request with ids of the wrong length (decoded, as the receiver does).
    let mut requests = Vec::new();
    let mut g = Generator::new(Scenario::target_system(3), T0);
    for _ in 0..40 {
        requests.push(g.next_window());
    }
    let mut factory = SpanFactory::new(6, 2);
    for _ in 0..20 {
        let mut r = factory.request(150);
        for rs in &mut r.resource_spans {
            for ss in &mut rs.scope_spans {
                for s in &mut ss.spans {
                    s.end_time_unix_nano = T0 + (s.end_time_unix_nano % (400 * S));
                    s.start_time_unix_nano = s.end_time_unix_nano - 1_000_000;
                }
            }
        }
        requests.push(r);
    }
    let run = |wire: bool| {
        let cfg = WindowConfig {
            group_by: vec!["http.route".into(), "http.response.status_code".into()],
            ..Default::default()
        };
        let (mut p, _) = processor(cfg);
        let mut out = Vec::new();
        for r in &requests {
            let bytes = bytes::Bytes::from(r.encode_to_vec());
            let (batch, _) = match wire {
                true => <ExportTraceServiceRequest as crate::otlp::Signal>::receive(bytes).unwrap(),
                false => {
                    let b = Batch {
                        items: 0,
                        payload: Payload::Traces(crate::pipeline::Traces::decoded(r.clone())),
                        encoded: None,
                        held: Default::default(),
                    };
                    (b, Default::default())
                }
            };
            if let Payload::Traces(t) = &batch.payload {
                assert_eq!(t.undecoded().is_some(), wire);
            }
            p.process(batch, &mut out);
        }
        p.on_shutdown(&mut out);
        records(out)
    };
    let (wire, decoded) = (run(true), run(false));
    assert!(wire.len() > 100, "{}", wire.len());
    assert!(wire.iter().any(|r| r.series.target.is_some()));
    assert!(wire.iter().any(|r| !r.series.labels.is_empty()));
    assert!(wire
        .iter()
        .any(|r| r.series.signal == Signal::Spans && f(r, "error_rate") > 0.0));
    assert!(wire
        .iter()
        .any(|r| r.series.signal == Signal::Network && f(r, "joined_call_count") > 0.0));
    assert_eq!(wire, decoded);
}

#[test]
fn spans_years_apart_in_one_request_make_at_most_a_ttl_of_empty_windows() {
    let (mut p, _) = processor(WindowConfig::default());
    let mut out = Vec::new();
    // The first request of a client: one span from a month ago, one from now.
    let month = 30 * 24 * 3600 * S;
    p.process(
        batch("a", vec![server(T0 - month, 10), server(T0, 10)]),
        &mut out,
    );
    p.on_shutdown(&mut out);
    let rs = records(out);
    let ttl_windows = (WindowConfig::default().service_ttl.get().as_nanos() as u64) / (10 * S);
    assert!(
        rs.len() as u64 <= ttl_windows + 3,
        "{} windows for a month's gap",
        rs.len()
    );
    // Both spans were counted, each in its window.
    let counted: f64 = rs.iter().map(|r| f(r, "request_count")).sum();
    assert_eq!(counted, 2.0);
}

/// A request of one service's spans, each (kind, trace, span id, parent id, end, ms, peer).
fn joined_batch(service: &str, spans: &[(SpanKind, u8, u8, u8, u64, u64, &str)]) -> Batch {
    let mut b = batch(service, Vec::new());
    let Payload::Traces(t) = &mut b.payload else {
        unreachable!()
    };
    let mut req = t.request().clone();
    req.resource_spans[0].scope_spans[0].spans = spans
        .iter()
        .map(|&(kind, trace, id, parent, end, ms, peer)| Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: if parent == 0 { vec![] } else { vec![parent; 8] },
            kind: kind as i32,
            start_time_unix_nano: end - ms * 1_000_000,
            end_time_unix_nano: end,
            attributes: match peer {
                "" => vec![],
                p => vec![kv("peer.service", Value::StringValue(p.into()))],
            },
            ..Default::default()
        })
        .collect();
    b.payload = Payload::Traces(crate::pipeline::Traces::decoded(req));
    b
}

#[test]
fn a_call_joined_with_the_span_that_served_it_gives_its_edge_the_time_between_them() {
    use SpanKind::{Client, Server};
    // Two calls a → b (100 ms and 300 ms; b's spans took 30 and 60), a call a → postgresql
    // (no spans of its own), and a root request of a.
    let calls = [
        (Client, 1, 10, 9, T0 + S, 100, "b"),
        (Client, 2, 20, 19, T0 + 2 * S, 300, "b"),
        (Client, 3, 30, 29, T0 + 2 * S, 40, "postgresql"),
        (Server, 1, 9, 0, T0 + S, 150, ""),
    ];
    let served = [
        (Server, 1, 11, 10, T0 + S - S / 100, 30, ""),
        (Server, 2, 21, 20, T0 + 2 * S - S / 100, 60, ""),
        // Same parent id in another trace: not the call's.
        (Server, 4, 31, 10, T0 + S, 5, ""),
    ];
    let run = |caller_first: bool| {
        let (mut p, t) = processor(WindowConfig::default());
        let mut out = Vec::new();
        let (a, b) = (joined_batch("a", &calls), joined_batch("b", &served));
        let (first, second) = if caller_first { (a, b) } else { (b, a) };
        p.process(first, &mut out);
        p.process(second, &mut out);
        p.on_shutdown(&mut out);
        (records(out), t)
    };
    for caller_first in [true, false] {
        let (rs, t) = run(caller_first);
        let net: Vec<&WindowRecord> = rs
            .iter()
            .filter(|r| r.series.signal == Signal::Network)
            .collect();
        assert_eq!(
            net.len(),
            1,
            "only a → b has calls served by spans: {net:?}"
        );
        let r = net[0];
        assert_eq!(*r.series, SeriesKey::network("a", "b"));
        assert_eq!(f(r, "joined_call_count"), 2.0);
        assert!((f(r, "network_mean_ms") - 155.0).abs() < 0.5, "{r:?}");
        assert!((f(r, "network_max_ms") - 240.0).abs() < 0.5);
        assert_eq!(r.to_document()["window"]["signal"], "network");
        assert_eq!(r.to_document()["service"]["target"]["name"], "b");
        // The edge's own record is as it was: both calls.
        let edge = rs.iter().find(|r| *r.series == SeriesKey::edge("a", "b"));
        assert_eq!(edge.map(|r| f(r, "request_count")), Some(2.0));
        assert_eq!(t.sum("otelwatch_window_unjoined_spans_total", &[]), 0);
    }
    // Without it, no network series.
    let (mut p, _) = processor(WindowConfig {
        network: false,
        ..Default::default()
    });
    let mut out = Vec::new();
    p.process(joined_batch("a", &calls), &mut out);
    p.process(joined_batch("b", &served), &mut out);
    p.on_shutdown(&mut out);
    assert!(records(out)
        .iter()
        .all(|r| r.series.signal != Signal::Network));
}
