//! Generated log records and metric points, for the generator's `--signal logs|metrics` and
//! the benchmarks: what a handful of instrumented services send between their spans.

use super::{kv, s, service_names};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const ROUTES: [&str; 6] = [
    "/api/orders",
    "/api/cart",
    "/api/users/{id}",
    "/api/search",
    "/api/payments",
    "/healthz",
];

/// The request-duration histogram's bounds in seconds (the semantic conventions' advice).
const BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", s(service)),
            kv("telemetry.sdk.name", s("otelwatch-loadgen")),
        ],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "otelwatch.loadgen".into(),
        ..Default::default()
    })
}

/// `n` items spread over `slots` as evenly as possible: slot `i`'s share.
fn share(n: usize, slots: usize, i: usize) -> usize {
    n / slots + usize::from(i < n % slots)
}

/// Log records of a few templates with varying values (a request served, a login, a refused
/// connection, a slow query), a tenth of them errors, each with a trace context.
pub struct LogFactory {
    rng: SmallRng,
    services: Vec<String>,
}

impl LogFactory {
    pub fn new(services: usize, seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            services: service_names(services),
        }
    }

    fn message(&mut self, error: bool) -> String {
        let r = &mut self.rng;
        if error {
            return match r.random_range(0..2) {
                0 => format!(
                    "Connection refused to db-{}:5432 after {} retries",
                    r.random_range(0..4),
                    r.random_range(1..6)
                ),
                _ => format!(
                    "order {} failed: payment gateway answered {}",
                    r.random_range(10_000..99_999),
                    [502, 503, 504][r.random_range(0..3)]
                ),
            };
        }
        match r.random_range(0..3) {
            0 => format!(
                "GET {} served in {} ms",
                ROUTES[r.random_range(0..ROUTES.len())],
                r.random_range(2..400)
            ),
            1 => format!(
                "user {} logged in from 10.0.{}.{}",
                r.random_range(1..5000),
                r.random_range(0..255),
                r.random_range(0..255)
            ),
            _ => format!(
                "query on table {} took {} ms",
                ["orders", "users", "carts"][r.random_range(0..3)],
                r.random_range(1..90)
            ),
        }
    }

    /// One request of `records` log records, stamped now, spread over the services.
    pub fn request(&mut self, records: usize) -> ExportLogsServiceRequest {
        let now = crate::model::time::now_ns();
        let n = self.services.len();
        let resource_logs = (0..n)
            .filter(|i| share(records, n, *i) > 0)
            .map(|i| {
                let log_records = (0..share(records, n, i))
                    .map(|_| {
                        let error = self.rng.random_range(0..10) == 0;
                        let body = self.message(error);
                        let trace_id: [u8; 16] = self.rng.random();
                        let span_id: [u8; 8] = self.rng.random();
                        LogRecord {
                            time_unix_nano: now,
                            observed_time_unix_nano: now,
                            severity_number: if error { 17 } else { 9 },
                            severity_text: if error { "ERROR" } else { "INFO" }.into(),
                            body: Some(AnyValue {
                                value: Some(any_value::Value::StringValue(body)),
                            }),
                            trace_id: trace_id.to_vec(),
                            span_id: span_id.to_vec(),
                            ..Default::default()
                        }
                    })
                    .collect();
                ResourceLogs {
                    resource: resource(&self.services[i]),
                    scope_logs: vec![ScopeLogs {
                        scope: scope(),
                        log_records,
                        ..Default::default()
                    }],
                    ..Default::default()
                }
            })
            .collect();
        ExportLogsServiceRequest { resource_logs }
    }
}

/// Per service three semantic-convention metrics with one point per route: the process's CPU
/// utilization (a gauge), its CPU time (a cumulative monotonic sum) and the request duration
/// (a cumulative explicit-bucket histogram), each request continuing the cumulative series.
pub struct MetricFactory {
    rng: SmallRng,
    services: Vec<String>,
    start_ns: u64,
    /// Each (service, route)'s CPU seconds so far.
    cpu: Vec<f64>,
    /// Each (service, route)'s request durations so far: count, sum and bucket counts.
    durations: Vec<(u64, f64, [u64; BOUNDS.len() + 1])>,
}

/// The metrics of each service, in the order their points are handed out.
const METRICS: usize = 3;

impl MetricFactory {
    pub fn new(services: usize, seed: u64) -> Self {
        let services = service_names(services);
        let series = services.len() * ROUTES.len();
        Self {
            rng: SmallRng::seed_from_u64(seed),
            services,
            start_ns: crate::model::time::now_ns(),
            cpu: vec![0.0; series],
            durations: vec![(0, 0.0, [0; BOUNDS.len() + 1]); series],
        }
    }

    fn number(&self, route: usize, now: u64, v: f64) -> NumberDataPoint {
        NumberDataPoint {
            attributes: vec![kv("http.route", s(ROUTES[route]))],
            start_time_unix_nano: self.start_ns,
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    /// Adds about 20 requests of lognormal-ish latency to one series' histogram.
    fn observe(&mut self, series: usize) -> HistogramDataPoint {
        let requests = self.rng.random_range(10..30);
        for _ in 0..requests {
            let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
            let u2: f64 = self.rng.random();
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let secs = 0.04 * (0.5 * z).exp();
            let (count, sum, buckets) = &mut self.durations[series];
            *count += 1;
            *sum += secs;
            buckets[BOUNDS.partition_point(|b| *b < secs)] += 1;
        }
        let (count, sum, buckets) = self.durations[series];
        HistogramDataPoint {
            attributes: vec![kv("http.route", s(ROUTES[series % ROUTES.len()]))],
            start_time_unix_nano: self.start_ns,
            time_unix_nano: crate::model::time::now_ns(),
            count,
            sum: Some(sum),
            bucket_counts: buckets.to_vec(),
            explicit_bounds: BOUNDS.to_vec(),
            ..Default::default()
        }
    }

    /// One request of `points` data points, stamped now, spread over the services' metrics
    /// (at most one point per route: more are capped at 3 × routes per service).
    pub fn request(&mut self, points: usize) -> ExportMetricsServiceRequest {
        let now = crate::model::time::now_ns();
        let n = self.services.len();
        let cumulative = AggregationTemporality::Cumulative as i32;
        let mut resource_metrics = Vec::new();
        for svc in 0..n {
            let mut metrics = Vec::new();
            for m in 0..METRICS {
                let k = share(points, n * METRICS, svc * METRICS + m).min(ROUTES.len());
                if k == 0 {
                    continue;
                }
                let series = |route: usize| svc * ROUTES.len() + route;
                let (name, unit, data) = match m {
                    0 => {
                        let points = (0..k)
                            .map(|r| {
                                let v = self.rng.random_range(0.05..0.4);
                                self.number(r, now, v)
                            })
                            .collect();
                        (
                            "process.cpu.utilization",
                            "1",
                            Data::Gauge(Gauge {
                                data_points: points,
                            }),
                        )
                    }
                    1 => {
                        let points = (0..k)
                            .map(|r| {
                                self.cpu[series(r)] += self.rng.random_range(0.01..0.2);
                                self.number(r, now, self.cpu[series(r)])
                            })
                            .collect();
                        (
                            "process.cpu.time",
                            "s",
                            Data::Sum(Sum {
                                data_points: points,
                                aggregation_temporality: cumulative,
                                is_monotonic: true,
                            }),
                        )
                    }
                    _ => {
                        let points = (0..k).map(|r| self.observe(series(r))).collect();
                        (
                            "http.server.request.duration",
                            "s",
                            Data::Histogram(Histogram {
                                data_points: points,
                                aggregation_temporality: cumulative,
                            }),
                        )
                    }
                };
                metrics.push(Metric {
                    name: name.into(),
                    unit: unit.into(),
                    data: Some(data),
                    ..Default::default()
                });
            }
            if !metrics.is_empty() {
                resource_metrics.push(ResourceMetrics {
                    resource: resource(&self.services[svc]),
                    scope_metrics: vec![ScopeMetrics {
                        scope: scope(),
                        metrics,
                        ..Default::default()
                    }],
                    ..Default::default()
                });
            }
        }
        ExportMetricsServiceRequest { resource_metrics }
    }
}

/// The log records of a request.
pub fn count_log_records(r: &ExportLogsServiceRequest) -> u64 {
    r.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as u64)
        .sum()
}

/// The data points of a request (a histogram point counts once).
pub fn count_metric_points(r: &ExportMetricsServiceRequest) -> u64 {
    r.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| crate::otlp::data_points(m) as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_requests_hold_the_records_asked_for_with_some_errors() {
        let mut f = LogFactory::new(3, 7);
        let req = f.request(200);
        assert_eq!(count_log_records(&req), 200);
        assert_eq!(req.resource_logs.len(), 3);
        let errors = req
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .filter(|l| l.severity_number >= 17)
            .count();
        assert!((5..=40).contains(&errors), "{errors}");
        assert_eq!(f.request(2).resource_logs.len(), 2, "no empty resources");
    }

    #[test]
    fn metric_requests_hold_the_points_asked_for_and_their_sums_only_grow() {
        let mut f = MetricFactory::new(4, 7);
        let first = f.request(60);
        assert_eq!(count_metric_points(&first), 60);
        // Capped at three metrics of six routes per service.
        assert_eq!(count_metric_points(&f.request(500)), 4 * 3 * 6);
        let next = f.request(60);
        let sum_of = |r: &ExportMetricsServiceRequest| -> Vec<f64> {
            r.resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .filter_map(|m| match &m.data {
                    Some(Data::Sum(s)) => Some(&s.data_points),
                    _ => None,
                })
                .flatten()
                .filter_map(|p| match p.value {
                    Some(number_data_point::Value::AsDouble(v)) => Some(v),
                    _ => None,
                })
                .collect()
        };
        let (a, b) = (sum_of(&first), sum_of(&next));
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(a, b)| b > a), "{a:?} {b:?}");
        let hist = next.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .find_map(|m| match &m.data {
                Some(Data::Histogram(h)) => Some(h.data_points[0].clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(hist.bucket_counts.iter().sum::<u64>(), hist.count);
        assert_eq!(hist.bucket_counts.len(), hist.explicit_bounds.len() + 1);
    }
}
