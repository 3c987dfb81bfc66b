//! otelwatch with the real OpenTelemetry Collector (built by `scripts/collector` from the
//! published collector modules) on both sides:
//! - downstream: otelwatch forwards to the collector, whose file exporter shows that every span,
//!   data point and log record arrived, unchanged, and exactly once, across an outage too;
//! - upstream: the collector's OTLP exporter (gzip by default) sends into otelwatch, and honours
//!   otelwatch's RESOURCE_EXHAUSTED + RetryInfo when the pipeline is full.

use crate::support::collector::*;
use crate::support::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use otelwatch::otlp::decode_json_line;
use otelwatch::pipeline::Payload;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Every span with its resource attributes and scope name, by span id: what "unchanged" means.
type FullSpans = BTreeMap<Vec<u8>, (Vec<KeyValue>, String, Span)>;

fn full_spans(req: &ExportTraceServiceRequest, into: &mut FullSpans) {
    for rs in &req.resource_spans {
        let attrs = rs
            .resource
            .as_ref()
            .map(|r| r.attributes.clone())
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            let scope = ss
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            for s in &ss.spans {
                let mut s = s.clone();
                // The collector's data model always has a status; an empty one is what an
                // absent one means in proto3.
                s.status.get_or_insert_with(Default::default);
                into.insert(s.span_id.clone(), (attrs.clone(), scope.clone(), s));
            }
        }
    }
}

fn read_full_spans(path: &Path) -> FullSpans {
    let mut out = FullSpans::new();
    let text = std::fs::read(path).unwrap_or_default();
    for line in complete_lines(&text) {
        let (batch, _) = decode_json_line(line).expect("the collector wrote an invalid line");
        if let Payload::Traces(t) = &batch.payload {
            full_spans(t.request(), &mut out);
        }
    }
    out
}

/// Where two renderings part, with some context on either side.
fn first_difference(want: &str, have: &str) -> String {
    let at = want
        .char_indices()
        .zip(have.chars())
        .find(|((_, a), b)| a != b)
        .map_or(want.len().min(have.len()), |((i, _), _)| i);
    let from = want[..at]
        .char_indices()
        .rev()
        .nth(80)
        .map_or(0, |(i, _)| i);
    let until = |s: &str| s[at..].chars().take(80).collect::<String>();
    format!(
        "...{}\n  sent: ...{}\n  got:  ...{}",
        &want[from..at],
        until(want),
        have.get(at..).map(|_| until(have)).unwrap_or_default()
    )
}

/// Builds `n` requests and remembers their spans in full.
fn requests(n: usize, spans: usize, seed: u64, sent: &mut FullSpans) -> Vec<bytes::Bytes> {
    use prost::Message;
    let mut ids = SpanSet::new();
    make_requests(n, spans, seed, &mut ids)
        .into_iter()
        .inspect(|b| {
            let r = ExportTraceServiceRequest::decode(b.clone()).unwrap();
            full_spans(&r, sent);
        })
        .collect()
}

fn send_metrics_logs(python: &Path, endpoint: &str, logs: usize) -> (usize, usize) {
    let out = Command::new(python)
        .arg(sdk_script("send_metrics_logs.py"))
        .args(["--protocol", "grpc", "--endpoint", endpoint])
        .args(["--logs", &logs.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["data_points"].as_u64().unwrap() as usize,
        v["log_records"].as_u64().unwrap() as usize,
    )
}

fn forwarder(grpc: u16, downstream: u16, compression: &str) -> String {
    forwarder_with("forward-all-signals.yaml", grpc, downstream, compression)
}

fn forwarder_with(file: &str, grpc: u16, downstream: u16, compression: &str) -> String {
    config(
        file,
        &[
            ("GRPC", &grpc),
            ("DOWNSTREAM", &downstream),
            ("COMPRESSION", &compression),
        ],
    )
}

fn setup() -> Option<(PathBuf, PathBuf)> {
    let bin = collector_binary()?;
    let python = sdk_python()?;
    Some((bin, python))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signal_reaches_the_real_collector_unchanged() {
    every_signal_unchanged("forward-all-signals.yaml").await;
}

/// The same through the batch processor, which merges requests on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signal_reaches_the_real_collector_unchanged_through_batch() {
    every_signal_unchanged("forward-all-signals-batched.yaml").await;
}

async fn every_signal_unchanged(forwarding: &str) {
    let Some((bin, python)) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (c_port, grpc) = (free_port(), free_port());
    let out = dir.path().join("collector.jsonl");
    let (mut collector, mut ow) = start_pair(
        &bin,
        dir.path(),
        file_sink_config(c_port, &out),
        forwarder_with(forwarding, grpc, c_port, "gzip"),
        true,
    )
    .await;

    // Traces built here (known in full), half of them gzip-compressed on the way in.
    let mut sent = FullSpans::new();
    for (i, body) in requests(40, 25, 11, &mut sent).into_iter().enumerate() {
        grpc_send(grpc, body, i % 2 == 0, TRACES).await.unwrap();
    }
    // And the OpenTelemetry Python SDK's traces, metrics and logs.
    let py = python.clone();
    let record = dir.path().join("sdk.sent");
    let (sdk_spans, (points, records)) = tokio::task::spawn_blocking(move || {
        let spans = sdk_send_spans(
            &py,
            "grpc",
            &format!("localhost:{grpc}"),
            150,
            "svc-sdk",
            &["--gzip"],
            &record,
        )
        .unwrap();
        (
            spans,
            send_metrics_logs(&py, &format!("localhost:{grpc}"), 9),
        )
    })
    .await
    .unwrap();
    let expected = sent.len() + sdk_spans.len();
    assert_eq!(expected, 40 * 25 + 150);

    let arrived = wait_until(Duration::from_secs(20), || {
        let (t, m, l) = items_by_kind(&out);
        t >= expected && m >= points && l >= records
    });
    assert!(
        arrived,
        "the collector got {:?} of ({expected}, {points}, {records}):\notelwatch:\n{}\ncollector:\n{}",
        items_by_kind(&out),
        ow.stderr(),
        collector.log()
    );
    assert!(ow.terminate().success(), "{}", ow.stderr());
    collector.stop();

    // Exactly as many items as were sent: nothing lost, nothing twice.
    assert_eq!(items_by_kind(&out), (expected, points, records));
    // Span for span, field for field, as they were sent.
    let got = read_full_spans(&out);
    for (id, want) in &sent {
        let have = got.get(id);
        assert!(
            have == Some(want),
            "span {id:02x?} changed on the way: {}",
            first_difference(&format!("{:?}", Some(want)), &format!("{have:?}"))
        );
    }
    let (ids, dups) = read_spans(&out);
    assert_eq!(dups, 0);
    for key in sdk_spans.keys() {
        assert!(ids.contains_key(key), "SDK span {key:?} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_reaches_the_real_collector_once_across_its_restart() {
    let Some((bin, _)) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (c_port, grpc) = (free_port(), free_port());
    let out = dir.path().join("collector.jsonl");
    let (mut collector, ow) = start_pair(
        &bin,
        dir.path(),
        file_sink_config(c_port, &out),
        forwarder(grpc, c_port, "none"),
        true,
    )
    .await;

    let mut sent = SpanSet::new();
    let bodies = make_requests(60, 20, 5, &mut sent);
    let (before, after) = bodies.split_at(20);
    for b in before {
        grpc_send(grpc, b.clone(), false, TRACES).await.unwrap();
    }
    // The collector goes away (graceful stop) while traffic continues, then comes back.
    let c = tokio::task::spawn_blocking(move || {
        collector.stop();
        collector
    })
    .await
    .unwrap();
    drop(c);
    for b in &after[..20] {
        grpc_send(grpc, b.clone(), false, TRACES).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let d = dir.path().to_path_buf();
    let cfg_c = file_sink_config(c_port, &out);
    let mut collector =
        tokio::task::spawn_blocking(move || Collector::start(&bin, &d, "collector2", &cfg_c))
            .await
            .unwrap();
    for b in &after[20..] {
        grpc_send(grpc, b.clone(), false, TRACES).await.unwrap();
    }

    wait_for_spans(&out, &sent, Duration::from_secs(30), || ow.stderr());
    collector.stop();
    assert_exactly(&out, &sent);
    assert!(
        ow.metric("otelwatch_exporter_retries_total{exporter=\"otlp/collector\"}") > 0.0,
        "the outage must have caused retries:\n{}",
        ow.metrics()
    );
}

/// The sending queue in storage: what otelwatch accepted while the collector was down is on
/// disk; a stop leaves it there at once (the retry waiting is cut short), a `kill -9` too, and
/// the start after the collector is back sends every span once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_in_storage_survives_a_stop_and_a_crash_while_the_collector_is_down() {
    let Some((bin, _)) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (c_port, grpc) = (free_port(), free_port());
    let out = dir.path().join("collector.jsonl");
    let cfg = config(
        "forward-stored.yaml",
        &[("GRPC", &grpc), ("DOWNSTREAM", &c_port)],
    );
    let mut sent = SpanSet::new();
    let bodies = make_requests(60, 20, 9, &mut sent);
    let queued = || {
        std::fs::read_dir(dir.path().join("storage/exporter_otlp_collector"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".otlp"))
                    .count()
            })
            .unwrap_or(0)
    };

    // Run 1: the collector is not there; 20 requests are accepted, then a stop.
    let d = dir.path().to_path_buf();
    let c = cfg.clone();
    let mut ow = tokio::task::spawn_blocking(move || Otelwatch::start(&d, "ow", &c))
        .await
        .unwrap();
    for b in &bodies[..20] {
        grpc_send(grpc, b.clone(), false, TRACES).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let (status, mut ow) = tokio::task::spawn_blocking(move || (ow.terminate(), ow))
        .await
        .unwrap();
    assert!(status.success(), "{}", ow.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the stop waited for retries: {:?}",
        started.elapsed()
    );
    assert_eq!(
        queued(),
        20,
        "every accepted request is in the queue:\n{}",
        ow.stderr()
    );
    assert!(ow
        .stderr()
        .contains("batches left in the queue for the next start"));

    // Run 2: still no collector; 20 more, then the process is killed.
    ow = tokio::task::spawn_blocking(move || {
        ow.spawn();
        ow
    })
    .await
    .unwrap();
    for b in &bodies[20..40] {
        grpc_send(grpc, b.clone(), false, TRACES).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    ow.signal("KILL");
    let _ = ow.wait_exit(Duration::from_secs(10));
    assert_eq!(queued(), 40, "{}", ow.stderr());

    // Run 3: the collector is back; the queue is sent, and new traffic goes through too.
    let d = dir.path().to_path_buf();
    let cfg_c = file_sink_config(c_port, &out);
    let (mut collector, ow) = tokio::task::spawn_blocking(move || {
        let c = Collector::start(&bin, &d, "collector", &cfg_c);
        ow.spawn();
        (c, ow)
    })
    .await
    .unwrap();
    let mut ow = ow;
    for b in &bodies[40..] {
        grpc_send(grpc, b.clone(), false, TRACES).await.unwrap();
    }
    wait_for_spans(&out, &sent, Duration::from_secs(30), || ow.stderr());
    assert!(
        wait_until(Duration::from_secs(10), || queued() == 0),
        "{} left",
        queued()
    );
    assert!(ow
        .stderr()
        .contains("sending what the last run left in the queue"));
    let status = tokio::task::spawn_blocking(move || (ow.terminate(), ow))
        .await
        .unwrap();
    assert!(status.0.success(), "{}", status.1.stderr());
    collector.stop();
    assert_exactly(&out, &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_collector_exports_into_otelwatch_with_gzip() {
    let Some((bin, python)) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (c_port, grpc) = (free_port(), free_port());
    let (mut collector, mut ow) = start_pair(
        &bin,
        dir.path(),
        relay_config(c_port, grpc, PLAINTEXT, ""),
        config("behind-collector.yaml", &[("GRPC", &grpc)]),
        false,
    )
    .await;

    let mut sent = SpanSet::new();
    for body in make_requests(30, 20, 21, &mut sent) {
        grpc_send(c_port, body, false, TRACES).await.unwrap();
    }
    let py = python.clone();
    let record = dir.path().join("sdk.sent");
    let (sdk_spans, (points, records)) = tokio::task::spawn_blocking(move || {
        let spans = sdk_send_spans(
            &py,
            "grpc",
            &format!("localhost:{c_port}"),
            120,
            "svc-via-collector",
            &[],
            &record,
        )
        .unwrap();
        (
            spans,
            send_metrics_logs(&py, &format!("localhost:{c_port}"), 6),
        )
    })
    .await
    .unwrap();
    sent.extend(sdk_spans);

    let file = dir.path().join("in.jsonl");
    let arrived = wait_until(Duration::from_secs(20), || {
        let (t, m, l) = items_by_kind(&file);
        t >= sent.len() && m >= points && l >= records
    });
    assert!(
        arrived,
        "otelwatch got {:?} of ({}, {points}, {records}):\ncollector:\n{}",
        items_by_kind(&file),
        sent.len(),
        collector.log()
    );
    collector.stop();
    let metrics = ow.metrics();
    assert!(ow.terminate().success(), "{}", ow.stderr());

    assert_exactly(&file, &sent);
    assert_eq!(items_by_kind(&file), (sent.len(), points, records));
    // The collector compressed every request (gzip is its OTLP exporter's default).
    let requests = |enc: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "otelwatch_receiver_requests_total{{receiver=\"otlp\",transport=\"grpc\",encoding=\"{enc}\"}} "
                ))
                .and_then(|v| v.parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    };
    assert!(requests("gzip") > 0.0, "{metrics}");
    assert_eq!(requests("identity"), 0.0, "{metrics}");
    // The spans fed the window processor: one series per service that sent spans.
    let windows = std::fs::read_to_string(dir.path().join("windows.jsonl")).unwrap();
    assert!(
        windows.contains("\"svc-via-collector\""),
        "no windows for the SDK's service"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_collector_retries_when_otelwatch_pushes_back() {
    let Some((bin, _)) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (c_port, grpc, down) = (free_port(), free_port(), free_port());
    // otelwatch forwards to a downstream that is not up yet, through a one-slot queue: its
    // pipeline fills, and the receiver answers RESOURCE_EXHAUSTED with a RetryInfo of 1 s.
    let stuck = config(
        "behind-collector-stuck-downstream.yaml",
        &[("GRPC", &grpc), ("DOWNSTREAM", &down)],
    );
    // The collector's exporter: its queue takes everything at once, ten senders retry.
    let retrying = relay_config(
        c_port,
        grpc,
        PLAINTEXT,
        "retry_on_failure: { initial_interval: 200ms, max_interval: 2s, max_elapsed_time: 300s }",
    );
    let (collector, ow) = start_pair(&bin, dir.path(), retrying, stuck, false).await;

    let mut sent = SpanSet::new();
    for body in make_requests(400, 5, 31, &mut sent) {
        grpc_send(c_port, body, false, TRACES).await.unwrap();
    }
    let refused = "otelwatch_receiver_refused_items_total{receiver=\"otlp\",transport=\"grpc\",signal=\"traces\"}";
    let pushed_back = wait_until(Duration::from_secs(20), || ow.metric(refused) > 0.0);
    assert!(pushed_back, "otelwatch never refused:\n{}", ow.metrics());

    // The downstream comes up: otelwatch drains, the collector's retries get in, nothing is lost.
    let out = dir.path().join("down.jsonl");
    let d = dir.path().to_path_buf();
    let cfg = file_sink_config(down, &out);
    let mut downstream =
        tokio::task::spawn_blocking(move || Collector::start(&bin, &d, "downstream", &cfg))
            .await
            .unwrap();
    wait_for_spans(&out, &sent, Duration::from_secs(90), || {
        format!("{}\n{}", ow.stderr(), collector.log())
    });
    downstream.stop();
    assert_exactly(&out, &sent);
    drop(collector);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlphttp_reaches_the_real_collector_unchanged_as_protobuf_and_json() {
    let Some((bin, python)) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (c_port, grpc_proto, grpc_json) = (free_port(), free_port(), free_port());
    let out = dir.path().join("collector.jsonl");
    let collector_cfg = file_sink_config_with("http", c_port, "", &out);
    let cfg = config(
        "otlphttp-protobuf-and-json.yaml",
        &[
            ("GRPC", &grpc_proto),
            ("GRPC_JSON", &grpc_json),
            ("COLLECTOR", &c_port),
        ],
    );
    let (mut collector, mut ow) = start_pair(&bin, dir.path(), collector_cfg, cfg, true).await;

    let mut sent = FullSpans::new();
    for body in requests(20, 25, 51, &mut sent) {
        grpc_send(grpc_proto, body, false, TRACES).await.unwrap();
    }
    for body in requests(20, 25, 52, &mut sent) {
        grpc_send(grpc_json, body, false, TRACES).await.unwrap();
    }
    let py = python.clone();
    let (points, records) = tokio::task::spawn_blocking(move || {
        send_metrics_logs(&py, &format!("localhost:{grpc_proto}"), 5)
    })
    .await
    .unwrap();
    let arrived = wait_until(Duration::from_secs(20), || {
        let (t, m, l) = items_by_kind(&out);
        t >= sent.len() && m >= points && l >= records
    });
    assert!(
        arrived,
        "the collector got {:?} of ({}, {points}, {records}):\notelwatch:\n{}\ncollector:\n{}",
        items_by_kind(&out),
        sent.len(),
        ow.stderr(),
        collector.log()
    );
    assert!(ow.terminate().success(), "{}", ow.stderr());
    collector.stop();
    assert_eq!(items_by_kind(&out), (sent.len(), points, records));
    let got = read_full_spans(&out);
    for (id, want) in &sent {
        let have = got.get(id);
        assert!(
            have == Some(want),
            "span {id:02x?} changed on the way: {}",
            first_difference(&format!("{:?}", Some(want)), &format!("{have:?}"))
        );
    }
}

/// One request of about 12 MiB into otelwatch's HTTP receiver, forwarded (by `otelwatch_cfg`)
/// to a collector (`collector_cfg`) that takes 4 MiB: every span arrives once, unchanged.
async fn a_large_request_is_split_for(
    collector_cfg: impl Fn(u16, &std::path::Path) -> String,
    otelwatch_cfg: &str,
) {
    let Some((bin, _)) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (c_port, http) = (free_port(), free_port());
    let out = dir.path().join("collector.jsonl");
    let (mut collector, mut ow) = start_pair(
        &bin,
        dir.path(),
        collector_cfg(c_port, &out),
        config(otelwatch_cfg, &[("HTTP", &http), ("DOWNSTREAM", &c_port)]),
        true,
    )
    .await;
    // Three times the collector's 4 MiB limit.
    let mut sent = FullSpans::new();
    let body = requests(1, 70_000, 5, &mut sent).remove(0);
    assert!(body.len() > 3 * 4 * 1024 * 1024, "{} bytes", body.len());
    let (status, _, answer) = http_post(
        http,
        "/v1/traces",
        &[("content-type", "application/x-protobuf")],
        body.to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let arrived = wait_until(Duration::from_secs(30), || {
        items_by_kind(&out).0 >= sent.len()
    });
    assert!(
        arrived,
        "the collector got {:?} of {} spans:\notelwatch:\n{}\ncollector:\n{}",
        items_by_kind(&out),
        sent.len(),
        ow.stderr(),
        collector.log()
    );
    assert!(ow.terminate().success(), "{}", ow.stderr());
    collector.stop();
    let (ids, dups) = read_spans(&out);
    assert_eq!((ids.len(), dups), (sent.len(), 0));
    assert_eq!(
        read_full_spans(&out),
        sent,
        "every span unchanged, with its resource"
    );
}

/// Over OTLP/gRPC to the collector at its default 4 MiB message limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_collector_takes_is_split_and_nothing_is_lost() {
    a_large_request_is_split_for(file_sink_config, "forward-http-to-collector.yaml").await;
}

/// Over OTLP/HTTP to the collector's HTTP receiver, limited to 4 MiB a body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_collectors_http_limit_is_split_and_nothing_is_lost() {
    let sink = |port, out: &std::path::Path| {
        file_sink_config_with("http", port, "max_request_body_size: 4194304", out)
    };
    a_large_request_is_split_for(sink, "forward-http-to-collector-over-http.yaml").await;
}
