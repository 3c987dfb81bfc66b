//! Decoding one component's section strictly, with the YAML path of the first problem.

use super::error::ConfigError;
use serde::de::DeserializeOwned;
use serde_norway::Value;

/// Deserializes one component's section (null means "all defaults") and reports the first
/// problem at its full YAML path. Unknown keys are rejected by the structs themselves
/// (`#[serde(deny_unknown_fields)]`).
pub fn decode_section<T: DeserializeOwned + Default>(
    path: &str,
    value: Value,
) -> Result<T, ConfigError> {
    if value.is_null() {
        return Ok(T::default());
    }
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let inner = e.path().to_string();
        let full = if inner == "." || inner.is_empty() {
            path.to_string()
        } else {
            format!("{path}.{inner}")
        };
        let mut message = e.into_inner().to_string();
        if message.starts_with("invalid type: unit value") {
            // Usually `key: ${env:UNSET:-}` — an empty expansion reads as null in YAML.
            message.push_str(" (the value is empty; write \"\" or quote the ${env:…} reference)");
        }
        ConfigError::new(full, message)
    })
}

/// `Ok(value)` when no problem was found, else every problem.
pub fn validated<T>(value: T, errors: Vec<ConfigError>) -> Result<T, Vec<ConfigError>> {
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(errors)
    }
}
