//! Extensions: components beside the pipelines, defined under `extensions:` and enabled by
//! listing them in `service.extensions`, as in the OpenTelemetry Collector. This table is the
//! only place that lists them.
//!
//! | type | what |
//! |---|---|
//! | `bearertokenauth` | receivers take only requests with `Authorization: Bearer <token>` |
//! | `basicauth` | receivers take only requests with HTTP Basic credentials from a list |
//! | `file_storage` | exporters keep their sending queue on disk (`sending_queue.storage`) |
//! | `console` | a live view of the services, anomalies and incidents, with a JSON API (`console/`) |
//!
//! A receiver protocol names its authenticator with `auth: { authenticator: <id> }`; a request
//! without valid credentials is refused before its body is read (gRPC `UNAUTHENTICATED`,
//! HTTP 401 with `WWW-Authenticate`) and counted.

pub mod basicauth;
pub mod bearertokenauth;
pub mod console;
pub mod file_storage;

use crate::config::error::ConfigError;
use crate::config::id::ComponentId;
use std::collections::HashMap;
use std::sync::Arc;

/// What an extension is for, and so what other components can name it as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Named by a receiver protocol's `auth.authenticator`.
    Authenticator,
    /// Named by an exporter's `sending_queue.storage`.
    Storage,
    /// Fed by every detection pipeline; serves the console.
    Console,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Authenticator => "authenticator",
            Role::Storage => "storage",
            Role::Console => "console",
        }
    }
}

/// What the table needs of each extension type; implemented by its config struct.
pub trait ExtensionType: Sized {
    const NAME: &'static str;
    const ROLE: Role;
    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>>;
    /// Builds the authenticator (reading any files it names); for `Role::Authenticator`.
    fn authenticator(&self, id: &str) -> Result<Authenticator, ExtensionError> {
        Err(ExtensionError::Invalid {
            id: id.to_string(),
            message: "not an authenticator".into(),
        })
    }
    /// Opens the storage; for `Role::Storage`.
    fn storage(&self, id: &str) -> Result<file_storage::FileStorage, ExtensionError> {
        Err(ExtensionError::Invalid {
            id: id.to_string(),
            message: "not a storage".into(),
        })
    }
    /// Makes the console's memory; for `Role::Console` (its server starts with the service).
    fn console(&self, id: &str) -> Result<console::ConsoleHub, ExtensionError> {
        Err(ExtensionError::Invalid {
            id: id.to_string(),
            message: "not a console".into(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExtensionError {
    #[error("extension {id}: reading {path}: {source}")]
    Read {
        id: String,
        path: String,
        source: std::io::Error,
    },
    #[error("extension {id}: {message}")]
    Invalid { id: String, message: String },
}

macro_rules! extension_table {
    ($($variant:ident($config:ty)),* $(,)?) => {
        #[derive(Debug, Clone)]
        pub enum ExtensionConfig {
            $($variant($config)),*
        }

        pub const TYPES: &[&str] = &[$(<$config as ExtensionType>::NAME),*];

        pub fn parse_config(
            id: &ComponentId,
            path: &str,
            value: serde_norway::Value,
        ) -> Result<ExtensionConfig, Vec<ConfigError>> {
            $(if id.kind == <$config as ExtensionType>::NAME {
                return <$config as ExtensionType>::parse(path, value).map(ExtensionConfig::$variant);
            })*
            Err(vec![ConfigError::new(
                path,
                format!("unknown extension type {:?} (known: {})", id.kind, TYPES.join(", ")),
            )])
        }

        impl ExtensionConfig {
            pub fn role(&self) -> Role {
                match self {
                    $(Self::$variant(_) => <$config as ExtensionType>::ROLE),*
                }
            }

            fn storage(&self, id: &str) -> Result<file_storage::FileStorage, ExtensionError> {
                match self {
                    $(Self::$variant(c) => c.storage(id)),*
                }
            }

            fn console(&self, id: &str) -> Result<console::ConsoleHub, ExtensionError> {
                match self {
                    $(Self::$variant(c) => c.console(id)),*
                }
            }

            /// The authenticator it names, as (YAML path, id) (consoles only).
            pub fn authenticators(&self, path: &str) -> Vec<(String, String)> {
                match self {
                    Self::Console(c) => c
                        .auth
                        .iter()
                        .map(|a| (format!("{path}.auth.authenticator"), a.authenticator.clone()))
                        .collect(),
                    _ => Vec::new(),
                }
            }

            /// Where it listens, for the port checks (consoles only).
            pub fn listens(&self) -> Option<String> {
                match self {
                    Self::Console(c) => Some(c.endpoint.clone()),
                    _ => None,
                }
            }

            fn authenticator(&self, id: &str) -> Result<Authenticator, ExtensionError> {
                let mut a = match self {
                    $(Self::$variant(c) => c.authenticator(id)?),*
                };
                a.id = id.to_string();
                Ok(a)
            }
        }
    };
}

extension_table! {
    BearerTokenAuth(bearertokenauth::BearerTokenAuthConfig),
    BasicAuth(basicauth::BasicAuthConfig),
    FileStorage(file_storage::FileStorageConfig),
    Console(console::ConsoleConfig),
}

/// Why a request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Invalid,
}

impl AuthFailure {
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => "otelwatch: credentials required",
            AuthFailure::Invalid => "otelwatch: invalid credentials",
        }
    }
}

enum Check {
    /// `<scheme> <token>` in `header`, one of `tokens`.
    Token {
        header: http::HeaderName,
        scheme: String,
        tokens: Vec<Vec<u8>>,
    },
    /// `Basic base64(user:password)` in `Authorization`.
    Basic { users: HashMap<String, Vec<u8>> },
}

/// A started authenticator: checks one request's headers.
pub struct Authenticator {
    id: String,
    check: Check,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Authenticator({})", self.id)
    }
}

/// Equal without revealing, by timing, how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(!x);
    }
    diff == 0
}

impl Authenticator {
    pub(crate) fn token(header: http::HeaderName, scheme: String, tokens: Vec<Vec<u8>>) -> Self {
        Self {
            id: String::new(),
            check: Check::Token {
                header,
                scheme,
                tokens,
            },
        }
    }

    pub(crate) fn basic(users: HashMap<String, Vec<u8>>) -> Self {
        Self {
            id: String::new(),
            check: Check::Basic { users },
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `WWW-Authenticate` challenge for a refused HTTP request.
    pub fn challenge(&self) -> String {
        match &self.check {
            Check::Token { scheme, .. } if !scheme.is_empty() => scheme.clone(),
            Check::Token { .. } => "Bearer".into(),
            Check::Basic { .. } => "Basic realm=\"otelwatch\"".into(),
        }
    }

    pub fn check(&self, headers: &http::HeaderMap) -> Result<(), AuthFailure> {
        match &self.check {
            Check::Token {
                header,
                scheme,
                tokens,
            } => {
                let value = headers.get(header).ok_or(AuthFailure::Missing)?.as_bytes();
                let token = if scheme.is_empty() {
                    value
                } else {
                    let (s, rest) = split_scheme(value).ok_or(AuthFailure::Invalid)?;
                    if !s.eq_ignore_ascii_case(scheme.as_bytes()) {
                        return Err(AuthFailure::Invalid);
                    }
                    rest
                };
                // Every token is compared, so the time taken does not say which one matched.
                let matched = tokens.iter().fold(false, |acc, t| acc | same(token, t));
                matched.then_some(()).ok_or(AuthFailure::Invalid)
            }
            Check::Basic { users } => {
                use base64::Engine;
                let value = headers
                    .get(http::header::AUTHORIZATION)
                    .ok_or(AuthFailure::Missing)?
                    .as_bytes();
                let (s, encoded) = split_scheme(value).ok_or(AuthFailure::Invalid)?;
                if !s.eq_ignore_ascii_case(b"basic") {
                    return Err(AuthFailure::Invalid);
                }
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|_| AuthFailure::Invalid)?;
                let colon = decoded
                    .iter()
                    .position(|&b| b == b':')
                    .ok_or(AuthFailure::Invalid)?;
                let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
                let expected = std::str::from_utf8(user).ok().and_then(|u| users.get(u));
                // An unknown user costs the same comparison as a known one.
                let ok = same(password, expected.map_or(&[][..], |p| p)) && expected.is_some();
                ok.then_some(()).ok_or(AuthFailure::Invalid)
            }
        }
    }
}

fn split_scheme(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = value.iter().position(|&b| b == b' ')?;
    let rest = &value[space + 1..];
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    Some((&value[..space], &rest[start..]))
}

/// The started extensions, by id.
#[derive(Debug, Default)]
pub struct Extensions {
    authenticators: HashMap<String, Arc<Authenticator>>,
    storages: HashMap<String, Arc<file_storage::FileStorage>>,
    consoles: Vec<(String, Arc<console::ConsoleHub>)>,
    /// The process's feedback on anomalies: the consoles post to it, the detectors read it.
    feedback: Arc<crate::model::feedback::FeedbackBoard>,
}

impl Extensions {
    /// Starts the extensions `service.extensions` lists.
    pub fn start(cfg: &crate::config::Config) -> Result<Self, ExtensionError> {
        let mut started = Self::default();
        // Consoles last: they use the authenticators, wherever the list names them.
        let mut order: Vec<&ComponentId> = cfg.service_extensions.iter().collect();
        order.sort_by_key(|id| {
            cfg.extensions
                .iter()
                .any(|(i, e)| i == *id && e.role() == Role::Console)
        });
        for id in order {
            let Some((_, ext)) = cfg.extensions.iter().find(|(i, _)| i == id) else {
                continue;
            };
            let name = id.to_string();
            match ext.role() {
                Role::Authenticator => {
                    let a = ext.authenticator(&name)?;
                    started.authenticators.insert(name, Arc::new(a));
                }
                Role::Storage => {
                    let s = ext.storage(&name)?;
                    started.storages.insert(name, Arc::new(s));
                }
                Role::Console => {
                    let mut c = ext.console(&name)?;
                    if let Some((path, auth)) = ext.authenticators(&name).into_iter().next() {
                        c.auth = Some(started.authenticator(&auth).ok_or_else(|| {
                            ExtensionError::Invalid {
                                id: name.clone(),
                                message: format!("{path}: authenticator {auth:?} is not started"),
                            }
                        })?);
                    }
                    c.feedback = started.feedback.clone();
                    started.consoles.push((name, Arc::new(c)));
                }
            }
        }
        Ok(started)
    }

    pub fn authenticator(&self, id: &str) -> Option<Arc<Authenticator>> {
        self.authenticators.get(id).cloned()
    }

    pub fn storage(&self, id: &str) -> Option<Arc<file_storage::FileStorage>> {
        self.storages.get(id).cloned()
    }

    pub fn feedback(&self) -> &Arc<crate::model::feedback::FeedbackBoard> {
        &self.feedback
    }

    /// The started consoles, by id.
    pub fn consoles(&self) -> &[(String, Arc<console::ConsoleHub>)] {
        &self.consoles
    }
}

/// `auth:` on a receiver protocol, as in the Collector.
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// The id of an authenticator extension listed in `service.extensions`.
    pub authenticator: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn tokens_and_basic_credentials_are_checked() {
        let a = Authenticator::token(
            http::header::AUTHORIZATION,
            "Bearer".into(),
            vec![b"s3cret".to_vec(), b"other".to_vec()],
        );
        assert_eq!(a.check(&headers("Bearer s3cret")), Ok(()));
        assert_eq!(a.check(&headers("bearer other")), Ok(()));
        assert_eq!(a.check(&headers("Bearer s3cre")), Err(AuthFailure::Invalid));
        assert_eq!(a.check(&headers("Basic s3cret")), Err(AuthFailure::Invalid));
        assert_eq!(a.check(&headers("s3cret")), Err(AuthFailure::Invalid));
        assert_eq!(a.check(&http::HeaderMap::new()), Err(AuthFailure::Missing));

        let b = Authenticator::basic(HashMap::from([("ann".into(), b"pw:1".to_vec())]));
        // ann:pw:1 and ann:pw
        assert_eq!(b.check(&headers("Basic YW5uOnB3OjE=")), Ok(()));
        assert_eq!(
            b.check(&headers("Basic YW5uOnB3")),
            Err(AuthFailure::Invalid)
        );
        assert_eq!(b.check(&headers("Basic !!")), Err(AuthFailure::Invalid));
        // bob:pw:1
        assert_eq!(
            b.check(&headers("Basic Ym9iOnB3OjE=")),
            Err(AuthFailure::Invalid)
        );
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
        assert!(!same(b"", b"a") && !same(b"a", b""));
    }
}
