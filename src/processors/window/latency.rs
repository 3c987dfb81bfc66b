//! A window's span latencies: exact while there are few, an HDR histogram beyond.
//!
//! Most windows of most series hold a few hundred spans at most. Recording each into a 13 KiB
//! histogram touches a cache line chosen by the value, every span, across every open window of
//! every series; appending to a short buffer touches the line just written. Once a window holds
//! `EXACT_MAX` latencies they move into a histogram, which takes the rest.
//!
//! The percentiles are the same either way: the histogram reports the middle of the bucket that
//! holds the value at rank ⌈p·n⌉, and so does the exact buffer, through a histogram of the same
//! shape (`Scale`) that holds nothing.

use hdrhistogram::Histogram;

/// Largest latency the histogram records exactly (1 hour, in microseconds); longer spans are
/// recorded at this value (and still count in the mean and max).
pub const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Latencies held exactly before a window moves to a histogram (4 KiB).
const EXACT_MAX: usize = 1024;
/// 2 significant digits: percentiles within 1%.
const SIGNIFICANT_DIGITS: u8 = 2;

fn histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS).unwrap_or_else(|_| {
        Histogram::new(SIGNIFICANT_DIGITS).expect("2 significant digits is valid")
    })
}

/// The histograms' bucket boundaries, for reading exact latencies as a histogram would.
pub struct Scale(Histogram<u32>);

impl Default for Scale {
    fn default() -> Self {
        Self(histogram())
    }
}

/// One window's latencies, in microseconds.
#[derive(Default)]
pub struct Latencies {
    /// Every latency, while the window has at most `EXACT_MAX` (sorted by `quantiles`).
    exact: Vec<u32>,
    /// All of them, once there were more.
    hist: Option<Box<Histogram<u32>>>,
}

impl Latencies {
    /// Empties it for another window, keeping what it allocated.
    pub fn clear(&mut self) {
        self.exact.clear();
        if let Some(h) = &mut self.hist {
            h.reset();
        }
    }

    /// Whether it has moved to a histogram (the window had many spans).
    fn counted(&self) -> bool {
        self.hist.as_ref().is_some_and(|h| !h.is_empty())
    }

    pub fn record(&mut self, ms: f64) {
        let us = ((ms * 1000.0).round() as u64).clamp(1, MAX_LATENCY_US);
        if self.counted() {
            if let Some(h) = &mut self.hist {
                h.saturating_record(us);
            }
            return;
        }
        if self.exact.len() < EXACT_MAX {
            // At most `MAX_LATENCY_US`, below `u32::MAX`.
            self.exact.push(us as u32);
            return;
        }
        let h = self.hist.get_or_insert_with(|| Box::new(histogram()));
        for v in self.exact.drain(..) {
            h.saturating_record(u64::from(v));
        }
        h.saturating_record(us);
    }

    /// The latencies (in microseconds) at quantiles `ps`, each the middle of its histogram
    /// bucket; zeros when there are none.
    pub fn quantiles<const N: usize>(&mut self, ps: [f64; N], scale: &Scale) -> [u64; N] {
        if let Some(h) = self.hist.as_deref().filter(|h| !h.is_empty()) {
            return ps.map(|p| h.median_equivalent(h.value_at_quantile(p)));
        }
        let n = self.exact.len();
        if n == 0 {
            return [0; N];
        }
        self.exact.sort_unstable();
        ps.map(|p| {
            // The histogram's rank: ⌈p·n⌉, at least the first.
            let rank = ((p.min(1.0) * n as f64).ceil() as usize).clamp(1, n);
            scale.0.median_equivalent(u64::from(self.exact[rank - 1]))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the histogram alone reports for these latencies.
    fn by_histogram(ms: &[f64], ps: [f64; 4]) -> [u64; 4] {
        let mut h = histogram();
        for m in ms {
            h.saturating_record(((m * 1000.0).round() as u64).clamp(1, MAX_LATENCY_US));
        }
        ps.map(|p| h.median_equivalent(h.value_at_quantile(p)))
    }

    #[test]
    fn exact_and_counted_latencies_give_the_histograms_percentiles() {
        let scale = Scale::default();
        let ps = [0.5, 0.95, 0.99, 1.0];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for n in [1usize, 2, 3, 7, 20, 99, 100, 101, 1000, 1024, 1025, 5000] {
            let ms: Vec<f64> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // From 0.0004 ms (below the histogram's 1 µs) to about 3 hours (above its top).
                    10f64.powf((x % 10_000) as f64 / 1000.0 - 3.4)
                })
                .collect();
            let mut l = Latencies::default();
            for m in &ms {
                l.record(*m);
            }
            assert_eq!(l.counted(), n > EXACT_MAX, "{n} latencies");
            assert_eq!(
                l.quantiles(ps, &scale),
                by_histogram(&ms, ps),
                "{n} latencies"
            );
            // Cleared, it starts exact again with what it allocated.
            l.clear();
            assert_eq!(l.quantiles(ps, &scale), [0; 4]);
            l.record(2.0);
            assert!(!l.counted());
            assert_eq!(l.quantiles(ps, &scale), by_histogram(&[2.0], ps));
        }
    }
}
