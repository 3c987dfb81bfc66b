//! The Nezha Train-Ticket per-pod metrics (`metric/<POD>_metric.csv`, one row per sample, the
//! sample time in `TimeStamp`, Unix seconds) converted to OTLP/JSON metrics requests, so that a
//! replay can feed the pipeline metrics next to the converted traces and logs (see `super::real`).
//!
//! What is converted: every pod column, each as one OTLP Gauge (the files hold instantaneous
//! readings and rates already computed over the sampling interval, not cumulative counters), one
//! `NumberDataPoint` (`asDouble`) per sample, scaled to OpenTelemetry's units (see [`METRICS`]):
//! CPU in cores, ratios in [0, 1] instead of percent, memory in bytes. Each pod is one resource
//! (`service.name` = the pod's service, `k8s.pod.name` = the pod) with one scope `nezha-replay`.
//! Columns are found by their header name, not their position. Points whose value is `NaN`,
//! empty or otherwise not finite are skipped (JSON has no NaN), and a sample with no point left
//! is dropped.
//!
//! What is not converted: the `Node*` columns (node CPU, memory and network) describe the node the
//! pod runs on, shared by every pod on it, not the service, so attributing them to the pod's
//! service would blame every service on a busy node; `Time` (the same instant as `TimeStamp`, as
//! text) and `PodName` (the file name gives the pod) are not values; `front_service.csv` (the
//! front end's latency and success rate, a different header) is skipped.

use super::real::{csv_fields, data_err, service_of, RealError};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

/// One sample: (time on the data's clock, ns; points as (metric index into [`METRICS`], scaled
/// value)).
pub type Sample = (u64, Vec<(usize, f64)>);

/// One pod's samples, sorted by time.
#[derive(Debug, Clone, PartialEq)]
pub struct PodMetrics {
    pub pod: String,
    pub samples: Vec<Sample>,
}

/// The converted columns: (CSV column, OTLP metric name, unit, factor the value is multiplied by).
pub const METRICS: &[(&str, &str, &str, f64)] = &[
    ("CpuUsage(m)", "k8s.pod.cpu.usage", "{cpu}", 1e-3),
    ("CpuUsageRate(%)", "k8s.pod.cpu.utilization", "1", 1e-2),
    ("MemoryUsage(Mi)", "k8s.pod.memory.usage", "By", 1_048_576.0),
    (
        "MemoryUsageRate(%)",
        "k8s.pod.memory.utilization",
        "1",
        1e-2,
    ),
    ("SyscallRead", "k8s.pod.syscall.read", "{call}/s", 1.0),
    ("SyscallWrite", "k8s.pod.syscall.write", "{call}/s", 1.0),
    (
        "NetworkReceiveBytes",
        "k8s.pod.network.receive",
        "By/s",
        1.0,
    ),
    (
        "NetworkTransmitBytes",
        "k8s.pod.network.transmit",
        "By/s",
        1.0,
    ),
    (
        "PodClientLatencyP90(s)",
        "nezha.pod.client.latency.p90",
        "s",
        1.0,
    ),
    (
        "PodServerLatencyP90(s)",
        "nezha.pod.server.latency.p90",
        "s",
        1.0,
    ),
    (
        "PodClientLatencyP95(s)",
        "nezha.pod.client.latency.p95",
        "s",
        1.0,
    ),
    (
        "PodServerLatencyP95(s)",
        "nezha.pod.server.latency.p95",
        "s",
        1.0,
    ),
    (
        "PodClientLatencyP99(s)",
        "nezha.pod.client.latency.p99",
        "s",
        1.0,
    ),
    (
        "PodServerLatencyP99(s)",
        "nezha.pod.server.latency.p99",
        "s",
        1.0,
    ),
    (
        "PodWorkload(Ops)",
        "nezha.pod.workload",
        "{operation}/s",
        1.0,
    ),
    ("PodSuccessRate(%)", "nezha.pod.success_rate", "1", 1e-2),
];

/// The name of the scope every converted metric is under.
pub const SCOPE: &str = "nezha-replay";

/// Data points per written line, at most (a sample is never split across lines).
const POINTS_PER_LINE: usize = 2000;

const FILE_SUFFIX: &str = "_metric.csv";

/// Every `*_metric.csv` of `dir` (not `front_service.csv`), pods sorted by name, samples sorted
/// by time. The pod is the file name without `_metric.csv`.
pub fn read_metric_dir(dir: &Path) -> Result<Vec<PodMetrics>, RealError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| data_err(dir, e.to_string()))? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(pod) = name.strip_suffix(FILE_SUFFIX) {
            if !pod.is_empty() && path.is_file() {
                files.push((pod.to_string(), path.clone()));
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|(pod, path)| {
            let samples = read_metric_file(&path)?;
            Ok(PodMetrics { pod, samples })
        })
        .collect()
}

/// One pod's file: its samples, sorted by time (stable: equal times keep the file's order).
fn read_metric_file(path: &Path) -> Result<Vec<Sample>, RealError> {
    let file = std::fs::File::open(path).map_err(|e| data_err(path, e.to_string()))?;
    let mut lines = std::io::BufReader::new(file).lines();
    let header = match lines.next() {
        Some(line) => csv_fields(line?.trim_end_matches('\r')),
        None => return Err(data_err(path, "empty file, no header")),
    };
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| data_err(path, format!("no column {name:?} in the header")))
    };
    let time_col = column("TimeStamp")?;
    let cols: Vec<usize> = METRICS
        .iter()
        .map(|m| column(m.0))
        .collect::<Result<_, _>>()?;
    let mut samples = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line?;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let at = |m: String| data_err(path, format!("line {}: {m}", i + 2));
        let fields = csv_fields(line);
        let secs = fields
            .get(time_col)
            .map(|s| s.trim())
            .ok_or_else(|| at("no TimeStamp field".into()))?;
        let time = secs
            .parse::<u64>()
            .ok()
            .and_then(|s| s.checked_mul(1_000_000_000))
            .ok_or_else(|| at(format!("TimeStamp {secs:?} is not Unix seconds")))?;
        let mut points = Vec::new();
        for (m, &c) in cols.iter().enumerate() {
            let raw = fields.get(c).map(|s| s.trim()).unwrap_or("");
            if raw.is_empty() {
                continue;
            }
            let v: f64 = raw
                .parse()
                .map_err(|_| at(format!("{}: {raw:?} is not a number", METRICS[m].0)))?;
            let v = v * METRICS[m].3;
            if v.is_finite() {
                points.push((m, v));
            }
        }
        if !points.is_empty() {
            samples.push((time, points));
        }
    }
    samples.sort_by_key(|s| s.0);
    Ok(samples)
}

fn kv(key: &str, value: &str) -> KeyValue {
    crate::otlp::string_attribute(key, value)
}

/// Writes the samples with data-clock time in [`from_ns`, `to_ns`), shifted by `shift_ns`, as
/// OTLP/JSON `ExportMetricsServiceRequest` lines (one JSON object per line), in time order (every
/// point of a line is no later than every point of the next), at most 2000 data points per line
/// (whole samples only); returns the number of data points written. A shifted time outside
/// [1, `u64::MAX`] is an `InvalidInput` error.
pub fn write_metrics(
    w: &mut impl Write,
    pods: &[PodMetrics],
    from_ns: u64,
    to_ns: u64,
    shift_ns: i64,
) -> std::io::Result<usize> {
    // (time, pod, sample) of every sample in range, in time order (then pod order).
    let mut order: Vec<(u64, usize, usize)> = pods
        .iter()
        .enumerate()
        .flat_map(|(p, pod)| {
            pod.samples
                .iter()
                .enumerate()
                .filter(|(_, s)| s.0 >= from_ns && s.0 < to_ns && !s.1.is_empty())
                .map(move |(k, s)| (s.0, p, k))
        })
        .collect();
    order.sort_unstable();
    let mut written = 0;
    let mut line: Vec<(usize, usize)> = Vec::new();
    let mut in_line = 0;
    for (_, p, k) in order {
        let n = pods[p].samples[k].1.len();
        if in_line > 0 && in_line + n > POINTS_PER_LINE {
            written += write_line(w, pods, &line, shift_ns)?;
            line.clear();
            in_line = 0;
        }
        line.push((p, k));
        in_line += n;
    }
    if !line.is_empty() {
        written += write_line(w, pods, &line, shift_ns)?;
    }
    Ok(written)
}

/// One request of the given (pod, sample) pairs, already in time order: one resource per pod,
/// one metric per column present, points in time order. Returns its number of points.
fn write_line(
    w: &mut impl Write,
    pods: &[PodMetrics],
    samples: &[(usize, usize)],
    shift_ns: i64,
) -> std::io::Result<usize> {
    let mut by_pod: BTreeMap<usize, BTreeMap<usize, Vec<NumberDataPoint>>> = BTreeMap::new();
    let mut count = 0;
    for &(p, k) in samples {
        let (time, points) = &pods[p].samples[k];
        let shifted = u64::try_from(i128::from(*time) + i128::from(shift_ns))
            .ok()
            .filter(|&t| t > 0)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("time {time} shifted by {shift_ns} ns is out of range"),
                )
            })?;
        let metrics = by_pod.entry(p).or_default();
        for &(m, v) in points {
            metrics.entry(m).or_default().push(NumberDataPoint {
                time_unix_nano: shifted,
                value: Some(number_data_point::Value::AsDouble(v)),
                ..Default::default()
            });
            count += 1;
        }
    }
    let req = ExportMetricsServiceRequest {
        resource_metrics: by_pod
            .into_iter()
            .map(|(p, metrics)| {
                let pod = pods[p].pod.as_str();
                ResourceMetrics {
                    resource: Some(Resource {
                        attributes: vec![
                            kv("service.name", service_of(pod)),
                            kv("k8s.pod.name", pod),
                        ],
                        ..Default::default()
                    }),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(InstrumentationScope {
                            name: SCOPE.into(),
                            ..Default::default()
                        }),
                        metrics: metrics
                            .into_iter()
                            .filter_map(|(m, data_points)| {
                                let (column, name, unit, _) = METRICS.get(m)?;
                                Some(Metric {
                                    name: (*name).into(),
                                    description: format!("Nezha column {column}"),
                                    unit: (*unit).into(),
                                    data: Some(metric::Data::Gauge(Gauge { data_points })),
                                    ..Default::default()
                                })
                            })
                            .collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }
            })
            .collect(),
    };
    serde_json::to_writer(&mut *w, &req).map_err(std::io::Error::other)?;
    w.write_all(b"\n")?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use std::path::PathBuf;

    /// A fresh folder under the system's temporary folder.
    fn temp_dir(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "otelwatch-real-metrics-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    const POD: &str = "ts-order-service-5b67c48447-fj8b7";

    /// The real header with the columns shuffled (PodSuccessRate and CpuUsage swapped, TimeStamp
    /// last), so only a lookup by name reads the right values.
    fn tiny_dir(tag: &str) -> PathBuf {
        let dir = temp_dir(tag);
        let mut header: Vec<&str> = "Time,PodName,PodSuccessRate(%),CpuUsageRate(%),MemoryUsage(Mi),MemoryUsageRate(%),SyscallRead,SyscallWrite,NetworkReceiveBytes,NetworkTransmitBytes,PodClientLatencyP90(s),PodServerLatencyP90(s),PodClientLatencyP95(s),PodServerLatencyP95(s),PodClientLatencyP99(s),PodServerLatencyP99(s),PodWorkload(Ops),CpuUsage(m),NodeCpuUsageRate(%),NodeMemoryUsageRate(%),NodeNetworkReceiveBytes"
            .split(',')
            .collect();
        header.push("TimeStamp");
        let row = |t: u64, success: &str, cpu: &str, p90: &str| {
            let mut f = vec![
                "2023-01-30 11:39:53 +0000 UTC".to_string(),
                POD.to_string(),
                success.to_string(),
            ];
            // CpuUsageRate 50 %, MemoryUsage 2 Mi, MemoryUsageRate 25 %, syscalls, network.
            for v in ["50", "2", "25", "7", "8", "100", "200"] {
                f.push(v.into());
            }
            f.push(p90.into()); // PodClientLatencyP90
            for v in ["0.2", "0.3", "0.4", "0.5", "0.6", "3.5"] {
                f.push(v.into());
            }
            f.push(cpu.into());
            for v in ["10", "20", "30"] {
                f.push(v.into()); // node columns
            }
            f.push(t.to_string());
            f.join(",")
        };
        let text = [
            header.join(","),
            // Out of order on purpose: reading sorts by time.
            row(1_000_060, "100", "250", "0.1"),
            row(1_000_000, "90", "NaN", ""),
            row(1_000_120, "NaN", "500", "NaN"),
        ]
        .join("\n");
        std::fs::write(dir.join(format!("{POD}_metric.csv")), text + "\n").expect("write");
        // Not a pod file: different header, must be skipped.
        std::fs::write(
            dir.join("front_service.csv"),
            "Time,TimeStamp,ServiceName,SuccessRate(%)\nx,1000000,Frontend,0\n",
        )
        .expect("write");
        dir
    }

    fn value(points: &[(usize, f64)], name: &str) -> Option<f64> {
        let m = METRICS.iter().position(|m| m.1 == name)?;
        points.iter().find(|p| p.0 == m).map(|p| p.1)
    }

    #[test]
    fn columns_are_found_by_header_name_and_scaled() {
        let dir = tiny_dir("scale");
        let pods = read_metric_dir(&dir).expect("read");
        assert_eq!(pods.len(), 1, "front_service.csv is skipped");
        assert_eq!(pods[0].pod, POD);
        let s = &pods[0].samples;
        let times: Vec<u64> = s.iter().map(|x| x.0).collect();
        assert_eq!(
            times,
            vec![
                1_000_000_000_000_000,
                1_000_060_000_000_000,
                1_000_120_000_000_000
            ],
            "TimeStamp is Unix seconds, samples sorted by time"
        );
        let p = &s[1].1;
        assert_eq!(value(p, "k8s.pod.cpu.usage"), Some(0.25));
        assert_eq!(value(p, "k8s.pod.cpu.utilization"), Some(0.5));
        assert_eq!(value(p, "k8s.pod.memory.usage"), Some(2.0 * 1_048_576.0));
        assert_eq!(value(p, "k8s.pod.memory.utilization"), Some(0.25));
        assert_eq!(value(p, "k8s.pod.syscall.read"), Some(7.0));
        assert_eq!(value(p, "k8s.pod.network.transmit"), Some(200.0));
        assert_eq!(value(p, "nezha.pod.client.latency.p90"), Some(0.1));
        assert_eq!(value(p, "nezha.pod.server.latency.p99"), Some(0.6));
        assert_eq!(value(p, "nezha.pod.workload"), Some(3.5));
        assert_eq!(value(p, "nezha.pod.success_rate"), Some(1.0));
        assert_eq!(p.len(), METRICS.len(), "every column, no node column");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn nan_and_empty_values_are_skipped() {
        let dir = tiny_dir("nan");
        let pods = read_metric_dir(&dir).expect("read");
        let s = &pods[0].samples;
        // First sample: CpuUsage NaN, client p90 empty.
        assert_eq!(value(&s[0].1, "k8s.pod.cpu.usage"), None);
        assert_eq!(value(&s[0].1, "nezha.pod.client.latency.p90"), None);
        assert_eq!(value(&s[0].1, "nezha.pod.success_rate"), Some(0.9));
        assert_eq!(s[0].1.len(), METRICS.len() - 2);
        // Third: success rate and client p90 NaN.
        assert_eq!(value(&s[2].1, "nezha.pod.success_rate"), None);
        assert_eq!(value(&s[2].1, "k8s.pod.cpu.usage"), Some(0.5));
        assert_eq!(s[2].1.len(), METRICS.len() - 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_column_or_bad_value_is_a_data_error() {
        let dir = temp_dir("bad");
        std::fs::write(dir.join("a-b-c_metric.csv"), "TimeStamp,CpuUsage(m)\n1,2\n").expect("w");
        assert!(matches!(read_metric_dir(&dir), Err(RealError::Data { .. })));
        let header: Vec<&str> = std::iter::once("TimeStamp")
            .chain(METRICS.iter().map(|m| m.0))
            .collect();
        let row = std::iter::once("1")
            .chain(std::iter::repeat_n("x", METRICS.len()))
            .collect::<Vec<_>>();
        std::fs::write(
            dir.join("a-b-c_metric.csv"),
            format!("{}\n{}\n", header.join(","), row.join(",")),
        )
        .expect("w");
        assert!(matches!(read_metric_dir(&dir), Err(RealError::Data { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn writes_the_range_shifted_and_parses_back_as_otlp() {
        let dir = tiny_dir("write");
        let pods = read_metric_dir(&dir).expect("read");
        let from = 1_000_060_000_000_000;
        let to = 1_000_120_000_000_000; // excluded
        let shift = -1_000_000_000_000_000_i64;
        let mut out = Vec::new();
        let n = write_metrics(&mut out, &pods, from, to, shift).expect("write");
        assert_eq!(n, METRICS.len(), "only the sample at `from`");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1);
        let req: ExportMetricsServiceRequest = serde_json::from_str(lines[0]).expect("parses");
        assert_eq!(req.resource_metrics.len(), 1);
        let rm = &req.resource_metrics[0];
        let attrs: Vec<(String, String)> = rm
            .resource
            .as_ref()
            .expect("resource")
            .attributes
            .iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    other => panic!("not a string: {other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect();
        assert_eq!(
            attrs,
            vec![
                ("service.name".to_string(), "ts-order-service".to_string()),
                ("k8s.pod.name".to_string(), POD.to_string()),
            ]
        );
        let sm = &rm.scope_metrics[0];
        assert_eq!(sm.scope.as_ref().map(|s| s.name.as_str()), Some(SCOPE));
        assert_eq!(sm.metrics.len(), METRICS.len());
        let cpu = sm
            .metrics
            .iter()
            .find(|m| m.name == "k8s.pod.cpu.usage")
            .expect("cpu");
        assert_eq!(cpu.unit, "{cpu}");
        let Some(metric::Data::Gauge(g)) = &cpu.data else {
            panic!("not a gauge: {:?}", cpu.data)
        };
        assert_eq!(g.data_points.len(), 1);
        assert_eq!(g.data_points[0].time_unix_nano, 60_000_000_000);
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsDouble(0.25))
        );

        // The whole range: two lines' worth only when over the limit, so one line, 3 samples.
        let mut out = Vec::new();
        let n = write_metrics(&mut out, &pods, 0, u64::MAX, 0).expect("write");
        assert_eq!(n, 3 * METRICS.len() - 4);
        // Empty range, and a shift before 1970: nothing / an error.
        assert_eq!(
            write_metrics(&mut Vec::new(), &pods, to, to, 0).ok(),
            Some(0)
        );
        assert!(write_metrics(&mut Vec::new(), &pods, 0, u64::MAX, i64::MIN).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lines_hold_at_most_2000_points_in_time_order() {
        let pods: Vec<PodMetrics> = (0..3)
            .map(|p| PodMetrics {
                pod: format!("ts-svc{p}-aaaa-bbbb"),
                samples: (0..100u64)
                    .map(|t| {
                        (
                            1 + t * 1_000,
                            (0..METRICS.len()).map(|m| (m, t as f64)).collect(),
                        )
                    })
                    .collect(),
            })
            .collect();
        let mut out = Vec::new();
        let n = write_metrics(&mut out, &pods, 0, u64::MAX, 5).expect("write");
        assert_eq!(n, 3 * 100 * METRICS.len());
        let text = String::from_utf8(out).expect("utf8");
        let mut last_max = 0;
        let mut total = 0;
        for line in text.lines() {
            let req: ExportMetricsServiceRequest = serde_json::from_str(line).expect("parses");
            let times: Vec<u64> = req
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .flat_map(|m| match &m.data {
                    Some(metric::Data::Gauge(g)) => g.data_points.clone(),
                    _ => Vec::new(),
                })
                .map(|p| p.time_unix_nano)
                .collect();
            assert!(times.len() <= POINTS_PER_LINE);
            let (lo, hi) = (
                times.iter().copied().min().unwrap_or(0),
                times.iter().copied().max().unwrap_or(0),
            );
            assert!(lo >= last_max, "lines in time order");
            last_max = hi;
            total += times.len();
        }
        assert_eq!(total, n);
        assert!(text.lines().count() >= n.div_ceil(POINTS_PER_LINE));
    }

    /// Sanity figures on the real data (not run by default):
    /// `cargo test --lib real_metrics -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn real_data_sanity() {
        let dir = PathBuf::from(
            std::env::var("NEZHA_METRIC_DIR")
                .unwrap_or_else(|_| "/tmp/nezha/rca_data/2023-01-30/metric".into()),
        );
        let pods = read_metric_dir(&dir).expect("read");
        let counts: Vec<usize> = pods.iter().map(|p| p.samples.len()).collect();
        let (lo, hi) = pods
            .iter()
            .flat_map(|p| p.samples.iter().map(|s| s.0))
            .fold((u64::MAX, 0), |(lo, hi), t| (lo.min(t), hi.max(t)));
        println!(
            "pods {}, samples per pod min {:?} max {:?}, time {}..={} s",
            pods.len(),
            counts.iter().min(),
            counts.iter().max(),
            lo / 1_000_000_000,
            hi / 1_000_000_000
        );
        // Per column: raw `NaN` and empty fields in the files, and points kept.
        let mut rows = 0;
        let mut nan = vec![0usize; METRICS.len()];
        let mut empty = vec![0usize; METRICS.len()];
        for p in &pods {
            let text =
                std::fs::read_to_string(dir.join(format!("{}{FILE_SUFFIX}", p.pod))).expect("read");
            let mut lines = text.lines();
            let header = csv_fields(lines.next().unwrap_or(""));
            let cols: Vec<Option<usize>> = METRICS
                .iter()
                .map(|m| header.iter().position(|h| h == m.0))
                .collect();
            for line in lines.filter(|l| !l.trim().is_empty()) {
                rows += 1;
                let f = csv_fields(line);
                for (m, c) in cols.iter().enumerate() {
                    match c.and_then(|c| f.get(c)).map(|v| v.trim()) {
                        Some("NaN") => nan[m] += 1,
                        Some("") | None => empty[m] += 1,
                        _ => {}
                    }
                }
            }
        }
        println!("rows {rows}");
        for (m, (col, ..)) in METRICS.iter().enumerate() {
            let kept: usize = pods
                .iter()
                .flat_map(|p| &p.samples)
                .filter(|s| s.1.iter().any(|x| x.0 == m))
                .count();
            println!("{col}: NaN {} empty {} kept {kept}", nan[m], empty[m]);
        }
        let mut out = std::io::sink();
        let n = write_metrics(&mut out, &pods, 0, u64::MAX, 0).expect("write");
        println!("points {n}");
    }
}
