//! Processor `incidents`: groups anomalous window records that are close in time and connected
//! in the call graph into one incident, ranks the likely root causes, and follows each incident
//! from opened through updated to resolved.
//!
//! ```yaml
//! processors:
//!   incidents:
//!     resolve_after: 3     # normal windows after the last anomalous one before it resolves
//!     max_open: 1000       # open incidents kept at once (beyond: the oldest is resolved)
//!     max_causes: 5        # ranked suspects kept per incident
//!     graph_ttl: 1h        # a caller → callee edge not seen for this long is forgotten
//!     corroborate: true    # a lone series' one window is not paged (see `corroborated`)
//! ```
//!
//! The call graph is learned from the edge records (`service.name` → `service.target.name`,
//! the callers' view of each dependency). Within one window, an anomalous record joins another
//! (or an open incident) when they share a service or a call-graph edge links them; a record
//! that links two open incidents merges them into the older one. The ranking (`rank`) follows
//! where the evidence points: slowness and errors travel *up* the call chain (a caller waits for
//! its callee), so a service is a suspect when it or its callers' view of it is anomalous, and is
//! cleared when a callee of its own is anomalous independently of it; a change of traffic travels
//! *down* (a caller sends less), so there the suspect is the most upstream service that shows it.
//! Each window's scores are added up over the incident's life, each weighed by the evidence its
//! window holds: the ranking is the share of the incident's evidence each service explains, so
//! it settles as evidence accumulates instead of following one window's noise, and a window
//! with a strong anomaly outweighs several with faint ones.
//!
//! The records pass on unchanged but for `anomaly.incident`; the incident events follow them in
//! a batch of their own.

pub mod join;
mod rank;
mod rates;
#[cfg(test)]
mod tests;

use super::Processor;
use crate::config::decode::{decode_section, validated};
use crate::config::duration::ConfigDuration;
use crate::config::error::ConfigError;
use crate::model::incident::{Action, Incident, IncidentEvent, RootCause, Status};
use crate::model::window::{feature, SeriesKey, Severity, Signal, WindowRecord};
use crate::pipeline::{Batch, DataKind, Payload};
use crate::telemetry::{Counter, Telemetry};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// Normal windows after the last anomalous one before an incident resolves.
    pub resolve_after: usize,
    /// Open incidents kept at once; when a new one would pass it, the oldest pending one is
    /// dropped, or else the oldest is resolved (a lone reading, which would be pending, closes
    /// none: it is counted as uncorroborated).
    pub max_open: usize,
    /// Ranked suspects kept per incident.
    pub max_causes: usize,
    /// A caller → callee edge not seen for this long is forgotten.
    pub graph_ttl: ConfigDuration,
    /// When several pipelines list this processor: how long a window waits for a pipeline
    /// that has delivered nothing for this long (see `join.rs`).
    pub join_wait: ConfigDuration,
    /// Whether a group needs two pieces of evidence to open an incident: two series at once
    /// (not metrics alone), or a lone anomaly joined within `resolve_after` windows by another
    /// connected to it (until then it is a pending incident; see `corroborated`). When false
    /// every group with a span or log record opens one at once (a group of metrics alone still
    /// needs the same series twice).
    pub corroborate: bool,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        Self {
            resolve_after: 3,
            max_open: 1000,
            max_causes: 5,
            graph_ttl: ConfigDuration::from_secs(3600),
            join_wait: ConfigDuration::from_secs(10),
            corroborate: true,
        }
    }
}

impl crate::processors::ProcessorType for IncidentsConfig {
    const NAME: &'static str = "incidents";

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let errors = [
            ("resolve_after", cfg.resolve_after),
            ("max_open", cfg.max_open),
            ("max_causes", cfg.max_causes),
        ]
        .into_iter()
        .filter(|(_, v)| *v == 0)
        .map(|(field, _)| ConfigError::new(format!("{path}.{field}"), "must be at least 1"))
        .collect();
        validated(cfg, errors)
    }

    fn output_kind(&self, input: DataKind) -> Result<DataKind, &'static str> {
        match input {
            DataKind::Windows => Ok(DataKind::Windows),
            _ => Err("windows (put the window and iforest processors before it)"),
        }
    }

    /// One processor per component id: the pipelines that list it share it (`join.rs`).
    fn build(&self, ctx: &crate::processors::ProcessorContext<'_>) -> Box<dyn Processor> {
        let hub = ctx.shared.get_or_insert(ctx.id, || {
            std::sync::Mutex::new(join::Hub::new(
                IncidentsProcessor::new(self, ctx.id, ctx.telemetry),
                self.join_wait.get(),
            ))
        });
        Box::new(join::MemberStage::join(hub))
    }
}

/// How much of a suspect's evidence is kept from one joined window to the next.
const DECAY: f64 = 0.7;
/// Series per incident beyond which new ones are counted but not listed (memory stays bounded).
const MAX_SERIES: usize = 200;
/// Call-graph edges kept; beyond it the least recently seen is forgotten.
const MAX_EDGES: usize = 20_000;

/// Caller → callee edges with the window they were last seen in.
#[derive(Default)]
pub struct CallGraph {
    last_seen: BTreeMap<(Arc<str>, Arc<str>), u64>,
    callees: BTreeMap<Arc<str>, BTreeSet<Arc<str>>>,
    callers: BTreeMap<Arc<str>, BTreeSet<Arc<str>>>,
}

impl CallGraph {
    pub fn add(&mut self, caller: &Arc<str>, callee: &Arc<str>, at_ns: u64) {
        if caller == callee {
            return;
        }
        let key = (caller.clone(), callee.clone());
        if let Some(t) = self.last_seen.get_mut(&key) {
            *t = (*t).max(at_ns);
            return;
        }
        if self.last_seen.len() >= MAX_EDGES {
            if let Some(oldest) = self
                .last_seen
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            {
                self.remove(&oldest);
            }
        }
        self.last_seen.insert(key, at_ns);
        self.callees
            .entry(caller.clone())
            .or_default()
            .insert(callee.clone());
        self.callers
            .entry(callee.clone())
            .or_default()
            .insert(caller.clone());
    }

    fn remove(&mut self, key: &(Arc<str>, Arc<str>)) {
        self.last_seen.remove(key);
        if let Some(s) = self.callees.get_mut(&key.0) {
            s.remove(&key.1);
            if s.is_empty() {
                self.callees.remove(&key.0);
            }
        }
        if let Some(s) = self.callers.get_mut(&key.1) {
            s.remove(&key.0);
            if s.is_empty() {
                self.callers.remove(&key.1);
            }
        }
    }

    /// Forgets edges last seen before `cutoff_ns`.
    pub fn expire(&mut self, cutoff_ns: u64) {
        let old: Vec<_> = self
            .last_seen
            .iter()
            .filter(|(_, t)| **t < cutoff_ns)
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            self.remove(&k);
        }
    }

    pub fn callees(&self, n: &str) -> impl Iterator<Item = &Arc<str>> {
        self.callees.get(n).into_iter().flatten()
    }

    pub fn callers(&self, n: &str) -> impl Iterator<Item = &Arc<str>> {
        self.callers.get(n).into_iter().flatten()
    }

    pub fn linked(&self, a: &str, b: &str) -> bool {
        a == b
            || self.callees.get(a).is_some_and(|s| s.contains(b))
            || self.callers.get(a).is_some_and(|s| s.contains(b))
    }

    pub fn edges(&self) -> usize {
        self.last_seen.len()
    }
}

/// The services a record speaks of: its own, and the callee for an edge.
fn nodes(series: &SeriesKey) -> Vec<Arc<str>> {
    let mut v = vec![series.service.clone()];
    if let Some(t) = &series.target {
        v.push(t.clone());
    }
    v
}

/// Accumulated evidence for one suspect.
#[derive(Debug, Clone, Default)]
struct Suspect {
    total: f64,
    best: f64,
    reason: String,
}

struct OpenIncident {
    incident: Incident,
    /// The services it involves, with the start of the last window each was anomalous in.
    nodes: BTreeMap<Arc<str>, u64>,
    listed: BTreeSet<Arc<SeriesKey>>,
    suspects: BTreeMap<Arc<str>, Suspect>,
    windows: usize,
    /// The decayed evidence of the windows joined (what the suspects' totals are divided by).
    weight: f64,
    last_start_ns: u64,
    interval_ns: u64,
    /// Not announced yet: its evidence is one piece so far (see `corroborated`). It gathers
    /// evidence as an open one does, but sends no event and names itself on no record; it is
    /// announced when a second piece joins it, and dropped silently when it goes quiet.
    pending: bool,
    /// Whether its evidence includes spans or logs (not metrics alone).
    traced: bool,
}

impl OpenIncident {
    /// The services anomalous in it within the last `recent_ns`: what a new anomaly must be
    /// connected to to join (an incident does not reach across the graph by what it once was).
    fn recent(&self, since_ns: u64) -> impl Iterator<Item = &Arc<str>> {
        self.nodes
            .iter()
            .filter(move |(_, t)| **t >= since_ns)
            .map(|(n, _)| n)
    }

    fn touches(&self, graph: &CallGraph, ns: &[Arc<str>], since_ns: u64) -> bool {
        self.recent(since_ns)
            .any(|m| ns.iter().any(|n| graph.linked(n, m)))
    }

    fn ranking(&self, max: usize) -> Vec<RootCause> {
        let mut v: Vec<(&Arc<str>, &Suspect)> = self
            .suspects
            .iter()
            .filter(|(_, s)| s.total > 0.0)
            .collect();
        v.sort_by(|a, b| b.1.total.total_cmp(&a.1.total).then(a.0.cmp(b.0)));
        let evidence = self.weight.max(1e-12);
        v.into_iter()
            .take(max)
            .map(|(n, s)| RootCause {
                service: n.clone(),
                score: (s.total / evidence).clamp(0.0, 1.0),
                reason: s.reason.clone(),
            })
            .collect()
    }

    fn refresh_message(&mut self) {
        let i = &mut self.incident;
        let affected: Vec<String> = i.series.iter().take(4).map(|s| s.to_string()).collect();
        let more = i.series.len().saturating_sub(4);
        let affected = if more > 0 {
            format!("{} and {more} more", affected.join(", "))
        } else {
            affected.join(", ")
        };
        i.message = match i.root_cause.first() {
            Some(c) => format!(
                "{} is the likely cause: {}; affected: {affected}",
                c.service, c.reason
            ),
            None => format!("anomalous: {affected}"),
        };
    }
}

/// FNV-1a over the first record's series and window: the same anomaly gives the same id.
fn incident_id(series: &SeriesKey, start_ns: u64) -> Arc<str> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in series
        .to_string()
        .bytes()
        .chain([0xff])
        .chain(start_ns.to_le_bytes())
    {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}").into()
}

pub struct IncidentsProcessor {
    cfg: IncidentsConfig,
    graph: CallGraph,
    open: Vec<OpenIncident>,
    rates: rates::BaseRates,
    opened: Counter,
    resolved: Counter,
    merged: Counter,
    unlisted_series: Counter,
    uncorroborated: Counter,
}

impl IncidentsProcessor {
    pub fn new(cfg: &IncidentsConfig, id: &str, telemetry: &Telemetry) -> Self {
        let labels = || vec![("processor", id.to_string())];
        Self {
            cfg: cfg.clone(),
            graph: CallGraph::default(),
            open: Vec::new(),
            rates: rates::BaseRates::default(),
            opened: telemetry.counter(
                "otelwatch_incidents_opened_total",
                "Incidents opened.",
                labels(),
            ),
            resolved: telemetry.counter(
                "otelwatch_incidents_resolved_total",
                "Incidents resolved (after resolve_after normal windows, merged, evicted or at shutdown).",
                labels(),
            ),
            merged: telemetry.counter(
                "otelwatch_incidents_merged_total",
                "Incidents merged into an older one that a new anomaly connected them to.",
                labels(),
            ),
            unlisted_series: telemetry.counter(
                "otelwatch_incidents_unlisted_series_total",
                "Series that joined an incident already listing the maximum (200); counted, not listed.",
                labels(),
            ),
            uncorroborated: telemetry.counter(
                "otelwatch_incidents_uncorroborated_total",
                "Groups of anomalies not paged: one series (or metrics alone) anomalous in one window, with nothing anomalous with it or before it; they start or feed a pending incident, announced when a second piece of evidence joins it.",
                labels(),
            ),
        }
    }

    /// Open incidents now (announced ones).
    pub fn open_incidents(&self) -> usize {
        self.open.iter().filter(|o| !o.pending).count()
    }

    pub fn graph(&self) -> &CallGraph {
        &self.graph
    }

    /// Processes the records of one window (all with the same `start_ns`).
    pub fn on_window(&mut self, records: &mut [WindowRecord], events: &mut Vec<IncidentEvent>) {
        let Some(first) = records.first() else {
            return;
        };
        let (start_ns, interval_ns) = (first.start_ns, first.interval_ns.max(1));
        let end_ns = start_ns + interval_ns;
        for r in records.iter() {
            if let Some(t) = &r.series.target {
                if r.features[feature::REQUEST_COUNT] > 0.0 {
                    self.graph.add(&r.series.service, t, start_ns);
                }
            }
        }
        self.graph
            .expire(start_ns.saturating_sub(self.cfg.graph_ttl.get().as_nanos() as u64));
        self.resolve_quiet(start_ns, events);

        let anomalous: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].alerts())
            .collect();
        if anomalous.is_empty() {
            self.rates.observe(records);
            return;
        }
        let groups = self.group(records, &anomalous);
        // Scored on this window's records alone: the incident integrates the windows (with a
        // decay), and a series' anomaly carried into later windows would be counted again and
        // set against records of another time.
        let rates = &self.rates;
        let (ranked, evidence) = rank::score_window(records, &self.graph, &|s| rates.surprisal(s));
        self.rates.observe(records);
        // A group's join may merge (remove) incidents: later groups find theirs by id.
        let groups: Vec<(Vec<usize>, Vec<Arc<str>>)> = groups
            .into_iter()
            .map(|(members, touched)| {
                let ids = touched
                    .into_iter()
                    .filter_map(|j| self.open.get(j).map(|o| o.incident.id.clone()))
                    .collect();
                (members, ids)
            })
            .collect();
        for (members, ids) in groups {
            let incidents: Vec<usize> = ids
                .iter()
                .filter_map(|id| self.open.iter().position(|o| o.incident.id == *id))
                .collect();
            let traced = members
                .iter()
                .any(|&i| records[i].series.signal != Signal::Metrics);
            let page = incidents.iter().any(|&j| !self.open[j].pending)
                || self.corroborated(records, &members, traced, &incidents, start_ns);
            let Some(slot) = self.join(records, &members, incidents, start_ns, page, events) else {
                // At `max_open` with only announced incidents open: a lone reading does not
                // close one of them early.
                self.uncorroborated.inc();
                continue;
            };
            let inc = &mut self.open[slot];
            inc.traced |= traced;
            let was_pending = inc.pending;
            if page {
                inc.pending = false;
                let id = inc.incident.id.clone();
                for &i in &members {
                    if let Some(a) = records[i].anomaly.as_mut() {
                        a.incident = Some(id.clone());
                    }
                }
            } else {
                self.uncorroborated.inc();
            }
            let before_top = inc.incident.top_cause().map(str::to_string);
            let before_severity = inc.incident.severity;
            // Suspects: the services of this group and their direct neighbours.
            let mut candidates: BTreeSet<Arc<str>> = BTreeSet::new();
            for n in inc.recent(start_ns) {
                candidates.insert(n.clone());
                candidates.extend(self.graph.callees(n).cloned());
            }
            // Older evidence fades (half-life of two windows), so the ranking follows what the
            // incident is now, and settles while it lasts.
            for e in inc.suspects.values_mut() {
                e.total *= DECAY;
            }
            for n in &candidates {
                if let Some(s) = ranked.get(n) {
                    if s.score > 0.0 {
                        let e = inc.suspects.entry(n.clone()).or_default();
                        e.total += s.score * evidence;
                        if s.score >= e.best * DECAY {
                            e.best = s.score;
                            e.reason = s.reason.clone();
                        }
                    }
                }
            }
            inc.weight = inc.weight * DECAY + evidence;
            inc.windows += 1;
            inc.last_start_ns = start_ns;
            inc.interval_ns = interval_ns;
            inc.incident.end_ns = end_ns;
            inc.incident.root_cause = inc.ranking(self.cfg.max_causes);
            inc.refresh_message();
            if inc.pending {
                continue;
            }
            let top = inc.incident.top_cause().map(str::to_string);
            let (action, notable) = if was_pending {
                self.opened.inc();
                (Action::Opened, true)
            } else {
                let worse = inc.incident.severity > before_severity;
                (Action::Updated, worse || top != before_top)
            };
            events.push(IncidentEvent {
                action,
                at_ns: end_ns,
                notable,
                incident: inc.incident.clone(),
            });
        }
    }

    /// Whether a group may open (announce) an incident: when it holds two pieces of evidence.
    /// One series anomalous in one window is one reading of one test, and each series is judged
    /// at a small false-alarm rate: over hundreds of series some reading is that rare in most
    /// windows, so a page should not ring for one. Two coincidences are much rarer than one:
    /// two series of the group anomalous together (a fault shows in a service and in its
    /// callers' view of it, or in its spans and its logs; metrics alone do not count, a
    /// service's metrics are many readings of one resource), or the group joining a pending
    /// incident of an earlier window (the fault persists, or spreads to a neighbour; a service's
    /// request-duration metric, exported after its spans, tells of the same slow requests a
    /// window later) — unless both are metrics alone, of different series. A group that is not
    /// corroborated starts (or feeds) a pending incident: counted, its records stay anomalies
    /// without an incident, and its evidence counts when a second piece makes it an incident
    /// (which then starts at its first window). With `corroborate: false` a group with a span or
    /// log record opens one at once (metrics alone still need to persist). `traced`: whether the
    /// group has a span or log record.
    fn corroborated(
        &self,
        records: &[WindowRecord],
        members: &[usize],
        traced: bool,
        touched: &[usize],
        start_ns: u64,
    ) -> bool {
        // An edge's network record and its record of spans are two views of the same calls
        // (one slow call makes both): one piece of evidence.
        let series: BTreeSet<SeriesKey> = members
            .iter()
            .map(|&i| match &*records[i].series {
                s if s.signal == Signal::Network => SeriesKey {
                    signal: Signal::Spans,
                    ..s.clone()
                },
                s => s.clone(),
            })
            .collect();
        if traced && (series.len() >= 2 || !self.cfg.corroborate) {
            return true;
        }
        touched.iter().any(|&j| {
            let o = &self.open[j];
            o.pending
                && o.last_start_ns < start_ns
                && (o.traced || traced || series.iter().any(|s| o.listed.contains(s)))
        })
    }

    /// Resolves incidents that have had `resolve_after` normal windows since their last
    /// anomalous one.
    fn resolve_quiet(&mut self, now_start_ns: u64, events: &mut Vec<IncidentEvent>) {
        let after = self.cfg.resolve_after as u64;
        let mut i = 0;
        while i < self.open.len() {
            let o = &self.open[i];
            let quiet = now_start_ns.saturating_sub(o.last_start_ns) / o.interval_ns.max(1);
            // `quiet - 1` windows have passed without it (the one starting now is not judged).
            if quiet > after {
                let o = self.open.remove(i);
                if !o.pending {
                    let at = o.last_start_ns + o.interval_ns * (after + 1);
                    events.push(self.resolve(o, at, None));
                }
            } else {
                i += 1;
            }
        }
    }

    fn resolve(&self, o: OpenIncident, at_ns: u64, note: Option<String>) -> IncidentEvent {
        self.resolved.inc();
        let mut incident = o.incident;
        incident.status = Status::Resolved;
        if let Some(n) = note {
            incident.message = format!("{} ({n})", incident.message);
        }
        IncidentEvent {
            action: Action::Resolved,
            at_ns,
            notable: true,
            incident,
        }
    }

    /// Connected groups of this window's anomalous records, each with the open incidents it
    /// touches (indices into `self.open`).
    fn group(
        &self,
        records: &[WindowRecord],
        anomalous: &[usize],
    ) -> Vec<(Vec<usize>, Vec<usize>)> {
        let n = anomalous.len();
        let m = self.open.len();
        // Union-find over records (0..n) and open incidents (n..n+m).
        let mut parent: Vec<usize> = (0..n + m).collect();
        fn find(p: &mut [usize], mut x: usize) -> usize {
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        let union = |p: &mut Vec<usize>, a: usize, b: usize| {
            let (ra, rb) = (find(p, a), find(p, b));
            if ra != rb {
                p[ra.max(rb)] = ra.min(rb);
            }
        };
        // Only what was anomalous within the resolve period counts for joining.
        let since = records.first().map_or(0, |r| {
            r.start_ns
                .saturating_sub(r.interval_ns * self.cfg.resolve_after as u64)
        });
        let node_sets: Vec<Vec<Arc<str>>> = anomalous
            .iter()
            .map(|&i| nodes(&records[i].series))
            .collect();
        for a in 0..n {
            for b in a + 1..n {
                let linked = node_sets[a]
                    .iter()
                    .any(|x| node_sets[b].iter().any(|y| self.graph.linked(x, y)));
                if linked {
                    union(&mut parent, a, b);
                }
            }
            for (j, o) in self.open.iter().enumerate() {
                if o.touches(&self.graph, &node_sets[a], since) {
                    union(&mut parent, a, n + j);
                }
            }
        }
        let mut groups: BTreeMap<usize, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
        for (a, &rec) in anomalous.iter().enumerate() {
            let r = find(&mut parent, a);
            groups.entry(r).or_default().0.push(rec);
        }
        for j in 0..m {
            let r = find(&mut parent, n + j);
            if let Some(g) = groups.get_mut(&r) {
                g.1.push(j);
            }
        }
        groups.into_values().collect()
    }

    /// Adds a group's records to the oldest incident it touches (merging the others into it),
    /// or opens a new one; returns its index in `self.open`. None when a new one would be
    /// pending (`page` false) and only announced incidents are open at `max_open`: a lone
    /// reading is not worth closing one of them early.
    fn join(
        &mut self,
        records: &[WindowRecord],
        members: &[usize],
        mut touched: Vec<usize>,
        start_ns: u64,
        page: bool,
        events: &mut Vec<IncidentEvent>,
    ) -> Option<usize> {
        let severity = members
            .iter()
            .filter_map(|&i| records[i].anomaly.as_ref().and_then(|a| a.severity))
            .max()
            .unwrap_or(Severity::Minor);
        // The oldest announced one is kept (a pending one is never what others merge into).
        touched.sort_by_key(|&j| {
            (
                self.open[j].pending,
                self.open[j].incident.start_ns,
                self.open[j].incident.id.clone(),
            )
        });
        let slot = match touched.first().copied() {
            Some(keep) => {
                // Merge the younger ones into the oldest, from the back so indices stay valid.
                let mut younger: Vec<usize> = touched[1..].to_vec();
                younger.sort_unstable_by(|a, b| b.cmp(a));
                let keep_id = self.open[keep].incident.id.clone();
                let mut keep = keep;
                for j in younger {
                    let o = self.open.remove(j);
                    if j < keep {
                        keep -= 1;
                    }
                    let target = &mut self.open[keep];
                    for (n, t) in &o.nodes {
                        let e = target.nodes.entry(n.clone()).or_insert(*t);
                        *e = (*e).max(*t);
                    }
                    for s in &o.incident.series {
                        if target.listed.insert(s.clone()) {
                            target.incident.series.push(s.clone());
                        }
                    }
                    for (n, s) in &o.suspects {
                        let e = target.suspects.entry(n.clone()).or_default();
                        e.total += s.total;
                        if s.best > e.best {
                            e.best = s.best;
                            e.reason = s.reason.clone();
                        }
                    }
                    target.windows += o.windows;
                    target.weight += o.weight;
                    target.traced |= o.traced;
                    target.incident.start_ns = target.incident.start_ns.min(o.incident.start_ns);
                    target.incident.severity = target.incident.severity.max(o.incident.severity);
                    // A pending one is not news: it just becomes part of the other.
                    if !o.pending {
                        self.merged.inc();
                        let at = start_ns;
                        events.push(self.resolve(o, at, Some(format!("merged into {keep_id}"))));
                    }
                }
                keep
            }
            None => {
                if self.open.len() >= self.cfg.max_open {
                    // Pending ones go first: they have paged no one.
                    let oldest = (0..self.open.len())
                        .min_by_key(|&j| (!self.open[j].pending, self.open[j].last_start_ns))
                        .unwrap_or(0);
                    if !page && self.open.get(oldest).is_some_and(|o| !o.pending) {
                        return None;
                    }
                    let o = self.open.remove(oldest);
                    if !o.pending {
                        let at = o.last_start_ns + o.interval_ns;
                        events.push(self.resolve(
                            o,
                            at,
                            Some(format!(
                                "closed early: more than {} open",
                                self.cfg.max_open
                            )),
                        ));
                    }
                }
                let first = members
                    .iter()
                    .map(|&i| &records[i].series)
                    .min()
                    .cloned()
                    .unwrap_or_else(|| records[members[0]].series.clone());
                self.open.push(OpenIncident {
                    incident: Incident {
                        id: incident_id(&first, start_ns),
                        status: Status::Open,
                        start_ns,
                        end_ns: start_ns,
                        severity,
                        series: Vec::new(),
                        root_cause: Vec::new(),
                        message: String::new(),
                    },
                    nodes: BTreeMap::new(),
                    listed: BTreeSet::new(),
                    suspects: BTreeMap::new(),
                    windows: 0,
                    weight: 0.0,
                    last_start_ns: start_ns,
                    interval_ns: records[members[0]].interval_ns.max(1),
                    pending: true,
                    traced: false,
                });
                self.open.len() - 1
            }
        };
        let inc = &mut self.open[slot];
        inc.incident.severity = inc.incident.severity.max(severity);
        for &i in members {
            let s = &records[i].series;
            for n in nodes(s) {
                inc.nodes.insert(n, start_ns);
            }
            if inc.listed.contains(s) {
                continue;
            }
            if inc.listed.len() >= MAX_SERIES {
                self.unlisted_series.inc();
                continue;
            }
            inc.listed.insert(s.clone());
            inc.incident.series.push(s.clone());
        }
        Some(slot)
    }

    /// Resolves every open incident (at shutdown: the windows that would resolve them will
    /// not come).
    pub fn resolve_all(&mut self, events: &mut Vec<IncidentEvent>) {
        for o in std::mem::take(&mut self.open) {
            if o.pending {
                continue;
            }
            let at = o.incident.end_ns;
            events.push(self.resolve(o, at, Some("otelwatch stopped".into())));
        }
    }
}

impl Processor for IncidentsProcessor {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        let Payload::Windows(records) = batch.payload else {
            out.push(batch);
            return;
        };
        let mut records = Arc::try_unwrap(records).unwrap_or_else(|a| (*a).clone());
        // The window processor sorts by window start; keep that order and go window by window.
        records.sort_by_key(|r| r.start_ns);
        let mut events = Vec::new();
        let mut from = 0;
        while from < records.len() {
            let start = records[from].start_ns;
            let to = from + records[from..].partition_point(|r| r.start_ns == start);
            self.on_window(&mut records[from..to], &mut events);
            from = to;
        }
        out.push(Batch {
            items: records.len(),
            payload: Payload::Windows(Arc::new(records)),
            encoded: None,
            held: Default::default(),
        });
        if !events.is_empty() {
            out.push(Batch {
                items: events.len(),
                payload: Payload::Incidents(Arc::new(events)),
                encoded: None,
                held: Default::default(),
            });
        }
    }

    fn on_shutdown(&mut self, out: &mut Vec<Batch>) {
        let mut events = Vec::new();
        self.resolve_all(&mut events);
        if !events.is_empty() {
            out.push(Batch {
                items: events.len(),
                payload: Payload::Incidents(Arc::new(events)),
                encoded: None,
                held: Default::default(),
            });
        }
    }
}
