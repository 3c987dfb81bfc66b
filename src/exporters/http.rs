//! What the exporters that speak HTTP (`otlphttp`, `webhook`) share: configured headers and
//! the `Retry-After` answer.

use crate::config::error::ConfigError;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::BTreeMap;
use std::time::Duration;

/// Reports each configured header whose name or value HTTP does not allow.
pub fn validate_headers(
    path: &str,
    headers: &BTreeMap<String, String>,
    errors: &mut Vec<ConfigError>,
) {
    for (k, v) in headers {
        if HeaderName::from_bytes(k.as_bytes()).is_err() {
            errors.push(ConfigError::new(
                format!("{path}.headers.{k}"),
                "not a valid HTTP header name",
            ));
        } else if HeaderValue::from_str(v).is_err() {
            errors.push(ConfigError::new(
                format!("{path}.headers.{k}"),
                "not a valid HTTP header value",
            ));
        }
    }
}

/// The configured headers, as sent with every request (validated beforehand).
pub fn header_map(headers: &BTreeMap<String, String>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            map.insert(k, v);
        }
    }
    map
}

/// `Retry-After` in seconds (the form OTLP servers and webhooks use).
pub fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}
