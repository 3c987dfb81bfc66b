//! What the exporters that speak HTTP (`otlphttp`, `webhook`, `elasticsearch`) share:
//! configured headers, the `Retry-After` answer and what a failure status means.

use super::framework::ExportError;
use crate::config::error::ConfigError;
use crate::config::secret::Secret;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::BTreeMap;
use std::time::Duration;

/// Reports each configured header whose name or value HTTP does not allow.
pub fn validate_headers(
    path: &str,
    headers: &BTreeMap<String, Secret>,
    errors: &mut Vec<ConfigError>,
) {
    for (k, v) in headers {
        let v = v.expose();
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
pub fn header_map(headers: &BTreeMap<String, Secret>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        if let (Ok(k), Ok(mut v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v.expose()),
        ) {
            // Header values often carry credentials: kept out of `Debug` output.
            v.set_sensitive(true);
            map.insert(k, v);
        }
    }
    map
}

/// An HTTP failure status as an export error: 429 and 5xx are worth retrying (after the
/// peer's `Retry-After`, if it gave one), the rest is permanent; the message quotes the start
/// of the answer.
pub fn classify_status(
    status: u16,
    what: &str,
    after: Option<Duration>,
    body: &str,
) -> ExportError {
    let mut message = format!("{what}: HTTP {status}");
    if !body.is_empty() {
        message.push_str(": ");
        message.extend(body.chars().take(300));
    }
    if status == 429 || (500..=599).contains(&status) {
        ExportError::Retryable { message, after }
    } else {
        ExportError::permanent(message)
    }
}

/// `Retry-After` in seconds (the form OTLP servers, webhooks and search clusters use).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}
