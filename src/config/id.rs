//! Component ids: `type` or `type/name`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("invalid component id {0:?}: the type must be lowercase letters, digits or '_'")]
    Type(String),
    #[error(
        "invalid component id {0:?}: the name after '/' must be non-empty, without spaces or '/'"
    )]
    Name(String),
}

/// A component id: `type` or `type/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    pub kind: String,
    pub name: Option<String>,
}

impl ComponentId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let (kind, name) = match s.split_once('/') {
            Some((k, n)) => (k, Some(n)),
            None => (s, None),
        };
        let valid_type = !kind.is_empty()
            && kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid_type {
            return Err(IdError::Type(s.to_string()));
        }
        if let Some(n) = name {
            if n.is_empty() || n.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(IdError::Name(s.to_string()));
            }
        }
        Ok(Self {
            kind: kind.to_string(),
            name: name.map(str::to_string),
        })
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.kind, n),
            None => f.write_str(&self.kind),
        }
    }
}
