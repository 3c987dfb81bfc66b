//! The pipeline file: the OpenTelemetry Collector's shape (`receivers`, `processors`, `exporters`,
//! `service.pipelines`), read strictly.
//!
//! Loading is pure: text in, a validated [`Config`] or *every* problem out, each named by its YAML
//! path. Nothing here opens a socket or a file other than the config itself; components do their
//! IO later, when they are built (`otelwatch validate` runs only this module).

pub mod decode;
pub mod duration;
mod env;
pub mod error;
pub mod glob;
mod graph;
pub mod id;
pub mod listen;
pub mod secret;
pub mod tls;

pub use decode::{decode_section, validated};
pub use duration::ConfigDuration;
pub use error::{ConfigError, ConfigErrors};
pub use id::ComponentId;
pub use listen::{listen_addr, parse_endpoint, Listen};

use crate::exporters::ExporterConfig;
use crate::extensions::ExtensionConfig;
use crate::pipeline::DataKind;
use crate::processors::ProcessorConfig;
use crate::receivers::ReceiverConfig;
use serde::Deserialize;
use serde_norway::{Mapping, Value};
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] ConfigErrors),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryMetrics {
    /// Where `/metrics` and `/healthz` are served; an empty string turns the server off.
    pub address: String,
}

impl Default for TelemetryMetrics {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:8888".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryLogs {
    /// `error`, `warn`, `info`, `debug` or `trace` (overridden by `--log-level` / `RUST_LOG`).
    pub level: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub metrics: TelemetryMetrics,
    pub logs: TelemetryLogs,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    pub receivers: Vec<String>,
    pub processors: Vec<String>,
    pub exporters: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ServiceSection {
    telemetry: TelemetryConfig,
    /// The extensions to start, by id.
    extensions: Vec<String>,
    pipelines: Mapping,
    /// One deadline for draining and flushing everything on SIGINT/SIGTERM.
    shutdown_timeout: ConfigDuration,
}

impl Default for ServiceSection {
    fn default() -> Self {
        Self {
            telemetry: TelemetryConfig::default(),
            extensions: Vec::new(),
            pipelines: Mapping::new(),
            shutdown_timeout: ConfigDuration::from_secs(10),
        }
    }
}

/// A pipeline after validation: the signal it carries and its components in order.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub id: String,
    pub signal: DataKind,
    pub receivers: Vec<ComponentId>,
    pub processors: Vec<ComponentId>,
    pub exporters: Vec<ComponentId>,
    /// The data kind that reaches the exporters (differs from `signal` after `window`).
    pub output: DataKind,
}

/// A validated configuration. Component maps are in file order.
#[derive(Debug, Clone)]
pub struct Config {
    pub receivers: Vec<(ComponentId, ReceiverConfig)>,
    pub processors: Vec<(ComponentId, ProcessorConfig)>,
    pub exporters: Vec<(ComponentId, ExporterConfig)>,
    pub pipelines: Vec<Pipeline>,
    pub telemetry: TelemetryConfig,
    pub shutdown_timeout: ConfigDuration,
    pub extensions: Vec<(ComponentId, ExtensionConfig)>,
    /// The extensions `service.extensions` enables, in order.
    pub service_extensions: Vec<ComponentId>,
}

impl Config {
    pub fn receiver(&self, id: &ComponentId) -> Option<&ReceiverConfig> {
        self.receivers.iter().find(|(i, _)| i == id).map(|(_, c)| c)
    }
    pub fn processor(&self, id: &ComponentId) -> Option<&ProcessorConfig> {
        self.processors
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, c)| c)
    }
    pub fn exporter(&self, id: &ComponentId) -> Option<&ExporterConfig> {
        self.exporters.iter().find(|(i, _)| i == id).map(|(_, c)| c)
    }
}

/// Reads and validates a pipeline file.
pub fn load_file(path: &Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(parse(&text, &|name| std::env::var(name).ok())?)
}

/// Parses and validates config text; `lookup_env` answers `${env:NAME}` references.
pub fn parse(
    text: &str,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let expanded = env::expand(text, lookup_env, &mut errors);
    let Some(sections) = Sections::split(&expanded, &mut errors) else {
        return Err(ConfigErrors(errors));
    };

    // Components that are defined but invalid: already reported, so the graph checks treat
    // them as defined instead of adding "not defined" errors for every reference.
    let mut broken = HashSet::new();
    let receivers = decode_components(
        "receivers",
        sections.receivers,
        crate::receivers::parse_config,
        &mut errors,
        &mut broken,
    );
    let processors = decode_components(
        "processors",
        sections.processors,
        crate::processors::parse_config,
        &mut errors,
        &mut broken,
    );
    let exporters = decode_components(
        "exporters",
        sections.exporters,
        crate::exporters::parse_config,
        &mut errors,
        &mut broken,
    );
    let extensions = decode_components(
        "extensions",
        sections.extensions,
        crate::extensions::parse_config,
        &mut errors,
        &mut broken,
    );
    let service = ServiceSection::decode(sections.service, &mut errors);

    let components = graph::Components {
        receivers: &receivers,
        processors: &processors,
        exporters: &exporters,
        broken: &broken,
    };
    let pipelines = graph::check_graph(&service, &components, &mut errors);
    graph::check_saved_models(&pipelines, &processors, &mut errors);
    graph::check_ports(&service, &receivers, &extensions, &mut errors);
    let service_extensions = graph::check_extensions(
        &service,
        &extensions,
        &receivers,
        &exporters,
        &broken,
        &mut errors,
    );

    if errors.is_empty() {
        Ok(Config {
            receivers,
            processors,
            exporters,
            pipelines,
            telemetry: service.telemetry,
            shutdown_timeout: service.shutdown_timeout,
            extensions,
            service_extensions,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The file's top-level sections, still undecoded.
#[derive(Default)]
struct Sections {
    extensions: Mapping,
    receivers: Mapping,
    processors: Mapping,
    exporters: Mapping,
    service: Value,
}

impl Sections {
    /// `None` when the text is not a YAML mapping (reported); unknown keys are reported too.
    fn split(text: &str, errors: &mut Vec<ConfigError>) -> Option<Self> {
        let root = match serde_norway::from_str(text) {
            Ok(Value::Mapping(m)) => m,
            Ok(Value::Null) => Mapping::new(),
            Ok(_) => {
                errors.push(ConfigError::new("", "the top level must be a mapping"));
                return None;
            }
            Err(e) => {
                errors.push(ConfigError::new("", format!("not valid YAML: {e}")));
                return None;
            }
        };
        let mut sections = Self::default();
        for (k, v) in root {
            let key = key_str(&k);
            let slot = match key.as_str() {
                "receivers" => &mut sections.receivers,
                "processors" => &mut sections.processors,
                "exporters" => &mut sections.exporters,
                "extensions" => &mut sections.extensions,
                "service" => {
                    sections.service = v;
                    continue;
                }
                other => {
                    errors.push(ConfigError::new(
                        other,
                        "unknown top-level key (expected receivers, processors, exporters, extensions, service)",
                    ));
                    continue;
                }
            };
            match v {
                Value::Mapping(m) => *slot = m,
                Value::Null => {}
                _ => errors.push(ConfigError::new(key, "must be a mapping of component ids")),
            }
        }
        Some(sections)
    }
}

impl ServiceSection {
    /// The `service` section with its telemetry settings checked (defaults where it is invalid).
    fn decode(value: Value, errors: &mut Vec<ConfigError>) -> Self {
        let service: Self = decode_section("service", value).unwrap_or_else(|e| {
            errors.push(e);
            Self::default()
        });
        let address = &service.telemetry.metrics.address;
        if !address.is_empty() {
            if let Err(e) = listen_addr(address) {
                errors.push(ConfigError::new("service.telemetry.metrics.address", e));
            }
        }
        if let Some(level) = &service.telemetry.logs.level {
            if !matches!(
                level.as_str(),
                "error" | "warn" | "info" | "debug" | "trace"
            ) {
                errors.push(ConfigError::new(
                    "service.telemetry.logs.level",
                    format!("unknown level {level:?} (error, warn, info, debug, trace)"),
                ));
            }
        }
        service
    }
}

fn key_str(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

type ParseFn<T> = fn(&ComponentId, &str, Value) -> Result<T, Vec<ConfigError>>;

/// Section name and id of a component that was defined but did not parse.
type Broken = HashSet<(&'static str, String)>;

fn decode_components<T>(
    section: &'static str,
    map: Mapping,
    parse_one: ParseFn<T>,
    errors: &mut Vec<ConfigError>,
    broken: &mut Broken,
) -> Vec<(ComponentId, T)> {
    let mut out = Vec::new();
    for (k, v) in map {
        let key = key_str(&k);
        let path = format!("{section}.{key}");
        let id = match ComponentId::parse(&key) {
            Ok(id) => id,
            Err(e) => {
                errors.push(ConfigError::new(path, e));
                broken.insert((section, key));
                continue;
            }
        };
        match parse_one(&id, &path, v) {
            Ok(cfg) => out.push((id, cfg)),
            Err(mut es) => {
                errors.append(&mut es);
                broken.insert((section, key));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
