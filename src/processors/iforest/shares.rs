//! How often a log series' events take each of its code paths: the share of its traces that
//! write each usual template, learned over its normal windows, and the test of a window in
//! which a usual template is written by too few of them.
//!
//! A fault in a code path (an exception thrown before a line that is always logged, a call
//! that returns early) leaves the service answering and logging, so its line count, levels
//! and error rate can all stay as they were; what changes is that a line most of its requests
//! write is no longer written. Per template, the traces of a window that wrote it are a
//! binomial count of the window's traces with the template's usual share as probability, as
//! long as traces are independent. They are not quite: the mix of operations a window serves
//! varies, and a trace cut by the window's boundary writes only some of its lines. So the
//! spread is measured too: the dispersion of the series' normal windows about the usual share
//! (Pearson's χ² over its degrees of freedom, at least 1), by which the window's traces and
//! hits are divided before the binomial test (the quasi-binomial test). A share that varies a
//! lot from window to window needs a far larger shortfall to count.
//!
//! Only a shortfall is tested, and only of lines below warning level: a usual line written
//! more often than usual is a shift in the mix of operations as often as a fault, an error or
//! warning line written less often is a trouble gone, and new templates, error lines and the
//! line count have tests of their own.
//!
//! A window someone said is not an anomaly (the console's feedback) is learned as normal, and
//! each usual template it was short of past `min_deviation` is accepted as far as it was short,
//! measured as the log ratio of the traces expected to write it to those that did (one added
//! to both, as the root-cause ranking weighs a shortfall): a later window short of it by no
//! more than a quarter further (`ACCEPT_MARGIN`) is not judged, and one far further off still
//! is (0 of 4 expected accepted, 0 of 40 is news).
//!
//! Template ids are the window processor's, stable while it runs: the shares are not saved
//! with the model, and after a restart (or a service moving to another instance) they are
//! learned again before anything is judged (`MIN_WINDOWS`); so is what feedback accepted.

use super::{binomial_z, ACCEPT_MARGIN, POOL_JOIN, POOL_WINDOWS, TYPICAL_WINDOWS};
use crate::model::window::{LogLevel, Missing, Presence};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// Templates followed per series: the most present are kept (a rare template cannot be missed
/// significantly).
const MAX_TEMPLATES: usize = 64;

/// Normal windows with traces a template must have been followed for before it is judged.
pub const MIN_WINDOWS: f64 = 10.0;

/// The last windows short of a usual template that are remembered, for feedback that comes
/// after them.
const MAX_REMEMBERED: usize = 16;

/// One template's decayed sums over a series' normal windows since it was first seen.
#[derive(Debug, Clone)]
struct Share {
    text: Arc<str>,
    /// Ever written at warning level or above: not judged.
    trouble: bool,
    /// Windows, traces in them, traces that wrote the template, and Σ hits² / traces.
    windows: f64,
    traces: f64,
    hits: f64,
    hits_sq_per_trace: f64,
    /// The largest shortfall someone said is fine: ln((expected + 1) / (written + 1)) (0: none).
    accepted: f64,
}

impl Share {
    /// The usual share of traces that write the template (half a trace added to the
    /// hits and one to the traces, so a template every trace wrote is not certain).
    fn p(&self) -> f64 {
        (self.hits + 0.5) / (self.traces + 1.0)
    }

    /// How much more the window-to-window counts vary than a binomial count does, at least 1:
    /// Pearson's χ² of the normal windows about the usual share over its degrees of freedom.
    fn dispersion(&self) -> f64 {
        let p = self.p();
        let chi2 =
            (self.hits_sq_per_trace - 2.0 * p * self.hits + p * p * self.traces) / (p * (1.0 - p));
        (chi2 / (self.windows - 1.0).max(1.0)).max(1.0)
    }
}

/// How far short of `expected` traces `written` are: the log ratio with one added to both.
fn off(written: f64, expected: f64) -> f64 {
    ((expected + 1.0) / (written + 1.0)).ln()
}

/// What a window's shortfall of one usual template is.
#[derive(Debug, Clone, PartialEq)]
pub struct Shortfall {
    pub text: Arc<str>,
    pub missing: Missing,
}

/// A window short of usual templates, kept for feedback on it.
#[derive(Debug, Clone)]
struct Remembered {
    start_ns: u64,
    /// What its traces wrote.
    presence: Presence,
    /// Each template it was short of: by how much (ln((expected + 1) / (written + 1))), and
    /// its z-score.
    deficits: Vec<(u64, f64, f64)>,
}

/// A log series' usual templates.
#[derive(Debug, Clone, Default)]
pub struct TemplateShares {
    /// In id order, so that of two equal shortfalls the same is named on every run.
    by_id: BTreeMap<u64, Share>,
    /// The shortfalls of the last windows with traces (newest last; at most
    /// `POOL_WINDOWS` − 1), by template: traces that wrote it, traces, for pooling.
    recent: VecDeque<HashMap<u64, (f64, f64)>>,
    /// The last windows short of a usual template (at most `MAX_REMEMBERED`, newest last).
    remembered: VecDeque<Remembered>,
}

impl TemplateShares {
    /// Learns a normal window: how many of its traces on known ordinary paths wrote each
    /// template. A window without such traces says nothing about shares; one without counts
    /// (cut, or read back from a document) is unknown, and skipped too.
    pub fn learn(&mut self, window: &Presence) {
        let (presence, traces) = (&window.templates, window.traces);
        if traces == 0 || presence.is_empty() {
            return;
        }
        let n = traces as f64;
        let keep = 1.0 - 1.0 / TYPICAL_WINDOWS as f64;
        let mut seen: HashMap<u64, f64> = presence
            .iter()
            .map(|t| (t.id, f64::from(t.traces).min(n)))
            .collect();
        for (id, s) in self.by_id.iter_mut() {
            let x = seen.remove(id).unwrap_or(0.0);
            if let Some(t) = presence.iter().find(|t| t.id == *id) {
                // Its text as the miner has it now (a merge may have widened it).
                if t.text != s.text {
                    s.text = t.text.clone();
                }
                s.trouble |= t.level != LogLevel::Other;
            }
            s.windows = s.windows * keep + 1.0;
            s.traces = s.traces * keep + n;
            s.hits = s.hits * keep + x;
            s.hits_sq_per_trace = s.hits_sq_per_trace * keep + x * x / n;
        }
        for t in presence {
            let Some(x) = seen.remove(&t.id) else {
                continue;
            };
            if self.by_id.len() >= MAX_TEMPLATES {
                // The least present makes room, if it is less present than the newcomer.
                let Some((&id, least)) = self
                    .by_id
                    .iter()
                    .min_by(|a, b| a.1.hits.total_cmp(&b.1.hits).then(a.0.cmp(b.0)))
                else {
                    continue;
                };
                if least.hits >= x {
                    continue;
                }
                self.by_id.remove(&id);
            }
            self.by_id.insert(
                t.id,
                Share {
                    text: t.text.clone(),
                    trouble: t.level != LogLevel::Other,
                    windows: 1.0,
                    traces: n,
                    hits: x,
                    hits_sq_per_trace: x * x / n,
                    accepted: 0.0,
                },
            );
        }
    }

    /// The usual template this window's traces wrote least often for its share, as a signed
    /// z-score (negative: too few), with what it is and its records in the window; `None` when
    /// no template can be judged. Sparse windows are pooled as latency is (`pooled`): a window
    /// short of a template by at least `POOL_JOIN` is also judged together with the run of
    /// windows just before it that were short of it as much, their counts summed (a fault that
    /// lasts several windows of a few requests each is plain in their sum). Windows without
    /// traces neither join nor break a run. A template short by no more than feedback accepted
    /// is not judged. `start_ns` names the window for feedback on it (`None`: not to be
    /// remembered, as a partial window, whose lines may be among those skipped).
    pub fn shortfall(
        &mut self,
        start_ns: Option<u64>,
        window: &Presence,
    ) -> Option<(f64, Shortfall, u64)> {
        let (presence, traces) = (&window.templates, window.traces);
        if traces == 0 || presence.is_empty() {
            return None;
        }
        let n = traces as f64;
        let mut worst: Option<(f64, Shortfall, u64)> = None;
        let mut short = HashMap::new();
        let mut deficits = Vec::new();
        for (id, s) in &self.by_id {
            if s.windows < MIN_WINDOWS || s.trouble {
                continue;
            }
            let hit = presence.iter().find(|t| t.id == *id);
            let x = hit.map_or(0.0, |t| f64::from(t.traces).min(n));
            let p = s.p();
            if x >= n * p || off(x, n * p) <= s.accepted * ACCEPT_MARGIN {
                continue;
            }
            let phi = s.dispersion();
            let test = |x: f64, n: f64| {
                // The quasi-binomial test: traces and hits divided by the dispersion.
                let (n_eff, x_eff) = (n / phi, x / phi);
                -binomial_z(n_eff, n_eff - x_eff, 1.0 - p)
            };
            let mut z = test(x, n);
            if z <= -POOL_JOIN {
                short.insert(*id, (x, n));
                let (mut xs, mut ns) = (x, n);
                for w in self.recent.iter().rev() {
                    let Some((wx, wn)) = w.get(id) else {
                        break;
                    };
                    xs += wx;
                    ns += wn;
                    z = z.min(test(xs, ns));
                }
                deficits.push((*id, off(x, n * p), z));
            }
            if worst.as_ref().is_none_or(|w| z < w.0) {
                let records = hit.map_or(0, |t| u64::from(t.records));
                worst = Some((
                    z,
                    Shortfall {
                        text: s.text.clone(),
                        missing: Missing {
                            traces: x as u64,
                            expected: n * p,
                            of: traces,
                        },
                    },
                    records,
                ));
            }
        }
        if let Some(start_ns) = start_ns.filter(|_| !deficits.is_empty()) {
            if self.remembered.len() >= MAX_REMEMBERED {
                self.remembered.pop_front();
            }
            self.remembered.push_back(Remembered {
                start_ns,
                presence: window.clone(),
                deficits,
            });
        }
        if self.recent.len() + 1 >= POOL_WINDOWS {
            self.recent.pop_front();
        }
        self.recent.push_back(short);
        worst.filter(|w| w.0 < 0.0)
    }

    /// Someone said the window of `start_ns` is not an anomaly: if it was short of usual
    /// templates, it is learned as normal, and each template it was short of by a z-score of
    /// `min_z` or more (as a cause is) is accepted as far as it was short. False when that
    /// window is not remembered (it was short of none, or long ago).
    pub fn accept(&mut self, start_ns: u64, min_z: f64) -> bool {
        let Some(at) = self.remembered.iter().position(|w| w.start_ns == start_ns) else {
            return false;
        };
        let Some(w) = self.remembered.remove(at) else {
            return false;
        };
        for (id, deficit, z) in w.deficits {
            if z > -min_z {
                continue;
            }
            if let Some(s) = self.by_id.get_mut(&id) {
                s.accepted = s.accepted.max(deficit);
            }
        }
        self.learn(&w.presence);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::window::TemplatePresence;

    fn window(counts: &[(u64, u32)], level: LogLevel, traces: u64) -> Presence {
        Presence {
            traces,
            templates: counts
                .iter()
                .map(|(id, traces)| TemplatePresence {
                    id: *id,
                    text: format!("line {id}").into(),
                    traces: *traces,
                    records: *traces,
                    level,
                })
                .collect(),
        }
    }

    /// A series of 20 traces a window: template 1 is written by all of them, template 2 by
    /// `share(k)` of them in window k.
    fn learned(share: impl Fn(usize) -> u32) -> TemplateShares {
        let mut s = TemplateShares::default();
        for k in 0..60 {
            s.learn(&window(&[(1, 20), (2, share(k))], LogLevel::Other, 20));
        }
        s
    }

    #[test]
    fn a_usual_line_its_traces_stop_writing_is_news_unless_its_share_always_varied_as_much() {
        // Template 2 is written by 14 or 16 of 20 traces: steady.
        let mut steady = learned(|k| if k % 2 == 0 { 14 } else { 16 });
        let (z, found, _) = steady
            .shortfall(None, &window(&[(1, 20), (2, 0)], LogLevel::Other, 20))
            .unwrap();
        assert!(z < -6.0, "{z}");
        assert_eq!(found.text.as_ref(), "line 2");
        assert_eq!(found.missing.traces, 0);
        assert_eq!(found.missing.of, 20);
        assert!((found.missing.expected - 15.0).abs() < 0.5, "{found:?}");
        // 12 of 20 is within what a binomial count gives.
        let (z, _, _) = steady
            .shortfall(None, &window(&[(1, 20), (2, 12)], LogLevel::Other, 20))
            .unwrap();
        assert!(z > -4.0, "{z}");
        // The same average share, but from windows of all or none: none is ordinary there.
        let mut swinging = learned(|k| if k % 4 == 0 { 0 } else { 20 });
        let z = swinging
            .shortfall(None, &window(&[(1, 20), (2, 0)], LogLevel::Other, 20))
            .map_or(0.0, |x| x.0);
        assert!(z > -4.0, "a share that swings between all and none: {z}");
    }

    #[test]
    fn sparse_windows_short_of_a_usual_line_are_judged_together() {
        let mut s = learned(|_| 18);
        // 0 of 4 traces, window after window: weak alone, plain together.
        let alone = s
            .shortfall(None, &window(&[(1, 4)], LogLevel::Other, 4))
            .unwrap()
            .0;
        assert!(alone > -4.0 && alone <= -POOL_JOIN, "{alone}");
        let second = s
            .shortfall(None, &window(&[(1, 4)], LogLevel::Other, 4))
            .unwrap()
            .0;
        let third = s
            .shortfall(None, &window(&[(1, 4)], LogLevel::Other, 4))
            .unwrap()
            .0;
        assert!(second < alone && third < second, "{alone} {second} {third}");
        assert!(third < -4.0, "{third}");
        // A window that writes it as usual breaks the run.
        assert!(s
            .shortfall(None, &window(&[(1, 4), (2, 4)], LogLevel::Other, 4))
            .is_none_or(|x| x.0 > -POOL_JOIN));
        let after = s
            .shortfall(None, &window(&[(1, 4)], LogLevel::Other, 4))
            .unwrap()
            .0;
        assert!((after - alone).abs() < 1e-9, "{after} {alone}");
    }

    #[test]
    fn an_error_line_written_less_often_is_no_shortfall_and_nothing_is_judged_too_early() {
        let mut s = TemplateShares::default();
        for _ in 0..60 {
            s.learn(&window(&[(1, 20)], LogLevel::Other, 20));
            s.learn(&window(&[(2, 20)], LogLevel::Error, 20));
        }
        let z = s
            .shortfall(None, &window(&[(1, 20)], LogLevel::Other, 20))
            .map_or(0.0, |x| x.0);
        assert!(z > -POOL_JOIN, "errors gone are no news: {z}");
        let mut young = TemplateShares::default();
        for _ in 0..(MIN_WINDOWS as usize - 1) {
            young.learn(&window(&[(1, 20), (2, 20)], LogLevel::Other, 20));
        }
        assert!(young
            .shortfall(None, &window(&[(1, 20)], LogLevel::Other, 20))
            .is_none());
    }
}
