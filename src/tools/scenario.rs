//! A labelled scenario generator: services with a call graph, a daily load curve and noise, and
//! injected incidents, turned into real OTLP spans with event-time timestamps. Tests, the quality
//! benchmark and the demo's built-in simulator use it; the labels say which series were anomalous
//! in which windows.

use crate::model::window::SeriesKey;
use crate::processors::iforest::forest::Rng;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    /// Root requests per second at the daily mean (0 for services only called by others).
    pub rate: f64,
    /// Median own processing time.
    pub latency_ms: f64,
    pub error_rate: f64,
    pub calls: Vec<String>,
    pub routes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum IncidentKind {
    /// Extra latency in the service's own work (its server spans and everything above).
    Latency { extra_ms: f64 },
    /// A share of requests fail with HTTP 500.
    Errors { rate: f64 },
    /// A share of requests fail with HTTP 4xx.
    ClientErrors { rate: f64 },
    /// Root traffic multiplied (2.0 surge, 0.2 drop).
    Traffic { factor: f64 },
    /// The service stops answering entirely (no spans at all).
    Silent,
    /// Only the tail is slow: this share of requests take `extra_ms` longer.
    Tail { share: f64, extra_ms: f64 },
    /// A network delay between caller and callee: only the caller's client spans see it.
    NetworkDelay { callee: String, extra_ms: f64 },
    /// One endpoint (`http.route`) is slow; the others are not.
    RouteLatency { route: String, extra_ms: f64 },
}

#[derive(Debug, Clone)]
pub struct Incident {
    pub service: String,
    /// Window indexes [from, to).
    pub from: u64,
    pub to: u64,
    pub kind: IncidentKind,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub services: Vec<ServiceSpec>,
    pub incidents: Vec<Incident>,
    pub interval_s: u64,
    /// Windows in one period of the load curve (a "day").
    pub day_windows: f64,
    /// Amplitude of the daily curve (0.5: ±50%).
    pub daily_amplitude: f64,
    pub seed: u64,
}

impl Scenario {
    /// The target system's shape: `service-a` (`/start`, `/test`) calling `service-b` (`/ping`).
    pub fn target_system(seed: u64) -> Self {
        Self {
            services: vec![
                ServiceSpec {
                    name: "service-a".into(),
                    rate: 5.0,
                    latency_ms: 20.0,
                    error_rate: 0.005,
                    calls: vec!["service-b".into()],
                    routes: vec!["/start".into(), "/test".into()],
                },
                ServiceSpec {
                    name: "service-b".into(),
                    rate: 0.0,
                    latency_ms: 30.0,
                    error_rate: 0.005,
                    calls: vec![],
                    routes: vec!["/ping".into()],
                },
            ],
            incidents: Vec::new(),
            interval_s: 10,
            day_windows: 8640.0,
            daily_amplitude: 0.3,
            seed,
        }
    }

    fn incident<'a>(
        &'a self,
        service: &'a str,
        w: u64,
    ) -> impl Iterator<Item = &'a IncidentKind> + 'a {
        self.incidents
            .iter()
            .filter(move |i| i.service == service && (i.from..i.to).contains(&w))
            .map(|i| &i.kind)
    }

    /// The series each incident should make anomalous, per window index.
    pub fn labels(&self) -> BTreeMap<u64, BTreeSet<SeriesKey>> {
        let mut out: BTreeMap<u64, BTreeSet<SeriesKey>> = BTreeMap::new();
        let callers = |svc: &str| -> Vec<String> {
            self.services
                .iter()
                .filter(|s| s.calls.iter().any(|c| c == svc))
                .map(|s| s.name.clone())
                .collect()
        };
        for inc in &self.incidents {
            for w in inc.from..inc.to {
                let set = out.entry(w).or_default();
                match &inc.kind {
                    IncidentKind::NetworkDelay { callee, .. } => {
                        set.insert(SeriesKey {
                            service: inc.service.as_str().into(),
                            target: Some(callee.as_str().into()),
                            labels: vec![],
                            signal: Default::default(),
                        });
                    }
                    _ => {
                        set.insert(SeriesKey::service(&inc.service));
                        for c in callers(&inc.service) {
                            set.insert(SeriesKey {
                                service: c.as_str().into(),
                                target: Some(inc.service.as_str().into()),
                                labels: vec![],
                                signal: Default::default(),
                            });
                        }
                    }
                }
            }
        }
        out
    }
}

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

/// Generates the spans of a scenario, window by window, with event times from `start_ns`.
pub struct Generator {
    pub scenario: Scenario,
    rng: Rng,
    start_ns: u64,
    window: u64,
}

struct Emitted {
    spans: BTreeMap<String, Vec<Span>>,
}

/// What one request does on its own, under the incidents in force.
struct Work {
    own_ms: f64,
    /// The odds that the service fails the request itself.
    err_p: f64,
    client_err_p: f64,
    /// Extra network delay to a callee, in ms.
    net: BTreeMap<String, f64>,
    route: String,
}

/// One request being emitted: the service that serves it, its trace, its caller's span and
/// its own server span.
struct Hop<'a> {
    svc: &'a str,
    trace: [u8; 16],
    parent: Option<[u8; 8]>,
    span_id: [u8; 8],
}

impl Hop<'_> {
    /// The client span of a call to `callee` that answered `status` (504: it timed out).
    fn client_span(
        &self,
        id: [u8; 8],
        callee: &str,
        start_ns: u64,
        end_ns: u64,
        status: i64,
    ) -> Span {
        let mut attributes = vec![
            kv("http.request.method", s("GET")),
            kv("server.address", s(callee)),
            kv("peer.service", s(callee)),
        ];
        if status != 504 {
            attributes.push(kv("http.response.status_code", Value::IntValue(status)));
        }
        Span {
            trace_id: self.trace.to_vec(),
            span_id: id.to_vec(),
            parent_span_id: self.span_id.to_vec(),
            name: "GET".into(),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: start_ns,
            end_time_unix_nano: end_ns,
            attributes,
            status: (status >= 500).then(|| Status {
                code: StatusCode::Error as i32,
                message: String::new(),
            }),
            ..Default::default()
        }
    }

    /// The request's server span on `route`, answered with `code`.
    fn server_span(&self, route: &str, start_ns: u64, end_ns: u64, code: i64) -> Span {
        Span {
            trace_id: self.trace.to_vec(),
            span_id: self.span_id.to_vec(),
            parent_span_id: self.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: format!("GET {route}"),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: start_ns,
            end_time_unix_nano: end_ns,
            attributes: vec![
                kv("http.request.method", s("GET")),
                kv("http.route", s(route)),
                kv("url.path", s(route)),
                kv("http.response.status_code", Value::IntValue(code)),
            ],
            status: (code == 500).then(|| Status {
                code: StatusCode::Error as i32,
                message: "internal error".into(),
            }),
            ..Default::default()
        }
    }
}

impl Generator {
    /// `start_ns` is rounded down to a window boundary.
    pub fn new(scenario: Scenario, start_ns: u64) -> Self {
        let interval = scenario.interval_s * 1_000_000_000;
        Self {
            rng: Rng::new(scenario.seed),
            start_ns: start_ns - start_ns % interval,
            window: 0,
            scenario,
        }
    }

    pub fn window_index(&self) -> u64 {
        self.window
    }

    pub fn window_start_ns(&self, w: u64) -> u64 {
        self.start_ns + w * self.scenario.interval_s * 1_000_000_000
    }

    fn gauss(&mut self) -> f64 {
        let u1 = self.rng.uniform(1e-12, 1.0);
        let u2 = self.rng.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        if mean > 30.0 {
            return (mean + mean.sqrt() * self.gauss()).round().max(0.0) as u64;
        }
        let l = (-mean).exp();
        let (mut k, mut p) = (0u64, 1.0);
        loop {
            p *= self.rng.unit();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }

    fn lognormal_ms(&mut self, median: f64) -> f64 {
        median * (0.25 * self.gauss()).exp()
    }

    fn spec(&self, name: &str) -> Option<ServiceSpec> {
        self.scenario
            .services
            .iter()
            .find(|s| s.name == name)
            .cloned()
    }

    /// Emits one request to `svc` ending at `end_ns`; returns its duration and HTTP status
    /// (None when the service is silent).
    fn request(
        &mut self,
        svc: &str,
        end_ns: u64,
        trace: [u8; 16],
        parent: Option<[u8; 8]>,
        out: &mut Emitted,
    ) -> Option<(f64, i64)> {
        let spec = self.spec(svc)?;
        let incidents: Vec<IncidentKind> =
            self.scenario.incident(svc, self.window).cloned().collect();
        if incidents.contains(&IncidentKind::Silent) {
            return None;
        }
        let work = self.own_work(&spec, &incidents);
        let hop = Hop {
            svc,
            trace,
            parent,
            span_id: self.rng.next_u64().max(1).to_be_bytes(),
        };
        let (total, failed_call) = self.calls(&hop, &spec, &work, end_ns, out);
        let code = self.answer(failed_call, &work);
        let start_ns = end_ns.saturating_sub((total * 1e6) as u64);
        let span = hop.server_span(&work.route, start_ns, end_ns, code);
        out.spans.entry(svc.to_string()).or_default().push(span);
        Some((total, code))
    }

    /// The request's own work under the incidents in force: its latency, error odds, network
    /// delays per callee and the route it takes.
    fn own_work(&mut self, spec: &ServiceSpec, incidents: &[IncidentKind]) -> Work {
        let mut work = Work {
            own_ms: self.lognormal_ms(spec.latency_ms),
            err_p: spec.error_rate,
            client_err_p: 0.01,
            net: BTreeMap::new(),
            route: String::new(),
        };
        for inc in incidents {
            match inc {
                IncidentKind::Latency { extra_ms } => {
                    work.own_ms += extra_ms * (0.9 + 0.2 * self.rng.unit())
                }
                IncidentKind::Errors { rate } => work.err_p = work.err_p.max(*rate),
                IncidentKind::ClientErrors { rate } => {
                    work.client_err_p = work.client_err_p.max(*rate)
                }
                IncidentKind::Tail { share, extra_ms } => {
                    if self.rng.unit() < *share {
                        work.own_ms += extra_ms;
                    }
                }
                IncidentKind::NetworkDelay { callee, extra_ms } => {
                    work.net.insert(callee.clone(), *extra_ms);
                }
                IncidentKind::Traffic { .. }
                | IncidentKind::Silent
                | IncidentKind::RouteLatency { .. } => {}
            }
        }
        work.route = spec.routes[self.rng.below(spec.routes.len())].clone();
        for inc in incidents {
            if let IncidentKind::RouteLatency { route, extra_ms } = inc {
                if *route == work.route {
                    work.own_ms += extra_ms * (0.9 + 0.2 * self.rng.unit());
                }
            }
        }
        work
    }

    /// The calls to the service's callees, in sequence after half of the own work and ending
    /// before the request ends, each with its client span. Returns the request's whole
    /// duration (its own work and the calls) and whether a call failed.
    fn calls(
        &mut self,
        hop: &Hop,
        spec: &ServiceSpec,
        work: &Work,
        end_ns: u64,
        out: &mut Emitted,
    ) -> (f64, bool) {
        let mut total = work.own_ms;
        let mut failed_call = false;
        let mut cursor_end = end_ns.saturating_sub((work.own_ms * 0.5 * 1e6) as u64);
        for callee in spec.calls.iter().rev() {
            let delay = work.net.get(callee).copied().unwrap_or(0.0) + self.lognormal_ms(1.0);
            let callee_end = cursor_end.saturating_sub((delay * 0.5 * 1e6) as u64);
            let client_id: [u8; 8] = self.rng.next_u64().max(1).to_be_bytes();
            let result = self.request(callee, callee_end, hop.trace, Some(client_id), out);
            let (dur, status) = match result {
                Some((d, code)) => (d + delay, code),
                // A silent callee: the call times out.
                None => (1000.0 + delay, 504),
            };
            failed_call |= status >= 500;
            let start_ns = cursor_end.saturating_sub((dur * 1e6) as u64);
            let span = hop.client_span(client_id, callee, start_ns, cursor_end, status);
            out.spans.entry(hop.svc.to_string()).or_default().push(span);
            total += dur;
            cursor_end = cursor_end.saturating_sub((dur * 1e6) as u64);
        }
        (total, failed_call)
    }

    /// The request's HTTP status: 500 when a call or the service itself failed, sometimes a
    /// client error, else 200.
    fn answer(&mut self, failed_call: bool, work: &Work) -> i64 {
        if failed_call || self.rng.unit() < work.err_p {
            500
        } else if self.rng.unit() < work.client_err_p {
            404
        } else {
            200
        }
    }

    /// The spans of the next window, one resource per service.
    pub fn next_window(&mut self) -> ExportTraceServiceRequest {
        let w = self.window;
        let interval_ns = self.scenario.interval_s * 1_000_000_000;
        let start = self.window_start_ns(w);
        let phase = (w as f64 / self.scenario.day_windows) * 2.0 * std::f64::consts::PI;
        let curve = 1.0 + self.scenario.daily_amplitude * phase.sin();
        let mut out = Emitted {
            spans: BTreeMap::new(),
        };
        let roots: Vec<ServiceSpec> = self
            .scenario
            .services
            .iter()
            .filter(|s| s.rate > 0.0)
            .cloned()
            .collect();
        for spec in roots {
            let factor: f64 = self
                .scenario
                .incident(&spec.name, w)
                .map(|k| match k {
                    IncidentKind::Traffic { factor } => *factor,
                    _ => 1.0,
                })
                .product();
            let n = self.poisson(spec.rate * self.scenario.interval_s as f64 * curve * factor);
            for _ in 0..n {
                // End times spread over the window, clear of its edges.
                let end =
                    start + interval_ns / 20 + (self.rng.unit() * interval_ns as f64 * 0.9) as u64;
                let mut trace = [0u8; 16];
                trace[..8].copy_from_slice(&self.rng.next_u64().to_be_bytes());
                trace[8..].copy_from_slice(&self.rng.next_u64().max(1).to_be_bytes());
                self.request(&spec.name, end, trace, None, &mut out);
            }
        }
        self.window += 1;
        ExportTraceServiceRequest {
            resource_spans: out
                .spans
                .into_iter()
                .map(|(svc, spans)| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", s(&svc))],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incidents_shape_the_spans_and_the_labels() {
        let mut sc = Scenario::target_system(1);
        sc.incidents.push(Incident {
            service: "service-a".into(),
            from: 2,
            to: 3,
            kind: IncidentKind::NetworkDelay {
                callee: "service-b".into(),
                extra_ms: 1500.0,
            },
        });
        let labels = sc.labels();
        assert_eq!(labels[&2].len(), 1);
        assert_eq!(
            labels[&2].iter().next().unwrap().target.as_deref(),
            Some("service-b")
        );
        let mut g = Generator::new(sc, 1_700_000_000_000_000_000);
        let w0 = g.next_window();
        let _ = g.next_window();
        let w2 = g.next_window();
        let client_ms = |req: &ExportTraceServiceRequest| -> f64 {
            let spans: Vec<&Span> = req
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .filter(|s| s.kind == SpanKind::Client as i32)
                .collect();
            spans
                .iter()
                .map(|s| (s.end_time_unix_nano - s.start_time_unix_nano) as f64 / 1e6)
                .sum::<f64>()
                / spans.len() as f64
        };
        assert!(client_ms(&w0) < 100.0);
        assert!(client_ms(&w2) > 1400.0);
        // service-b's own server spans stay fast during the network delay.
        let b_ms: Vec<f64> = w2
            .resource_spans
            .iter()
            .filter(|r| crate::exporters::debug::service_name(r.resource.as_ref()) == "service-b")
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| (s.end_time_unix_nano - s.start_time_unix_nano) as f64 / 1e6)
            .collect();
        assert!(
            !b_ms.is_empty() && b_ms.iter().all(|ms| *ms < 200.0),
            "{b_ms:?}"
        );
    }
}
