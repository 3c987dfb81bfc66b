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
pub mod id;
pub mod listen;
pub mod tls;

pub use decode::{decode_section, validated};
pub use duration::ConfigDuration;
pub use error::{ConfigError, ConfigErrors};
pub use id::ComponentId;
pub use listen::{listen_addr, parse_endpoint, Listen};

use crate::exporters::ExporterConfig;
use crate::pipeline::DataKind;
use crate::processors::ProcessorConfig;
use crate::receivers::ReceiverConfig;
use serde::Deserialize;
use serde_norway::{Mapping, Value};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
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
    pipelines: Mapping,
    /// One deadline for draining and flushing everything on SIGINT/SIGTERM.
    shutdown_timeout: ConfigDuration,
}

impl Default for ServiceSection {
    fn default() -> Self {
        Self {
            telemetry: TelemetryConfig::default(),
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
    let root: Value = match serde_norway::from_str(&expanded) {
        Ok(v) => v,
        Err(e) => {
            errors.push(ConfigError::new("", format!("not valid YAML: {e}")));
            return Err(ConfigErrors(errors));
        }
    };
    let root = match root {
        Value::Mapping(m) => m,
        Value::Null => Mapping::new(),
        _ => {
            errors.push(ConfigError::new("", "the top level must be a mapping"));
            return Err(ConfigErrors(errors));
        }
    };

    let mut receivers_v = Mapping::new();
    let mut processors_v = Mapping::new();
    let mut exporters_v = Mapping::new();
    let mut service_v = Value::Null;
    for (k, v) in root {
        let key = key_str(&k);
        match key.as_str() {
            "receivers" | "processors" | "exporters" => match v {
                Value::Mapping(m) => match key.as_str() {
                    "receivers" => receivers_v = m,
                    "processors" => processors_v = m,
                    _ => exporters_v = m,
                },
                Value::Null => {}
                _ => errors.push(ConfigError::new(key, "must be a mapping of component ids")),
            },
            "service" => service_v = v,
            other => errors.push(ConfigError::new(
                other,
                "unknown top-level key (expected receivers, processors, exporters, service)",
            )),
        }
    }

    // Components that are defined but invalid: already reported, so the graph checks treat
    // them as defined instead of adding "not defined" errors for every reference.
    let mut broken = HashSet::new();
    let receivers = decode_components(
        "receivers",
        receivers_v,
        crate::receivers::parse_config,
        &mut errors,
        &mut broken,
    );
    let processors = decode_components(
        "processors",
        processors_v,
        crate::processors::parse_config,
        &mut errors,
        &mut broken,
    );
    let exporters = decode_components(
        "exporters",
        exporters_v,
        crate::exporters::parse_config,
        &mut errors,
        &mut broken,
    );

    let service: ServiceSection = match decode_section("service", service_v) {
        Ok(s) => s,
        Err(e) => {
            errors.push(e);
            ServiceSection::default()
        }
    };
    if !service.telemetry.metrics.address.is_empty() {
        if let Err(e) = listen_addr(&service.telemetry.metrics.address) {
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

    let pipelines = check_graph(
        &service,
        &receivers,
        &processors,
        &exporters,
        &broken,
        &mut errors,
    );
    check_ports(&service, &receivers, &mut errors);

    if errors.is_empty() {
        Ok(Config {
            receivers,
            processors,
            exporters,
            pipelines,
            telemetry: service.telemetry,
            shutdown_timeout: service.shutdown_timeout,
        })
    } else {
        Err(ConfigErrors(errors))
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

fn check_graph(
    service: &ServiceSection,
    receivers: &[(ComponentId, ReceiverConfig)],
    processors: &[(ComponentId, ProcessorConfig)],
    exporters: &[(ComponentId, ExporterConfig)],
    broken: &Broken,
    errors: &mut Vec<ConfigError>,
) -> Vec<Pipeline> {
    let mut used: HashSet<(&'static str, ComponentId)> = HashSet::new();
    let mut pipelines = Vec::new();
    if service.pipelines.is_empty() {
        errors.push(ConfigError::new(
            "service.pipelines",
            "at least one pipeline is required",
        ));
    }
    for (k, v) in &service.pipelines {
        let pid = key_str(k);
        let path = format!("service.pipelines.{pid}");
        let signal = match ComponentId::parse(&pid) {
            Ok(id) => match DataKind::from_signal_name(&id.kind) {
                Some(kind) => kind,
                None => {
                    errors.push(ConfigError::new(
                        &path,
                        format!(
                            "unknown pipeline type {:?} (traces, metrics or logs, optionally /name)",
                            id.kind
                        ),
                    ));
                    continue;
                }
            },
            Err(e) => {
                errors.push(ConfigError::new(&path, e));
                continue;
            }
        };
        let pc: PipelineConfig = match decode_section(&path, v.clone()) {
            Ok(p) => p,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let mut ok = true;
        if pc.receivers.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.receivers"),
                "a pipeline needs at least one receiver",
            ));
            ok = false;
        }
        if pc.exporters.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.exporters"),
                "a pipeline needs at least one exporter",
            ));
            ok = false;
        }
        let mut resolve = |list: &[String],
                           field: &str,
                           section: &'static str,
                           known: &dyn Fn(&ComponentId) -> bool| {
            let mut ids = Vec::new();
            for (i, name) in list.iter().enumerate() {
                let ipath = format!("{path}.{field}[{i}]");
                if broken.contains(&(section, name.clone())) {
                    // Reported where it is defined; the pipeline cannot be checked further.
                    ok = false;
                    continue;
                }
                match ComponentId::parse(name) {
                    Ok(id) if known(&id) => {
                        if ids.contains(&id) {
                            errors
                                .push(ConfigError::new(ipath, format!("{name:?} is listed twice")));
                            ok = false;
                        } else {
                            used.insert((section, id.clone()));
                            ids.push(id);
                        }
                    }
                    Ok(_) => {
                        errors.push(ConfigError::new(
                            ipath,
                            format!(
                                "{} {name:?} is not defined under {section}",
                                &section[..section.len() - 1]
                            ),
                        ));
                        ok = false;
                    }
                    Err(e) => {
                        errors.push(ConfigError::new(ipath, e));
                        ok = false;
                    }
                }
            }
            ids
        };
        let r_ids = resolve(&pc.receivers, "receivers", "receivers", &|id| {
            receivers.iter().any(|(i, _)| i == id)
        });
        let p_ids = resolve(&pc.processors, "processors", "processors", &|id| {
            processors.iter().any(|(i, _)| i == id)
        });
        let e_ids = resolve(&pc.exporters, "exporters", "exporters", &|id| {
            exporters.iter().any(|(i, _)| i == id)
        });
        if !ok {
            continue;
        }
        for (i, id) in r_ids.iter().enumerate() {
            if let Some((_, rc)) = receivers.iter().find(|(r, _)| r == id) {
                if !rc.signals().contains(&signal) {
                    errors.push(ConfigError::new(
                        format!("{path}.receivers[{i}]"),
                        format!(
                            "receiver {id:?} cannot produce {signal}",
                            id = id.to_string()
                        ),
                    ));
                    ok = false;
                }
            }
        }
        let mut kind = signal;
        let mut last_step = "the receivers".to_string();
        for (i, id) in p_ids.iter().enumerate() {
            if let Some((_, pc)) = processors.iter().find(|(p, _)| p == id) {
                match pc.output_kind(kind) {
                    Ok(out) => kind = out,
                    Err(accepts) => {
                        errors.push(ConfigError::new(
                            format!("{path}.processors[{i}]"),
                            format!(
                                "processor \"{id}\" cannot take {kind} from {last_step} (it takes {accepts})"
                            ),
                        ));
                        ok = false;
                        break;
                    }
                }
                last_step = format!("processor \"{id}\"");
            }
        }
        if ok {
            for (i, id) in e_ids.iter().enumerate() {
                if let Some((_, ec)) = exporters.iter().find(|(e, _)| e == id) {
                    let accepts = ec.accepts();
                    if !accepts.contains(&kind) {
                        let list: Vec<String> = accepts.iter().map(|k| k.to_string()).collect();
                        errors.push(ConfigError::new(
                            format!("{path}.exporters[{i}]"),
                            format!(
                                "exporter \"{id}\" cannot take {kind} from {last_step} (it takes {})",
                                list.join(", ")
                            ),
                        ));
                        ok = false;
                    }
                }
            }
        }
        if ok {
            pipelines.push(Pipeline {
                id: pid,
                signal,
                receivers: r_ids,
                processors: p_ids,
                exporters: e_ids,
                output: kind,
            });
        }
    }
    for (section, ids) in [
        (
            "receivers",
            receivers.iter().map(|(i, _)| i).collect::<Vec<_>>(),
        ),
        ("processors", processors.iter().map(|(i, _)| i).collect()),
        ("exporters", exporters.iter().map(|(i, _)| i).collect()),
    ] {
        for id in ids {
            if !used.contains(&(section, id.clone())) {
                errors.push(ConfigError::new(
                    format!("{section}.{id}"),
                    "defined but not used in any pipeline",
                ));
            }
        }
    }
    pipelines
}

fn check_ports(
    service: &ServiceSection,
    receivers: &[(ComponentId, ReceiverConfig)],
    errors: &mut Vec<ConfigError>,
) {
    let mut listens: Vec<Listen> = receivers
        .iter()
        .flat_map(|(id, r)| r.listens(&format!("receivers.{id}")))
        .collect();
    if !service.telemetry.metrics.address.is_empty() {
        listens.push(Listen {
            path: "service.telemetry.metrics.address".into(),
            endpoint: service.telemetry.metrics.address.clone(),
        });
    }
    let addrs: Vec<(String, SocketAddr)> = listens
        .iter()
        .filter_map(|l| listen_addr(&l.endpoint).ok().map(|a| (l.path.clone(), a)))
        .collect();
    let mut reported = BTreeMap::new();
    for (i, (pa, a)) in addrs.iter().enumerate() {
        for (pb, b) in &addrs[..i] {
            let same_port = a.port() == b.port() && a.port() != 0;
            let overlap = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
            if same_port && overlap && reported.insert(pa.clone(), ()).is_none() {
                errors.push(ConfigError::new(
                    pa.clone(),
                    format!("port {} is already used by {pb}", a.port()),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
