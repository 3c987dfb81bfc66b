//! Exporter `debug`: prints what passes, for people watching a terminal.
//!
//! ```yaml
//! exporters:
//!   debug:
//!     verbosity: basic     # basic: one line per batch; normal: one line per item; detailed: OTLP/JSON
//! ```
//! For window records (after `window`/`iforest`), `basic` prints each anomaly as one line —
//! the live terminal monitor — `normal` prints every window, `detailed` every document.
//! ```yaml
//! ```

use super::framework::{Delivered, Export, ExportError};
use crate::config::decode::decode_section;
use crate::config::error::ConfigError;
use crate::model::incident::{Action, IncidentEvent};
use crate::model::window::{feature, Severity, WindowRecord};
use crate::pipeline::DataKind;
use crate::pipeline::{Batch, Payload};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    #[default]
    Basic,
    Normal,
    Detailed,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    pub verbosity: Verbosity,
}

impl crate::exporters::ExporterType for DebugConfig {
    type Exporter = DebugExporter;
    const NAME: &'static str = "debug";

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        decode_section(path, value).map_err(|e| vec![e])
    }

    fn accepts(&self) -> &'static [DataKind] {
        &DataKind::ALL
    }

    fn build(
        &self,
        _id: &str,
        _telemetry: &crate::telemetry::Telemetry,
    ) -> Result<Self::Exporter, crate::exporters::BuildError> {
        Ok(DebugExporter::new(self))
    }
}

pub struct DebugExporter {
    verbosity: Verbosity,
    color: bool,
}

impl DebugExporter {
    pub fn new(cfg: &DebugConfig) -> Self {
        Self {
            verbosity: cfg.verbosity,
            color: std::io::IsTerminal::is_terminal(&std::io::stdout()),
        }
    }
}

pub fn service_name(resource: Option<&Resource>) -> &str {
    resource
        .and_then(|r| attr(&r.attributes, "service.name"))
        .unwrap_or("unknown_service")
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        }
    })
}

fn hex(id: &[u8]) -> String {
    id.iter()
        .fold(String::with_capacity(id.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// One window as a terminal line: anomalies stand out (red/yellow when `color`).
pub fn window_line(w: &WindowRecord, color: bool) -> String {
    let when = crate::model::time::rfc3339(w.start_ns);
    let f = &w.features;
    let stats = format!(
        "n={:<5} err={:.3} p95={:.1}ms",
        f[feature::REQUEST_COUNT],
        f[feature::ERROR_RATE],
        f[feature::LATENCY_P95]
    );
    match &w.anomaly {
        Some(a) if a.is_anomaly => {
            let sev = a.severity.map(|s| s.as_str()).unwrap_or("minor");
            let (on, off) = match (color, a.severity) {
                (false, _) => ("", ""),
                (true, Some(Severity::Critical)) => ("\x1b[1;31m", "\x1b[0m"),
                (true, Some(Severity::Major)) => ("\x1b[31m", "\x1b[0m"),
                (true, _) => ("\x1b[33m", "\x1b[0m"),
            };
            let incident = a
                .incident
                .as_ref()
                .map(|id| format!(" [incident {id}]"))
                .unwrap_or_default();
            format!(
                "{on}ANOMALY {sev:<8} {when} {} score={:.2} (threshold {:.2}) {}{incident}{off}",
                w.series, a.score, a.threshold, a.message
            )
        }
        Some(a) if a.warming_up => format!("window  {when} {} {stats} (warming up)", w.series),
        Some(a) => format!("window  {when} {} {stats} score={:.2}", w.series, a.score),
        None => format!("window  {when} {} {stats}", w.series),
    }
}

/// One line per incident change worth telling a person (opened, worse, a new top cause,
/// resolved); every change at `detailed`, as its document.
fn render_incidents(es: &[IncidentEvent], verbosity: Verbosity, color: bool) -> String {
    let mut out = String::new();
    for e in es {
        if verbosity == Verbosity::Detailed {
            out.push_str(&e.to_document().to_string());
            out.push('\n');
            continue;
        }
        if !e.notable {
            continue;
        }
        let (on, off) = match (color, e.action, e.incident.severity) {
            (false, _, _) => ("", ""),
            (true, Action::Resolved, _) => ("\x1b[32m", "\x1b[0m"),
            (true, _, Severity::Critical) => ("\x1b[1;35m", "\x1b[0m"),
            (true, _, _) => ("\x1b[35m", "\x1b[0m"),
        };
        let when = crate::model::time::rfc3339(e.at_ns);
        let _ = writeln!(out, "{on}INCIDENT {when} {}{off}", e.summary());
    }
    out
}

fn render_windows(ws: &[WindowRecord], verbosity: Verbosity, color: bool) -> String {
    let mut out = String::new();
    if verbosity == Verbosity::Basic && !ws.iter().any(|w| w.is_anomaly()) {
        // A heartbeat per set of closed windows, so a quiet monitor is visibly alive.
        let Some(last) = ws.iter().map(|w| w.start_ns).max() else {
            return out;
        };
        let warming = ws
            .iter()
            .filter(|w| w.anomaly.as_ref().is_some_and(|a| a.warming_up))
            .count();
        let _ = write!(
            out,
            "windows {} {} series scored, no anomaly",
            crate::model::time::rfc3339(last),
            ws.len()
        );
        if warming > 0 {
            let _ = write!(out, " ({warming} still warming up)");
        }
        out.push('\n');
        return out;
    }
    for w in ws {
        match verbosity {
            // Basic: the live monitor view, anomalies only.
            Verbosity::Basic if !w.is_anomaly() => {}
            Verbosity::Basic | Verbosity::Normal => {
                out.push_str(&window_line(w, color));
                out.push('\n');
            }
            Verbosity::Detailed => {
                out.push_str(&w.to_document().to_string());
                out.push('\n');
            }
        }
    }
    out
}

/// Formats a batch for the terminal.
pub fn render(batch: &Batch, verbosity: Verbosity) -> String {
    render_colored(batch, verbosity, false)
}

pub fn render_colored(batch: &Batch, verbosity: Verbosity, color: bool) -> String {
    match (&batch.payload, verbosity) {
        (Payload::Windows(ws), _) => render_windows(ws, verbosity, color),
        (Payload::Incidents(es), _) => render_incidents(es, verbosity, color),
        (_, Verbosity::Basic) => summary_line(batch),
        (Payload::Traces(t), Verbosity::Normal) => span_lines(t.request()),
        (Payload::Metrics(m), Verbosity::Normal) => metric_lines(m),
        (Payload::Logs(l), Verbosity::Normal) => log_lines(l),
        (_, Verbosity::Detailed) => {
            let mut buf = Vec::new();
            match crate::otlp::encode_json_line(&batch.payload, &mut buf) {
                Ok(()) => format!("{}\n", String::from_utf8_lossy(&buf)),
                Err(_) => String::new(),
            }
        }
    }
}

/// `traces: 12 spans from checkout, payments`.
fn summary_line(batch: &Batch) -> String {
    let services: BTreeSet<&str> = match &batch.payload {
        Payload::Traces(t) => t
            .request()
            .resource_spans
            .iter()
            .map(|r| service_name(r.resource.as_ref()))
            .collect(),
        Payload::Metrics(m) => m
            .resource_metrics
            .iter()
            .map(|r| service_name(r.resource.as_ref()))
            .collect(),
        Payload::Logs(l) => l
            .resource_logs
            .iter()
            .map(|r| service_name(r.resource.as_ref()))
            .collect(),
        Payload::Windows(_) | Payload::Incidents(_) => BTreeSet::new(),
    };
    let list: Vec<&str> = services.into_iter().collect();
    let kind = batch.kind();
    let (items, name) = (batch.items, kind.item_name());
    format!("{kind}: {items} {name} from {}\n", list.join(", "))
}

fn span_lines(t: &ExportTraceServiceRequest) -> String {
    let mut out = String::new();
    for rs in &t.resource_spans {
        let svc = service_name(rs.resource.as_ref());
        for s in rs.scope_spans.iter().flat_map(|s| &s.spans) {
            let ms = s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as f64 / 1e6;
            let status = s.status.as_ref().map(|s| s.code).unwrap_or(0);
            let status = ["UNSET", "OK", "ERROR"]
                .get(status as usize)
                .copied()
                .unwrap_or("?");
            let _ = writeln!(
                out,
                "span {svc} {:?} {:.3}ms {status} kind={} trace={} span={}",
                s.name,
                ms,
                s.kind,
                hex(&s.trace_id),
                hex(&s.span_id)
            );
        }
    }
    out
}

fn metric_lines(m: &ExportMetricsServiceRequest) -> String {
    let mut out = String::new();
    for rm in &m.resource_metrics {
        let svc = service_name(rm.resource.as_ref());
        for metric in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            let points = crate::otlp::data_points(metric);
            let _ = writeln!(out, "metric {svc} {} ({points} data points)", metric.name);
        }
    }
    out
}

fn log_lines(l: &ExportLogsServiceRequest) -> String {
    let mut out = String::new();
    for rl in &l.resource_logs {
        let svc = service_name(rl.resource.as_ref());
        for r in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            let body = match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            let _ = writeln!(out, "log {svc} {} {body}", r.severity_text);
        }
    }
    out
}

impl Export for DebugExporter {
    async fn export(&self, batch: &Batch) -> Result<Delivered, ExportError> {
        let text = render_colored(batch, self.verbosity, self.color);
        if text.is_empty() {
            return Ok(Delivered::default());
        }
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|_| stdout.flush())
            .map_err(|e| ExportError::permanent(format!("writing to stdout: {e}")))?;
        Ok(Delivered::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    #[test]
    fn basic_and_normal_lines() {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(Value::StringValue("checkout".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        name: "GET /pay".into(),
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        start_time_unix_nano: 1_000_000,
                        end_time_unix_nano: 13_500_000,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let batch = Batch {
            payload: Payload::Traces(crate::pipeline::Traces::decoded(req)),
            encoded: None,
            items: 1,
            held: Default::default(),
        };
        assert_eq!(
            render(&batch, Verbosity::Basic),
            "traces: 1 spans from checkout\n"
        );
        let normal = render(&batch, Verbosity::Normal);
        assert!(
            normal.starts_with("span checkout \"GET /pay\" 12.500ms UNSET"),
            "{normal}"
        );
        let detailed = render(&batch, Verbosity::Detailed);
        assert!(detailed.contains("\"traceId\":\"01010101010101010101010101010101\""));
    }
}
