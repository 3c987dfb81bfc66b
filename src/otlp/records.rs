//! Window records and incident events as OTLP log records: how one otelwatch sends what it
//! found to another (or to any OTLP backend).
//!
//! A batch becomes one `ExportLogsServiceRequest`: one resource (`service.name: otelwatch`,
//! `service.instance.id` the sender's instance, so the receiver can tell its senders apart),
//! one scope (`otelwatch`), and a log record per window record (`event_name:
//! otelwatch.window`) or incident event (`otelwatch.incident`). The record's time is the
//! window's end (the event's time); its body is the window document (the same fields as the
//! windows index, every number exact) or the incident document, as a JSON string. The
//! receiving side (`records` processor) reads the window records back; anything else in the
//! request is not one of them and is counted as such.

use super::string_attribute;
use crate::model::incident::IncidentEvent;
use crate::model::window::{Anomaly, WindowRecord};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::Value;
use std::sync::Arc;

/// The `event_name` of a window record.
pub const WINDOW_EVENT: &str = "otelwatch.window";
/// The `event_name` of an incident event.
pub const INCIDENT_EVENT: &str = "otelwatch.incident";
/// The resource attribute naming the sending instance.
pub const INSTANCE_ATTRIBUTE: &str = "service.instance.id";

/// This process's name among otelwatch instances: `OTELWATCH_INSTANCE` if set, else the host
/// name (a Kubernetes pod's name) and the process id.
pub fn instance_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        std::env::var("OTELWATCH_INSTANCE")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .or_else(|| std::env::var("HOSTNAME").ok())
                    .unwrap_or_default();
                format!("{}-{}", host.trim(), std::process::id())
            })
    })
}

/// The logs request a windows batch is sent as (None for the OTLP signals).
pub fn as_logs(payload: &crate::pipeline::Payload) -> Option<ExportLogsServiceRequest> {
    use crate::pipeline::Payload;
    match payload {
        Payload::Windows(r) => Some(windows_to_logs(instance_id(), r)),
        Payload::Incidents(e) => Some(incidents_to_logs(instance_id(), e)),
        Payload::Traces(_) | Payload::Metrics(_) | Payload::Logs(_) => None,
    }
}

fn log(event: &str, at_ns: u64, body: &Value) -> LogRecord {
    LogRecord {
        time_unix_nano: at_ns,
        observed_time_unix_nano: at_ns,
        event_name: event.into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.to_string())),
        }),
        ..Default::default()
    }
}

fn request(instance: &str, log_records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    string_attribute("service.name", "otelwatch"),
                    string_attribute(INSTANCE_ATTRIBUTE, instance),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "otelwatch".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Window records as one logs request from `instance`.
pub fn windows_to_logs(instance: &str, records: &[WindowRecord]) -> ExportLogsServiceRequest {
    let logs = records
        .iter()
        .map(|r| log(WINDOW_EVENT, r.end_ns(), &r.to_exact_document()))
        .collect();
    request(instance, logs)
}

/// Incident events as one logs request from `instance`.
pub fn incidents_to_logs(instance: &str, events: &[IncidentEvent]) -> ExportLogsServiceRequest {
    let logs = events
        .iter()
        .map(|e| log(INCIDENT_EVENT, e.at_ns, &e.to_document()))
        .collect();
    request(instance, logs)
}

/// What a logs request held, read as window records.
#[derive(Debug, Default)]
pub struct Read {
    /// The window records, each with the instance that sent it (empty if unnamed).
    pub records: Vec<(Arc<str>, WindowRecord)>,
    /// Log records that are not window records (other events, ordinary logs).
    pub other: usize,
    /// Log records named window records whose body is not a window document.
    pub invalid: usize,
}

/// Reads the window records of a logs request.
pub fn logs_to_windows(req: &ExportLogsServiceRequest) -> Read {
    let mut read = Read::default();
    for rl in &req.resource_logs {
        let instance: Arc<str> = rl
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == INSTANCE_ATTRIBUTE)
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.as_str()),
                _ => None,
            })
            .unwrap_or("")
            .into();
        for lr in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            if lr.event_name != WINDOW_EVENT {
                read.other += 1;
                continue;
            }
            match window_of(lr) {
                Some(r) => read.records.push((instance.clone(), r)),
                None => read.invalid += 1,
            }
        }
    }
    read
}

fn window_of(lr: &LogRecord) -> Option<WindowRecord> {
    let any_value::Value::StringValue(body) = lr.body.as_ref()?.value.as_ref()? else {
        return None;
    };
    let doc: Value = serde_json::from_str(body).ok()?;
    let mut r = WindowRecord::from_document(&doc)?;
    // A window from a millisecond to a day long, that ends at a time otelwatch can hold.
    if !(1_000_000..=86_400_000_000_000).contains(&r.interval_ns)
        || r.start_ns.checked_add(r.interval_ns).is_none()
    {
        return None;
    }
    r.anomaly = Anomaly::from_document(&doc);
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::window::{Contribution, SeriesKey, Severity, FEATURE_NAMES, N_FEATURES};

    fn record(target: Option<&str>, anomalous: bool) -> WindowRecord {
        let mut features = [0.0; N_FEATURES];
        for (i, f) in features.iter_mut().enumerate() {
            *f = (i as f64 + 1.0) / 3.0;
        }
        let series = Arc::new(match target {
            Some(t) => SeriesKey::edge("checkout", t),
            None => SeriesKey::service("checkout"),
        });
        WindowRecord {
            anomaly: Some(Anomaly {
                score: 0.712_345_678,
                threshold: 0.55,
                is_anomaly: anomalous,
                severity: anomalous.then_some(Severity::Major),
                warming_up: false,
                contributions: if anomalous {
                    vec![Contribution {
                        feature: FEATURE_NAMES[5],
                        actual: 1_234.567_891,
                        typical: 12.345_678_9,
                    }]
                } else {
                    Vec::new()
                },
                message: if anomalous {
                    "slow".into()
                } else {
                    String::new()
                },
                incident: None,
                expected: false,
            }),
            ..WindowRecord::new(series, 1_700_000_000_000_000_000, 30_000_000_000, features)
        }
    }

    #[test]
    fn window_records_travel_exactly() {
        let sent = vec![record(None, true), record(Some("payments"), false)];
        let req = windows_to_logs("ow-1", &sent);
        // Through the wire format as a peer would see it.
        let bytes = prost::Message::encode_to_vec(&req);
        let req: ExportLogsServiceRequest = prost::Message::decode(&bytes[..]).unwrap();
        let read = logs_to_windows(&req);
        assert_eq!((read.other, read.invalid), (0, 0));
        let got: Vec<WindowRecord> = read
            .records
            .into_iter()
            .map(|(i, r)| {
                assert_eq!(&*i, "ow-1");
                r
            })
            .collect();
        assert_eq!(got, sent);
    }

    #[test]
    fn other_log_records_and_broken_bodies_are_told_apart() {
        let mut req = windows_to_logs("ow-1", &[record(None, true)]);
        let logs = &mut req.resource_logs[0].scope_logs[0].log_records;
        logs.push(LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue("GET /".into())),
            }),
            ..Default::default()
        });
        logs.push(log(WINDOW_EVENT, 1, &serde_json::json!({"service": 3})));
        let mut not_json = log(WINDOW_EVENT, 1, &Value::Null);
        not_json.body = Some(AnyValue {
            value: Some(any_value::Value::StringValue("{".into())),
        });
        logs.push(not_json);
        let read = logs_to_windows(&req);
        assert_eq!((read.records.len(), read.other, read.invalid), (1, 1, 2));
    }

    #[test]
    fn incident_events_are_not_window_records() {
        let req = incidents_to_logs("ow-1", &[]);
        assert!(req.resource_logs[0].scope_logs[0].log_records.is_empty());
        let mut req = windows_to_logs("ow-1", &[]);
        req.resource_logs[0].scope_logs[0].log_records.push(log(
            INCIDENT_EVENT,
            1,
            &serde_json::json!({}),
        ));
        assert_eq!(logs_to_windows(&req).other, 1);
    }
}
