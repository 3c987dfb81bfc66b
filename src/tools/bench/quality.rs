//! The detection quality benchmark: labelled scenarios sent over OTLP/gRPC through the real
//! pipeline (otlp receiver → window → iforest → incidents → file exporter, in this process), then scored
//! against their labels, next to a batch isolation forest trained once on the warm-up (what a
//! detector trained once on history, like the original prototype, can do).
//!
//! Definitions (per scenario):
//! - **incident recall**: incidents with at least one labelled series flagged while the incident
//!   lasts or in the two windows after it;
//! - **window precision**: flagged windows that fall while an incident lasts (or two windows
//!   after), over all flagged windows — an incident moves the whole call graph, so any series
//!   flagged then is counted as right;
//! - **false positives per service-hour**: flagged windows outside every incident, per series
//!   and hour of event time after warm-up;
//! - **ROC AUC**: the score of labelled (series, window) pairs against pairs outside every
//!   incident (pairs of unlabelled series during an incident are left out);
//! - **detection delay**: event time from an incident's start until the first flagged window has
//!   closed (window end plus the allowed lateness);
//! - **root cause top-1 / top-3**: incidents whose otelwatch incident (the one most of its
//!   flagged windows belong to, as it stood one window after the injected incident ended)
//!   ranks the injected service first / among its first three. The injected service of a
//!   network delay is the callee (the network to it is slow). The baseline's ranking: the
//!   services (the callee of an edge) of the windows it flagged then, by their highest score.

use crate::config;
use crate::model::window::{SeriesKey, FEATURE_NAMES, N_FEATURES};
use crate::processors::iforest::batch::BatchForest;
use crate::processors::iforest::transform;
use crate::tools::bench::roc_auc;
use crate::tools::scenario::{Generator, Incident, IncidentKind, Scenario, ServiceSpec};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    #[error("config: {0}")]
    Config(#[from] config::ConfigErrors),
    #[error("pipeline: {0}")]
    Service(#[from] crate::pipeline::service::ServiceError),
    #[error("sending: {0}")]
    Send(String),
    #[error("reading results: {0}")]
    Read(String),
}

pub struct QualityCase {
    pub name: &'static str,
    pub scenario: Scenario,
    pub windows: u64,
    pub warmup: u64,
    pub lateness_s: u64,
}

fn svc(name: &str, rate: f64, latency_ms: f64, calls: &[&str], routes: &[&str]) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        rate,
        latency_ms,
        error_rate: 0.005,
        calls: calls.iter().map(|c| c.to_string()).collect(),
        routes: routes.iter().map(|r| r.to_string()).collect(),
    }
}

fn incident(service: &str, from: u64, len: u64, kind: IncidentKind) -> Incident {
    Incident {
        service: service.into(),
        from,
        to: from + len,
        kind,
    }
}

/// The scenarios of the benchmark.
pub fn cases() -> Vec<QualityCase> {
    let shop = shop();
    // Six hours without incidents through a full (compressed) daily cycle: only false
    // positives can happen here.
    let quiet = Scenario {
        incidents: Vec::new(),
        seed: 303,
        day_windows: 2160.0,
        ..shop.clone()
    };
    vec![
        case(
            "prototype: 20 latency spikes (+400–800 ms)",
            prototype(),
            380,
        ),
        case("shop: 10 incidents of 9 kinds, daily curve", shop, 900),
        case(
            "shop, quiet: 6 h without incidents, a full daily cycle",
            quiet,
            2160,
        ),
    ]
}

/// A case of `windows` windows, 30 of them warm-up, with 5 s of allowed lateness.
fn case(name: &'static str, scenario: Scenario, windows: u64) -> QualityCase {
    QualityCase {
        name,
        scenario,
        windows,
        warmup: 30,
        lateness_s: 5,
    }
}

/// The original prototype's test: 20 injected latency spikes of +400–800 ms.
fn prototype() -> Scenario {
    let mut proto = Scenario::target_system(101);
    proto.incidents = (0..20)
        .map(|i| {
            let service = if i % 2 == 0 { "service-a" } else { "service-b" };
            let extra = 400.0 + (i as f64 * 37.0) % 400.0;
            incident(
                service,
                60 + i * 15,
                1,
                IncidentKind::Latency { extra_ms: extra },
            )
        })
        .collect();
    proto
}

/// A shop with a call graph, a daily curve and every kind of incident.
pub fn shop() -> Scenario {
    Scenario {
        services: shop_services(),
        incidents: shop_incidents(),
        interval_s: 10,
        day_windows: 2160.0,
        daily_amplitude: 0.5,
        seed: 202,
    }
}

/// The shop's services: a frontend calling the cart and the checkout, which call on.
fn shop_services() -> Vec<ServiceSpec> {
    vec![
        svc(
            "frontend",
            8.0,
            15.0,
            &["cart", "checkout"],
            &["/", "/cart", "/checkout"],
        ),
        svc("cart", 0.0, 8.0, &["redis"], &["/cart"]),
        svc(
            "checkout",
            0.0,
            25.0,
            &["payments", "inventory"],
            &["/checkout"],
        ),
        svc("payments", 0.0, 40.0, &[], &["/charge"]),
        svc("inventory", 0.0, 12.0, &[], &["/reserve"]),
        svc("redis", 0.0, 1.0, &[], &["GET"]),
    ]
}

/// The shop's ten incidents, 80 windows apart: nine kinds (a traffic surge and a drop count
/// as two), errors twice.
fn shop_incidents() -> Vec<Incident> {
    use IncidentKind::*;
    vec![
        incident("payments", 100, 4, Errors { rate: 0.3 }),
        incident("frontend", 180, 4, Traffic { factor: 3.0 }),
        incident("frontend", 260, 4, Traffic { factor: 0.2 }),
        incident(
            "inventory",
            340,
            5,
            Tail {
                share: 0.15,
                extra_ms: 1200.0,
            },
        ),
        incident(
            "frontend",
            420,
            4,
            RouteLatency {
                route: "/checkout".into(),
                extra_ms: 600.0,
            },
        ),
        incident("inventory", 500, 4, Silent),
        incident("cart", 580, 4, ClientErrors { rate: 0.4 }),
        incident("checkout", 660, 6, Errors { rate: 0.08 }),
        incident(
            "checkout",
            740,
            4,
            NetworkDelay {
                callee: "payments".into(),
                extra_ms: 1200.0,
            },
        ),
        incident("payments", 820, 4, Latency { extra_ms: 500.0 }),
    ]
}

/// One scored window as read back from the file exporter.
#[derive(Debug, Clone)]
pub struct Scored {
    pub series: String,
    pub service: String,
    pub window: u64,
    pub score: f64,
    pub flagged: bool,
    pub features: [f64; N_FEATURES],
    /// The incident the window's anomaly belongs to.
    pub incident: Option<String>,
}

/// One incident change as read back: its window (by `@timestamp`), its id and ranked services.
#[derive(Debug, Clone)]
pub struct Ranked {
    pub window: u64,
    pub id: String,
    pub causes: Vec<String>,
}

/// What one case's run wrote.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub scored: Vec<Scored>,
    pub incidents: Vec<Ranked>,
}

fn series_name(doc: &serde_json::Value) -> (String, String) {
    let service = doc["service"]["name"].as_str().unwrap_or("").to_string();
    let mut name = service.clone();
    if let Some(t) = doc["service"]["target"]["name"].as_str() {
        name.push_str(" -> ");
        name.push_str(t);
    }
    if let Some(labels) = doc["labels"].as_object() {
        for (k, v) in labels {
            name.push_str(&format!(" [{k}={}]", v.as_str().unwrap_or("")));
        }
    }
    (name, service)
}

fn key_name(k: &SeriesKey) -> String {
    match &k.target {
        Some(t) => format!("{} -> {t}", k.service),
        None => k.service.to_string(),
    }
}

fn free_port() -> Result<u16, QualityError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| QualityError::Send(e.to_string()))
}

/// Runs one case through the real pipeline over OTLP and returns the scored windows and the
/// incidents.
pub async fn run_through_pipeline(case: &QualityCase) -> Result<Run, QualityError> {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "otelwatch-quality-{}-{}",
        std::process::id(),
        case.scenario.seed
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.join("windows.jsonl");
    let port = free_port()?;
    let cfg = config::parse(&pipeline_yaml(case, port, &out), &|_| None)?;
    let service = crate::pipeline::service::InProcess::spawn(cfg);
    let t0 = send_case(case, port).await?;
    service.stop().await?;
    let text = std::fs::read_to_string(&out).map_err(|e| QualityError::Read(e.to_string()))?;
    let _ = std::fs::remove_dir_all(&dir);
    let windows = Windows {
        t0_s: t0 / 1_000_000_000,
        interval_s: case.scenario.interval_s,
    };
    read_run(&text, &windows)
}

/// The pipeline a case runs through: OTLP/gRPC on `port` → window → iforest → incidents → a
/// file at `out`.
fn pipeline_yaml(case: &QualityCase, port: u16, out: &Path) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{port}" }}
processors:
  window: {{ interval: {}s, allowed_lateness: {}s, group_by: [http.route] }}
  iforest: {{ warmup: {} }}
  incidents: {{}}
exporters:
  file: {{ path: "{}" }}
service:
  telemetry: {{ metrics: {{ address: "" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [window, iforest, incidents], exporters: [file] }}
"#,
        case.scenario.interval_s,
        case.lateness_s,
        case.warmup,
        out.display()
    )
}

/// Sends the case's windows to the OTLP/gRPC receiver on `port`, their event times ending 360
/// windows before now; returns the first window's start.
async fn send_case(case: &QualityCase, port: u16) -> Result<u64, QualityError> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .map_err(|e| QualityError::Send(e.to_string()))?
        .connect_lazy();
    let now = crate::model::time::now_ns();
    let span_ns = (case.windows + 360) * case.scenario.interval_s * 1_000_000_000;
    let mut g = Generator::new(case.scenario.clone(), now.saturating_sub(span_ns));
    let t0 = g.window_start_ns(0);
    for _ in 0..case.windows {
        let body: bytes::Bytes = g.next_window().encode_to_vec().into();
        send_with_retries(&channel, body).await?;
    }
    Ok(t0)
}

/// Sends one request, retrying for a while (the receiver may not be listening yet).
async fn send_with_retries(
    channel: &tonic::transport::Channel,
    body: bytes::Bytes,
) -> Result<(), QualityError> {
    let mut tries = 0;
    loop {
        match crate::tools::loadgen::grpc_export(channel, body.clone(), false).await {
            Ok(_) => return Ok(()),
            Err(e) if tries < 100 => {
                tries += 1;
                tracing::debug!(error = %e, "retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(QualityError::Send(e.to_string())),
        }
    }
}

/// Window indexes on a case's clock: from its first window's start, in whole seconds.
struct Windows {
    t0_s: u64,
    interval_s: u64,
}

impl Windows {
    /// The index of the window an RFC 3339 timestamp falls in.
    fn of(&self, timestamp: &str) -> Result<u64, QualityError> {
        let secs = parse_rfc3339(timestamp).ok_or_else(|| QualityError::Read(timestamp.into()))?;
        Ok(secs.saturating_sub(self.t0_s) / self.interval_s)
    }
}

/// What the file exporter wrote: the scored windows and the incident changes.
fn read_run(text: &str, windows: &Windows) -> Result<Run, QualityError> {
    let mut run = Run::default();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let doc: serde_json::Value =
            serde_json::from_str(line).map_err(|e| QualityError::Read(e.to_string()))?;
        if doc["event"]["dataset"] == "otelwatch.incident" {
            run.incidents.push(read_ranked(&doc, windows)?);
        } else {
            run.scored.push(read_scored(&doc, windows)?);
        }
    }
    Ok(run)
}

/// One incident change document.
fn read_ranked(doc: &serde_json::Value, windows: &Windows) -> Result<Ranked, QualityError> {
    let at = windows.of(doc["@timestamp"].as_str().unwrap_or(""))?;
    Ok(Ranked {
        // The window that ended at the change.
        window: at.saturating_sub(1),
        id: doc["incident"]["id"].as_str().unwrap_or("").to_string(),
        causes: doc["incident"]["root_cause"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["service"].as_str().map(str::to_string))
            .collect(),
    })
}

/// One scored window document.
fn read_scored(doc: &serde_json::Value, windows: &Windows) -> Result<Scored, QualityError> {
    let window = windows.of(doc["window"]["start"].as_str().unwrap_or(""))?;
    let (series, service) = series_name(doc);
    let mut features = [0.0; N_FEATURES];
    for (i, n) in FEATURE_NAMES.iter().enumerate() {
        features[i] = doc["features"][n].as_f64().unwrap_or(0.0);
    }
    Ok(Scored {
        series,
        service,
        window,
        score: doc["anomaly"]["score"].as_f64().unwrap_or(0.0),
        flagged: doc["anomaly"]["is_anomaly"].as_bool().unwrap_or(false),
        features,
        incident: doc["incident"]["id"].as_str().map(str::to_string),
    })
}

/// The service an injected incident is caused by: the callee of a network delay, else the
/// service it was injected in.
pub fn root_of(inc: &Incident) -> &str {
    match &inc.kind {
        IncidentKind::NetworkDelay { callee, .. } => callee,
        _ => &inc.service,
    }
}

/// Per injected incident: otelwatch's ranking (the incident most of the windows flagged while
/// it lasts belong to, as it stood one window after it ended).
pub fn rankings(case: &QualityCase, run: &Run) -> Vec<Option<Vec<String>>> {
    case.scenario
        .incidents
        .iter()
        .map(|inc| {
            let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
            for s in &run.scored {
                if s.flagged && s.window >= inc.from && s.window < inc.to + 2 {
                    if let Some(id) = &s.incident {
                        *votes.entry(id).or_default() += 1;
                    }
                }
            }
            let id = votes.iter().max_by_key(|(_, n)| **n).map(|(id, _)| *id)?;
            run.incidents
                .iter()
                .rfind(|r| r.id == id && r.window <= inc.to)
                .or_else(|| run.incidents.iter().find(|r| r.id == id))
                .map(|r| r.causes.clone())
        })
        .collect()
}

/// The baseline's ranking per injected incident: the services of the windows it flagged while
/// the incident lasted, by their highest score.
pub fn baseline_rankings(
    case: &QualityCase,
    scored: &[Scored],
    flag: &dyn Fn(&Scored) -> bool,
    score: &dyn Fn(&Scored) -> f64,
) -> Vec<Option<Vec<String>>> {
    case.scenario
        .incidents
        .iter()
        .map(|inc| {
            let mut best: BTreeMap<String, f64> = BTreeMap::new();
            for s in scored {
                if s.window >= inc.from && s.window < inc.to + 2 && flag(s) {
                    let svc = s
                        .series
                        .split(" [")
                        .next()
                        .unwrap_or("")
                        .rsplit(" -> ")
                        .next()
                        .unwrap_or("")
                        .to_string();
                    let e = best.entry(svc).or_insert(0.0);
                    *e = e.max(score(s));
                }
            }
            crate::tools::bench::ranked_by_score(best)
        })
        .collect()
}

/// (top-1, top-3) hits of rankings against the injected incidents' root services.
pub fn root_cause_hits(case: &QualityCase, ranked: &[Option<Vec<String>>]) -> (usize, usize) {
    let (_, top1, top3) =
        crate::tools::bench::root_cause_hits(case.scenario.incidents.iter().map(root_of), ranked);
    (top1, top3)
}

/// Seconds since the epoch from an RFC 3339 UTC timestamp.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    crate::model::time::parse_rfc3339_ns(s).map(|ns| ns / 1_000_000_000)
}

#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub incidents: usize,
    pub detected: usize,
    pub flagged: usize,
    pub true_flags: usize,
    pub false_flags: usize,
    pub series: usize,
    pub hours: f64,
    pub auc: f64,
    pub delays_s: Vec<f64>,
    /// Incidents not detected, described.
    pub missed: Vec<String>,
}

impl Metrics {
    pub fn recall(&self) -> f64 {
        self.detected as f64 / self.incidents.max(1) as f64
    }
    pub fn precision(&self) -> f64 {
        if self.flagged == 0 {
            1.0
        } else {
            self.true_flags as f64 / self.flagged as f64
        }
    }
    pub fn fp_per_service_hour(&self) -> f64 {
        self.false_flags as f64 / (self.series.max(1) as f64 * self.hours.max(1e-9))
    }
    pub fn mean_delay_s(&self) -> f64 {
        if self.delays_s.is_empty() {
            0.0
        } else {
            self.delays_s.iter().sum::<f64>() / self.delays_s.len() as f64
        }
    }
}

/// Scores `scored` against the case's labels; `flag` and `score` say what a detector decided.
pub fn evaluate(
    case: &QualityCase,
    scored: &[Scored],
    flag: &dyn Fn(&Scored) -> bool,
    score: &dyn Fn(&Scored) -> f64,
) -> Metrics {
    let judge = Judge {
        case,
        labels: case.scenario.labels(),
        evaluated: scored.iter().filter(|s| s.window >= case.warmup).collect(),
        flag,
        score,
    };
    let sc = &case.scenario;
    let series: BTreeSet<&str> = judge.evaluated.iter().map(|s| s.series.as_str()).collect();
    let mut m = Metrics {
        incidents: sc.incidents.len(),
        series: series.len(),
        hours: (case.windows.saturating_sub(case.warmup) * sc.interval_s) as f64 / 3600.0,
        ..Default::default()
    };
    judge.count_flags(&mut m);
    for inc in &sc.incidents {
        if let Some(w) = judge.first_detection(inc) {
            m.detected += 1;
            m.delays_s
                .push(((w + 1 - inc.from) * sc.interval_s + case.lateness_s) as f64);
        } else {
            m.missed.push(format!(
                "{} {:?} at window {}",
                inc.service, inc.kind, inc.from
            ));
        }
    }
    m.auc = judge.auc();
    if std::env::var("OTELWATCH_QUALITY_DEBUG").is_ok() {
        judge.print_extremes();
    }
    m
}

/// A detector's decisions on a case's windows after warm-up, against the case's labels.
struct Judge<'a> {
    case: &'a QualityCase,
    labels: BTreeMap<u64, BTreeSet<SeriesKey>>,
    evaluated: Vec<&'a Scored>,
    flag: &'a dyn Fn(&Scored) -> bool,
    score: &'a dyn Fn(&Scored) -> f64,
}

impl Judge<'_> {
    /// Whether window `w` falls while an incident lasts or in the two windows after it.
    fn in_incident(&self, w: u64) -> bool {
        self.case
            .scenario
            .incidents
            .iter()
            .any(|i| w >= i.from && w < i.to + 2)
    }

    /// Whether the labels name this window's series as anomalous.
    fn is_positive(&self, s: &Scored) -> bool {
        self.labels
            .get(&s.window)
            .is_some_and(|set| set.iter().any(|k| key_name(k) == s.series))
    }

    /// Flagged windows, split into those during an incident and the others.
    fn count_flags(&self, m: &mut Metrics) {
        for s in &self.evaluated {
            if (self.flag)(s) {
                m.flagged += 1;
                if self.in_incident(s.window) {
                    m.true_flags += 1;
                } else {
                    m.false_flags += 1;
                }
            }
        }
    }

    /// The first window an incident was detected in: a labelled series (or a route of the
    /// incident's service) flagged while it lasts or in the two windows after.
    fn first_detection(&self, inc: &Incident) -> Option<u64> {
        let names: BTreeSet<String> = (inc.from..inc.to)
            .filter_map(|w| self.labels.get(&w))
            .flat_map(|set| set.iter().map(key_name))
            .collect();
        self.evaluated
            .iter()
            .filter(|s| s.window >= inc.from && s.window < inc.to + 2 && (self.flag)(s))
            .filter(|s| {
                names.contains(&s.series)
                    || (s.service == inc.service && s.series.contains("[http.route="))
            })
            .map(|s| s.window)
            .min()
    }

    /// ROC AUC of the labelled windows against those outside every incident.
    fn auc(&self) -> f64 {
        let mut scores = Vec::new();
        let mut truth = Vec::new();
        for s in &self.evaluated {
            let positive = self.is_positive(s);
            if positive || !self.in_incident(s.window) {
                scores.push((self.score)(s));
                truth.push(positive);
            }
        }
        roc_auc(&scores, &truth)
    }

    /// The lowest-scored labelled windows and the highest-scored windows outside incidents,
    /// on stderr.
    fn print_extremes(&self) {
        let score = self.score;
        let mut pos: Vec<&&Scored> = self
            .evaluated
            .iter()
            .filter(|s| self.is_positive(s))
            .collect();
        pos.sort_by(|a, b| score(a).total_cmp(&score(b)));
        for s in pos.iter().take(25) {
            eprintln!(
                "  low positive: w{} {} score {:.3} flagged {}",
                s.window,
                s.series,
                score(s),
                (self.flag)(s)
            );
        }
        let mut neg: Vec<&&Scored> = self
            .evaluated
            .iter()
            .filter(|s| !self.in_incident(s.window))
            .collect();
        neg.sort_by(|a, b| score(b).total_cmp(&score(a)));
        for s in neg.iter().take(8) {
            eprintln!(
                "  high negative: w{} {} score {:.3}",
                s.window,
                s.series,
                score(s)
            );
        }
    }
}

/// The baseline: per series, a batch isolation forest trained once on the warm-up windows,
/// flagging what scores above 0.5.
pub fn baseline_scores(case: &QualityCase, scored: &[Scored]) -> BTreeMap<(String, u64), f64> {
    let mut by_series: BTreeMap<&str, Vec<&Scored>> = BTreeMap::new();
    for s in scored {
        by_series.entry(&s.series).or_default().push(s);
    }
    let mut out = BTreeMap::new();
    for (name, rows) in by_series {
        let train: Vec<Vec<f64>> = rows
            .iter()
            .filter(|s| s.window < case.warmup)
            .map(|s| transform(&s.features))
            .collect();
        if train.is_empty() {
            continue;
        }
        let forest = BatchForest::fit(&train, 100, 256, 7);
        for s in rows {
            out.insert(
                (name.to_string(), s.window),
                forest.score(&transform(&s.features)),
            );
        }
    }
    out
}

/// Runs every case (or those whose name contains `only`) and returns the report table.
pub async fn report(only: Option<&str>) -> Result<String, QualityError> {
    let mut table = String::from(
        "| scenario | detector | incident recall | window precision | false positives per service-hour | ROC AUC | mean detection delay | root cause top-1 | top-3 |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for case in cases() {
        if only.is_some_and(|o| !case.name.contains(o)) {
            continue;
        }
        let run = run_through_pipeline(&case).await?;
        let scored = &run.scored;
        let ours = evaluate(&case, scored, &|s| s.flagged, &|s| s.score);
        let ranked = rankings(&case, &run);
        let our_roots = root_cause_hits(&case, &ranked);
        for (inc, r) in case.scenario.incidents.iter().zip(&ranked) {
            let first = r.as_ref().and_then(|r| r.first());
            if first.map(String::as_str) != Some(root_of(inc)) {
                eprintln!(
                    "    root cause not first: {} {:?} at window {} → {}",
                    root_of(inc),
                    inc.kind,
                    inc.from,
                    r.as_ref()
                        .map(|r| r.iter().take(3).cloned().collect::<Vec<_>>().join(", "))
                        .unwrap_or_else(|| "no incident".into())
                );
            }
        }
        let base = baseline_scores(&case, scored);
        let bscore = |s: &Scored| {
            base.get(&(s.series.clone(), s.window))
                .copied()
                .unwrap_or(0.0)
        };
        let theirs = evaluate(&case, scored, &|s| bscore(s) > 0.5, &bscore);
        let their_roots = root_cause_hits(
            &case,
            &baseline_rankings(&case, scored, &|s| bscore(s) > 0.5, &bscore),
        );
        for (who, m, (top1, top3)) in [
            ("otelwatch (online)", &ours, our_roots),
            ("batch iForest, trained once", &theirs, their_roots),
        ] {
            let row = if m.incidents == 0 {
                format!(
                    "| {} | {who} | – | – ({} flagged) | {:.2} | – | – | – | – |\n",
                    case.name,
                    m.flagged,
                    m.fp_per_service_hour()
                )
            } else {
                format!(
                    "| {} | {who} | {:.2} ({}/{}) | {:.2} ({}/{}) | {:.2} | {:.3} | {:.0} s | {:.2} ({top1}/{}) | {:.2} ({top3}/{}) |\n",
                    case.name,
                    m.recall(),
                    m.detected,
                    m.incidents,
                    m.precision(),
                    m.true_flags,
                    m.flagged,
                    m.fp_per_service_hour(),
                    m.auc,
                    m.mean_delay_s(),
                    top1 as f64 / m.incidents as f64,
                    m.incidents,
                    top3 as f64 / m.incidents as f64,
                    m.incidents
                )
            };
            eprint!("{row}");
            for missed in &m.missed {
                eprintln!("    missed: {missed}");
            }
            table.push_str(&row);
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_what_the_documents_write() {
        let ns = 1_767_571_210_000_000_000u64;
        assert_eq!(
            parse_rfc3339(&crate::model::time::rfc3339(ns)),
            Some(ns / 1_000_000_000)
        );
    }

    #[test]
    fn evaluation_counts_recall_precision_and_false_positives() {
        let case = QualityCase {
            name: "t",
            scenario: Scenario {
                incidents: vec![incident(
                    "service-b",
                    10,
                    2,
                    IncidentKind::Latency { extra_ms: 1.0 },
                )],
                ..Scenario::target_system(1)
            },
            windows: 20,
            warmup: 5,
            lateness_s: 5,
        };
        let row = |series: &str, w: u64, flagged: bool| Scored {
            series: series.into(),
            service: series.split(' ').next().unwrap_or("").into(),
            window: w,
            score: if flagged { 0.9 } else { 0.3 },
            flagged,
            features: [0.0; N_FEATURES],
            incident: None,
        };
        let scored = vec![
            row("service-b", 10, true),
            row("service-b", 11, false),
            row("service-a", 15, true),
            row("service-a", 3, true), // warm-up: not counted
            row("service-b", 16, false),
        ];
        let m = evaluate(&case, &scored, &|s| s.flagged, &|s| s.score);
        assert_eq!((m.detected, m.incidents), (1, 1));
        assert_eq!((m.true_flags, m.false_flags), (1, 1));
        assert_eq!(m.delays_s, vec![15.0]);
        assert_eq!(m.series, 2);
    }
}
