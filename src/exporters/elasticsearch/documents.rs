//! Window records and incident changes as documents: which index, which deterministic id.

use super::{ElasticsearchConfig, Mode};
use crate::model::incident::IncidentEvent;
use crate::model::window::WindowRecord;
use serde::{Deserialize, Serialize};
use serde_json::value::{to_raw_value, RawValue};
use serde_json::Value;

/// A deterministic document id: the same series and window always give the same id.
pub fn document_id(w: &WindowRecord) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    let mut eat = |bytes: &[u8]| {
        for &x in bytes.iter().chain(&[0xff]) {
            a ^= x as u64;
            a = a.wrapping_mul(0x0000_0100_0000_01b3);
            b ^= x as u64;
            b = b.wrapping_mul(0x0000_0100_0000_01b3).rotate_left(5);
        }
    };
    eat(w.series.service.as_bytes());
    eat(w.series.target.as_deref().unwrap_or("").as_bytes());
    for (k, v) in &w.series.labels {
        eat(k.as_bytes());
        eat(v.as_bytes());
    }
    // A service's log windows are other documents than its span windows (span ids unchanged).
    if w.series.signal != crate::model::window::Signal::Spans {
        eat(w.series.signal.as_str().as_bytes());
    }
    eat(&w.start_ns.to_be_bytes());
    format!("{a:016x}{b:016x}")
}

/// The index (or data stream) a document goes to.
pub fn target_index(base: &str, mode: Mode, w: &WindowRecord) -> String {
    match mode {
        Mode::DataStream => base.to_string(),
        Mode::Index => {
            let day = &crate::model::time::rfc3339(w.start_ns)[..10];
            format!("{base}-{}", day.replace('-', "."))
        }
    }
}

/// One document to write, its body serialised once (for sizing requests, the disk queue and
/// the `_bulk` body alike).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Doc {
    pub index: String,
    pub id: String,
    pub body: Box<RawValue>,
    /// Incident states replace the previous one (`index`); windows are written once (`create`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace: bool,
    /// For replaced documents: a newer state carries a higher version, so a state resent late
    /// (after a retry) never overwrites a newer one (`version_type: external_gte`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

impl Doc {
    pub fn new(index: String, id: String, body: &Value, replace: bool) -> Self {
        // A `Value` always serialises (its keys are strings).
        let body = to_raw_value(body).unwrap_or_default();
        Self {
            index,
            id,
            body,
            replace,
            version: None,
        }
    }

    /// The body as JSON (for checks).
    pub fn json(&self) -> Value {
        serde_json::from_str(self.body.get()).unwrap_or(Value::Null)
    }
}

/// The documents for a batch of windows: every window, and every anomaly again as an alert.
pub fn documents(cfg: &ElasticsearchConfig, windows: &[WindowRecord]) -> Vec<Doc> {
    let mut docs = Vec::with_capacity(windows.len());
    for w in windows {
        let id = document_id(w);
        let index = target_index(&cfg.windows_index, cfg.mode, w);
        docs.push(Doc::new(index, id.clone(), &w.to_document(), false));
        if w.is_anomaly() {
            let index = target_index(&cfg.anomalies_index, cfg.mode, w);
            docs.push(Doc::new(index, id, &w.to_alert_document(), false));
        }
    }
    docs
}

/// The documents for incident changes: one per incident in the incidents index, `_id` the
/// incident id, each change replacing the last (the final state is what stays).
pub fn incident_documents(cfg: &ElasticsearchConfig, events: &[IncidentEvent]) -> Vec<Doc> {
    events
        .iter()
        .map(|e| {
            let (index, id) = (cfg.incidents_index.clone(), e.incident.id.to_string());
            Doc {
                // Versions are longs below 2^63.
                version: Some(e.at_ns.min(i64::MAX as u64)),
                ..Doc::new(index, id, &e.to_document(), true)
            }
        })
        .collect()
}
