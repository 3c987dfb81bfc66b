//! Root-cause scores for one window: how strongly the window's records point at each service.
//!
//! Two directions of blame:
//! - **Latency and errors travel up** the call chain: a caller is slow because its callee is.
//!   A service's evidence is the larger of its own records' anomaly and the share of its
//!   callers whose view of it is anomalous ("every caller sees it slow" is as strong as its own
//!   spans, and it is the only sign of a network fault at the service). The evidence is
//!   discounted by how well a callee explains it: a callee explains its caller when it is
//!   anomalous *independently of that caller* — in its own spans, or in other callers' view of
//!   it, or, when the caller is its only witness, in an edge that is slow while the caller's
//!   other calls are not (if all of a service's calls are slow, the trouble is its own).
//! - **Traffic changes travel down**: a service receives less because its caller sends less. A
//!   service's evidence is its own (or its outgoing edges') anomaly in request count or
//!   throughput, discounted by the same anomaly in a caller.
//!
//! Where latency or errors are anomalous in the window too, traffic evidence counts at half: a
//! caller that waits sends less, so then a change of traffic is more often effect than cause.
//! The score of a service is the larger of the two, in [0, 1].

use super::CallGraph;
use crate::model::window::{feature, WindowRecord, FEATURE_NAMES};
use std::collections::HashMap;
use std::sync::Arc;

/// One service's score in one window, with the evidence in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub score: f64,
    pub reason: String,
}

/// Which way a feature's anomaly points.
fn is_up(name: &str) -> bool {
    name.starts_with("latency_") || name == FEATURE_NAMES[feature::ERROR_RATE]
}

fn is_down(name: &str) -> bool {
    name == FEATURE_NAMES[feature::REQUEST_COUNT]
        || name == FEATURE_NAMES[feature::THROUGHPUT_CHANGE]
        || name == FEATURE_NAMES[feature::CLIENT_ERROR_RATE]
}

/// The strength of a record's anomaly in one direction (its score when a cause of that kind is
/// among its contributions), and the contribution that shows it best.
fn strength(
    r: &WindowRecord,
    dir: fn(&str) -> bool,
) -> Option<(f64, &crate::model::window::Contribution)> {
    let a = r.anomaly.as_ref().filter(|a| a.is_anomaly)?;
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

fn up(r: &WindowRecord) -> f64 {
    strength(r, is_up).map(|s| s.0).unwrap_or(0.0)
}

/// Scores every service the window's records speak of.
pub fn score_window(records: &[WindowRecord], graph: &CallGraph) -> HashMap<Arc<str>, Scored> {
    let mut nodes: HashMap<Arc<str>, Node<'_>> = HashMap::new();
    for r in records {
        let active = r.features[feature::REQUEST_COUNT] > 0.0 || r.is_anomaly();
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
    let own_up = |n: &str| {
        nodes
            .get(n)
            .and_then(|x| x.own_up)
            .map(|x| x.0)
            .unwrap_or(0.0)
    };
    // The share of a service's callers (other than `except`) that see it anomalous.
    let in_share = |n: &str, except: Option<&str>| -> (f64, usize) {
        let Some(x) = nodes.get(n) else {
            return (0.0, 0);
        };
        let edges: Vec<&&WindowRecord> = x
            .in_edges
            .iter()
            .filter(|r| Some(&*r.series.service) != except)
            .collect();
        if edges.is_empty() {
            return (0.0, 0);
        }
        let sum: f64 = edges.iter().map(|r| up(r)).sum();
        (sum / edges.len() as f64, edges.len())
    };
    // How much of `caller`'s own slowness `callee` explains.
    let explains = |callee: &str, caller: &str| -> f64 {
        let (others, n_others) = in_share(callee, Some(caller));
        let mut e = own_up(callee).max(others);
        if n_others == 0 {
            // The caller is the only witness: its edge counts unless all its calls are slow.
            let Some(c) = nodes.get(caller) else {
                return e;
            };
            let edge = c
                .out_edges
                .iter()
                .find(|r| r.series.target.as_deref() == Some(callee))
                .map(|r| up(r))
                .unwrap_or(0.0);
            let others: Vec<f64> = c
                .out_edges
                .iter()
                .filter(|r| r.series.target.as_deref() != Some(callee))
                .map(|r| up(r))
                .collect();
            let others_slow = if others.is_empty() {
                0.0
            } else {
                others.iter().sum::<f64>() / others.len() as f64
            };
            e = e.max(edge * (1.0 - others_slow));
        }
        e
    };

    // Where latency or errors are anomalous too, a change of traffic is more often their
    // consequence (callers that wait send less) than a cause: it counts at half.
    let any_up = records.iter().any(|r| up(r) > 0.0);
    let down_weight = if any_up { 0.5 } else { 1.0 };
    let mut out = HashMap::new();
    for (name, n) in &nodes {
        // Up: own or callers' view, cleared by an independently anomalous callee.
        let (share, callers) = in_share(name, None);
        let own = n.own_up.map(|x| x.0).unwrap_or(0.0);
        let evidence = own.max(share);
        let mut explained = 0.0f64;
        let mut explained_by: Option<&str> = None;
        let mut callees: Vec<&Arc<str>> = graph.callees(name).collect();
        for r in &n.out_edges {
            if let Some(t) = &r.series.target {
                if !callees.contains(&t) {
                    callees.push(t);
                }
            }
        }
        for c in callees {
            if **c == **name {
                continue;
            }
            let e = explains(c, name);
            if e > explained {
                explained = e;
                explained_by = Some(c);
            }
        }
        let up_score = evidence * (1.0 - explained.min(1.0));

        // Down: own change of traffic, cleared by the same in a caller.
        let own_down = n.own_down.map(|x| x.0).unwrap_or(0.0);
        let upstream = graph
            .callers(name)
            .filter_map(|c| nodes.get(c).and_then(|x| x.own_down).map(|x| x.0))
            .fold(0.0f64, f64::max);
        let down_score = down_weight * own_down * (1.0 - upstream.min(1.0));

        let score = up_score.max(down_score);
        if score <= 0.0 {
            continue;
        }
        let reason = if up_score >= down_score {
            up_reason(
                name,
                n,
                own,
                share,
                callers,
                explained_by.filter(|_| explained > 0.0),
            )
        } else {
            down_reason(name, n, upstream, graph.callers(name).next().is_none())
        };
        out.insert(name.clone(), Scored { score, reason });
    }
    out
}

fn up_reason(
    name: &str,
    n: &Node<'_>,
    own: f64,
    share: f64,
    callers: usize,
    partly: Option<&str>,
) -> String {
    let downstream = n.out_edges.iter().filter(|r| up(r) > 0.0).count();
    let tail = match (downstream, partly) {
        (0, _) => " while its own calls downstream are normal".to_string(),
        (_, Some(c)) => format!("; {c} downstream is anomalous too"),
        (k, None) => format!(
            " and {k} of its {} calls downstream are slow while those services are not",
            n.out_edges.len()
        ),
    };
    if share >= own && share > 0.0 {
        let slow: Vec<&&WindowRecord> = n.in_edges.iter().filter(|r| up(r) > 0.0).collect();
        let worst = slow
            .iter()
            .filter_map(|r| strength(r, is_up).map(|(s, c)| (s, *r, c)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let who = if slow.len() == callers {
            if callers == 1 {
                "its caller sees".to_string()
            } else {
                format!("all {callers} callers see")
            }
        } else {
            format!("{} of {callers} callers see", slow.len())
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
        let own_note = if own == 0.0 {
            ", its own spans are normal"
        } else {
            ""
        };
        format!("{name}: {who} it anomalous{detail}{own_note}{tail}")
    } else {
        let detail = n
            .own_up
            .and_then(|(_, r)| strength(r, is_up))
            .map(|(_, c)| format!("{} {}", c.feature, ratio_text(c.actual, c.typical)))
            .unwrap_or_else(|| "anomalous".into());
        format!("{name}: {detail}{tail}")
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
