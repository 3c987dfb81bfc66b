//! `otelwatch bench console`: how fast the console's API answers with a full history. The
//! history is filled in process (windows of many series over hours, 1 % of them anomalous with
//! explanations and example traces, grouped into incidents), then the real server is asked over
//! HTTP, each endpoint many times.

use crate::extensions::console::server::serve;
use crate::extensions::console::{ConsoleConfig, ConsoleHub};
use crate::model::incident::{Action, Incident, IncidentEvent, RootCause, Status};
use crate::model::window::{
    Anomaly, Contribution, SeriesKey, Severity, TraceExample, WindowRecord, N_FEATURES,
};
use crate::pipeline::{Batch, Payload};
use crate::processors::iforest::forest::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleBenchError {
    #[error("starting the console: {0}")]
    Serve(#[from] crate::extensions::console::server::ConsoleServerError),
    #[error("asking {path}: {source}")]
    Request {
        path: String,
        source: reqwest::Error,
    },
    #[error("{path} answered {status}")]
    Status { path: String, status: u16 },
}

const INTERVAL_NS: u64 = 10_000_000_000;

/// Series: per service its own and four calls out (to the next services).
fn keys(series: usize) -> Vec<Arc<SeriesKey>> {
    let services = series.div_ceil(5).max(2);
    (0..series)
        .map(|i| {
            let s = format!("svc-{}", i / 5);
            match i % 5 {
                0 => SeriesKey::service(&s),
                k => SeriesKey::edge(&s, &format!("svc-{}", (i / 5 + k) % services)),
            }
        })
        .map(Arc::new)
        .collect()
}

fn window(rng: &mut Rng, key: &Arc<SeriesKey>, start_ns: u64, anomalous: bool) -> WindowRecord {
    let mut f = [0.0; N_FEATURES];
    for (i, v) in f.iter_mut().enumerate() {
        *v = (10.0 + i as f64) * (1.0 + 0.2 * rng.unit());
    }
    if anomalous {
        f[5] *= 8.0;
    }
    let id = format!("{:016x}", start_ns / INTERVAL_NS / 30);
    WindowRecord {
        series: key.clone(),
        start_ns,
        interval_ns: INTERVAL_NS,
        features: f,
        anomaly: Some(Anomaly {
            score: if anomalous {
                0.8
            } else {
                0.4 + 0.1 * rng.unit()
            },
            threshold: 0.62,
            is_anomaly: anomalous,
            severity: anomalous.then_some(Severity::Major),
            warming_up: false,
            contributions: if anomalous {
                vec![Contribution {
                    feature: "latency_p95_ms",
                    actual: f[5],
                    typical: f[5] / 8.0,
                }]
            } else {
                Vec::new()
            },
            message: String::new(),
            incident: anomalous.then(|| id.into()),
            expected: false,
        }),
        partial: false,
        templates: Vec::new(),
        traces: 0,
        examples: if anomalous {
            (0..6)
                .map(|k| TraceExample {
                    trace_id: [k as u8 + 1; 16],
                    duration_ms: 900.0 - k as f64,
                    error: k < 3,
                })
                .collect()
        } else {
            Vec::new()
        },
        presence: Default::default(),
    }
}

/// Fills a console with `series` series over `hours` hours, then times `requests` calls of
/// each endpoint. Returns the report (Markdown).
pub async fn run(series: usize, hours: u64, requests: usize) -> Result<String, ConsoleBenchError> {
    let cfg = ConsoleConfig {
        max_memory_mib: 4096,
        retention: crate::config::duration::ConfigDuration(Duration::from_secs(hours * 3600)),
        ..Default::default()
    };
    let hub = Arc::new(ConsoleHub::new(&cfg));
    let keys = keys(series);
    let mut rng = Rng::new(7);
    let windows = hours * 3600 * 1_000_000_000 / INTERVAL_NS;
    let t0 = 1_767_571_200_000_000_000u64;
    let rss_before = super::resident_bytes();
    let filled = Instant::now();
    let mut incidents = 0;
    for w in 0..windows {
        let start = t0 + w * INTERVAL_NS;
        let records: Vec<WindowRecord> = keys
            .iter()
            .map(|k| {
                let anomalous = rng.unit() < 0.01;
                window(&mut rng, k, start, anomalous)
            })
            .collect();
        // One incident every 30 windows, naming the series flagged in them.
        if w % 30 == 29 {
            let id = format!("{:016x}", w / 30);
            let involved: Vec<Arc<SeriesKey>> = keys.iter().take(8).cloned().collect();
            let e = IncidentEvent {
                action: Action::Resolved,
                at_ns: start,
                notable: true,
                incident: Incident {
                    id: id.into(),
                    status: Status::Resolved,
                    start_ns: start - 29 * INTERVAL_NS,
                    end_ns: start,
                    severity: Severity::Major,
                    series: involved,
                    root_cause: vec![RootCause {
                        service: "svc-0".into(),
                        score: 0.9,
                        reason: "svc-0: latency_p95_ms 8× typical".into(),
                    }],
                    message: "svc-0 is the likely cause".into(),
                },
            };
            hub.observe(&batch(Payload::Incidents(Arc::new(vec![e]))));
            incidents += 1;
        }
        hub.observe(&batch(Payload::Windows(Arc::new(records))));
    }
    let fill_s = filled.elapsed().as_secs_f64();
    let rss = super::resident_bytes()
        .zip(rss_before)
        .map(|(a, b)| a.saturating_sub(b))
        .unwrap_or(0);
    let (held, bytes) = hub.history().size();

    let stop = tokio_util::sync::CancellationToken::new();
    let (addr, task) = serve(
        "127.0.0.1:0".parse().expect("an address"),
        hub,
        stop.clone(),
    )
    .await?;
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let last_hour = crate::model::time::rfc3339(t0 + (windows.saturating_sub(360)) * INTERVAL_NS);
    let paths = [
        "/".to_string(),
        "/api/summary".into(),
        "/api/services".into(),
        "/api/incidents".into(),
        format!("/api/incidents/{:016x}", 3),
        "/api/series?service=svc-7".into(),
        "/api/series?service=svc-7&target=svc-8".into(),
        format!("/api/series?service=svc-7&from={last_hour}"),
        "/api/feedback".into(),
    ];
    let mut out = format!(
        "{series} series × {hours} h of 10 s windows: {held} windows held ({:.0} MiB estimated, {:.0} MiB resident), {incidents} incidents; filled in {fill_s:.1} s.\n\n\
         | request | answer | median | p95 | max |\n|---|---|---|---|---|\n",
        bytes as f64 / (1u64 << 20) as f64,
        rss as f64 / (1u64 << 20) as f64,
    );
    for path in &paths {
        let mut times = Vec::with_capacity(requests);
        let mut size = 0;
        for i in 0..requests + 2 {
            let started = Instant::now();
            let r = client
                .get(format!("{base}{path}"))
                .send()
                .await
                .map_err(|source| ConsoleBenchError::Request {
                    path: path.clone(),
                    source,
                })?;
            if !r.status().is_success() {
                return Err(ConsoleBenchError::Status {
                    path: path.clone(),
                    status: r.status().as_u16(),
                });
            }
            let body = r
                .bytes()
                .await
                .map_err(|source| ConsoleBenchError::Request {
                    path: path.clone(),
                    source,
                })?;
            // The first two warm up.
            if i >= 2 {
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
            size = body.len();
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
        out.push_str(&format!(
            "| `{path}` | {:.0} KiB | {:.1} ms | {:.1} ms | {:.1} ms |\n",
            size as f64 / 1024.0,
            at(0.5),
            at(0.95),
            at(1.0)
        ));
    }
    stop.cancel();
    let _ = task.await;
    Ok(out)
}

fn batch(payload: Payload) -> Batch {
    Batch {
        items: 1,
        payload,
        encoded: None,
        held: Default::default(),
    }
}
