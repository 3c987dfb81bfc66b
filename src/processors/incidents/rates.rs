//! How often each series is anomalous. An anomaly in a series that is rarely anomalous says more
//! than one in a series that often is: as root-cause evidence a record weighs its surprisal,
//! `-ln p`, with `p` the series' rate of anomalous windows (a chronically noisy service then
//! does not outweigh the one service a fault made anomalous).

use crate::model::window::{SeriesKey, WindowRecord};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The rate assumed before a series has a history, and how many windows that assumption is
/// worth.
const PRIOR_RATE: f64 = 0.01;
const PRIOR_WINDOWS: f64 = 100.0;
/// Each window's weight fades with this factor per window seen (a memory of about a day of
/// 30 s windows), so a series that was noisy once is not distrusted for ever.
const FADE: f64 = 1.0 - 1.0 / 2880.0;
/// Series remembered; beyond it the ones not seen lately are forgotten.
const MAX_SERIES: usize = 100_000;

#[derive(Default, Clone, Copy)]
struct Rate {
    flagged: f64,
    seen: f64,
    last_ns: u64,
}

#[derive(Default)]
pub struct BaseRates {
    rates: BTreeMap<Arc<SeriesKey>, Rate>,
}

impl BaseRates {
    /// `-ln p` of an anomaly in `series`, from the windows seen before this one.
    pub fn surprisal(&self, series: &SeriesKey) -> f64 {
        let r = self.rates.get(series).copied().unwrap_or_default();
        let p = (r.flagged + PRIOR_RATE * PRIOR_WINDOWS) / (r.seen + PRIOR_WINDOWS);
        -p.clamp(1e-9, 1.0).ln()
    }

    /// Counts one window's records.
    pub fn observe(&mut self, records: &[WindowRecord]) {
        let Some(at_ns) = records.first().map(|r| r.start_ns) else {
            return;
        };
        for r in records {
            let e = self.rates.entry(r.series.clone()).or_default();
            e.seen = e.seen * FADE + 1.0;
            e.flagged = e.flagged * FADE + if r.alerts() { 1.0 } else { 0.0 };
            e.last_ns = at_ns;
        }
        if self.rates.len() > MAX_SERIES {
            self.rates.retain(|_, r| r.last_ns >= at_ns);
        }
    }
}
