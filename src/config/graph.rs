//! The checks across components: every pipeline's references resolve, each step can take what
//! the step before it produces, every defined component is used, no two listeners share a
//! port, and every authenticator a receiver names is defined and enabled. Each check is a small pass that reports into the shared error list.

use super::{
    decode_section, key_str, listen_addr, Broken, ConfigError, Listen, Pipeline, PipelineConfig,
    ServiceSection,
};
use crate::config::id::ComponentId;
use crate::exporters::ExporterConfig;
use crate::extensions::{ExtensionConfig, Role};
use crate::pipeline::DataKind;
use crate::processors::ProcessorConfig;
use crate::receivers::ReceiverConfig;
use serde_norway::Value;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

/// The components that parsed, and the ids of those that did not (already reported, so a
/// reference to one is not reported again as "not defined").
pub(super) struct Components<'a> {
    pub receivers: &'a [(ComponentId, ReceiverConfig)],
    pub processors: &'a [(ComponentId, ProcessorConfig)],
    pub exporters: &'a [(ComponentId, ExporterConfig)],
    pub broken: &'a Broken,
}

impl Components<'_> {
    fn defined(&self, section: &str, id: &ComponentId) -> bool {
        match section {
            "receivers" => self.receivers.iter().any(|(i, _)| i == id),
            "processors" => self.processors.iter().any(|(i, _)| i == id),
            _ => self.exporters.iter().any(|(i, _)| i == id),
        }
    }
}

/// Validates `service.pipelines` against the components; returns the pipelines that passed.
pub(super) fn check_graph(
    service: &ServiceSection,
    components: &Components<'_>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Pipeline> {
    if service.pipelines.is_empty() {
        errors.push(ConfigError::new(
            "service.pipelines",
            "at least one pipeline is required",
        ));
    }
    let mut check = GraphCheck {
        components,
        used: HashSet::new(),
        errors,
    };
    let pipelines = service
        .pipelines
        .iter()
        .filter_map(|(k, v)| check.pipeline(key_str(k), v))
        .collect();
    check.report_unused();
    pipelines
}

struct GraphCheck<'a, 'e> {
    components: &'a Components<'a>,
    /// Components some pipeline lists, by section.
    used: HashSet<(&'static str, ComponentId)>,
    errors: &'e mut Vec<ConfigError>,
}

impl GraphCheck<'_, '_> {
    fn error(&mut self, path: impl Into<String>, message: impl std::fmt::Display) {
        self.errors.push(ConfigError::new(path, message));
    }

    fn pipeline(&mut self, pid: String, value: &Value) -> Option<Pipeline> {
        let path = format!("service.pipelines.{pid}");
        let signal = self.signal(&pid, &path)?;
        let pc: PipelineConfig = decode_section(&path, value.clone())
            .map_err(|e| self.errors.push(e))
            .ok()?;
        let mut ok = true;
        for (field, list) in [("receivers", &pc.receivers), ("exporters", &pc.exporters)] {
            if list.is_empty() {
                let what = &field[..field.len() - 1];
                self.error(
                    format!("{path}.{field}"),
                    format!("a pipeline needs at least one {what}"),
                );
                ok = false;
            }
        }
        let receivers = self.resolve(&path, "receivers", &pc.receivers, &mut ok);
        let processors = self.resolve(&path, "processors", &pc.processors, &mut ok);
        let exporters = self.resolve(&path, "exporters", &pc.exporters, &mut ok);
        if !ok {
            return None;
        }
        let produced = self.receivers_produce(&path, &receivers, signal);
        let (output, last_step) = self.processor_chain(&path, &processors, signal)?;
        if !produced || !self.exporters_take(&path, &exporters, output, &last_step) {
            return None;
        }
        Some(Pipeline {
            id: pid,
            signal,
            receivers,
            processors,
            exporters,
            output,
        })
    }

    /// The signal a pipeline id names (`traces`, `metrics`, `logs`, optionally `/name`).
    fn signal(&mut self, pid: &str, path: &str) -> Option<DataKind> {
        match ComponentId::parse(pid) {
            Ok(id) => {
                let kind = DataKind::from_signal_name(&id.kind);
                if kind.is_none() {
                    self.error(
                        path,
                        format!(
                            "unknown pipeline type {:?} (traces, metrics or logs, optionally /name)",
                            id.kind
                        ),
                    );
                }
                kind
            }
            Err(e) => {
                self.error(path, e);
                None
            }
        }
    }

    /// The ids a pipeline lists under `section`, each defined there and listed once; clears
    /// `ok` on any problem.
    fn resolve(
        &mut self,
        path: &str,
        section: &'static str,
        list: &[String],
        ok: &mut bool,
    ) -> Vec<ComponentId> {
        let mut ids = Vec::new();
        for (i, name) in list.iter().enumerate() {
            let ipath = format!("{path}.{section}[{i}]");
            if self.components.broken.contains(&(section, name.clone())) {
                // Reported where it is defined; the pipeline cannot be checked further.
                *ok = false;
                continue;
            }
            match ComponentId::parse(name) {
                Ok(id) if self.components.defined(section, &id) => {
                    if ids.contains(&id) {
                        self.error(ipath, format!("{name:?} is listed twice"));
                        *ok = false;
                    } else {
                        self.used.insert((section, id.clone()));
                        ids.push(id);
                    }
                }
                Ok(_) => {
                    let what = &section[..section.len() - 1];
                    self.error(
                        ipath,
                        format!("{what} {name:?} is not defined under {section}"),
                    );
                    *ok = false;
                }
                Err(e) => {
                    self.error(ipath, e);
                    *ok = false;
                }
            }
        }
        ids
    }

    fn receivers_produce(&mut self, path: &str, ids: &[ComponentId], signal: DataKind) -> bool {
        let mut ok = true;
        for (i, id) in ids.iter().enumerate() {
            let Some((_, rc)) = self.components.receivers.iter().find(|(r, _)| r == id) else {
                continue;
            };
            if !rc.signals().contains(&signal) {
                self.error(
                    format!("{path}.receivers[{i}]"),
                    format!("receiver {:?} cannot produce {signal}", id.to_string()),
                );
                ok = false;
            }
        }
        ok
    }

    /// The data kind after the processors, and a name for the last step that produced it.
    fn processor_chain(
        &mut self,
        path: &str,
        ids: &[ComponentId],
        signal: DataKind,
    ) -> Option<(DataKind, String)> {
        let mut kind = signal;
        let mut last_step = "the receivers".to_string();
        for (i, id) in ids.iter().enumerate() {
            let Some((_, pc)) = self.components.processors.iter().find(|(p, _)| p == id) else {
                continue;
            };
            match pc.output_kind(kind) {
                Ok(out) => kind = out,
                Err(accepts) => {
                    self.error(
                        format!("{path}.processors[{i}]"),
                        format!(
                            "processor \"{id}\" cannot take {kind} from {last_step} (it takes {accepts})"
                        ),
                    );
                    return None;
                }
            }
            last_step = format!("processor \"{id}\"");
        }
        Some((kind, last_step))
    }

    fn exporters_take(
        &mut self,
        path: &str,
        ids: &[ComponentId],
        kind: DataKind,
        last_step: &str,
    ) -> bool {
        let mut ok = true;
        for (i, id) in ids.iter().enumerate() {
            let Some((_, ec)) = self.components.exporters.iter().find(|(e, _)| e == id) else {
                continue;
            };
            let accepts = ec.accepts();
            if !accepts.contains(&kind) {
                let list: Vec<String> = accepts.iter().map(|k| k.to_string()).collect();
                self.error(
                    format!("{path}.exporters[{i}]"),
                    format!(
                        "exporter \"{id}\" cannot take {kind} from {last_step} (it takes {})",
                        list.join(", ")
                    ),
                );
                ok = false;
            }
        }
        ok
    }

    fn report_unused(&mut self) {
        let c = self.components;
        let defined = c
            .receivers
            .iter()
            .map(|(i, _)| ("receivers", i))
            .chain(c.processors.iter().map(|(i, _)| ("processors", i)))
            .chain(c.exporters.iter().map(|(i, _)| ("exporters", i)));
        for (section, id) in defined {
            if !self.used.contains(&(section, id.clone())) {
                self.errors.push(ConfigError::new(
                    format!("{section}.{id}"),
                    "defined but not used in any pipeline",
                ));
            }
        }
    }
}

/// No two listeners (receivers' endpoints, the metrics server, enabled consoles) on one port
/// of one address.
pub(super) fn check_ports(
    service: &ServiceSection,
    receivers: &[(ComponentId, ReceiverConfig)],
    extensions: &[(ComponentId, ExtensionConfig)],
    errors: &mut Vec<ConfigError>,
) {
    let mut listens: Vec<Listen> = receivers
        .iter()
        .flat_map(|(id, r)| r.listens(&format!("receivers.{id}")))
        .collect();
    for (id, e) in extensions {
        let enabled = service.extensions.iter().any(|n| *n == id.to_string());
        if let (true, Some(endpoint)) = (enabled, e.listens()) {
            listens.push(Listen {
                path: format!("extensions.{id}.endpoint"),
                endpoint,
            });
        }
    }
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

/// `service.extensions` names defined extensions, each once; every receiver protocol's
/// `auth.authenticator` names an authenticator extension, and every exporter's
/// `sending_queue.storage` a storage extension, that `service.extensions` enables.
/// Returns the enabled extensions.
pub(super) fn check_extensions(
    service: &ServiceSection,
    extensions: &[(ComponentId, ExtensionConfig)],
    receivers: &[(ComponentId, ReceiverConfig)],
    exporters: &[(ComponentId, ExporterConfig)],
    broken: &Broken,
    errors: &mut Vec<ConfigError>,
) -> Vec<ComponentId> {
    let mut enabled: Vec<ComponentId> = Vec::new();
    for (i, name) in service.extensions.iter().enumerate() {
        let path = format!("service.extensions[{i}]");
        let id = match ComponentId::parse(name) {
            Ok(id) => id,
            Err(e) => {
                errors.push(ConfigError::new(path, e));
                continue;
            }
        };
        let defined = extensions.iter().any(|(d, _)| *d == id);
        if !defined && !broken.contains(&("extensions", name.clone())) {
            errors.push(ConfigError::new(
                path,
                format!("extension {name:?} is not defined under extensions"),
            ));
        } else if enabled.contains(&id) {
            errors.push(ConfigError::new(path, format!("{name:?} is listed twice")));
        } else {
            enabled.push(id);
        }
    }
    let mut references: Vec<(String, String, Role)> = receivers
        .iter()
        .flat_map(|(rid, r)| r.authenticators(&format!("receivers.{rid}")))
        .chain(
            extensions
                .iter()
                .filter(|(id, _)| enabled.contains(id))
                .flat_map(|(id, e)| e.authenticators(&format!("extensions.{id}"))),
        )
        .map(|(path, name)| (path, name, Role::Authenticator))
        .collect();
    for (eid, e) in exporters {
        let Some(name) = e.queue_storage() else {
            continue;
        };
        let path = format!("exporters.{eid}.sending_queue.storage");
        if e.can_store_queue() {
            references.push((path, name, Role::Storage));
        } else {
            errors.push(ConfigError::new(
                path,
                format!(
                    "a {} exporter cannot keep its sending queue in storage (only {} can)",
                    eid.kind,
                    crate::exporters::storing_types().join(", ")
                ),
            ));
        }
    }
    for (path, name, role) in references {
        if broken.contains(&("extensions", name.clone())) {
            continue;
        }
        let what = role.as_str();
        let found = ComponentId::parse(&name)
            .ok()
            .and_then(|id| extensions.iter().find(|(d, _)| *d == id));
        match found {
            None => errors.push(ConfigError::new(
                path,
                format!("{what} {name:?} is not defined under extensions"),
            )),
            Some((_, e)) if e.role() != role => errors.push(ConfigError::new(
                path,
                format!("extension {name:?} is not a {what}"),
            )),
            Some((id, _)) if !enabled.contains(id) => errors.push(ConfigError::new(
                path,
                format!("{what} {name:?} is not enabled: list it in service.extensions"),
            )),
            Some(_) => {}
        }
    }
    enabled
}

/// A processor that saves its state to a file belongs to one pipeline: each pipeline runs its
/// own instance, and two instances must not write one file (the last save would win).
pub(super) fn check_saved_models(
    pipelines: &[Pipeline],
    processors: &[(ComponentId, ProcessorConfig)],
    errors: &mut Vec<ConfigError>,
) {
    let mut owner: std::collections::HashMap<&str, (&str, &ComponentId)> = Default::default();
    for p in pipelines {
        for (i, id) in p.processors.iter().enumerate() {
            let Some(path) = processors
                .iter()
                .find(|(d, _)| d == id)
                .and_then(|(_, c)| c.saved_models())
            else {
                continue;
            };
            match owner.get(path) {
                Some((q, other)) => errors.push(ConfigError::new(
                    format!("service.pipelines.{}.processors[{i}]", p.id),
                    format!(
                        "{id} saves its models to {path:?}, as {other} in pipeline {q} does; \
                         give each pipeline its own iforest with its own model_path (e.g. iforest/logs)"
                    ),
                )),
                None => {
                    owner.insert(path, (&p.id, id));
                }
            }
        }
    }
}
