//! Composable index templates for the windows and anomalies indices: explicit types for every
//! contract field (`@timestamp` date, `service.name` keyword, each span, log, metric and network
//! feature a double, `metric.name` keyword, `anomaly.*` typed), `labels.*` as keywords. In data stream mode the templates create the data streams.

use super::{ElasticsearchConfig, Mode};
use crate::model::window::Signal;
use serde_json::{json, Map, Value};

pub fn mappings() -> Value {
    let features: Map<String, Value> = Signal::ALL
        .iter()
        .flat_map(|s| s.feature_names().iter())
        .map(|n| (n.to_string(), json!({ "type": "double" })))
        .collect();
    json!({
        "dynamic_templates": [
            { "labels_as_keywords": { "path_match": "labels.*", "mapping": { "type": "keyword" } } }
        ],
        "properties": {
            "@timestamp": { "type": "date" },
            "event": { "properties": {
                "kind": { "type": "keyword" },
                "dataset": { "type": "keyword" },
                "severity": { "type": "long" },
                "severity_name": { "type": "keyword" }
            }},
            "service": { "properties": {
                "name": { "type": "keyword" },
                "target": { "properties": { "name": { "type": "keyword" } } }
            }},
            "labels": { "type": "object" },
            "metric": { "properties": { "name": { "type": "keyword" } } },
            "incident": { "properties": { "id": { "type": "keyword" } } },
            "window": { "properties": {
                "start": { "type": "date" },
                "end": { "type": "date" },
                "interval_s": { "type": "double" },
                "partial": { "type": "boolean" },
                "signal": { "type": "keyword" }
            }},
            "logs": { "properties": {
                "templates": { "properties": {
                    "template": { "type": "text", "fields": { "keyword": { "type": "keyword", "ignore_above": 1024 } } },
                    "count": { "type": "long" },
                    "level": { "type": "keyword" },
                    "new": { "type": "boolean" },
                    "missing": { "properties": {
                        "traces": { "type": "long" },
                        "expected": { "type": "double" },
                        "of": { "type": "long" }
                    }}
                }},
                "traces": { "type": "long" }
            }},
            "features": { "properties": features },
            "anomaly": { "properties": {
                "score": { "type": "double" },
                "threshold": { "type": "double" },
                "is_anomaly": { "type": "boolean" },
                "severity": { "type": "keyword" },
                "warming_up": { "type": "boolean" },
                "expected": { "type": "boolean" },
                "message": { "type": "text", "fields": { "keyword": { "type": "keyword", "ignore_above": 1024 } } },
                "contributions": { "properties": {
                    "feature": { "type": "keyword" },
                    "actual": { "type": "double" },
                    "typical": { "type": "double" }
                }},
                "examples": { "properties": {
                    "trace_id": { "type": "keyword" },
                    "duration_ms": { "type": "double" },
                    "error": { "type": "boolean" }
                }}
            }}
        }
    })
}

/// The incidents index: the contract's `incident.*` fields typed.
pub fn incident_mappings() -> Value {
    json!({
        "properties": {
            "@timestamp": { "type": "date" },
            "event": { "properties": {
                "kind": { "type": "keyword" },
                "dataset": { "type": "keyword" },
                "action": { "type": "keyword" },
                "severity": { "type": "long" }
            }},
            "incident": { "properties": {
                "id": { "type": "keyword" },
                "status": { "type": "keyword" },
                "start": { "type": "date" },
                "end": { "type": "date" },
                "severity": { "type": "keyword" },
                "series": { "properties": {
                    "service": { "type": "keyword" },
                    "target": { "type": "keyword" }
                }},
                "root_cause": { "properties": {
                    "service": { "type": "keyword" },
                    "score": { "type": "double" },
                    "reason": { "type": "text" }
                }},
                "message": { "type": "text" }
            }}
        }
    })
}

/// (template name, body) for the three indices.
pub fn all(cfg: &ElasticsearchConfig) -> Vec<(String, Value)> {
    let incidents = (
        format!("{}-template", cfg.incidents_index),
        json!({
            "priority": 200,
            "index_patterns": [cfg.incidents_index],
            "template": {
                "settings": { "number_of_shards": 1 },
                "mappings": incident_mappings()
            },
            "_meta": { "managed_by": "otelwatch", "contract_version": 1 }
        }),
    );
    [&cfg.windows_index, &cfg.anomalies_index]
        .into_iter()
        .map(|base| {
            let mut body = json!({
                "priority": 200,
                "template": {
                    "settings": { "number_of_shards": 1 },
                    "mappings": mappings()
                },
                "_meta": { "managed_by": "otelwatch", "contract_version": 1 }
            });
            match cfg.mode {
                Mode::DataStream => {
                    body["index_patterns"] = json!([base]);
                    body["data_stream"] = json!({});
                }
                Mode::Index => {
                    body["index_patterns"] = json!([format!("{base}-*")]);
                }
            }
            (format!("{base}-template"), body)
        })
        .chain([incidents])
        .collect()
}
