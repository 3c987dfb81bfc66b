//! Micro-benchmarks of the detection path's hot parts: decoding a request of spans in full
//! against reading what detection needs from its bytes (the span view), the window processor
//! taking a batch of spans, of log records and of metric points, the online forest scoring a
//! window, and a receiver's fan-out to two pipelines.
//! `cargo bench` runs them; the end-to-end throughput figures are in docs/benchmarks.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use otelwatch::model::window::N_FEATURES;
use otelwatch::pipeline::{Batch, FanOut, Payload, PipelineInput};
use otelwatch::processors::iforest::forest::{ForestParams, OnlineForest};
use otelwatch::processors::window::{WindowConfig, WindowProcessor};
use otelwatch::processors::Processor;
use otelwatch::telemetry::Telemetry;
use otelwatch::tools::loadgen::records::{
    count_log_records, count_metric_points, LogFactory, MetricFactory,
};
use otelwatch::tools::loadgen::SpanFactory;
use std::sync::Arc;
use std::time::Duration;

fn span_batch(spans: usize) -> Batch {
    let req = SpanFactory::new(8, 7).request(spans);
    let items = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    Batch {
        payload: Payload::Traces(otelwatch::pipeline::Traces::decoded(req)),
        encoded: None,
        items,
        held: Default::default(),
    }
}

/// 150 spans of 8 services, as the SDKs send them: the full decode (every attribute a heap
/// string), and the view reading each span's service, kind, times, status and the attributes
/// the window looks up.
fn decode(c: &mut Criterion) {
    use prost::Message;
    let req = SpanFactory::new(8, 7).request(150);
    let body = req.encode_to_vec();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(150));
    group.bench_function("150 spans, full", |b| {
        b.iter(|| {
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                &body[..],
            )
            .map(|r| r.resource_spans.len())
        })
    });
    group.bench_function("150 spans, wire check", |b| {
        b.iter(|| otelwatch::otlp::view::check_traces(&body).map(|c| c.spans))
    });
    group.bench_function("150 spans, view", |b| {
        b.iter(|| {
            let mut n = 0u64;
            otelwatch::otlp::view::for_each_span(&body, |resource, span| {
                let [status, target] = span
                    .attributes()
                    .get_many(["http.response.status_code", "peer.service"])
                    .unwrap_or_default();
                let service = resource.service;
                let target = match target {
                    Some(otelwatch::otlp::view::AttrValue::Str(t)) => Some(t),
                    _ => None,
                };
                n += span
                    .end_time_unix_nano
                    .wrapping_sub(span.start_time_unix_nano)
                    + service.map_or(0, |s| s.len() as u64)
                    + status.is_some() as u64
                    + target.map_or(0, |t| t.len() as u64)
                    + span.kind as u64;
            })
            .map(|()| n)
        })
    });
    group.finish();
}

fn window_ingest(c: &mut Criterion) {
    let batch = span_batch(150);
    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(batch.items as u64));
    let telemetry = Telemetry::new();
    let mut window = WindowProcessor::new(&WindowConfig::default(), "window", &telemetry);
    let mut out = Vec::new();
    group.bench_function("ingest 150 spans", |b| {
        b.iter(|| {
            window.process(batch.clone(), &mut out);
            out.clear();
        })
    });
    // The same spans as the receiver hands them on: bytes, read with the view.
    let body = bytes::Bytes::from(prost::Message::encode_to_vec(
        &SpanFactory::new(8, 7).request(150),
    ));
    let (wire, _) = <opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest as otelwatch::otlp::Signal>::receive(body)
        .expect("generated spans decode");
    let mut window = WindowProcessor::new(&WindowConfig::default(), "window", &telemetry);
    group.bench_function("ingest 150 spans from the wire", |b| {
        b.iter(|| {
            window.process(wire.clone(), &mut out);
            out.clear();
        })
    });
    group.finish();
}

/// 150 log records of 8 services from the load generator: messages of a few templates with
/// varying values, a tenth of them errors, all in one window.
fn log_batch() -> Batch {
    let req = LogFactory::new(8, 7).request(150);
    Batch {
        items: count_log_records(&req) as usize,
        payload: Payload::Logs(Arc::new(req)),
        encoded: None,
        held: Default::default(),
    }
}

/// 64 successive requests of 144 metric points of 8 services from the load generator: per
/// service a CPU gauge, a cumulative CPU-time sum and a cumulative request-duration histogram
/// (15 buckets), each with 6 routes.
fn metric_batches() -> Vec<Batch> {
    let mut f = MetricFactory::new(8, 7);
    (0..64)
        .map(|_| {
            let req = f.request(144);
            Batch {
                items: count_metric_points(&req) as usize,
                payload: Payload::Metrics(Arc::new(req)),
                encoded: None,
                held: Default::default(),
            }
        })
        .collect()
}

fn log_and_metric_ingest(c: &mut Criterion) {
    let telemetry = Telemetry::new();
    let mut group = c.benchmark_group("window");
    let logs = log_batch();
    group.throughput(Throughput::Elements(logs.items as u64));
    let mut window = WindowProcessor::new(&WindowConfig::default(), "window", &telemetry);
    let mut out = Vec::new();
    group.bench_function(format!("ingest {} log records", logs.items), |b| {
        b.iter(|| {
            window.process(logs.clone(), &mut out);
            out.clear();
        })
    });
    let batches = metric_batches();
    group.throughput(Throughput::Elements(batches[0].items as u64));
    let mut window = WindowProcessor::new(&WindowConfig::default(), "window", &telemetry);
    let mut i = 0;
    group.bench_function(format!("ingest {} metric points", batches[0].items), |b| {
        b.iter(|| {
            window.process(batches[i % batches.len()].clone(), &mut out);
            i += 1;
            out.clear();
        })
    });
    group.finish();
}

fn forest_score(c: &mut Criterion) {
    let params = ForestParams {
        trees: 50,
        max_leaf_samples: 8,
        window: 1024,
        adaptive: true,
        subsample: 1.0,
        bounded: true,
    };
    let mut forest = OnlineForest::new(params, N_FEATURES, 1);
    let point = |i: usize| -> Vec<f64> {
        (0..N_FEATURES)
            .map(|f| ((i * 31 + f * 17) % 97) as f64 / 97.0)
            .collect()
    };
    for i in 0..1024 {
        forest.learn(&point(i));
    }
    let x = point(5000);
    c.bench_function("forest score one window (50 trees)", |b| {
        b.iter(|| forest.score(std::hint::black_box(&x)))
    });
    c.bench_function("forest learn one window (50 trees)", |b| {
        b.iter_batched(|| point(7), |p| forest.learn(&p), BatchSize::SmallInput)
    });
}

fn fan_out(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let batch = span_batch(150);
    let targets = (0..2)
        .map(|i| {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(128);
            rt.spawn(async move { while rx.recv().await.is_some() {} });
            PipelineInput::forwarding(format!("traces/{i}").into(), tx)
        })
        .collect();
    let fan = FanOut::new(targets, Duration::from_secs(1));
    c.bench_function("fan-out one batch to two pipelines", |b| {
        b.iter(|| rt.block_on(fan.send(batch.clone())))
    });
}

criterion_group!(
    benches,
    decode,
    window_ingest,
    log_and_metric_ingest,
    forest_score,
    fan_out
);
criterion_main!(benches);
