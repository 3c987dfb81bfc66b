//! Driving the target system: `otelwatch traffic` sends steady normal requests to service A;
//! `otelwatch generate-anomalies` sends anomalous ones (400–800 ms of extra latency or an error,
//! in service A or B), printing what it injected and when so results can be checked.

use crate::processors::iforest::forest::Rng;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("invalid target {0:?}")]
    Target(String),
}

fn client() -> Result<reqwest::Client, TargetError> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?)
}

fn base(target: &str) -> Result<String, TargetError> {
    let t = target.trim_end_matches('/');
    if t.starts_with("http://") || t.starts_with("https://") {
        Ok(t.to_string())
    } else {
        Err(TargetError::Target(target.to_string()))
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct TrafficReport {
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
}

/// Sends `rate` requests per second to `/start` and `/test` (alternately) for `duration`.
pub async fn traffic(
    target: &str,
    rate: f64,
    duration: Duration,
) -> Result<TrafficReport, TargetError> {
    let base = base(target)?;
    let client = client()?;
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = tokio::time::Instant::now() + duration;
    let mut inflight = tokio::task::JoinSet::new();
    let mut report = TrafficReport::default();
    let mut i = 0u64;
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        let route = if i.is_multiple_of(2) {
            "/start"
        } else {
            "/test"
        };
        i += 1;
        let (client, url) = (client.clone(), format!("{base}{route}"));
        inflight.spawn(async move {
            client
                .get(url)
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        });
        while let Some(done) = inflight.try_join_next() {
            report.requests += 1;
            if done.unwrap_or(false) {
                report.ok += 1;
            } else {
                report.errors += 1;
            }
        }
    }
    while let Some(done) = inflight.join_next().await {
        report.requests += 1;
        if done.unwrap_or(false) {
            report.ok += 1;
        } else {
            report.errors += 1;
        }
    }
    Ok(report)
}

/// One injected anomaly.
#[derive(Debug, Clone, Serialize)]
pub struct Injection {
    /// When the request was sent (RFC 3339) and its Unix time in nanoseconds.
    pub at: String,
    pub at_ns: u64,
    /// The service the fault was injected in (`service-a` or `service-b`).
    pub service: String,
    /// `latency` or `error`.
    pub kind: String,
    /// Extra milliseconds for latency faults.
    pub delay_ms: u64,
    /// The HTTP status service A answered.
    pub status: u16,
}

/// One line saying what was injected, when, and what service A answered.
pub fn describe(i: &Injection) -> String {
    format!(
        "{}  {:<9} {:<7} {:>4} ms  -> HTTP {}",
        i.at, i.service, i.kind, i.delay_ms, i.status
    )
}

/// Sends `count` anomalous requests, `spacing` apart: alternately latency (400–800 ms) and
/// errors, alternately in service A and service B (every fourth is an error). `injected` hears
/// of each one as soon as service A has answered.
pub async fn generate_anomalies(
    target: &str,
    count: usize,
    spacing: Duration,
    seed: u64,
    mut injected: impl FnMut(&Injection),
) -> Result<Vec<Injection>, TargetError> {
    let base = base(target)?;
    let client = client()?;
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        if i > 0 {
            tokio::time::sleep(spacing).await;
        }
        let in_b = i % 2 == 1;
        let error = i % 4 == 3;
        let delay_ms = 400 + rng.below(401) as u64;
        let query = match (in_b, error) {
            (false, false) => format!("delay_ms={delay_ms}"),
            (true, false) => format!("b_delay_ms={delay_ms}"),
            (false, true) => "fail=1".to_string(),
            (true, true) => "b_fail=1".to_string(),
        };
        let at_ns = crate::model::time::now_ns();
        let status = client
            .get(format!("{base}/start?{query}"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        let injection = Injection {
            at: crate::model::time::rfc3339(at_ns - at_ns % 1_000_000),
            at_ns,
            service: if in_b { "service-b" } else { "service-a" }.into(),
            kind: if error { "error" } else { "latency" }.into(),
            delay_ms: if error { 0 } else { delay_ms },
            status,
        };
        injected(&injection);
        out.push(injection);
    }
    Ok(out)
}
