//! Extension `basicauth`: receivers that name it take only requests with HTTP Basic
//! credentials (`Authorization: Basic base64(user:password)`) from its list, in the shape of
//! the Collector's extension of the same name.
//!
//! ```yaml
//! extensions:
//!   basicauth:
//!     htpasswd:
//!       inline: |
//!         ${env:OTELWATCH_USER}:${env:OTELWATCH_PASSWORD}
//!       file: /etc/otelwatch/users       # user:password lines; both may be given
//! ```
//! Passwords are kept as given (plain text): hashed entries (`$2y$…`, `{SHA}…`) are refused
//! with a clear error rather than silently never matching.

use super::{Authenticator, ExtensionError, ExtensionType, Role};
use crate::config::decode::{decode_section, validated};
use crate::config::error::ConfigError;
use crate::config::secret::Secret;
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Htpasswd {
    pub file: String,
    pub inline: Secret,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuthConfig {
    pub htpasswd: Htpasswd,
}

/// `user:password` lines; blank lines and `#` comments are skipped.
fn users(text: &str, source: &str) -> Result<HashMap<String, Vec<u8>>, String> {
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, password)) = line.split_once(':') else {
            return Err(format!("{source} line {}: expected user:password", n + 1));
        };
        if user.is_empty() || password.is_empty() {
            return Err(format!("{source} line {}: empty user or password", n + 1));
        }
        if password.starts_with("$2")
            || password.starts_with("{SHA}")
            || password.starts_with("$apr1$")
        {
            return Err(format!(
                "{source} line {}: hashed passwords are not supported; give the password itself",
                n + 1
            ));
        }
        out.insert(user.to_string(), password.as_bytes().to_vec());
    }
    Ok(out)
}

impl ExtensionType for BasicAuthConfig {
    const NAME: &'static str = "basicauth";
    const ROLE: Role = Role::Authenticator;

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        let h = &cfg.htpasswd;
        if h.file.is_empty() && h.inline.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.htpasswd"),
                "give the users in inline or file",
            ));
        }
        match users(h.inline.expose(), "inline") {
            Ok(u) if u.is_empty() && !h.inline.is_empty() => errors.push(ConfigError::new(
                format!("{path}.htpasswd.inline"),
                "no user:password line",
            )),
            Ok(_) => {}
            Err(e) => errors.push(ConfigError::new(format!("{path}.htpasswd.inline"), e)),
        }
        validated(cfg, errors)
    }

    fn authenticator(&self, id: &str) -> Result<Authenticator, ExtensionError> {
        let invalid = |message| ExtensionError::Invalid {
            id: id.to_string(),
            message,
        };
        let mut all = users(self.htpasswd.inline.expose(), "inline").map_err(invalid)?;
        if !self.htpasswd.file.is_empty() {
            let path = &self.htpasswd.file;
            let text = std::fs::read_to_string(path).map_err(|source| ExtensionError::Read {
                id: id.to_string(),
                path: path.clone(),
                source,
            })?;
            all.extend(users(&text, path).map_err(invalid)?);
        }
        if all.is_empty() {
            return Err(invalid("no users".into()));
        }
        Ok(Authenticator::basic(all))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_lines_are_read_and_hashes_refused() {
        let u = users("# team\nann:pw:with:colons\n\nbob:x\n", "inline").unwrap();
        assert_eq!(u["ann"], b"pw:with:colons");
        assert_eq!(u.len(), 2);
        assert!(users("ann", "inline").unwrap_err().contains("line 1"));
        assert!(users("ann:$2y$05$abc", "f").unwrap_err().contains("hashed"));
    }
}
