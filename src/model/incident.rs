//! Incidents: related anomalous window records grouped along the call graph, with a ranked root
//! cause, and the document they are written as (the incident contract in `ARCHITECTURE.md`).

use super::time::rfc3339;
use super::window::{SeriesKey, Severity};
use serde_json::{json, Value};
use std::fmt;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Resolved => "resolved",
        }
    }
}

/// What changed, for `event.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Opened,
    Updated,
    Resolved,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Opened => "opened",
            Action::Updated => "updated",
            Action::Resolved => "resolved",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One suspected root service, with how strongly the evidence points at it.
#[derive(Debug, Clone, PartialEq)]
pub struct RootCause {
    pub service: Arc<str>,
    /// In [0, 1].
    pub score: f64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// 16 hex digits, stable for the same first anomaly (a replay gives the same ids).
    pub id: Arc<str>,
    pub status: Status,
    /// Start of the first anomalous window.
    pub start_ns: u64,
    /// End of the last anomalous window so far.
    pub end_ns: u64,
    pub severity: Severity,
    /// Every record involved, in the order they joined.
    pub series: Vec<Arc<SeriesKey>>,
    /// Best first.
    pub root_cause: Vec<RootCause>,
    pub message: String,
}

impl Incident {
    pub fn top_cause(&self) -> Option<&str> {
        self.root_cause.first().map(|c| &*c.service)
    }
}

/// One change of an incident: one document in the incidents index.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentEvent {
    pub action: Action,
    /// When it changed (the end of the window that changed it), Unix nanoseconds.
    pub at_ns: u64,
    /// Worth telling a person: opened, worse, a new top cause, or resolved. Other updates
    /// (the incident grew or lasted longer) are stored but do not page anyone.
    pub notable: bool,
    pub incident: Incident,
}

/// `event.severity` as the anomaly alerts write it.
pub fn severity_number(s: Severity) -> u8 {
    match s {
        Severity::Minor => 3,
        Severity::Major => 5,
        Severity::Critical => 7,
    }
}

fn round(v: f64, digits: i32) -> f64 {
    if !v.is_finite() {
        return 0.0;
    }
    let p = 10f64.powi(digits);
    (v * p).round() / p
}

impl IncidentEvent {
    pub fn to_document(&self) -> Value {
        let i = &self.incident;
        let series: Vec<Value> = i
            .series
            .iter()
            .map(|s| {
                let mut v = json!({ "service": &*s.service });
                if let Some(t) = &s.target {
                    v["target"] = json!(&**t);
                }
                v
            })
            .collect();
        let causes: Vec<Value> = i
            .root_cause
            .iter()
            .map(|c| json!({ "service": &*c.service, "score": round(c.score, 3), "reason": c.reason }))
            .collect();
        json!({
            "@timestamp": rfc3339(self.at_ns),
            "event": {
                "kind": "alert",
                "dataset": "otelwatch.incident",
                "action": self.action.as_str(),
                "severity": severity_number(i.severity),
            },
            "incident": {
                "id": &*i.id,
                "status": i.status.as_str(),
                "start": rfc3339(i.start_ns),
                "end": rfc3339(i.end_ns),
                "severity": i.severity.as_str(),
                "series": series,
                "root_cause": causes,
                "message": i.message,
            }
        })
    }

    /// One line for people: what happened to which incident and what is the likely cause.
    pub fn summary(&self) -> String {
        let i = &self.incident;
        let what = match self.action {
            Action::Opened => "opened",
            Action::Updated => "updated",
            Action::Resolved => "resolved",
        };
        let n = i.series.len();
        format!(
            "incident {} {what} [{}] ({n} series{}): {}",
            i.id,
            i.severity.as_str(),
            if n == 1 { "" } else { " in all" },
            i.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_follows_the_contract() {
        let ev = IncidentEvent {
            action: Action::Opened,
            at_ns: 1_767_571_270_000_000_000,
            notable: true,
            incident: Incident {
                id: "3f9c0a7d51e2b864".into(),
                status: Status::Open,
                start_ns: 1_767_571_230_000_000_000,
                end_ns: 1_767_571_270_000_000_000,
                severity: Severity::Major,
                series: vec![
                    Arc::new(SeriesKey::edge("frontend", "checkout")),
                    Arc::new(SeriesKey::service("checkout")),
                ],
                root_cause: vec![RootCause {
                    service: "checkout".into(),
                    score: 0.912_345,
                    reason: "checkout: latency_p95_ms 812 (typical 95)".into(),
                }],
                message: "checkout is the likely cause".into(),
            },
        };
        let d = ev.to_document();
        assert_eq!(d["@timestamp"], "2026-01-05T00:01:10Z");
        assert_eq!(d["event"]["kind"], "alert");
        assert_eq!(d["event"]["dataset"], "otelwatch.incident");
        assert_eq!(d["event"]["action"], "opened");
        assert_eq!(d["event"]["severity"], 5);
        assert_eq!(d["incident"]["id"], "3f9c0a7d51e2b864");
        assert_eq!(d["incident"]["status"], "open");
        assert_eq!(d["incident"]["start"], "2026-01-05T00:00:30Z");
        assert_eq!(d["incident"]["end"], "2026-01-05T00:01:10Z");
        assert_eq!(d["incident"]["severity"], "major");
        assert_eq!(d["incident"]["series"][0]["service"], "frontend");
        assert_eq!(d["incident"]["series"][0]["target"], "checkout");
        assert!(d["incident"]["series"][1].get("target").is_none());
        assert_eq!(d["incident"]["root_cause"][0]["service"], "checkout");
        assert_eq!(d["incident"]["root_cause"][0]["score"], 0.912);
        assert_eq!(d["incident"]["message"], "checkout is the likely cause");
    }
}
