//! Entry points for the fuzz targets (`fuzz/`, run with `cargo +nightly fuzz run <target>`):
//! each takes arbitrary bytes, drives one part of otelwatch that reads untrusted input, and
//! checks what must hold whatever the input (no panic, limits respected, nothing made up).
//! A unit test runs each over mutated seeds, so the same checks also run on stable.

use crate::model::window::WindowRecord;
use crate::otlp::compression::{self, Encoding};
use crate::otlp::Signal;
use crate::pipeline::{Batch, Payload};
use crate::processors::iforest::{IForestConfig, IForestProcessor};
use crate::processors::window::{WindowConfig, WindowProcessor};
use crate::processors::Processor;
use crate::telemetry::Telemetry;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::sync::Arc;

fn check_signal<S: Signal>(body: &[u8]) {
    // Protobuf, as both receivers take it: what they take (checked on the wire where the
    // signal can be) is what the decoder takes, with the same verdict on its items.
    let received = S::receive(bytes::Bytes::copy_from_slice(body));
    match S::decode(body) {
        Ok(mut msg) => {
            let checked = msg.check();
            let batch =
                crate::otlp::batch_from(msg, Some(bytes::Bytes::copy_from_slice(body)), &checked);
            assert!(checked.rejected == 0 || !checked.reason.is_empty());
            let _ = crate::pipeline::memory::estimate(&batch);
            let (wire, wire_checked) =
                received.expect("the decoder takes it: so must the receiver");
            assert_eq!(wire_checked, checked);
            assert_eq!(wire.items, batch.items);
            if let Payload::Traces(t) = &wire.payload {
                if t.undecoded().is_some() {
                    assert_eq!(spans_windowed(wire.clone()), spans_windowed(batch));
                }
            }
        }
        Err(_) => assert!(
            received.is_err(),
            "the receiver took what the decoder refuses"
        ),
    }
    // JSON, as OTLP/HTTP takes it.
    if let Ok(mut msg) = serde_json::from_slice::<S>(body) {
        let _ = msg.check();
    }
}

/// The window records of one traces batch (edges on, requests grouped by two attributes),
/// written out (so that a NaN compares equal to itself).
fn spans_windowed(batch: Batch) -> String {
    let cfg = WindowConfig {
        group_by: vec!["http.route".into(), "http.response.status_code".into()],
        ..Default::default()
    };
    let mut p = WindowProcessor::new(&cfg, "window", &Telemetry::new());
    let mut out = Vec::new();
    p.process(batch, &mut out);
    p.on_shutdown(&mut out);
    let records: Vec<WindowRecord> = out
        .into_iter()
        .flat_map(|b| match b.payload {
            Payload::Windows(w) => w.to_vec(),
            _ => Vec::new(),
        })
        .collect();
    format!("{records:?}")
}

/// OTLP export requests of all three signals, protobuf and JSON, and the wire split of what
/// decodes: every part within the limit where possible, and the parts together as many bytes
/// of items as the whole.
pub fn otlp_request(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => check_signal::<ExportTraceServiceRequest>(body),
        1 => check_signal::<ExportMetricsServiceRequest>(body),
        _ => check_signal::<ExportLogsServiceRequest>(body),
    }
    let limit = 64 + (selector as usize) * 4;
    if let Ok(Some(parts)) = crate::otlp::split::split(body, limit) {
        assert!(!parts.is_empty());
        if let Ok(whole) = ExportTraceServiceRequest::decode(body) {
            let spans = |r: &ExportTraceServiceRequest| -> usize {
                r.resource_spans
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .map(|ss| ss.spans.len())
                    .sum()
            };
            let split: usize = parts
                .iter()
                .filter_map(|p| ExportTraceServiceRequest::decode(&p[..]).ok())
                .map(|r| spans(&r))
                .sum();
            assert_eq!(split, spans(&whole), "the parts hold every span once");
        }
    }
}

/// Decompression of request bodies: never more than the limit out, whatever comes in.
pub fn decompress(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let encoding = Encoding::ALL[selector as usize % Encoding::ALL.len()];
    let limit = 1 + (selector as usize) * 257;
    if let Ok(out) = compression::decompress(encoding, bytes::Bytes::copy_from_slice(body), limit) {
        assert!(out.len() <= limit);
    }
}

/// One line of OTLP/JSON, as the file receiver reads it.
pub fn json_line(data: &[u8]) {
    if let Ok((batch, checked)) = crate::otlp::decode_json_line(data) {
        assert_eq!(batch.items, checked.accepted);
    }
}

/// Spans made from the bytes (16 per span: service, kind, times, status, peer) through the
/// window and iforest processors: every window record has finite, non-negative features and
/// every score is in [0, 1].
pub fn detection(data: &[u8]) {
    if data.first().is_some_and(|b| b % 4 == 3) {
        return log_detection(&data[1..]);
    }
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
    let kv = |k: &str, v: any_value::Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let base = crate::model::time::now_ns().saturating_sub(3600 * 1_000_000_000);
    let mut resources = Vec::new();
    for c in data.chunks(16) {
        let b = |i: usize| c.get(i).copied().unwrap_or(0) as u64;
        // Within about an hour: a wider spread only adds empty windows for silent services.
        let start = base + (b(2) << 8 | b(3)) * 50_000_000 + b(4) * 100_000;
        let duration = (b(5) << 24 | b(6) << 16 | b(7) << 8 | b(8)) * 1000;
        let end = if b(9) == 255 {
            start.saturating_sub(duration)
        } else {
            start + duration
        };
        let mut attributes = vec![kv(
            "http.response.status_code",
            any_value::Value::IntValue(b(10) as i64 * 4),
        )];
        if b(11) % 2 == 0 {
            attributes.push(kv(
                "server.address",
                any_value::Value::StringValue(format!("peer-{}", b(12) % 4)),
            ));
        }
        let span = Span {
            trace_id: vec![b(13) as u8 | 1; 16],
            span_id: vec![b(14) as u8 | 1; 8],
            name: "op".into(),
            kind: (b(1) % 6) as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            status: Some(Status {
                code: if b(15) % 5 == 0 {
                    status::StatusCode::Error as i32
                } else {
                    0
                },
                message: String::new(),
            }),
            ..Default::default()
        };
        resources.push(ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue(format!("svc-{}", b(0) % 5)),
                )],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    let items = resources.len();
    let batch = Batch {
        payload: Payload::Traces(crate::pipeline::Traces::decoded(
            ExportTraceServiceRequest {
                resource_spans: resources,
            },
        )),
        encoded: None,
        items,
        held: Default::default(),
    };
    let telemetry = Telemetry::new();
    let mut window = WindowProcessor::new(&WindowConfig::default(), "window", &telemetry);
    let mut out = Vec::new();
    window.process(batch, &mut out);
    window.on_shutdown(&mut out);
    let records = records_of(out);
    check_and_score(records, crate::model::window::SeriesKey::service("svc-0"));
}

/// The window records among a processor's output batches.
fn records_of(out: Vec<Batch>) -> Vec<WindowRecord> {
    out.into_iter()
        .filter_map(|b| match b.payload {
            Payload::Windows(r) => Some(r),
            _ => None,
        })
        .flat_map(|r| r.as_ref().clone())
        .collect()
}

/// Every record's features are finite and non-negative; the first 8 (scoring costs about the
/// same for every window, medians over the series' recent normal windows, and they cover every
/// path the input reaches at a rate that lets the fuzzer try millions of inputs), scored as
/// windows of `series` by a forest past its warm-up, get scores in [0, 1].
fn check_and_score(records: Vec<WindowRecord>, series: crate::model::window::SeriesKey) {
    for r in &records {
        assert!(
            r.features.iter().all(|f| f.is_finite() && *f >= 0.0),
            "{:?}",
            r.features
        );
    }
    let series = Arc::new(series);
    let mut forest = warm_forest();
    for mut r in records.into_iter().take(8) {
        r.series = series.clone();
        forest.score(&mut r);
        let a = r.anomaly.as_ref().map(|a| a.score).unwrap_or(0.0);
        assert!((0.0..=1.0).contains(&a), "score {a}");
    }
}

/// Log records made from the bytes (a line each: two bytes of time, one of severity number, one
/// choosing the severity text, the rest the message) through the window processor's log path
/// and the forest's log tests: Drain takes any message, features stay finite and non-negative,
/// scores in [0, 1], and every record is counted once.
fn log_detection(data: &[u8]) {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let base = crate::model::time::now_ns().saturating_sub(3600 * 1_000_000_000);
    let texts = [
        "", "INFO", "WARN", "error", "FATAL", "Warning", "ERR3", "debug",
    ];
    let mut records = Vec::new();
    for line in data.split(|&b| b == b'\n').take(256) {
        let b = |i: usize| line.get(i).copied().unwrap_or(0);
        records.push(LogRecord {
            time_unix_nano: base + (b(0) as u64 * 256 + b(1) as u64) * 50_000_000,
            severity_number: (b(2) % 26) as i32,
            severity_text: texts[(b(3) % 8) as usize].into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(
                    String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned(),
                )),
            }),
            ..Default::default()
        });
    }
    let sent = records.len();
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("svc-0".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let telemetry = Telemetry::new();
    let cfg = WindowConfig {
        max_log_templates: 64,
        ..WindowConfig::default()
    };
    let mut window = WindowProcessor::new(&cfg, "window", &telemetry);
    let mut out = Vec::new();
    window.process(
        Batch {
            payload: Payload::Logs(Arc::new(req)),
            encoded: None,
            items: sent,
            held: Default::default(),
        },
        &mut out,
    );
    window.on_shutdown(&mut out);
    let records = records_of(out);
    let counted: f64 = records.iter().map(|r| r.features[0]).sum();
    let late = telemetry.sum("otelwatch_window_late_spans_total", &[]);
    assert_eq!(
        counted as u64 + late,
        sent as u64,
        "every record counted once, or as late"
    );
    check_and_score(records, crate::model::window::SeriesKey::logs("svc-0"));
}

/// One forest, warmed up once on ordinary windows of `svc-0` (its spans and its logs), shared
/// by the inputs (it goes on learning from them).
fn warm_forest() -> std::sync::MutexGuard<'static, IForestProcessor> {
    static FOREST: std::sync::OnceLock<std::sync::Mutex<IForestProcessor>> =
        std::sync::OnceLock::new();
    FOREST
        .get_or_init(|| {
            // A small forest: the same code paths as the default one, at a rate that lets
            // the fuzzer run millions of inputs (learning dominates, in proportion to trees
            // × window).
            let cfg = IForestConfig {
                warmup: 16,
                trees: 4,
                window_size: 64,
                ..IForestConfig::default()
            };
            let mut p = IForestProcessor::new(&cfg, "iforest", &Telemetry::new());
            for k in 0..40u64 {
                let mut features = [0.0; crate::model::window::N_FEATURES];
                for (i, f) in features.iter_mut().enumerate() {
                    *f = 10.0 + (i as f64) + ((k * 7 + i as u64) % 5) as f64;
                }
                for series in [
                    crate::model::window::SeriesKey::service("svc-0"),
                    crate::model::window::SeriesKey::logs("svc-0"),
                ] {
                    let mut r = WindowRecord::new(
                        Arc::new(series),
                        1_700_000_000_000_000_000 + k * 10_000_000_000,
                        10_000_000_000,
                        features,
                    );
                    p.score(&mut r);
                }
            }
            std::sync::Mutex::new(p)
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The answer of a `_bulk` request.
pub fn bulk_response(data: &[u8]) {
    let Some((&n, body)) = data.split_first() else {
        return;
    };
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Ok(outcomes) = crate::exporters::elasticsearch::parse_bulk_response(&v, n as usize) {
            assert_eq!(outcomes.len(), n as usize);
        }
    }
}

/// A disk-queue file as read back after a crash, and a saved model file loaded and used.
pub fn stored_files(data: &[u8]) {
    let (docs, unreadable) = crate::exporters::elasticsearch::parse_spool_segment(data, "fuzz");
    let lines = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(docs.len() + unreadable.len(), lines);
    // A batch in an exporter's queue in storage: one that reads back is written the same way.
    use crate::exporters::framework::persistent;
    if let Ok(batch) = persistent::decode(data, true) {
        assert_eq!(persistent::encode(&batch).ok().as_deref(), Some(data));
    }
    if let Ok(batch) = persistent::decode(data, false) {
        assert_eq!(persistent::encode(&batch).ok().as_deref(), Some(data));
    }
    if let Ok(file) = serde_json::from_slice::<crate::processors::iforest::persist::ModelFile>(data)
    {
        let cfg = IForestConfig::default();
        let telemetry = Telemetry::new();
        let mut p = IForestProcessor::new(&cfg, "iforest", &telemetry);
        p.replace_models(crate::processors::iforest::persist::from_file(&cfg, &file));
        for key in file.series.iter().take(4).map(|s| s.service.clone()) {
            let mut r = WindowRecord::new(
                Arc::new(crate::model::window::SeriesKey::service(&key)),
                1_700_000_000_000_000_000,
                10_000_000_000,
                [1.0; crate::model::window::N_FEATURES],
            );
            p.score(&mut r);
        }
    }
}

/// Log records another instance sent (a line each: the bytes split at newlines, each line a
/// record's body, the first byte choosing the sender), read back as window records and joined
/// by the `records` processor: no panic, and every record handed on has a window length and
/// is handed on once.
pub fn window_records(data: &[u8]) {
    use crate::otlp::records::{INSTANCE_ATTRIBUTE, WINDOW_EVENT};
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let Some((&sender, body)) = data.split_first() else {
        return;
    };
    let text = |s: String| {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        })
    };
    let log_records = String::from_utf8_lossy(body)
        .lines()
        .map(|l| LogRecord {
            event_name: WINDOW_EVENT.into(),
            body: text(l.to_string()),
            ..Default::default()
        })
        .collect();
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: INSTANCE_ATTRIBUTE.into(),
                    value: text(format!("ow-{}", sender % 3)),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut p = crate::processors::records::RecordsProcessor::new(
        std::time::Duration::from_millis(1),
        "records",
        &Telemetry::default(),
    );
    let mut out = Vec::new();
    p.process(
        Batch {
            items: 1,
            payload: Payload::Logs(Arc::new(req)),
            encoded: None,
            held: Default::default(),
        },
        &mut out,
    );
    p.on_shutdown(&mut out);
    let mut seen = std::collections::HashSet::new();
    for b in out {
        let Payload::Windows(records) = b.payload else {
            panic!("records hands on window records only");
        };
        for r in records.iter() {
            assert!(r.interval_ns > 0);
            assert!(
                seen.insert((r.series.clone(), r.start_ns)),
                "a series' window handed on twice"
            );
        }
    }
}

#[cfg(all(test, feature = "tools"))]
mod tests {
    use super::*;

    /// A small deterministic mutator: seeds, then bytes flipped, inserted, removed and spliced.
    fn inputs(seeds: &[Vec<u8>], n: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
        let mut rng = crate::processors::iforest::forest::Rng::new(0x2545_f491_4f6c_dd1d);
        let mut next = move || rng.next_u64();
        (0..n).map(move |i| {
            let mut v = seeds[i % seeds.len()].clone();
            for _ in 0..(next() % 8) {
                let r = next();
                let at = if v.is_empty() {
                    0
                } else {
                    (r >> 8) as usize % v.len()
                };
                match r % 4 {
                    0 if !v.is_empty() => v[at] ^= (r >> 32) as u8,
                    1 => v.insert(at, (r >> 40) as u8),
                    2 if !v.is_empty() => {
                        v.remove(at);
                    }
                    _ => v.truncate(at),
                }
            }
            v
        })
    }

    fn seeds() -> Vec<Vec<u8>> {
        let mut f = crate::tools::loadgen::SpanFactory::new(3, 5);
        let req = f.request(12);
        let proto = req.encode_to_vec();
        let mut json = Vec::new();
        crate::otlp::encode_json_line(
            &Payload::Traces(crate::pipeline::Traces::decoded(req)),
            &mut json,
        )
        .unwrap();
        vec![
            [&[0u8][..], &proto].concat(),
            [&[3u8][..], &proto].concat(),
            json,
            br#"{"items":[{"create":{"status":201}},{"index":{"status":429}}]}"#.to_vec(),
            br#"{"index":"i","id":"a","body":{"x":1}}
{"broken"#
                .to_vec(),
            br#"{"format":"otelwatch-iforest","version":1,"seed":1,"series":[{"service":"a","target":null,"labels":[],"learned":40,"consecutive":0,"points":[[1,2],[3]],"normal":[],"scores":[]}]}"#.to_vec(),
            (0..200u8).collect(),
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fuzz/seeds/window_records/seed-1"
            ))
            .unwrap_or_default(),
        ]
    }

    #[test]
    fn every_entry_point_takes_mutated_inputs() {
        let seeds = seeds();
        for input in inputs(&seeds, 3000) {
            otlp_request(&input);
            decompress(&input);
            json_line(&input);
            bulk_response(&input);
            stored_files(&input);
            window_records(&input);
        }
        for input in inputs(&seeds, 200) {
            detection(&input);
        }
    }
}
