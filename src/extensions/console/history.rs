//! The console's memory: the scored windows of every series and the incidents of the last
//! hours, bounded by age (`retention`) and by size (`max_bytes`, the oldest windows of the whole
//! history go first), and the questions the console asks of it: the services and their calls
//! as they stand, one series over time with its typical band, the incidents.
//!
//! Windows are kept compactly (features as `f32`, explanations only for anomalies): about 100
//! bytes each, so 1,000 series of 10 s windows over 6 hours take about 210 MiB unbounded; the
//! default byte budget keeps the most recent 64 MiB of them.

use crate::model::incident::{Incident, IncidentEvent, Status};
use crate::model::window::{
    feature, SeriesKey, Signal, TemplateCount, TraceExample, WindowRecord, N_FEATURES,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryConfig {
    /// How long windows and resolved incidents are kept (from the newest window seen).
    pub retention: Duration,
    /// The most memory the windows may take (estimated); the oldest go first.
    pub max_bytes: usize,
    /// The most incidents kept; the oldest resolved go first.
    pub max_incidents: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(6 * 3600),
            max_bytes: 64 << 20,
            max_incidents: 1000,
        }
    }
}

/// One scored window of a series, as the console keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub start_ns: u64,
    pub features: [f32; N_FEATURES],
    pub score: f32,
    pub threshold: f32,
    pub is_anomaly: bool,
    pub warming_up: bool,
    pub partial: bool,
    /// An anomaly in a range when anomalies are expected: recorded, not alerted.
    pub expected: bool,
    /// An anomaly someone said is not one.
    pub dismissed: bool,
    /// For anomalies: (feature index, actual, typical), the strongest first.
    pub contributions: Box<[(u8, f32, f32)]>,
    /// For anomalies: the traces worth opening (failing, then slowest).
    pub examples: Box<[TraceExample]>,
    /// For anomalous log windows: their most telling templates.
    pub templates: Box<[TemplateCount]>,
    pub incident: Option<Arc<str>>,
}

impl Point {
    fn of(r: &WindowRecord) -> Self {
        let names = r.feature_names();
        let a = r.anomaly.as_ref();
        let contributions = a
            .filter(|a| a.is_anomaly)
            .map(|a| {
                a.contributions
                    .iter()
                    .filter_map(|c| {
                        let i = names.iter().position(|n| *n == c.feature)?;
                        Some((i as u8, c.actual as f32, c.typical as f32))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Point {
            start_ns: r.start_ns,
            features: r.features.map(|v| v as f32),
            score: a.map_or(0.0, |a| a.score as f32),
            threshold: a.map_or(0.0, |a| a.threshold as f32),
            is_anomaly: a.is_some_and(|a| a.is_anomaly),
            warming_up: a.is_some_and(|a| a.warming_up),
            partial: r.partial,
            expected: a.is_some_and(|a| a.expected),
            dismissed: false,
            examples: if a.is_some_and(|a| a.is_anomaly) {
                r.examples.clone().into_boxed_slice()
            } else {
                Box::default()
            },
            templates: if a.is_some_and(|a| a.is_anomaly) {
                r.templates.clone().into_boxed_slice()
            } else {
                Box::default()
            },
            contributions,
            incident: a.and_then(|a| a.incident.clone()),
        }
    }

    /// What the point holds in memory, estimated.
    fn bytes(&self) -> usize {
        std::mem::size_of::<Point>()
            + self.contributions.len() * 12
            + self.examples.len() * std::mem::size_of::<TraceExample>()
            + self
                .templates
                .iter()
                .map(|t| std::mem::size_of::<TemplateCount>() + t.template.len())
                .sum::<usize>()
    }
}

/// One series' windows, oldest first.
#[derive(Debug)]
pub struct SeriesHistory {
    pub key: Arc<SeriesKey>,
    pub interval_ns: u64,
    pub points: VecDeque<Point>,
}

/// The typical band of one feature at one window: the median of the series' recent normal
/// windows before it, and that ± 3 scaled MADs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    pub start_ns: u64,
    pub low: f64,
    pub typical: f64,
    pub high: f64,
}

/// Normal windows the band looks back over.
const BAND_WINDOWS: usize = 60;

impl SeriesHistory {
    /// The windows starting in `[from_ns, to_ns)`.
    pub fn between(&self, from_ns: u64, to_ns: u64) -> impl Iterator<Item = &Point> {
        self.points
            .iter()
            .filter(move |p| p.start_ns >= from_ns && p.start_ns < to_ns)
    }

    /// Feature `i`'s typical band at each window from `from_ns`: from the normal windows
    /// before it (not warming up, not anomalous, not partial), once there are 5 of them.
    pub fn band(&self, i: usize, from_ns: u64, to_ns: u64) -> Vec<Band> {
        let mut normal: VecDeque<f64> = VecDeque::with_capacity(BAND_WINDOWS);
        let mut out = Vec::new();
        let mut scratch = Vec::with_capacity(BAND_WINDOWS);
        for p in &self.points {
            if p.start_ns >= to_ns {
                break;
            }
            if p.start_ns >= from_ns && normal.len() >= 5 {
                scratch.clear();
                scratch.extend(normal.iter().copied());
                let typical = median(&mut scratch);
                for v in scratch.iter_mut() {
                    *v = (*v - typical).abs();
                }
                let spread = 3.0 * 1.4826 * median(&mut scratch);
                out.push(Band {
                    start_ns: p.start_ns,
                    low: typical - spread,
                    typical,
                    high: typical + spread,
                });
            }
            if (!p.is_anomaly || p.dismissed) && !p.warming_up && !p.partial {
                if let Some(v) = p.features.get(i) {
                    normal.push_back(*v as f64);
                    if normal.len() > BAND_WINDOWS {
                        normal.pop_front();
                    }
                }
            }
        }
        out
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// An incident as the console shows it: its latest state and when it last changed.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentState {
    pub incident: Incident,
    pub changed_ns: u64,
}

/// How a service or call stands in its latest window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// Still learning what normal is.
    WarmingUp,
    Normal,
    Anomalous,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::WarmingUp => "warming_up",
            State::Normal => "normal",
            State::Anomalous => "anomalous",
        }
    }

    fn of(p: &Point) -> State {
        if p.is_anomaly && !p.dismissed {
            State::Anomalous
        } else if p.warming_up {
            State::WarmingUp
        } else {
            State::Normal
        }
    }
}

/// A service, or a call between two, in its latest span window.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    pub state: State,
    /// Requests per second.
    pub request_rate: f64,
    /// The share of requests that failed.
    pub error_rate: f64,
    pub start_ns: u64,
}

/// One service on the service map.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceView {
    pub name: Arc<str>,
    /// Its own spans' latest window; none when it was only seen as a callee or in logs and
    /// metrics.
    pub spans: Option<Standing>,
    /// The worst state among its log and metric series' latest windows.
    pub others: Option<State>,
    /// Its calls out, by callee.
    pub calls: Vec<(Arc<str>, Standing)>,
    /// Its other series (logs, each metric, each group by route and the like), by key, with
    /// the state of their latest window.
    pub series: Vec<(Arc<SeriesKey>, State)>,
}

impl ServiceView {
    /// The worst state of the service's own series.
    pub fn state(&self) -> State {
        let own = self.spans.as_ref().map(|s| s.state);
        own.into_iter()
            .chain(self.others)
            .max()
            .unwrap_or(State::WarmingUp)
    }
}

#[derive(Debug, Default)]
pub struct History {
    cfg: HistoryConfig,
    series: HashMap<Arc<SeriesKey>, SeriesHistory>,
    incidents: HashMap<Arc<str>, IncidentState>,
    bytes: usize,
    newest_ns: u64,
}

impl History {
    pub fn new(cfg: HistoryConfig) -> Self {
        Self {
            cfg,
            ..Default::default()
        }
    }

    /// Adds scored windows (in any order across series; a series' windows in time order, a
    /// repeated window replaces the one kept).
    pub fn add_windows(&mut self, records: &[WindowRecord]) {
        for r in records {
            let point = Point::of(r);
            let s = self
                .series
                .entry(r.series.clone())
                .or_insert_with(|| SeriesHistory {
                    key: r.series.clone(),
                    interval_ns: r.interval_ns,
                    points: VecDeque::new(),
                });
            s.interval_ns = r.interval_ns;
            match s.points.back_mut() {
                Some(last) if last.start_ns == point.start_ns => {
                    self.bytes = self.bytes - last.bytes() + point.bytes();
                    *last = point;
                }
                Some(last) if last.start_ns > point.start_ns => {
                    // Out of order: its place among the kept windows, if any.
                    let at = s.points.partition_point(|p| p.start_ns < point.start_ns);
                    if s.points
                        .get(at)
                        .is_some_and(|p| p.start_ns == point.start_ns)
                    {
                        self.bytes = self.bytes - s.points[at].bytes() + point.bytes();
                        s.points[at] = point;
                    } else {
                        self.bytes += point.bytes();
                        s.points.insert(at, point);
                    }
                }
                _ => {
                    self.bytes += point.bytes();
                    s.points.push_back(point);
                }
            }
            self.newest_ns = self.newest_ns.max(r.start_ns);
        }
        self.trim();
    }

    /// Takes incident changes: the latest state of each incident is kept.
    pub fn add_incidents(&mut self, events: &[IncidentEvent]) {
        for e in events {
            let i = &e.incident;
            let newer = self
                .incidents
                .get(&i.id)
                .is_none_or(|s| s.changed_ns <= e.at_ns);
            if newer {
                self.incidents.insert(
                    i.id.clone(),
                    IncidentState {
                        incident: i.clone(),
                        changed_ns: e.at_ns,
                    },
                );
            }
        }
        self.trim_incidents();
    }

    /// Drops what is past the retention or over the byte budget (the oldest windows of all
    /// series first, to 90 % of the budget so that trimming is not done for every window).
    fn trim(&mut self) {
        let horizon = self
            .newest_ns
            .saturating_sub(self.cfg.retention.as_nanos() as u64);
        let mut freed = 0;
        for s in self.series.values_mut() {
            while s.points.front().is_some_and(|p| p.start_ns < horizon) {
                if let Some(p) = s.points.pop_front() {
                    freed += p.bytes();
                }
            }
        }
        self.bytes -= freed;
        if self.bytes > self.cfg.max_bytes {
            let goal = self.cfg.max_bytes / 10 * 9;
            // The oldest window start kept by each series, then drop up to a cut-off time that
            // frees enough: one pass to find it, one to drop.
            let mut starts: Vec<(u64, usize)> = self
                .series
                .values()
                .flat_map(|s| s.points.iter().map(|p| (p.start_ns, p.bytes())))
                .collect();
            starts.sort_unstable_by_key(|(t, _)| *t);
            let mut over = self.bytes - goal;
            let mut cut = 0;
            for (t, b) in starts {
                if over == 0 {
                    break;
                }
                cut = t;
                over = over.saturating_sub(b);
            }
            let mut freed = 0;
            for s in self.series.values_mut() {
                while s.points.front().is_some_and(|p| p.start_ns <= cut) {
                    if let Some(p) = s.points.pop_front() {
                        freed += p.bytes();
                    }
                }
            }
            self.bytes -= freed;
        }
        self.series.retain(|_, s| !s.points.is_empty());
    }

    fn trim_incidents(&mut self) {
        let horizon = self
            .newest_ns
            .saturating_sub(self.cfg.retention.as_nanos() as u64);
        self.incidents
            .retain(|_, s| s.incident.status == Status::Open || s.incident.end_ns >= horizon);
        if self.incidents.len() > self.cfg.max_incidents {
            let mut by_age: Vec<(bool, u64, Arc<str>)> = self
                .incidents
                .values()
                .map(|s| {
                    (
                        s.incident.status == Status::Open,
                        s.changed_ns,
                        s.incident.id.clone(),
                    )
                })
                .collect();
            by_age.sort();
            let excess = self.incidents.len() - self.cfg.max_incidents;
            for (_, _, id) in by_age.into_iter().take(excess) {
                self.incidents.remove(&id);
            }
        }
    }

    /// The start of the newest window seen (0 before any).
    pub fn newest_ns(&self) -> u64 {
        self.newest_ns
    }

    /// Windows held, and their estimated bytes.
    pub fn size(&self) -> (usize, usize) {
        (
            self.series.values().map(|s| s.points.len()).sum(),
            self.bytes,
        )
    }

    pub fn series(&self, key: &SeriesKey) -> Option<&SeriesHistory> {
        self.series.get(key)
    }

    /// The series whose key reads `name` (as `SeriesKey` displays it: `svc → callee`,
    /// `svc (metric)`, `svc [http.route=/x]`, `svc (logs)`).
    pub fn find(&self, name: &str) -> Option<Arc<SeriesKey>> {
        self.series.keys().find(|k| k.to_string() == name).cloned()
    }

    /// Every series kept, in key order.
    pub fn keys(&self) -> Vec<&Arc<SeriesKey>> {
        let mut keys: Vec<&Arc<SeriesKey>> = self.series.keys().collect();
        keys.sort();
        keys
    }

    /// The incidents kept: open ones first, then by their last change, newest first.
    pub fn incidents(&self) -> Vec<&IncidentState> {
        let mut v: Vec<&IncidentState> = self.incidents.values().collect();
        v.sort_by(|a, b| {
            (b.incident.status == Status::Open)
                .cmp(&(a.incident.status == Status::Open))
                .then(b.changed_ns.cmp(&a.changed_ns))
                .then(a.incident.id.cmp(&b.incident.id))
        });
        v
    }

    pub fn incident(&self, id: &str) -> Option<&IncidentState> {
        self.incidents.get(id)
    }

    /// Marks an anomalous window as not an anomaly; its features, or why it cannot be.
    pub fn dismiss(
        &mut self,
        key: &SeriesKey,
        start_ns: u64,
    ) -> Result<(Arc<SeriesKey>, [f64; N_FEATURES]), String> {
        let s = self
            .series
            .get_mut(key)
            .ok_or_else(|| format!("no series {key} is held"))?;
        let at = s.points.partition_point(|p| p.start_ns < start_ns);
        let p = s
            .points
            .get_mut(at)
            .filter(|p| p.start_ns == start_ns)
            .ok_or_else(|| format!("no window of {key} starting then is held"))?;
        if !p.is_anomaly {
            return Err(format!("that window of {key} is not an anomaly"));
        }
        p.dismissed = true;
        Ok((s.key.clone(), p.features.map(|v| v as f64)))
    }

    /// Marks every anomalous window of an incident as not an anomaly: their series, starts
    /// and features (none when the incident is not held).
    #[allow(clippy::type_complexity)]
    pub fn dismiss_incident(
        &mut self,
        id: &str,
    ) -> Option<Vec<(Arc<SeriesKey>, u64, [f64; N_FEATURES])>> {
        let state = self.incidents.get(id)?;
        let (from, to) = (
            state.incident.start_ns,
            state.incident.end_ns.max(state.incident.start_ns + 1),
        );
        let mut out = Vec::new();
        for key in &state.incident.series {
            let Some(s) = self.series.get_mut(key) else {
                continue;
            };
            for p in s.points.iter_mut() {
                if p.start_ns >= from
                    && p.start_ns < to
                    && p.is_anomaly
                    && p.incident.as_deref() == Some(id)
                {
                    p.dismissed = true;
                    out.push((s.key.clone(), p.start_ns, p.features.map(|v| v as f64)));
                }
            }
        }
        Some(out)
    }

    /// The example traces of an incident's anomalous windows: each with its series and
    /// window, failing ones first, then the slowest, at most `max`, one per trace.
    pub fn incident_examples(
        &self,
        id: &str,
        max: usize,
    ) -> Vec<(&Arc<SeriesKey>, u64, TraceExample)> {
        let Some(state) = self.incidents.get(id) else {
            return Vec::new();
        };
        let mut found: Vec<(&Arc<SeriesKey>, u64, TraceExample)> = Vec::new();
        for key in &state.incident.series {
            let Some(s) = self.series.get(key) else {
                continue;
            };
            for p in s.between(
                state.incident.start_ns,
                state.incident.end_ns.max(state.incident.start_ns + 1),
            ) {
                if p.incident.as_deref() != Some(id) {
                    continue;
                }
                for e in p.examples.iter() {
                    if !found.iter().any(|(_, _, f)| f.trace_id == e.trace_id) {
                        found.push((&s.key, p.start_ns, *e));
                    }
                }
            }
        }
        found.sort_by(|a, b| {
            b.2.error
                .cmp(&a.2.error)
                .then(b.2.duration_ms.total_cmp(&a.2.duration_ms))
        });
        found.truncate(max);
        found
    }

    /// Anomalous windows starting at or after `from_ns`.
    pub fn anomalies_since(&self, from_ns: u64) -> usize {
        self.series
            .values()
            .flat_map(|s| s.points.iter().rev().take_while(|p| p.start_ns >= from_ns))
            .filter(|p| p.is_anomaly && !p.dismissed)
            .count()
    }

    /// The service map: every service seen (as a caller, a callee, or in logs and metrics),
    /// how it and its calls stand in their latest windows, by name.
    pub fn services(&self) -> Vec<ServiceView> {
        let mut map: BTreeMap<Arc<str>, ServiceView> = BTreeMap::new();
        let view = |map: &mut BTreeMap<Arc<str>, ServiceView>, name: &Arc<str>| {
            map.entry(name.clone())
                .or_insert_with(|| ServiceView {
                    name: name.clone(),
                    spans: None,
                    others: None,
                    calls: Vec::new(),
                    series: Vec::new(),
                })
                .name
                .clone()
        };
        for s in self.series.values() {
            let Some(last) = s.points.back() else {
                continue;
            };
            let k = &s.key;
            let name = view(&mut map, &k.service);
            if let Some(t) = &k.target {
                view(&mut map, t);
            }
            let Some(v) = map.get_mut(&name) else {
                continue;
            };
            match (k.signal, &k.target) {
                (Signal::Spans, None) if k.labels.is_empty() => {
                    v.spans = Some(standing(last, s.interval_ns));
                }
                (Signal::Spans, Some(t)) if k.labels.is_empty() => {
                    v.calls.push((t.clone(), standing(last, s.interval_ns)));
                }
                (Signal::Logs | Signal::Metrics, _) => {
                    let st = State::of(last);
                    v.others = Some(v.others.map_or(st, |o| o.max(st)));
                    v.series.push((k.clone(), st));
                }
                // Groups (by route and the like) and the time between a service and its
                // callees have their own pages, not a place on the map.
                (Signal::Spans, None) | (Signal::Network, _) => {
                    v.series.push((k.clone(), State::of(last)))
                }
                _ => {}
            }
        }
        let mut out: Vec<ServiceView> = map.into_values().collect();
        for v in &mut out {
            v.calls.sort_by(|a, b| a.0.cmp(&b.0));
            v.series.sort();
        }
        out
    }
}

fn standing(p: &Point, interval_ns: u64) -> Standing {
    let secs = (interval_ns as f64 / 1e9).max(1e-9);
    Standing {
        state: State::of(p),
        request_rate: p.features[feature::REQUEST_COUNT] as f64 / secs,
        error_rate: p.features[feature::ERROR_RATE] as f64,
        start_ns: p.start_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::incident::Action;
    use crate::model::window::{Anomaly, Contribution, Severity};

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_767_571_200 * S;

    fn window(
        key: &Arc<SeriesKey>,
        w: u64,
        requests: f64,
        p95: f64,
        anomaly: bool,
    ) -> WindowRecord {
        let mut features = [0.0; N_FEATURES];
        features[feature::REQUEST_COUNT] = requests;
        features[feature::LATENCY_P95] = p95;
        WindowRecord {
            series: key.clone(),
            start_ns: T0 + w * 10 * S,
            interval_ns: 10 * S,
            features,
            anomaly: Some(Anomaly {
                score: if anomaly { 0.8 } else { 0.4 },
                threshold: 0.6,
                is_anomaly: anomaly,
                severity: anomaly.then_some(Severity::Major),
                warming_up: w < 3,
                contributions: if anomaly {
                    vec![Contribution {
                        feature: "latency_p95_ms",
                        actual: p95,
                        typical: 100.0,
                    }]
                } else {
                    Vec::new()
                },
                message: String::new(),
                incident: anomaly.then(|| "00000000000000aa".into()),
                expected: false,
            }),
            partial: false,
            templates: Vec::new(),
            traces: 0,
            examples: Vec::new(),
            presence: Default::default(),
        }
    }

    fn incident(id: &str, status: Status, end_ns: u64) -> IncidentEvent {
        IncidentEvent {
            action: Action::Opened,
            at_ns: end_ns,
            notable: true,
            incident: Incident {
                id: id.into(),
                status,
                start_ns: end_ns.saturating_sub(10 * S),
                end_ns,
                severity: Severity::Major,
                series: Vec::new(),
                root_cause: Vec::new(),
                message: String::new(),
            },
        }
    }

    #[test]
    fn the_service_map_shows_services_their_calls_and_how_they_stand() {
        let mut h = History::new(HistoryConfig::default());
        let a = Arc::new(SeriesKey::service("service-a"));
        let b = Arc::new(SeriesKey::service("service-b"));
        let ab = Arc::new(SeriesKey::edge("service-a", "service-b"));
        let logs = Arc::new(SeriesKey::logs("service-c"));
        for w in 0..10 {
            let slow = w == 9;
            h.add_windows(&[
                window(&a, w, 200.0, 120.0, false),
                window(&ab, w, 200.0, if slow { 900.0 } else { 80.0 }, slow),
                window(&b, w, 200.0, if slow { 880.0 } else { 70.0 }, slow),
                window(&logs, w, 0.0, 0.0, false),
            ]);
        }
        let map = h.services();
        let names: Vec<&str> = map.iter().map(|s| &*s.name).collect();
        assert_eq!(names, ["service-a", "service-b", "service-c"]);
        let a = &map[0];
        assert_eq!(a.state(), State::Normal);
        assert_eq!(a.spans.as_ref().unwrap().request_rate, 20.0);
        assert_eq!(a.calls.len(), 1);
        assert_eq!(&*a.calls[0].0, "service-b");
        assert_eq!(a.calls[0].1.state, State::Anomalous);
        assert_eq!(map[1].state(), State::Anomalous);
        assert_eq!(map[2].spans, None);
        assert_eq!(map[2].state(), State::Normal);
        // Its logs are its other series, found by their name.
        assert_eq!(map[2].series, [(logs.clone(), State::Normal)]);
        assert!(a.series.is_empty());
        assert_eq!(h.find("service-c (logs)"), Some(logs.clone()));
        assert_eq!(h.find("service-a → service-b"), Some(ab.clone()));
        assert_eq!(h.find("service-d"), None);
        assert_eq!(h.anomalies_since(T0 + 90 * S), 2);
        assert_eq!(h.anomalies_since(T0 + 100 * S), 0);
        // The anomaly is kept with its explanation and incident.
        let p = h.series(&ab).unwrap().points.back().unwrap().clone();
        assert!(p.is_anomaly);
        assert_eq!(
            &*p.contributions,
            &[(feature::LATENCY_P95 as u8, 900.0, 100.0)]
        );
        assert_eq!(p.incident.as_deref(), Some("00000000000000aa"));
    }

    #[test]
    fn the_band_follows_normal_windows_and_leaves_anomalies_out() {
        let mut h = History::new(HistoryConfig::default());
        let b = Arc::new(SeriesKey::service("service-b"));
        // A long stretch of anomalies (40 windows, 2/3 of the band's look-back) must not pull
        // the band: it is what normal was before them.
        for w in 0..75 {
            let slow = (30..70).contains(&w);
            let p95 = if slow { 900.0 } else { 100.0 + (w % 5) as f64 };
            h.add_windows(&[window(&b, w, 100.0, p95, slow)]);
        }
        let s = h.series(&b).unwrap();
        let band = s.band(feature::LATENCY_P95, T0, T0 + 750 * S);
        // Warm-up windows (0–2) are not normal yet: the band starts at the 9th window.
        assert_eq!(band.first().unwrap().start_ns, T0 + 80 * S);
        let at = |w: u64| *band.iter().find(|b| b.start_ns == T0 + w * 10 * S).unwrap();
        for w in [30, 33, 69, 74] {
            let b = at(w);
            assert!((101.0..=103.0).contains(&b.typical), "{b:?}");
            assert!(b.high < 110.0 && b.low > 94.0, "{b:?}");
        }
        assert_eq!(s.between(T0 + 300 * S, T0 + 330 * S).count(), 3);
    }

    #[test]
    fn age_and_size_bound_what_is_kept() {
        let cfg = HistoryConfig {
            retention: Duration::from_secs(600),
            max_bytes: 200 * std::mem::size_of::<Point>(),
            max_incidents: 3,
        };
        let mut h = History::new(cfg.clone());
        let keys: Vec<Arc<SeriesKey>> = (0..4)
            .map(|i| Arc::new(SeriesKey::service(&format!("svc-{i}"))))
            .collect();
        for w in 0..200 {
            let batch: Vec<WindowRecord> = keys
                .iter()
                .map(|k| window(k, w, 10.0, 50.0, false))
                .collect();
            h.add_windows(&batch);
            let (windows, bytes) = h.size();
            assert!(bytes <= cfg.max_bytes, "{bytes} bytes");
            assert_eq!(bytes, windows * std::mem::size_of::<Point>());
        }
        // 600 s of 10 s windows is 60 per series, 240 in all: over the budget of 200, so the
        // oldest of all series went first and every series keeps its newest windows.
        let (windows, _) = h.size();
        assert!((160..=200).contains(&windows), "{windows}");
        for k in &keys {
            let s = h.series(k).unwrap();
            assert_eq!(s.points.back().unwrap().start_ns, T0 + 199 * 10 * S);
            assert!(s.points.front().unwrap().start_ns >= T0 + 140 * 10 * S);
        }
        // A window seen again replaces the one kept.
        h.add_windows(&[window(&keys[0], 199, 10.0, 70.0, false)]);
        let s = h.series(&keys[0]).unwrap();
        assert_eq!(
            s.points.back().unwrap().features[feature::LATENCY_P95],
            70.0
        );
        assert_eq!(
            s.points
                .iter()
                .filter(|p| p.start_ns == T0 + 1990 * S)
                .count(),
            1
        );

        // Incidents: the latest state of each; open ones stay, resolved ones age out.
        let end = T0 + 1990 * S;
        h.add_incidents(&[
            incident("old", Status::Resolved, T0),
            incident("a", Status::Resolved, end - 20 * S),
            incident("b", Status::Open, end - 10 * S),
        ]);
        let ids: Vec<&str> = h.incidents().iter().map(|s| &*s.incident.id).collect();
        assert_eq!(ids, ["b", "a"]);
        h.add_incidents(&[
            incident("b", Status::Resolved, end),
            incident("c", Status::Open, end),
            incident("d", Status::Open, end),
        ]);
        let ids: Vec<&str> = h.incidents().iter().map(|s| &*s.incident.id).collect();
        assert_eq!(
            ids,
            ["c", "d", "b"],
            "at most three, the oldest resolved gone"
        );
        assert_eq!(h.incident("b").unwrap().incident.status, Status::Resolved);
    }
}
