//! Self-telemetry: counters and gauges per component, served as Prometheus text on `/metrics`,
//! with `/healthz` beside it.
//!
//! Components take their counters once, when they are built, and then only touch atomics: the
//! data path never looks a metric up by name.

mod server;

pub use server::{serve, HealthState, TelemetryServerError};

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Label pairs, in order.
pub type Labels = Vec<(&'static str, String)>;

/// A monotonically increasing count.
#[derive(Clone, Default, Debug)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

type GaugeFn = Box<dyn Fn() -> f64 + Send + Sync>;

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    counters: Vec<(Labels, Counter)>,
    gauges: Vec<(Labels, GaugeFn)>,
}

/// The registry. Cheap to clone; all clones share the same metrics.
#[derive(Clone, Default)]
pub struct Telemetry {
    families: Arc<Mutex<Vec<Family>>>,
}

impl Telemetry {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_family<R>(
        &self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        f: impl FnOnce(&mut Family) -> R,
    ) -> R {
        let mut fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let idx = match fams.iter().position(|fam| fam.name == name) {
            Some(i) => i,
            None => {
                fams.push(Family {
                    name,
                    help,
                    kind,
                    counters: Vec::new(),
                    gauges: Vec::new(),
                });
                fams.len() - 1
            }
        };
        f(&mut fams[idx])
    }

    /// The counter `name{labels}`, created on first use; the same labels give the same counter.
    pub fn counter(&self, name: &'static str, help: &'static str, labels: Labels) -> Counter {
        self.with_family(name, help, "counter", |fam| {
            if let Some((_, c)) = fam.counters.iter().find(|(l, _)| *l == labels) {
                return c.clone();
            }
            let c = Counter::default();
            fam.counters.push((labels, c.clone()));
            c
        })
    }

    /// A gauge read when `/metrics` is scraped.
    pub fn gauge_fn(
        &self,
        name: &'static str,
        help: &'static str,
        labels: Labels,
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.with_family(name, help, "gauge", |fam| {
            fam.gauges.retain(|(l, _)| *l != labels);
            fam.gauges.push((labels, Box::new(f)));
        })
    }

    /// The sum of a counter over every label set that contains `filter` (tests and summaries).
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> u64 {
        let fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        fams.iter()
            .filter(|f| f.name == name)
            .flat_map(|f| &f.counters)
            .filter(|(labels, _)| {
                filter
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, c)| c.get())
            .sum()
    }

    /// The label sets of gauge `name` whose value is above zero now (for the health report).
    pub fn gauges_set(&self, name: &str) -> Vec<Labels> {
        let fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        fams.iter()
            .filter(|f| f.name == name)
            .flat_map(|f| &f.gauges)
            .filter(|(_, g)| g() > 0.0)
            .map(|(labels, _)| labels.clone())
            .collect()
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for fam in fams.iter() {
            let _ = writeln!(out, "# HELP {} {}", fam.name, fam.help);
            let _ = writeln!(out, "# TYPE {} {}", fam.name, fam.kind);
            for (labels, c) in &fam.counters {
                let _ = writeln!(out, "{}{} {}", fam.name, render_labels(labels), c.get());
            }
            for (labels, g) in &fam.gauges {
                let _ = writeln!(out, "{}{} {}", fam.name, render_labels(labels), g());
            }
        }
        out
    }
}

fn render_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// Metric names, in one place so dashboards and tests agree.
pub mod names {
    pub const RECEIVER_ACCEPTED: &str = "otelwatch_receiver_accepted_items_total";
    pub const RECEIVER_REFUSED: &str = "otelwatch_receiver_refused_items_total";
    pub const RECEIVER_REJECTED_ITEMS: &str = "otelwatch_receiver_rejected_items_total";
    pub const RECEIVER_BAD_REQUESTS: &str = "otelwatch_receiver_bad_requests_total";
    pub const RECEIVER_REQUESTS: &str = "otelwatch_receiver_requests_total";
    pub const EXPORTER_SENT: &str = "otelwatch_exporter_sent_items_total";
    pub const EXPORTER_FAILED: &str = "otelwatch_exporter_failed_items_total";
    pub const EXPORTER_RETRIES: &str = "otelwatch_exporter_retries_total";
    pub const EXPORTER_QUEUE_UNREADABLE: &str = "otelwatch_exporter_queue_unreadable_total";
    pub const QUEUE_LENGTH: &str = "otelwatch_queue_length";
    pub const QUEUE_CAPACITY: &str = "otelwatch_queue_capacity";
    pub const PIPELINE_SKIPPED: &str = "otelwatch_pipeline_skipped_items_total";
    /// 1 while a detection pipeline skips batches (its last one found it full).
    pub const PIPELINE_SKIPPING: &str = "otelwatch_pipeline_skipping";
    /// 1 while an exporter's last attempt failed (it is retrying or has given up on a batch).
    pub const EXPORTER_FAILING: &str = "otelwatch_exporter_failing";
    pub const RECEIVER_UNAUTHENTICATED: &str = "otelwatch_receiver_unauthenticated_requests_total";
    pub const MEMORY_HELD: &str = "otelwatch_memory_held_bytes";
    pub const MEMORY_LIMITED: &str = "otelwatch_memory_limited";
    pub const MEMORY_REFUSED: &str = "otelwatch_memory_refused_items_total";
    pub const ES_DOCUMENTS: &str = "otelwatch_elasticsearch_documents_total";
    pub const ES_DEAD_LETTERS: &str = "otelwatch_elasticsearch_dead_letters_total";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges() {
        let t = Telemetry::new();
        let c = t.counter("x_total", "things", vec![("component", "otlp".into())]);
        c.add(3);
        t.counter("x_total", "things", vec![("component", "otlp".into())])
            .inc();
        t.gauge_fn("q", "queue", vec![("queue", "a\"b".into())], || 7.0);
        let text = t.render();
        assert!(
            text.contains("# TYPE x_total counter\nx_total{component=\"otlp\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("q{queue=\"a\\\"b\"} 7\n"), "{text}");
        assert_eq!(t.sum("x_total", &[("component", "otlp")]), 4);
        assert_eq!(t.sum("x_total", &[("component", "nope")]), 0);
    }
}
