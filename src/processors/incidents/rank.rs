//! Root-cause scores for one window: the share of the window's anomalous evidence that each
//! service explains.
//!
//! Every anomalous record is evidence, worth its anomaly score, and the evidence flows to the
//! service that best explains it:
//! - **Latency and errors flow down the call chain.** A slow service is slow because of itself
//!   or because of a slow call: its own evidence goes to its anomalous outgoing edges in
//!   proportion to how anomalous they are (as much as the most anomalous one is, in [0, 1]); the
//!   rest stays with it. An anomalous edge caller → callee is either the callee's doing (the
//!   callee is slow, or the network to it is: a network fault at a service shows only in its
//!   callers' view of it) or the caller's (a caller whose CPU is starved is slow in every call
//!   it makes). It is split by the share of the callee's callers that see it anomalous against
//!   the share of the caller's calls that are anomalous: "every caller sees it" points at the
//!   callee, "every call it makes is slow" at the caller. The callee's part goes on through the
//!   callee's own evidence if its own spans are anomalous, as far as they explain the call (by
//!   milliseconds), and stays with it if not: what the caller waited beyond the callee's own
//!   spans was spent on the network between them. Milliseconds are compared on one statistic
//!   (a caller's mean against its call's mean, not its p99 against the call's mean): of the
//!   statistics both records flag, the one the explained record rose most in.
//! - **Traffic changes flow up.** A service receives less because its caller sends less: the
//!   evidence of a change of request count or throughput goes to the callers that changed too
//!   (in proportion, as above), the rest stays. Where latency or errors are anomalous in the
//!   window too, a fall of traffic counts at half: a caller that waits sends less, so then a
//!   fall is more often effect than cause. A rise counts in full: waiting makes none (a
//!   service that calls its callees more often than usual has changed what it does).
//!
//! - **Time between two services is theirs.** A network record (a caller → callee edge's calls
//!   joined with the spans that served them) that says its calls took longer beyond the
//!   callee's own spans points at the network of one of the two (or the callee's accept queue,
//!   the caller's connection pool). A delay at a service's network shows in every call to and
//!   from it: the evidence is split between the two by the share of each one's network records
//!   that are anomalous, evenly leaning to the callee.
//!
//! Many records can say the same thing: every caller of a slow service sees it slow, every call
//! of a starved one is slow, and its CPU and memory rise together. They are views of one fact,
//! not independent evidence, so the evidence that reaches a service is pooled by the way it
//! came (its own spans, its own logs, its callers' view of it, its own calls, its metrics, a
//! change of traffic): each way counts with its strongest record, and the ways add up. Summed
//! per record, a service with many callers collected evidence in proportion to their number,
//! and outranked a fault seen once but plainly.
//!
//! A service's score is the evidence that ends with it over all the window's evidence, in
//! [0, 1]: the ranking does not depend on how many series a fault touches, only on where their
//! anomalies point.

use super::CallGraph;
use crate::model::window::{
    feature, log_feature, Missing, SeriesKey, Signal, WindowRecord, FEATURE_NAMES,
    LOG_FEATURE_NAMES, NETWORK_FEATURE_NAMES,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One service's score in one window, with the evidence in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub score: f64,
    pub reason: String,
}

/// Which way a feature's anomaly points. A service's error logs are its own evidence, as its
/// failing requests are, and so is a usual line its requests stopped writing (a code path
/// broken; `template_count` flagged by the shortfall test); fewer or more log records follow
/// its traffic.
fn is_up(name: &str) -> bool {
    name.starts_with("latency_")
        || is_network(name)
        || name == FEATURE_NAMES[feature::ERROR_RATE]
        || name == LOG_FEATURE_NAMES[log_feature::ERROR_RATE]
        || name == LOG_FEATURE_NAMES[log_feature::NEW_ERROR_TEMPLATES]
        || name == LOG_FEATURE_NAMES[log_feature::TOP_ERROR_TEMPLATE]
        || name == LOG_FEATURE_NAMES[log_feature::TEMPLATES]
}

/// A network record's time between the two services, or its calls failing where the spans
/// that served them did not.
fn is_network(name: &str) -> bool {
    name.starts_with("network_")
        || name == NETWORK_FEATURE_NAMES[feature::ERROR_RATE]
        || name == NETWORK_FEATURE_NAMES[feature::CLIENT_ERROR_RATE]
}

/// The usual template a log record's traces wrote too seldom, if that is among its causes.
fn missing(r: &WindowRecord) -> Option<(&crate::model::window::TemplateCount, Missing)> {
    r.templates.iter().find_map(|t| Some((t, t.missing?)))
}

/// A metric of the service (its CPU, memory, runtime; its request durations when it has no
/// traces): its own evidence,
/// which stays with it (a service's resources are not its calls').
fn is_metric(name: &str) -> bool {
    name.starts_with("metric_")
}

fn is_down(name: &str) -> bool {
    name == FEATURE_NAMES[feature::REQUEST_COUNT]
        || name == FEATURE_NAMES[feature::THROUGHPUT_CHANGE]
        || name == FEATURE_NAMES[feature::CLIENT_ERROR_RATE]
        || name == LOG_FEATURE_NAMES[log_feature::LOG_COUNT]
        || name == LOG_FEATURE_NAMES[log_feature::LOG_COUNT_CHANGE]
}

/// The strength of a record's anomaly in one direction (its score when a cause of that kind is
/// among its contributions), and the contribution that shows it best.
fn strength(
    r: &WindowRecord,
    dir: fn(&str) -> bool,
) -> Option<(f64, &crate::model::window::Contribution)> {
    let a = r.anomaly.as_ref().filter(|a| a.is_anomaly && !a.expected)?;
    let c = a.contributions.iter().find(|c| dir(c.feature))?;
    Some((a.score.clamp(0.0, 1.0), c))
}

fn ratio_text(actual: f64, typical: f64) -> String {
    if typical > 0.0 && actual / typical >= 1.5 {
        format!("{:.1}× typical", actual / typical)
    } else if typical > 0.0 && actual / typical <= 0.67 {
        format!("{:.0}% of typical", 100.0 * actual / typical)
    } else {
        format!("{actual:.3} (typical {typical:.3})")
    }
}

#[derive(Default)]
struct Node<'a> {
    own_up: Option<(f64, &'a WindowRecord)>,
    own_down: Option<(f64, &'a WindowRecord)>,
    /// Active edges from callers (records whose target is this service).
    in_edges: Vec<&'a WindowRecord>,
    /// Active edges to callees.
    out_edges: Vec<&'a WindowRecord>,
    /// Its most anomalous metric.
    metric: Option<(f64, &'a WindowRecord)>,
    /// Active network records of its calls and of the calls to it.
    net: Vec<&'a WindowRecord>,
}

fn best<'a>(
    slot: &mut Option<(f64, &'a WindowRecord)>,
    r: &'a WindowRecord,
    dir: fn(&str) -> bool,
) {
    if let Some((s, _)) = strength(r, dir) {
        if slot.is_none_or(|(b, _)| s > b) {
            *slot = Some((s, r));
        }
    }
}

/// Whether a record's change of traffic is a rise of its requests or log lines (not of its
/// client errors: a 408 or 429 is often what a slowdown makes).
fn rises(r: &WindowRecord) -> bool {
    strength(r, is_down).is_some_and(|(_, c)| {
        c.feature != FEATURE_NAMES[feature::CLIENT_ERROR_RATE] && c.actual > c.typical
    })
}

fn up(r: &WindowRecord) -> f64 {
    strength(r, is_up).map(|s| s.0).unwrap_or(0.0)
}

/// The callee's part of an anomalous call's evidence, from how anomalous the caller's calls
/// are (`sa`) and the callee's callers' view of it (`sb`). Even evidence leans to the callee:
/// with one caller and one call, a slow call is more often the callee's (or its network's)
/// than the caller's.
fn callee_part(sa: f64, sb: f64) -> f64 {
    if sa + sb > 0.0 {
        (sb / (sa + sb)).max(if sb >= sa { 0.5 + 1e-3 } else { 0.0 })
    } else {
        1.0
    }
}

/// How deep evidence flows along the call graph (a guard against cycles).
const MAX_DEPTH: usize = 12;

/// Where one window's evidence ends.
struct Flow<'a, 'g> {
    nodes: &'g BTreeMap<Arc<str>, Node<'a>>,
    graph: &'g CallGraph,
    up: Pooled,
    down: Pooled,
    /// The record whose evidence is flowing, and the way its part that stays with a service's
    /// own records reaches it (`Own`, or `OwnLogs` for a log record).
    origin: usize,
    own: Via,
}

/// How evidence reaches a service: the views of it whose records are pooled.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Via {
    /// Its own spans (and what its callers waited on them).
    Own,
    /// Its own log records.
    OwnLogs,
    /// Its callers' view of it: their calls to it.
    Callee,
    /// Its calls: slow in every call it makes.
    Caller,
    /// Its metrics.
    Metric,
    /// A change of traffic it started.
    Traffic,
    /// The time between it and the services it calls or is called by.
    Network,
}

/// Evidence that ends with each service, kept apart per way it came and record it came from.
#[derive(Default)]
struct Pooled(BTreeMap<Arc<str>, BTreeMap<(Via, usize), f64>>);

impl Pooled {
    fn add(&mut self, n: Arc<str>, via: Via, origin: usize, m: f64) {
        *self
            .0
            .entry(n)
            .or_default()
            .entry((via, origin))
            .or_default() += m;
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A service's evidence: the strongest record of each way it came, summed over the ways.
    fn mass(&self, n: &str) -> f64 {
        let Some(parts) = self.0.get(n) else {
            return 0.0;
        };
        let mut by: BTreeMap<Via, f64> = BTreeMap::new();
        for ((via, _), m) in parts {
            let e = by.entry(*via).or_default();
            *e = e.max(*m);
        }
        by.values().sum()
    }

    /// The strongest record of one way evidence reached `n`, and of the other ways together.
    fn way(&self, n: &str, via: Via) -> (f64, f64) {
        let Some(parts) = self.0.get(n) else {
            return (0.0, 0.0);
        };
        let mut by: BTreeMap<Via, f64> = BTreeMap::new();
        for ((v, _), m) in parts {
            let e = by.entry(*v).or_default();
            *e = e.max(*m);
        }
        let this = by.remove(&via).unwrap_or(0.0);
        (this, by.values().sum())
    }

    fn names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.keys()
    }
}

impl Flow<'_, '_> {
    /// The mean anomaly of a service's active incoming (or outgoing) edges.
    fn share(&self, n: &str, incoming: bool) -> f64 {
        let Some(x) = self.nodes.get(n) else {
            return 0.0;
        };
        let edges = if incoming { &x.in_edges } else { &x.out_edges };
        if edges.is_empty() {
            return 0.0;
        }
        edges.iter().map(|r| up(r)).sum::<f64>() / edges.len() as f64
    }

    /// The mean anomaly of a service's active network records: of the calls to it
    /// (`incoming`), or of its calls.
    fn net_share(&self, n: &str, incoming: bool) -> f64 {
        let Some(x) = self.nodes.get(n) else {
            return 0.0;
        };
        let (sum, count) = x
            .net
            .iter()
            .filter(|r| match incoming {
                true => r.series.target.as_deref() == Some(n),
                false => *r.series.service == *n,
            })
            .fold((0.0, 0usize), |(s, c), r| (s + up(r), c + 1));
        if count == 0 {
            0.0
        } else {
            sum / count as f64
        }
    }

    /// Evidence `m` of an anomalous network record: split between its two services as a slow
    /// call is. Every caller waiting beyond the callee's spans points at the callee's side
    /// (its network, its accept queue); every call of the caller doing so, at the caller's (its
    /// network, its connection pool). Evenly, it leans to the callee.
    fn network(&mut self, r: &WindowRecord, m: f64) {
        let Some(callee) = r.series.target.clone() else {
            return;
        };
        let caller = r.series.service.clone();
        let (sa, sb) = (
            self.net_share(&caller, false),
            self.net_share(&callee, true),
        );
        let wb = callee_part(sa, sb);
        self.up
            .add(caller, Via::Network, self.origin, m * (1.0 - wb));
        self.up.add(callee, Via::Network, self.origin, m * wb);
    }

    /// How much of `n`'s own anomaly its anomalous calls explain, in [0, 1]: by milliseconds
    /// when both are latencies (a call that got 1 s slower explains a service that got 1 s
    /// slower, not one that got 5 s slower), else by the most anomalous call's score.
    fn explained(&self, n: &str, slow: &[(&WindowRecord, f64)]) -> f64 {
        let by_score = slow.iter().map(|(_, e)| *e).fold(0.0f64, f64::max).min(1.0);
        let Some((_, own)) = self.nodes.get(n).and_then(|x| x.own_up) else {
            return by_score;
        };
        slow.iter()
            .filter_map(|(r, _)| latency_shifts(own, r))
            .filter(|(o, _)| *o > 0.0)
            .map(|(o, c)| (c / o).clamp(0.0, 1.0))
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
            .unwrap_or(by_score)
    }

    /// The caller's part in its slow calls: the share of its own slowness that they do not
    /// explain (a starved caller is slower than its calls); without its own evidence, half.
    fn unexplained(&self, n: &str) -> f64 {
        let Some(x) = self.nodes.get(n) else {
            return 1.0;
        };
        if x.own_up.is_none() {
            return 0.5;
        }
        let slow: Vec<(&WindowRecord, f64)> = x
            .out_edges
            .iter()
            .map(|r| (*r, up(r)))
            .filter(|(_, e)| *e > 0.0)
            .collect();
        1.0 - self.explained(n, &slow)
    }

    /// Latency or error evidence `m` that arrives at `n`'s own spans. Its anomalous calls
    /// explain it, and so does the time its calls spent between it and their callees (its
    /// network records).
    fn settle(&mut self, n: &Arc<str>, m: f64, depth: usize) {
        let slow: Vec<(&WindowRecord, f64)> = match self.nodes.get(n) {
            Some(x) if depth < MAX_DEPTH => x
                .out_edges
                .iter()
                .chain(x.net.iter().filter(|r| r.series.service == *n))
                .filter(|r| r.series.target.as_deref() != Some(&**n))
                .map(|r| (*r, up(r)))
                .filter(|(_, e)| *e > 0.0)
                .collect(),
            _ => Vec::new(),
        };
        let d = self.explained(n, &slow);
        self.up.add(n.clone(), self.own, self.origin, m * (1.0 - d));
        let sum: f64 = slow.iter().map(|(_, e)| e).sum();
        for (r, e) in slow {
            if r.series.signal == Signal::Network {
                self.network(r, m * d * e / sum);
            } else {
                self.edge(r, m * d * e / sum, depth + 1);
            }
        }
    }

    /// Evidence `m` of an anomalous edge: split between its callee and its caller.
    fn edge(&mut self, r: &WindowRecord, m: f64, depth: usize) {
        let Some(callee) = r.series.target.clone() else {
            return;
        };
        let caller = r.series.service.clone();
        let sb = self.share(&callee, true);
        let sa = self.share(&caller, false) * self.unexplained(&caller);
        let wb = callee_part(sa, sb);
        self.up
            .add(caller, Via::Caller, self.origin, m * (1.0 - wb));
        let callee_own = self
            .nodes
            .get(&callee)
            .and_then(|x| x.own_up)
            .filter(|x| x.0 > 0.0);
        match callee_own {
            Some((_, own)) => {
                // The callee's own spans explain the call by as many milliseconds as they got
                // slower; what the caller waited beyond that was spent between the two (a delay
                // on the callee's network shows only in its callers' view), and stays with the
                // callee instead of flowing on to its calls.
                let through = match latency_shifts(r, own) {
                    Some((c, o)) if c > 0.0 => (o / c).clamp(0.0, 1.0),
                    _ => 1.0,
                };
                self.up.add(
                    callee.clone(),
                    Via::Callee,
                    self.origin,
                    m * wb * (1.0 - through),
                );
                self.settle(&callee, m * wb * through, depth);
            }
            None => self.up.add(callee, Via::Callee, self.origin, m * wb),
        }
    }

    /// Traffic evidence `m` at `n`: goes to the callers whose traffic changed too.
    fn climb(&mut self, n: &Arc<str>, m: f64, depth: usize) {
        let changed: Vec<(Arc<str>, f64)> = if depth < MAX_DEPTH {
            self.graph
                .callers(n)
                .filter(|c| ***c != **n)
                .filter_map(|c| {
                    let s = self.nodes.get(c).and_then(|x| x.own_down)?.0;
                    (s > 0.0).then(|| (c.clone(), s))
                })
                .collect()
        } else {
            Vec::new()
        };
        let u = changed
            .iter()
            .map(|(_, s)| *s)
            .fold(0.0f64, f64::max)
            .min(1.0);
        self.down
            .add(n.clone(), Via::Traffic, self.origin, m * (1.0 - u));
        let sum: f64 = changed.iter().map(|(_, s)| s).sum();
        for (c, s) in changed {
            self.climb(&c, m * u * s / sum, depth + 1);
        }
    }
}

/// A record's latency statistics that are among its anomaly's causes, with how many
/// milliseconds slower than typical each is (the spread left out: it is no delay). Empty when
/// its anomaly is not one of latency.
fn latency_rises(r: &WindowRecord) -> Vec<(&'static str, f64)> {
    if strength(r, is_up).is_none() {
        return Vec::new();
    }
    r.anomaly
        .as_ref()
        .map(|a| {
            a.contributions
                .iter()
                .filter_map(|c| {
                    let stat = statistic(c.feature)?;
                    (stat != "stddev_ms").then(|| (stat, (c.actual - c.typical).max(0.0)))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The statistic a latency or network time feature is (`mean_ms` of `latency_mean_ms` and of
/// `network_mean_ms`): a call's time between two services is set against a caller's latency
/// on the same statistic.
fn statistic(feature: &'static str) -> Option<&'static str> {
    feature
        .strip_prefix("latency_")
        .or_else(|| feature.strip_prefix("network_"))
}

/// How many milliseconds slower `a` and `b` are than typical, measured on the same statistic:
/// of the latency statistics both records name as causes, the one `a` rose most in. A caller's
/// mean is set against its call's mean, not its p99 (a few slow requests) against the call's
/// mean (all of them), nor its mean against a p99. Without a statistic in common that `a`
/// rose in, each record's largest rise. None unless both are anomalies of latency.
fn latency_shifts(a: &WindowRecord, b: &WindowRecord) -> Option<(f64, f64)> {
    let (ra, rb) = (latency_rises(a), latency_rises(b));
    let largest = |v: &[(&str, f64)]| v.iter().map(|x| x.1).reduce(f64::max);
    let common = ra
        .iter()
        .filter(|(_, d)| *d > 0.0)
        .filter_map(|(f, d)| Some((*d, rb.iter().find(|x| x.0 == *f)?.1)))
        .reduce(|m, x| if x.0 > m.0 { x } else { m });
    if common.is_some() {
        return common;
    }
    Some((largest(&ra)?, largest(&rb)?))
}

/// How far a record's up anomaly is from typical: the log ratio of its most anomalous latency
/// or error feature (a hundredfold latency is stronger evidence than a doubled one, whatever
/// the detector's score). Latencies are offset by 1 ms and rates by 0.01 so that a zero
/// typical value does not make the ratio infinite.
fn magnitude(r: &WindowRecord) -> f64 {
    let Some((_, c)) = strength(r, is_up) else {
        return 0.0;
    };
    if c.feature == LOG_FEATURE_NAMES[log_feature::TEMPLATES] {
        // A usual line too seldom written: the ratio of the traces that would have written it
        // to those that did (one added to both).
        return missing(r)
            .map(|(_, m)| ((m.expected + 1.0) / (m.traces as f64 + 1.0)).ln().max(0.1))
            .unwrap_or(0.1);
    }
    let eps = if c.feature.starts_with("latency_") || c.feature.starts_with("network_") {
        1.0
    } else {
        0.01
    };
    ((c.actual.max(0.0) + eps) / (c.typical.max(0.0) + eps))
        .ln()
        .max(0.1)
}

/// What a metric anomaly says against its service: its score × the log ratio of actual to
/// typical of its strongest feature (a twentieth of the larger of the two added to both, so a
/// metric near zero does not make the ratio infinite). A fall counts at a quarter: less CPU,
/// memory or traffic at a service is more often the consequence of less work reaching it than
/// a cause.
fn metric_evidence(r: &WindowRecord, traced: &BTreeSet<Arc<str>>) -> f64 {
    if !speaks_for_itself(r, traced) {
        return 0.0;
    }
    let Some((s, c)) = strength(r, is_metric) else {
        return 0.0;
    };
    let eps = 0.05 * c.actual.abs().max(c.typical.abs()) + 1e-12;
    let ratio = ((c.actual + eps) / (c.typical + eps)).abs().max(1e-12).ln();
    let fall = if ratio < 0.0 { 0.25 } else { 1.0 };
    s * ratio.abs().max(0.1) * fall
}

/// A metric of the service's calls (`http.client.request.duration`, `rpc.client.duration`,
/// `db.client.operation.duration`: `client` in its name, as the semantic conventions name
/// them) says how its callees answer, as its edges do: not evidence against the service.
fn measures_calls(metric: &str) -> bool {
    metric.split(['.', '_']).any(|part| part == "client")
}

/// A metric of the requests the service serves (`http.server.request.duration`,
/// `rpc.server.duration`, `http.server.active_requests`: `server` in its name) measures what
/// its server spans measure, waiting on its callees included.
fn measures_served(metric: &str) -> bool {
    metric.split(['.', '_']).any(|part| part == "server")
}

/// Whether a metric record is evidence of its service's own: not a measure of its calls, and
/// not a measure of the requests it serves when its spans are in the window too. Those spans
/// already say how slow it was, and where the time went (its calls): a duration histogram
/// read at export time, often a window after the request, would put a callee's slowness on
/// the caller. A service without traces keeps its request metrics as its evidence.
fn speaks_for_itself(r: &WindowRecord, traced: &BTreeSet<Arc<str>>) -> bool {
    match r.series.metric_name() {
        Some(m) if measures_calls(m) => false,
        Some(m) if measures_served(m) => !traced.contains(&r.series.service),
        _ => true,
    }
}

/// The services whose own spans are in the window's records (traffic traced this window).
fn traced(records: &[WindowRecord]) -> BTreeSet<Arc<str>> {
    records
        .iter()
        .filter(|r| {
            r.series.signal == Signal::Spans
                && r.series.target.is_none()
                && r.features[feature::REQUEST_COUNT] > 0.0
        })
        .map(|r| r.series.service.clone())
        .collect()
}

/// Scores every service the window's records speak of, and the window's evidence in all (what
/// the scores are shares of; an incident weighs the window's scores by it).
///
/// `weight` is how much an anomaly of a series counts as evidence (see `rates`).
pub fn score_window(
    records: &[WindowRecord],
    graph: &CallGraph,
    weight: &dyn Fn(&SeriesKey) -> f64,
) -> (BTreeMap<Arc<str>, Scored>, f64) {
    let traced = traced(records);
    let nodes = nodes_of(records, &traced);
    let mut flow = Flow {
        nodes: &nodes,
        graph,
        up: Pooled::default(),
        down: Pooled::default(),
        origin: 0,
        own: Via::Own,
    };
    for (i, r) in records.iter().enumerate() {
        flow.origin = i;
        flow.own = if r.series.signal == Signal::Logs {
            Via::OwnLogs
        } else {
            Via::Own
        };
        if r.series.signal == Signal::Metrics {
            let e = metric_evidence(r, &traced) * weight(&r.series);
            if e > 0.0 {
                flow.up.add(r.series.service.clone(), Via::Metric, i, e);
            }
            continue;
        }
        let e = up(r) * magnitude(r) * weight(&r.series);
        if e <= 0.0 {
            continue;
        }
        if r.series.signal == Signal::Network {
            flow.network(r, e);
        } else if r.series.target.is_some() {
            flow.edge(r, e, 0);
        } else {
            flow.settle(&r.series.service, e, 0);
        }
    }
    // Where latency or errors are anomalous too, a fall of traffic is more often their
    // consequence (callers that wait send less) than a cause: it counts at half. A rise is no
    // effect of waiting, and counts in full.
    let down_weight = if flow.up.is_empty() { 1.0 } else { 0.5 };
    // Each source of traffic evidence is an origin of its own (numbered after the records).
    let sources: Vec<(Arc<str>, usize, f64)> = nodes
        .iter()
        .enumerate()
        .filter_map(|(k, (n, x))| {
            x.own_down.map(|(s, r)| {
                let w = if rises(r) { 1.0 } else { down_weight };
                (n.clone(), records.len() + k, w * s * weight(&r.series))
            })
        })
        .collect();
    for (n, i, s) in sources {
        flow.origin = i;
        flow.climb(&n, s, 0);
    }
    let names: BTreeSet<&Arc<str>> = flow.up.names().chain(flow.down.names()).collect();
    let masses: BTreeMap<&Arc<str>, (f64, f64)> = names
        .into_iter()
        .map(|n| (n, (flow.up.mass(n), flow.down.mass(n))))
        .collect();
    let total: f64 = masses.values().map(|(u, d)| u + d).sum();
    if total <= 0.0 {
        return (BTreeMap::new(), 0.0);
    }
    let mut out = BTreeMap::new();
    for (name, n) in &nodes {
        let (up_mass, down_mass) = masses.get(name).copied().unwrap_or((0.0, 0.0));
        let score = (up_mass + down_mass) / total;
        if score > 1e-9 {
            let reason = reason(name, n, &flow, up_mass >= down_mass);
            out.insert(name.clone(), Scored { score, reason });
        }
    }
    (out, total)
}

/// Each service's own record and the edges it calls and is called on, in this window.
fn nodes_of<'a>(
    records: &'a [WindowRecord],
    traced: &BTreeSet<Arc<str>>,
) -> BTreeMap<Arc<str>, Node<'a>> {
    let mut nodes: BTreeMap<Arc<str>, Node<'_>> = BTreeMap::new();
    for r in records {
        if r.series.signal == Signal::Metrics {
            if speaks_for_itself(r, traced) {
                best(
                    &mut nodes.entry(r.series.service.clone()).or_default().metric,
                    r,
                    is_metric,
                );
            }
            continue;
        }
        let active = r.features[feature::REQUEST_COUNT] > 0.0 || r.is_anomaly();
        if r.series.signal == Signal::Network {
            if let (Some(t), true) = (&r.series.target, active) {
                nodes.entry(t.clone()).or_default().net.push(r);
                nodes
                    .entry(r.series.service.clone())
                    .or_default()
                    .net
                    .push(r);
            }
            continue;
        }
        match &r.series.target {
            Some(t) => {
                if !active {
                    continue;
                }
                nodes.entry(t.clone()).or_default().in_edges.push(r);
                let caller = nodes.entry(r.series.service.clone()).or_default();
                caller.out_edges.push(r);
                // Sending less (or more) is the caller's doing.
                best(&mut caller.own_down, r, is_down);
            }
            None => {
                let n = nodes.entry(r.series.service.clone()).or_default();
                best(&mut n.own_up, r, is_up);
                best(&mut n.own_down, r, is_down);
            }
        }
    }
    nodes
}

/// Why a service is ranked where it is: by the latency/error evidence it kept (`by_up`), or
/// by the change of traffic it started.
fn reason(name: &Arc<str>, n: &Node<'_>, flow: &Flow<'_, '_>, by_up: bool) -> String {
    let (net, other) = flow.up.way(name, Via::Network);
    let base = match network_reason(name, n) {
        Some(r) if by_up && net >= other => r,
        _ => span_reason(name, n, flow, by_up),
    };
    let Some(metric) = n
        .metric
        .and_then(|(_, r)| strength(r, is_metric).map(|(_, c)| (r, c)))
        .map(|(r, c)| {
            format!(
                "{} {} {}",
                r.series.metric_name().unwrap_or("a metric"),
                c.feature,
                ratio_text(c.actual, c.typical)
            )
        })
    else {
        return base;
    };
    // Nothing but its metrics speaks against it: they are the reason.
    if by_up && n.own_up.is_none() && flow.share(name, true) == 0.0 {
        let downstream = n.out_edges.iter().filter(|r| up(r) > 0.0).count();
        let tail = if downstream == 0 {
            " while its own calls downstream are normal"
        } else {
            ""
        };
        return format!("{name}: {metric}{tail}");
    }
    format!("{base}; {metric}")
}

/// Why a service is suspected of a delay (or failures) between it and its peers: how many of
/// its callers wait beyond its own spans, and how many of its calls beyond the spans that
/// serve them; the record farthest from typical in words.
fn network_reason(name: &str, n: &Node<'_>) -> Option<String> {
    let (_, worst, c) = n
        .net
        .iter()
        .filter_map(|r| strength(r, is_up).map(|(_, c)| (magnitude(r), *r, c)))
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    let count = |incoming: bool| {
        let mine = n.net.iter().filter(|r| match incoming {
            true => r.series.target.as_deref() == Some(name),
            false => *r.series.service == *name,
        });
        let all = mine.clone().count();
        (mine.filter(|r| up(r) > 0.0).count(), all)
    };
    let callers = match count(true) {
        (0, _) => None,
        (_, 1) => Some("its caller waits beyond its own spans".to_string()),
        (k, m) if k == m => Some(format!("all {m} callers wait beyond its own spans")),
        (1, m) => Some(format!("1 of {m} callers waits beyond its own spans")),
        (k, m) => Some(format!("{k} of {m} callers wait beyond its own spans")),
    };
    let calls = match count(false) {
        (0, _) => None,
        (_, 1) => Some("its one call waits beyond the span that serves it".to_string()),
        (k, m) if k == m => Some(format!(
            "all {m} of its calls wait beyond the spans that serve them"
        )),
        (1, m) => Some(format!(
            "1 of its {m} calls waits beyond the spans that serve it"
        )),
        (k, m) => Some(format!(
            "{k} of its {m} calls wait beyond the spans that serve them"
        )),
    };
    let what: Vec<String> = callers.into_iter().chain(calls).collect();
    Some(format!(
        "{name}: {} ({} → {} {} {})",
        what.join(", and "),
        worst.series.service,
        worst.series.target.as_deref().unwrap_or("?"),
        c.feature,
        ratio_text(c.actual, c.typical)
    ))
}

fn span_reason(name: &Arc<str>, n: &Node<'_>, flow: &Flow<'_, '_>, by_up: bool) -> String {
    let nodes = flow.nodes;
    if by_up {
        let own = n.own_up.map(|x| x.0).unwrap_or(0.0);
        let share = flow.share(name, true);
        // The services its anomalous calls go to that are anomalous themselves, the most
        // anomalous call first.
        let mut calls: Vec<(f64, &str)> = n
            .out_edges
            .iter()
            .filter(|r| up(r) > 0.0)
            .filter_map(|r| Some((up(r), r.series.target.as_deref()?)))
            .filter(|(_, t)| nodes.get(*t).is_some_and(|x| x.own_up.is_some()))
            .collect();
        calls.sort_by(|a, b| b.0.total_cmp(&a.0));
        let anomalous: Vec<&str> = calls.into_iter().map(|(_, t)| t).collect();
        up_reason(name, n, own, share, n.in_edges.len(), &anomalous)
    } else {
        let upstream = flow
            .graph
            .callers(name)
            .filter_map(|c| nodes.get(c).and_then(|x| x.own_down).map(|x| x.0))
            .fold(0.0f64, f64::max);
        let no_callers = flow.graph.callers(name).next().is_none();
        down_reason(name, n, upstream, no_callers)
    }
}

/// A record's up anomaly in words: `latency_p95_ms 12.0× typical`, with the error template its
/// logs repeat when it has one.
fn up_text(r: &WindowRecord) -> Option<String> {
    let (_, c) = strength(r, is_up)?;
    if c.feature == LOG_FEATURE_NAMES[log_feature::TEMPLATES] {
        if let Some((t, m)) = missing(r) {
            return Some(format!(
                "usual log line `{}` written by {} of {} traces (typically {:.1})",
                t.template, m.traces, m.of, m.expected
            ));
        }
    }
    let mut d = format!("{} {}", c.feature, ratio_text(c.actual, c.typical));
    if let Some(t) = r
        .templates
        .iter()
        .find(|t| t.level == crate::model::window::LogLevel::Error)
    {
        d.push_str(&format!(" (`{}` ×{})", t.template, t.count));
    }
    Some(d)
}

/// Why a service is suspected of latency or errors: its callers' view of it or its own
/// records (whichever says more), and what its anomalous calls downstream say. `anomalous` are
/// the services its anomalous calls go to that are anomalous themselves.
fn up_reason(
    name: &str,
    n: &Node<'_>,
    own: f64,
    share: f64,
    callers: usize,
    anomalous: &[&str],
) -> String {
    let bad_calls: Vec<&&WindowRecord> = n.out_edges.iter().filter(|r| up(r) > 0.0).collect();
    let k = bad_calls.len();
    let calls = match (k, n.out_edges.len()) {
        (_, 1) => "its one call downstream is anomalous".to_string(),
        (2, 2) => "both its calls downstream are anomalous".to_string(),
        (k, m) if k == m => format!("all {m} of its calls downstream are anomalous"),
        (1, m) => format!("1 of its {m} calls downstream is anomalous"),
        (k, m) => format!("{k} of its {m} calls downstream are anomalous"),
    };
    // What its anomalous calls say: their callees are anomalous too, or they are not (the time
    // went in between, or into the service).
    let callees = match anomalous {
        [] => None,
        [one] => Some(format!("{one} downstream is anomalous too")),
        [first, rest @ ..] => Some(format!(
            "{first} and {} more downstream are anomalous too",
            rest.len()
        )),
    };
    let not_them = if k == 1 {
        " while that service is not"
    } else {
        " while those services are not"
    };
    // After `calls` and a detail of the worst call.
    let after_calls = callees
        .as_ref()
        .map_or_else(|| not_them.to_string(), |c| format!("; {c}"));
    // Without their count when a callee is anomalous too: that callee is the point.
    let downstream = callees.unwrap_or_else(|| format!("{calls}{not_them}"));
    let own_text = n.own_up.and_then(|(_, r)| up_text(r));
    if share >= own && share > 0.0 {
        let slow: Vec<&&WindowRecord> = n.in_edges.iter().filter(|r| up(r) > 0.0).collect();
        let worst = slow
            .iter()
            .filter_map(|r| strength(r, is_up).map(|(s, c)| (s, *r, c)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let who = match (slow.len(), callers) {
            (_, 1) => "its caller sees".to_string(),
            (2, 2) => "both its callers see".to_string(),
            (k, m) if k == m => format!("all {m} callers see"),
            (1, m) => format!("1 of {m} callers sees"),
            (k, m) => format!("{k} of {m} callers see"),
        };
        let detail = worst
            .map(|(_, r, c)| {
                format!(
                    " ({} → {name} {} {})",
                    r.series.service,
                    c.feature,
                    ratio_text(c.actual, c.typical)
                )
            })
            .unwrap_or_default();
        let own_note = match own_text.filter(|_| own > 0.0) {
            Some(t) => format!(", and its own {t}"),
            None => String::new(),
        };
        let tail = match (k, own == 0.0) {
            (0, true) => " while its own spans and its calls downstream are normal".to_string(),
            (0, false) => " while its own calls downstream are normal".to_string(),
            (_, true) => format!(", its own spans are normal; {downstream}"),
            (_, false) => format!("; {downstream}"),
        };
        return format!("{name}: {who} it anomalous{detail}{own_note}{tail}");
    }
    match own_text {
        Some(t) if k == 0 => format!("{name}: {t} while its own calls downstream are normal"),
        Some(t) => format!("{name}: {t}; {downstream}"),
        None if k == 0 => format!("{name}: anomalous"),
        // Only its calls speak against it: they are the reason, the one farthest from typical
        // in words.
        None => {
            let worst = bad_calls
                .iter()
                .filter_map(|r| strength(r, is_up).map(|(_, c)| (magnitude(r), *r, c)))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, r, c)| {
                    let to = r.series.target.as_deref().unwrap_or("?");
                    format!(
                        " ({name} → {to} {} {})",
                        c.feature,
                        ratio_text(c.actual, c.typical)
                    )
                })
                .unwrap_or_default();
            format!("{name}: {calls}{worst}{after_calls}")
        }
    }
}

fn down_reason(name: &str, n: &Node<'_>, upstream: f64, entry: bool) -> String {
    let detail = n
        .own_down
        .and_then(|(_, r)| strength(r, is_down).map(|(_, c)| (r, c)))
        .map(|(r, c)| {
            let what = match &r.series.target {
                Some(t) => format!("{name} → {t} {}", c.feature),
                None => c.feature.to_string(),
            };
            format!("{what} {}", ratio_text(c.actual, c.typical))
        })
        .unwrap_or_else(|| "traffic changed".into());
    let tail = if upstream > 0.0 {
        "; a caller's traffic changed too"
    } else if entry {
        " at the entry of the call graph"
    } else {
        " while the traffic it receives is as usual"
    };
    format!("{name}: {detail}{tail}")
}
