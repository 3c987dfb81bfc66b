//! `otelwatch loadgen`: sends realistic spans (or log records, or metric points) over OTLP/gRPC
//! or OTLP/HTTP at a given rate and reports what it achieved. Each generated trace request is a
//! set of traces through a chain of services: a SERVER span per hop and a CLIENT span for each
//! call to the next service, with stable HTTP semantic-convention attributes, lognormal-ish
//! latencies and ~1% errors; logs and metrics are described in [`records`].

pub mod records;

use crate::otlp::codec::ClientCodec;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Grpc,
    Http,
}

/// The OTLP signal the generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadSignal {
    Traces,
    Logs,
    Metrics,
}

impl LoadSignal {
    /// The OTLP/gRPC method of the signal's export.
    fn grpc_path(self) -> &'static str {
        use crate::otlp::Signal;
        match self {
            LoadSignal::Traces => ExportTraceServiceRequest::GRPC_PATH,
            LoadSignal::Logs => ExportLogsServiceRequest::GRPC_PATH,
            LoadSignal::Metrics => ExportMetricsServiceRequest::GRPC_PATH,
        }
    }

    /// The OTLP/HTTP path of the signal.
    fn http_path(self) -> &'static str {
        use crate::otlp::Signal;
        match self {
            LoadSignal::Traces => ExportTraceServiceRequest::HTTP_PATH,
            LoadSignal::Logs => ExportLogsServiceRequest::HTTP_PATH,
            LoadSignal::Metrics => ExportMetricsServiceRequest::HTTP_PATH,
        }
    }

    /// What one item of the signal is called.
    pub fn items(self) -> &'static str {
        match self {
            LoadSignal::Traces => "spans",
            LoadSignal::Logs => "log records",
            LoadSignal::Metrics => "metric points",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadgenOptions {
    /// `host:port` (gRPC) or `http://host:port` (HTTP; the signal's `/v1/…` path is appended).
    pub endpoint: String,
    pub protocol: Protocol,
    pub signal: LoadSignal,
    /// Items (spans, log records or metric points) per second in total; 0 sends as fast as
    /// possible.
    pub rate: u64,
    pub duration: Duration,
    pub services: usize,
    pub batch_size: usize,
    pub concurrency: usize,
    pub gzip: bool,
    /// Build this many requests up front and send them round-robin, so the generator's own
    /// CPU cost stays out of a throughput measurement. 0 builds a fresh request every time.
    pub pregenerate: usize,
    pub seed: u64,
}

#[derive(Debug, Clone)]
pub struct LoadgenReport {
    pub signal: LoadSignal,
    /// Items (spans, log records or metric points) accepted.
    pub items_sent: u64,
    pub requests: u64,
    pub refused_requests: u64,
    pub failed_requests: u64,
    pub elapsed: Duration,
    /// Response times of the accepted requests, in microseconds: p50, p99, max.
    pub latency_us: Option<[u64; 3]>,
}

impl LoadgenReport {
    pub fn items_per_second(&self) -> f64 {
        self.items_sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for LoadgenReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let items = self.signal.items();
        write!(
            f,
            "sent {} {items} in {} requests over {:.2}s: {:.0} {items}/s; {} requests refused (retryable), {} failed",
            self.items_sent,
            self.requests,
            self.elapsed.as_secs_f64(),
            self.items_per_second(),
            self.refused_requests,
            self.failed_requests
        )?;
        if let Some([p50, p99, max]) = self.latency_us {
            let ms = |us: u64| us as f64 / 1000.0;
            write!(
                f,
                "; response time p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                ms(p50),
                ms(p99),
                ms(max)
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("invalid endpoint {0:?}: {1}")]
    Endpoint(String, String),
    #[error("invalid options: {0}")]
    Options(String),
}

pub(crate) fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

pub(crate) fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

/// The generated services' names (at least one).
pub(crate) fn service_names(n: usize) -> Vec<String> {
    (0..n.max(1)).map(|i| format!("loadgen-svc-{i}")).collect()
}

const ROUTES: [&str; 4] = ["/api/orders", "/api/cart", "/api/users/{id}", "/healthz"];

/// Builds spans for a traces through `services` services, grouped per service.
pub struct SpanFactory {
    rng: SmallRng,
    services: Vec<String>,
}

impl SpanFactory {
    pub fn new(services: usize, seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            services: service_names(services),
        }
    }

    fn latency_ns(&mut self, base_ms: f64) -> u64 {
        // exp(normal) via Box-Muller, sigma 0.35: a long right tail like real services.
        let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = self.rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (base_ms * (0.35 * z).exp() * 1e6) as u64
    }

    /// One request of about `spans` spans, ending now.
    pub fn request(&mut self, spans: usize) -> ExportTraceServiceRequest {
        let mut per_service: Vec<Vec<Span>> = vec![Vec::new(); self.services.len()];
        let now = crate::model::time::now_ns();
        let mut made = 0;
        while made < spans {
            made += self.trace(now, spans - made, &mut per_service);
        }
        self.export_request(per_service)
    }

    /// One trace ending about `now`, of at most `budget` spans, added to the spans of the
    /// services it goes through; returns how many spans it made.
    fn trace(&mut self, now: u64, budget: usize, per_service: &mut [Vec<Span>]) -> usize {
        let n = self.services.len();
        let trace = Trace {
            id: self.rng.random(),
            first: self.rng.random_range(0..n),
            route: ROUTES[self.rng.random_range(0..ROUTES.len())],
            error: self.rng.random_range(0..100) == 0,
        };
        let hops = if n > 1 { 2.min(n) } else { 1 };
        let mut made = 0;
        let mut parent: Vec<u8> = Vec::new();
        let mut start = now.saturating_sub(self.latency_ns(80.0) + 10_000_000);
        for hop in 0..hops {
            if made >= budget {
                break;
            }
            let svc = (trace.first + hop) % n;
            let dur = self.latency_ns(40.0 / (hop + 1) as f64);
            let server_id: [u8; 8] = self.rng.random();
            per_service[svc].push(trace.server_span(server_id, parent.clone(), start, dur));
            made += 1;
            if hop + 1 < hops && made < budget {
                let callee = &self.services[(trace.first + hop + 1) % n];
                let client_id: [u8; 8] = self.rng.random();
                let cstart = start + dur / 10;
                let cdur = dur / 2;
                per_service[svc]
                    .push(trace.client_span(client_id, server_id, callee, cstart, cdur));
                made += 1;
                parent = client_id.to_vec();
                start = cstart + cdur / 10;
            }
        }
        made
    }

    /// The request: one resource per service that has spans.
    fn export_request(&self, per_service: Vec<Vec<Span>>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: per_service
                .into_iter()
                .enumerate()
                .filter(|(_, spans)| !spans.is_empty())
                .map(|(i, spans)| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            kv("service.name", s(&self.services[i])),
                            kv("telemetry.sdk.name", s("otelwatch-loadgen")),
                        ],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "otelwatch.loadgen".into(),
                            ..Default::default()
                        }),
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }
    }
}

/// What all spans of one generated trace share.
struct Trace {
    id: [u8; 16],
    /// The index of the service the trace enters by.
    first: usize,
    route: &'static str,
    error: bool,
}

impl Trace {
    fn status_code(&self) -> any_value::Value {
        any_value::Value::IntValue(if self.error { 500 } else { 200 })
    }

    /// The SERVER span of one hop, starting at `start` and lasting `dur` ns.
    fn server_span(&self, id: [u8; 8], parent: Vec<u8>, start: u64, dur: u64) -> Span {
        Span {
            trace_id: self.id.to_vec(),
            span_id: id.to_vec(),
            parent_span_id: parent,
            name: format!("GET {}", self.route),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + dur,
            attributes: vec![
                kv("http.request.method", s("GET")),
                kv("http.route", s(self.route)),
                kv("url.path", s(self.route)),
                kv("http.response.status_code", self.status_code()),
            ],
            status: self.error.then(|| Status {
                code: status::StatusCode::Error as i32,
                message: "internal error".into(),
            }),
            ..Default::default()
        }
    }

    /// The CLIENT span of a hop's call to `callee`, under the hop's server span `parent`.
    fn client_span(
        &self,
        id: [u8; 8],
        parent: [u8; 8],
        callee: &str,
        start: u64,
        dur: u64,
    ) -> Span {
        Span {
            trace_id: self.id.to_vec(),
            span_id: id.to_vec(),
            parent_span_id: parent.to_vec(),
            name: "GET".into(),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + dur,
            attributes: vec![
                kv("http.request.method", s("GET")),
                kv("server.address", s(callee)),
                kv("peer.service", s(callee)),
                kv("http.response.status_code", self.status_code()),
            ],
            ..Default::default()
        }
    }
}

fn count_spans(r: &ExportTraceServiceRequest) -> u64 {
    r.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum()
}

struct HttpSender {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    uri: http::Uri,
    gzip: bool,
}

enum Sender {
    Grpc(tonic::transport::Channel, bool, LoadSignal),
    Http(Box<HttpSender>),
}

/// Sends one encoded `ExportTraceServiceRequest` over OTLP/gRPC, as it is.
pub async fn grpc_export(
    channel: &tonic::transport::Channel,
    body: Bytes,
    gzip: bool,
) -> Result<ExportTraceServiceResponse, tonic::Status> {
    grpc_export_signal(channel, body, gzip, LoadSignal::Traces).await
}

/// Sends one encoded export request of `signal` over OTLP/gRPC, as it is. The three signals'
/// responses share their wire shape (a partial success of a count and a message), read here as
/// the traces'.
pub async fn grpc_export_signal(
    channel: &tonic::transport::Channel,
    body: Bytes,
    gzip: bool,
    signal: LoadSignal,
) -> Result<ExportTraceServiceResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if gzip {
        grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(signal.grpc_path());
    grpc.unary(
        tonic::Request::new(body),
        path,
        ClientCodec::<ExportTraceServiceResponse>::default(),
    )
    .await
    .map(|r| r.into_inner())
}

enum Outcome {
    Ok,
    Refused,
    Failed(String),
}

impl Sender {
    /// The sender for the options' endpoint and protocol (connections are made lazily).
    fn new(opts: &LoadgenOptions) -> Result<Sender, LoadgenError> {
        let invalid = |e: &dyn std::fmt::Display| {
            LoadgenError::Endpoint(opts.endpoint.clone(), e.to_string())
        };
        Ok(match opts.protocol {
            Protocol::Grpc => {
                let uri = if opts.endpoint.starts_with("http://") {
                    opts.endpoint.clone()
                } else {
                    format!("http://{}", opts.endpoint)
                };
                let channel = tonic::transport::Endpoint::from_shared(uri)
                    .map_err(|e| invalid(&e))?
                    .tcp_nodelay(true)
                    .connect_lazy();
                Sender::Grpc(channel, opts.gzip, opts.signal)
            }
            Protocol::Http => {
                let base = if opts.endpoint.starts_with("http://") {
                    opts.endpoint.trim_end_matches('/').to_string()
                } else {
                    format!("http://{}", opts.endpoint.trim_end_matches('/'))
                };
                let uri: http::Uri = format!("{base}{}", opts.signal.http_path())
                    .parse()
                    .map_err(|e: http::uri::InvalidUri| invalid(&e))?;
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build_http();
                Sender::Http(Box::new(HttpSender {
                    client,
                    uri,
                    gzip: opts.gzip,
                }))
            }
        })
    }

    async fn send(&self, body: Bytes) -> Outcome {
        match self {
            Sender::Grpc(channel, gzip, signal) => {
                match grpc_export_signal(channel, body, *gzip, *signal).await {
                    Ok(_) => Outcome::Ok,
                    // Refused by a live server that asks for a retry (not a dead connection).
                    Err(s)
                        if s.code() == tonic::Code::ResourceExhausted
                            || crate::otlp::status::retry_delay(&s).is_some() =>
                    {
                        Outcome::Refused
                    }
                    Err(s) => Outcome::Failed(format!("{:?}: {}", s.code(), s.message())),
                }
            }
            Sender::Http(h) => {
                let HttpSender { client, uri, gzip } = h.as_ref();
                let body = if *gzip {
                    use std::io::Write;
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    if e.write_all(&body).is_err() {
                        return Outcome::Failed("gzip".into());
                    }
                    match e.finish() {
                        Ok(b) => Bytes::from(b),
                        Err(e) => return Outcome::Failed(e.to_string()),
                    }
                } else {
                    body
                };
                let mut req = http::Request::post(uri.clone())
                    .header("content-type", "application/x-protobuf");
                if *gzip {
                    req = req.header("content-encoding", "gzip");
                }
                let req = match req.body(Full::new(body)) {
                    Ok(r) => r,
                    Err(e) => return Outcome::Failed(e.to_string()),
                };
                match client.request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let _ = resp.into_body().collect().await;
                        if status.is_success() {
                            Outcome::Ok
                        } else if status.as_u16() == 429 || status.as_u16() == 503 {
                            Outcome::Refused
                        } else {
                            Outcome::Failed(format!("HTTP {status}"))
                        }
                    }
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
        }
    }
}

/// What the workers have done, added up across them.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    requests: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    /// Response times of accepted requests (µs, 3 significant digits, up to a minute).
    latency: std::sync::Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

impl Counters {
    fn report(&self, signal: LoadSignal, elapsed: Duration) -> LoadgenReport {
        LoadgenReport {
            signal,
            items_sent: self.sent.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            refused_requests: self.refused.load(Ordering::Relaxed),
            failed_requests: self.failed.load(Ordering::Relaxed),
            elapsed,
            latency_us: self.latency.lock().ok().and_then(|h| {
                h.as_ref()
                    .filter(|h| !h.is_empty())
                    .map(|h| [h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max()])
            }),
        }
    }

    fn took(&self, d: Duration) {
        if let Ok(mut h) = self.latency.lock() {
            let h = h.get_or_insert_with(|| {
                hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
                    .expect("valid histogram bounds")
            });
            h.saturating_record((d.as_micros() as u64).max(1));
        }
    }
}

/// What builds a worker's requests.
enum Factory {
    Spans(SpanFactory),
    Logs(records::LogFactory),
    Metrics(records::MetricFactory),
}

/// One worker's requests, encoded with their item counts: from the pregenerated pool in turn,
/// or freshly built when there is no pool.
struct Requests {
    factory: Factory,
    batch_size: usize,
    pool: Vec<Pooled>,
    i: usize,
}

/// A pregenerated request, and where its span and log times lie in it: sent again later, its
/// times are moved on by the time since it was built, so a receiver sees current telemetry
/// (stale times would be late for their windows, and a detection path would skip them).
struct Pooled {
    bytes: Bytes,
    items: u64,
    times: Vec<usize>,
    built_ns: u64,
}

/// The byte offsets of the fixed64 times of a traces request's spans (start, end) or a logs
/// request's records (time, observed time): export request 1 → 2 → 2 → fields 7, 8 or 1, 11.
fn time_offsets(body: &[u8], times: [u64; 2]) -> Vec<usize> {
    use crate::otlp::wire::{fields, Value};
    let mut out = Vec::new();
    let base = body.as_ptr() as usize;
    fn nested(buf: &[u8], number: u64) -> Vec<&[u8]> {
        fields(buf)
            .filter_map(Result::ok)
            .filter_map(|f| match (f.number == number, f.value) {
                (true, Value::Bytes(b)) => Some(b),
                _ => None,
            })
            .collect()
    }
    for resource in nested(body, 1) {
        for scope in nested(resource, 2) {
            for item in nested(scope, 2) {
                for f in fields(item).filter_map(Result::ok) {
                    if let (true, Value::Fixed64(_)) = (times.contains(&f.number), f.value) {
                        // The value is the field's last 8 bytes.
                        out.push(f.raw.as_ptr() as usize - base + f.raw.len() - 8);
                    }
                }
            }
        }
    }
    out
}

impl Requests {
    fn new(opts: &LoadgenOptions, worker: usize) -> Self {
        let seed = opts.seed.wrapping_add(worker as u64);
        let mut requests = Requests {
            factory: match opts.signal {
                LoadSignal::Traces => Factory::Spans(SpanFactory::new(opts.services, seed)),
                LoadSignal::Logs => Factory::Logs(records::LogFactory::new(opts.services, seed)),
                LoadSignal::Metrics => {
                    Factory::Metrics(records::MetricFactory::new(opts.services, seed))
                }
            },
            batch_size: opts.batch_size,
            pool: Vec::new(),
            i: 0,
        };
        requests.pool = (0..opts.pregenerate)
            .map(|_| {
                let (bytes, items) = requests.build();
                let times = match opts.signal {
                    LoadSignal::Traces => time_offsets(&bytes, [7, 8]),
                    LoadSignal::Logs => time_offsets(&bytes, [1, 11]),
                    // Cumulative streams would not stay cumulative: sent as built.
                    LoadSignal::Metrics => Vec::new(),
                };
                Pooled {
                    bytes,
                    items,
                    times,
                    built_ns: crate::model::time::now_ns(),
                }
            })
            .collect();
        requests
    }

    fn build(&mut self) -> (Bytes, u64) {
        match &mut self.factory {
            Factory::Spans(f) => {
                let r = f.request(self.batch_size);
                (Bytes::from(r.encode_to_vec()), count_spans(&r))
            }
            Factory::Logs(f) => {
                let r = f.request(self.batch_size);
                (
                    Bytes::from(r.encode_to_vec()),
                    records::count_log_records(&r),
                )
            }
            Factory::Metrics(f) => {
                let r = f.request(self.batch_size);
                (
                    Bytes::from(r.encode_to_vec()),
                    records::count_metric_points(&r),
                )
            }
        }
    }

    fn next(&mut self) -> (Bytes, u64) {
        if self.pool.is_empty() {
            return self.build();
        }
        self.i = (self.i + 1) % self.pool.len();
        let p = &self.pool[self.i];
        if p.times.is_empty() {
            return (p.bytes.clone(), p.items);
        }
        let shift = crate::model::time::now_ns().saturating_sub(p.built_ns);
        let mut body = p.bytes.to_vec();
        for &at in &p.times {
            if let Some(t) = body.get_mut(at..at + 8) {
                let moved = u64::from_le_bytes([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]])
                    .saturating_add(shift);
                t.copy_from_slice(&moved.to_le_bytes());
            }
        }
        (body.into(), p.items)
    }
}

/// Keeps one worker to its share of the rate (no pacing when the rate is 0).
struct Pacer {
    items_per_second: f64,
    next: Instant,
}

impl Pacer {
    /// Waits until `items` more items may go; false when that would be after `end`.
    async fn wait(&mut self, items: u64, end: Instant) -> bool {
        if self.items_per_second > 0.0 {
            if self.next >= end {
                return false;
            }
            let now = Instant::now();
            if self.next > now {
                tokio::time::sleep(self.next - now).await;
            }
            self.next += Duration::from_secs_f64(items as f64 / self.items_per_second);
        }
        true
    }
}

/// Sends one request, which may not outlive the run (nor take longer than 10 s).
async fn send_until(sender: &Sender, body: Bytes, end: Instant) -> Outcome {
    let limit = (Instant::now() + Duration::from_secs(10))
        .min(end.max(Instant::now()) + Duration::from_millis(500));
    tokio::time::timeout_at(limit.into(), sender.send(body))
        .await
        .unwrap_or_else(|_| Outcome::Failed("timed out".into()))
}

/// One worker: sends requests until `end`, counting what became of them.
async fn worker(
    w: usize,
    opts: LoadgenOptions,
    sender: Arc<Sender>,
    counters: Arc<Counters>,
    end: Instant,
) {
    let mut requests = Requests::new(&opts, w);
    let mut pacer = Pacer {
        items_per_second: opts.rate as f64 / opts.concurrency as f64,
        next: Instant::now(),
    };
    let mut last_error: Option<String> = None;
    while Instant::now() < end {
        let (body, n) = requests.next();
        if !pacer.wait(n, end).await {
            break;
        }
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let sent_at = Instant::now();
        match send_until(&sender, body, end).await {
            Outcome::Ok => {
                counters.took(sent_at.elapsed());
                counters.sent.fetch_add(n, Ordering::Relaxed);
            }
            Outcome::Refused => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed(e) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                if last_error.as_deref() != Some(&e) {
                    tracing::warn!(error = %e, "loadgen request failed");
                    last_error = Some(e);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Runs the generator to completion.
pub async fn run(opts: LoadgenOptions) -> Result<LoadgenReport, LoadgenError> {
    if opts.batch_size == 0 || opts.concurrency == 0 {
        return Err(LoadgenError::Options(
            "batch size and concurrency must be at least 1".into(),
        ));
    }
    let sender = Arc::new(Sender::new(&opts)?);
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let end = start + opts.duration;
    let workers: Vec<_> = (0..opts.concurrency)
        .map(|w| {
            let (opts, sender, counters) = (opts.clone(), sender.clone(), counters.clone());
            tokio::spawn(worker(w, opts, sender, counters, end))
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    Ok(counters.report(opts.signal, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factory_builds_valid_chained_spans() {
        let mut f = SpanFactory::new(3, 7);
        let mut req = f.request(100);
        assert_eq!(count_spans(&req), 100);
        let checked = crate::otlp::Signal::check(&mut req);
        assert_eq!(checked.rejected, 0);
        let kinds: std::collections::BTreeSet<i32> = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.kind)
            .collect();
        assert!(kinds.contains(&(span::SpanKind::Server as i32)));
        assert!(kinds.contains(&(span::SpanKind::Client as i32)));
        // Same seed, same spans.
        let again = SpanFactory::new(3, 7).request(100);
        assert_eq!(
            req.resource_spans[0].scope_spans[0].spans[0].trace_id,
            again.resource_spans[0].scope_spans[0].spans[0].trace_id
        );
    }

    #[test]
    fn pooled_requests_are_sent_with_their_times_moved_on() {
        for signal in [LoadSignal::Traces, LoadSignal::Logs] {
            let opts = LoadgenOptions {
                endpoint: String::new(),
                protocol: Protocol::Grpc,
                signal,
                rate: 0,
                duration: Duration::from_secs(1),
                services: 3,
                batch_size: 40,
                concurrency: 1,
                gzip: false,
                pregenerate: 2,
                seed: 1,
            };
            let mut r = Requests::new(&opts, 0);
            for p in &mut r.pool {
                p.built_ns -= 5_000_000_000;
            }
            let original = r.pool[1].bytes.clone();
            let (sent, items) = r.next();
            assert_eq!(items, r.pool[1].items);
            assert_eq!(sent.len(), original.len());
            match signal {
                LoadSignal::Traces => {
                    let (a, b) = (
                        ExportTraceServiceRequest::decode(&original[..]).unwrap(),
                        ExportTraceServiceRequest::decode(&sent[..]).unwrap(),
                    );
                    let spans = |r: &ExportTraceServiceRequest| -> Vec<Span> {
                        r.resource_spans
                            .iter()
                            .flat_map(|r| &r.scope_spans)
                            .flat_map(|s| s.spans.clone())
                            .collect()
                    };
                    let (a, b) = (spans(&a), spans(&b));
                    assert_eq!(a.len(), 40);
                    for (x, y) in a.iter().zip(&b) {
                        assert!(y.start_time_unix_nano >= x.start_time_unix_nano + 5_000_000_000);
                        assert_eq!(
                            y.end_time_unix_nano - y.start_time_unix_nano,
                            x.end_time_unix_nano - x.start_time_unix_nano
                        );
                        let mut moved = y.clone();
                        moved.start_time_unix_nano = x.start_time_unix_nano;
                        moved.end_time_unix_nano = x.end_time_unix_nano;
                        assert_eq!(&moved, x);
                    }
                }
                _ => {
                    let (a, b) = (
                        ExportLogsServiceRequest::decode(&original[..]).unwrap(),
                        ExportLogsServiceRequest::decode(&sent[..]).unwrap(),
                    );
                    let la = &a.resource_logs[0].scope_logs[0].log_records[0];
                    let lb = &b.resource_logs[0].scope_logs[0].log_records[0];
                    assert!(lb.time_unix_nano >= la.time_unix_nano + 5_000_000_000);
                    assert_eq!(
                        lb.observed_time_unix_nano - la.observed_time_unix_nano,
                        lb.time_unix_nano - la.time_unix_nano
                    );
                    assert_eq!(lb.body, la.body);
                }
            }
        }
    }
}
