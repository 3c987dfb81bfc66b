//! Micro-benchmarks of the detection path's hot parts: the window processor taking a batch of
//! spans, of log records and of metric points, the online forest scoring a window, and a
//! receiver's fan-out to two pipelines.
//! `cargo bench` runs them; the end-to-end throughput figures are in docs/benchmarks.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use otelwatch::model::window::N_FEATURES;
use otelwatch::pipeline::{Batch, FanOut, Payload, PipelineInput};
use otelwatch::processors::iforest::forest::{ForestParams, OnlineForest};
use otelwatch::processors::window::{WindowConfig, WindowProcessor};
use otelwatch::processors::Processor;
use otelwatch::telemetry::Telemetry;
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
        payload: Payload::Traces(Arc::new(req)),
        encoded: None,
        items,
        held: Default::default(),
    }
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
    group.finish();
}

/// 150 log records of 8 services: messages of a few templates with varying values, a tenth of
/// them errors, all in one window.
fn log_batch() -> Batch {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let now = otelwatch::model::time::now_ns();
    let text = |s: String| {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        })
    };
    let resource_logs = (0..8)
        .map(|svc| ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: text(format!("service-{svc}")),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: (0..150 / 8 + 1)
                    .map(|i| LogRecord {
                        time_unix_nano: now,
                        severity_number: if i % 10 == 0 { 17 } else { 9 },
                        body: text(match i % 3 {
                            0 => format!("GET /api/orders/{i} served in {} ms", i * 7),
                            1 => format!("user {i} logged in from 10.0.{}.{}", i % 7, i % 13),
                            _ => {
                                format!("Connection refused to db-{}:5432 after {i} retries", i % 3)
                            }
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    let req = ExportLogsServiceRequest { resource_logs };
    let items = req
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    Batch {
        payload: Payload::Logs(Arc::new(req)),
        encoded: None,
        items,
        held: Default::default(),
    }
}

/// 160 metric points of 8 services: per service a CPU gauge, a cumulative counter and a
/// cumulative request-duration histogram (14 buckets), each with 6 attribute sets, at one time.
fn metric_batch(step: u64) -> Batch {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, number_data_point, AggregationTemporality, Gauge, Histogram,
        HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let now = otelwatch::model::time::now_ns();
    let kv = |k: &str, v: String| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
        ..Default::default()
    };
    let number = |route: usize, v: f64| NumberDataPoint {
        attributes: vec![kv("http.route", format!("/api/{route}"))],
        start_time_unix_nano: now - 3_600_000_000_000,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let cumulative = AggregationTemporality::Cumulative as i32;
    let resource_metrics = (0..8)
        .map(|svc| ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", format!("service-{svc}"))],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "process.cpu.utilization".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: (0..6).map(|r| number(r, 0.1 * r as f64)).collect(),
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "process.runtime.jvm.gc.count".into(),
                        data: Some(Data::Sum(Sum {
                            data_points: (0..6)
                                .map(|r| number(r, (step * 10 + r as u64) as f64))
                                .collect(),
                            aggregation_temporality: cumulative,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "http.server.request.duration".into(),
                        data: Some(Data::Histogram(Histogram {
                            data_points: (0..6)
                                .map(|r| HistogramDataPoint {
                                    attributes: vec![kv("http.route", format!("/api/{r}"))],
                                    start_time_unix_nano: now - 3_600_000_000_000,
                                    time_unix_nano: now,
                                    count: 15 * step,
                                    sum: Some(1.5 * step as f64),
                                    explicit_bounds: vec![
                                        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0,
                                        2.5, 5.0, 7.5,
                                    ],
                                    bucket_counts: vec![step; 14],
                                    ..Default::default()
                                })
                                .collect(),
                            aggregation_temporality: cumulative,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    let req = ExportMetricsServiceRequest { resource_metrics };
    Batch {
        payload: Payload::Metrics(Arc::new(req)),
        encoded: None,
        items: 8 * 3 * 6,
        held: Default::default(),
    }
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
    let batches: Vec<Batch> = (1..=64).map(metric_batch).collect();
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
    window_ingest,
    log_and_metric_ingest,
    forest_score,
    fan_out
);
criterion_main!(benches);
