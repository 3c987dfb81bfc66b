//! Extension `bearertokenauth`: receivers that name it take only requests carrying one of its
//! tokens, as the Collector's extension of the same name checks them.
//!
//! ```yaml
//! extensions:
//!   bearertokenauth:
//!     token: ${env:OTELWATCH_TOKEN}     # or tokens: [a, b] (rotation), or filename: /run/token
//!     scheme: Bearer                    # "" : the header holds the bare token
//!     header: Authorization
//! ```

use super::{Authenticator, ExtensionError, ExtensionType, Role};
use crate::config::decode::{decode_section, validated};
use crate::config::error::ConfigError;
use crate::config::secret::Secret;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BearerTokenAuthConfig {
    pub token: Secret,
    pub tokens: Vec<Secret>,
    /// A file holding the token (read at start; surrounding whitespace ignored).
    pub filename: String,
    pub scheme: String,
    pub header: String,
}

impl Default for BearerTokenAuthConfig {
    fn default() -> Self {
        Self {
            token: Secret::default(),
            tokens: Vec::new(),
            filename: String::new(),
            scheme: "Bearer".into(),
            header: "Authorization".into(),
        }
    }
}

impl ExtensionType for BearerTokenAuthConfig {
    const NAME: &'static str = "bearertokenauth";
    const ROLE: Role = Role::Authenticator;

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        let sources = [
            !cfg.token.is_empty(),
            !cfg.tokens.is_empty(),
            !cfg.filename.is_empty(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            errors.push(ConfigError::new(
                path,
                "set exactly one of token, tokens or filename",
            ));
        }
        if cfg.tokens.iter().any(Secret::is_empty) {
            errors.push(ConfigError::new(
                format!("{path}.tokens"),
                "a token must not be empty",
            ));
        }
        if http::HeaderName::from_bytes(cfg.header.as_bytes()).is_err() {
            errors.push(ConfigError::new(
                format!("{path}.header"),
                format!("{:?} is not a valid header name", cfg.header),
            ));
        }
        if cfg.scheme.contains(char::is_whitespace) {
            errors.push(ConfigError::new(
                format!("{path}.scheme"),
                "must be one word (e.g. Bearer)",
            ));
        }
        validated(cfg, errors)
    }

    fn authenticator(&self, id: &str) -> Result<Authenticator, ExtensionError> {
        let mut tokens: Vec<Vec<u8>> = if !self.filename.is_empty() {
            let text =
                std::fs::read_to_string(&self.filename).map_err(|source| ExtensionError::Read {
                    id: id.to_string(),
                    path: self.filename.clone(),
                    source,
                })?;
            vec![text.trim().as_bytes().to_vec()]
        } else if !self.token.is_empty() {
            vec![self.token.expose().as_bytes().to_vec()]
        } else {
            self.tokens
                .iter()
                .map(|t| t.expose().as_bytes().to_vec())
                .collect()
        };
        tokens.retain(|t| !t.is_empty());
        if tokens.is_empty() {
            return Err(ExtensionError::Invalid {
                id: id.to_string(),
                message: format!("the token file {} is empty", self.filename),
            });
        }
        // Checked at parse time.
        let header = http::HeaderName::from_bytes(self.header.as_bytes())
            .unwrap_or(http::header::AUTHORIZATION);
        Ok(Authenticator::token(header, self.scheme.clone(), tokens))
    }
}
