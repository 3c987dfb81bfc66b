//! Kibana saved objects shipped with otelwatch (`kibana/otelwatch.ndjson`: data views for the
//! windows, anomalies and incidents indices, four visualizations (one of the log windows), the alerts table, the
//! incidents table and the dashboard) and their import through
//! the saved-objects API (`otelwatch kibana-setup`), idempotently (`overwrite=true`).

use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// The saved objects, as shipped.
pub const SAVED_OBJECTS: &str = include_str!("../../kibana/otelwatch.ndjson");

#[derive(Debug, thiserror::Error)]
pub enum KibanaError {
    #[error("saved objects line {line}: {message}")]
    Invalid { line: usize, message: String },
    #[error("Kibana at {url}: {message}")]
    Request { url: String, message: String },
    #[error("Kibana refused the import ({status}): {body}")]
    Refused { status: u16, body: String },
}

/// Checks the NDJSON: every line an object with a type and id, every reference pointing at an
/// object in the file. Returns the (type, id) pairs.
pub fn check_saved_objects(ndjson: &str) -> Result<Vec<(String, String)>, KibanaError> {
    let mut objects = Vec::new();
    let mut refs = Vec::new();
    for (i, line) in ndjson
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let invalid = |message: String| KibanaError::Invalid {
            line: i + 1,
            message,
        };
        let v: Value = serde_json::from_str(line).map_err(|e| invalid(e.to_string()))?;
        let ty = v["type"]
            .as_str()
            .ok_or_else(|| invalid("no type".into()))?;
        let id = v["id"].as_str().ok_or_else(|| invalid("no id".into()))?;
        if !v["attributes"].is_object() {
            return Err(invalid("no attributes".into()));
        }
        for key in ["visState", "panelsJSON", "optionsJSON"] {
            if let Some(s) = v["attributes"][key].as_str() {
                serde_json::from_str::<Value>(s).map_err(|e| invalid(format!("{key}: {e}")))?;
            }
        }
        if let Some(s) = v["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"].as_str() {
            serde_json::from_str::<Value>(s)
                .map_err(|e| invalid(format!("searchSourceJSON: {e}")))?;
        }
        for r in v["references"].as_array().into_iter().flatten() {
            refs.push((
                i + 1,
                r["type"].as_str().unwrap_or("").to_string(),
                r["id"].as_str().unwrap_or("").to_string(),
            ));
        }
        objects.push((ty.to_string(), id.to_string()));
    }
    let known: BTreeSet<&(String, String)> = objects.iter().collect();
    for (line, ty, id) in refs {
        if !known.contains(&(ty.clone(), id.clone())) {
            return Err(KibanaError::Invalid {
                line,
                message: format!("reference to {ty} {id:?}, which is not in the file"),
            });
        }
    }
    Ok(objects)
}

#[derive(Debug, Clone, Default)]
pub struct KibanaAuth {
    pub user: Option<String>,
    pub password: Option<String>,
    pub api_key: Option<String>,
}

/// Imports the saved objects, waiting up to `wait` for Kibana to be ready. Returns how many
/// objects Kibana reports imported.
pub async fn import(
    url: &str,
    auth: &KibanaAuth,
    ndjson: &str,
    wait: Duration,
) -> Result<u64, KibanaError> {
    check_saved_objects(ndjson)?;
    let base = url.trim_end_matches('/');
    let endpoint = format!("{base}/api/saved_objects/_import?overwrite=true");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| KibanaError::Request {
            url: base.into(),
            message: e.to_string(),
        })?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let part = reqwest::multipart::Part::text(ndjson.to_string())
            .file_name("otelwatch.ndjson")
            .mime_str("application/ndjson")
            .map_err(|e| KibanaError::Request {
                url: base.into(),
                message: e.to_string(),
            })?;
        let mut req = client
            .post(&endpoint)
            .header("kbn-xsrf", "otelwatch")
            .multipart(reqwest::multipart::Form::new().part("file", part));
        if let Some(k) = &auth.api_key {
            req = req.header("Authorization", format!("ApiKey {k}"));
        } else if let Some(u) = &auth.user {
            req = req.basic_auth(u, auth.password.as_deref());
        }
        let outcome: Result<(), String> = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                if status == 200 {
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    if v["success"] == true {
                        return Ok(v["successCount"].as_u64().unwrap_or(0));
                    }
                    return Err(KibanaError::Refused { status, body });
                }
                if status == 503 || status == 502 || status == 429 {
                    Err(format!("not ready ({status})"))
                } else {
                    return Err(KibanaError::Refused { status, body });
                }
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(message) = outcome {
            if tokio::time::Instant::now() >= deadline {
                return Err(KibanaError::Request {
                    url: base.into(),
                    message,
                });
            }
            tracing::info!(%message, "waiting for Kibana");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_objects_parse_and_every_reference_resolves() {
        let objects = check_saved_objects(SAVED_OBJECTS).unwrap();
        let has = |t: &str, id: &str| objects.iter().any(|(a, b)| a == t && b == id);
        assert!(has("index-pattern", "otelwatch-windows"));
        assert!(has("index-pattern", "otelwatch-anomalies"));
        assert!(has("dashboard", "otelwatch-overview"));
        assert!(has("search", "otelwatch-alerts"));
        assert!(has("index-pattern", "otelwatch-incidents"));
        assert!(has("search", "otelwatch-incidents-table"));
        assert!(has("visualization", "otelwatch-log-errors"));
        assert!(has("visualization", "otelwatch-metric-anomalies"));
        assert!(has("visualization", "otelwatch-network"));
        assert_eq!(
            objects.iter().filter(|(t, _)| t == "visualization").count(),
            6
        );
        let dash: Value = SAVED_OBJECTS
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["type"] == "dashboard")
            .unwrap();
        assert_eq!(dash["attributes"]["refreshInterval"]["value"], 10000);
        assert_eq!(dash["attributes"]["refreshInterval"]["pause"], false);
    }

    #[test]
    fn fields_used_by_the_visualizations_exist_in_the_mappings() {
        for line in SAVED_OBJECTS.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let Some(vis) = v["attributes"]["visState"].as_str() else {
                continue;
            };
            let vis: Value = serde_json::from_str(vis).unwrap();
            for agg in vis["aggs"].as_array().unwrap() {
                let field = agg["params"]["field"].as_str().unwrap();
                assert!(
                    crate::exporters::elasticsearch::mapped_type(field).is_some(),
                    "{field} is not mapped"
                );
            }
        }
    }

    #[test]
    fn a_broken_reference_is_reported_with_its_line() {
        let bad = r#"{"type":"dashboard","id":"d","attributes":{},"references":[{"name":"panel_0","type":"visualization","id":"missing"}]}"#;
        let err = check_saved_objects(bad).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("missing"), "{err}");
    }
}
