//! Feedback from the people who look at the anomalies, shared by the whole process:
//! - **not an anomaly**: a flagged window that was fine. The `iforest` processor that scored it
//!   learns it as normal, and from then on windows of that series no further off typical than
//!   it (by a quarter) on the features that flagged it are normal too;
//! - **expected**: a time range (a maintenance, a planned load test), for every service or one.
//!   Anomalies in it are still scored and recorded, marked `anomaly.expected`, but they open no
//!   incident and send no alert.
//!
//! The console's API posts to the board; each `iforest` processor takes the dismissals it has
//! not seen at its next batch, and asks it whether a window it flags is expected. What it
//! learned is saved with its models (`model_path`), expected ranges too, so both survive a
//! restart. The board is bounded: the newest `MAX_DISMISSALS` dismissals, `MAX_EXPECTED` ranges.

use super::window::{SeriesKey, N_FEATURES};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Dismissals the board keeps for the processors that have not taken them yet (and to list).
pub const MAX_DISMISSALS: usize = 10_000;
/// Expected ranges kept at once.
pub const MAX_EXPECTED: usize = 1_000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FeedbackError {
    #[error("an expected range must end after it starts")]
    EmptyRange,
    #[error("{MAX_EXPECTED} expected ranges are already held: remove some first")]
    TooManyRanges,
}

/// A window someone said is not an anomaly.
#[derive(Debug, Clone, PartialEq)]
pub struct Dismissal {
    /// Order on the board (from 1).
    pub seq: u64,
    pub series: Arc<SeriesKey>,
    pub start_ns: u64,
    /// The window's features, as it was scored.
    pub features: [f64; N_FEATURES],
    /// When it was said (Unix ns).
    pub at_ns: u64,
}

/// A time range when anomalies are expected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectedRange {
    /// Derived from what it covers: the same range posted twice is one.
    pub id: String,
    pub from_ns: u64,
    pub to_ns: u64,
    /// One service (its own series and its calls out), or every service.
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub note: String,
}

impl ExpectedRange {
    pub fn new(
        from_ns: u64,
        to_ns: u64,
        service: Option<String>,
        note: String,
    ) -> Result<Self, FeedbackError> {
        if to_ns <= from_ns {
            return Err(FeedbackError::EmptyRange);
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h = (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(&from_ns.to_le_bytes());
        eat(&to_ns.to_le_bytes());
        eat(service.as_deref().unwrap_or("*").as_bytes());
        Ok(Self {
            id: format!("{h:016x}"),
            from_ns,
            to_ns,
            service,
            note,
        })
    }

    /// Whether a window of `service` over `[start_ns, end_ns)` falls in the range (overlaps it).
    pub fn covers(&self, service: &str, start_ns: u64, end_ns: u64) -> bool {
        start_ns < self.to_ns
            && end_ns > self.from_ns
            && self.service.as_deref().is_none_or(|s| s == service)
    }
}

#[derive(Debug, Default)]
struct Inner {
    dismissals: VecDeque<Dismissal>,
    expected: Vec<ExpectedRange>,
}

/// The process's feedback (see the module's comment).
#[derive(Debug, Default)]
pub struct FeedbackBoard {
    inner: Mutex<Inner>,
    /// The newest dismissal's `seq`: a processor with nothing new to take reads only this.
    latest: AtomicU64,
    /// Whether any expected range is held: a processor flagging a window asks no more without.
    any_expected: AtomicBool,
    /// Changes of any kind so far: what a processor compares to know if it has news.
    changes: AtomicU64,
}

impl FeedbackBoard {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The board as it is; a panic while it was held (none is expected) leaves it as it was.
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Says that a window is not an anomaly; `false` if it was said already.
    pub fn dismiss(
        &self,
        series: Arc<SeriesKey>,
        start_ns: u64,
        features: [f64; N_FEATURES],
        at_ns: u64,
    ) -> bool {
        let mut inner = self.inner();
        if inner
            .dismissals
            .iter()
            .any(|d| d.start_ns == start_ns && d.series == series)
        {
            return false;
        }
        let seq = self.latest.load(Ordering::Acquire) + 1;
        inner.dismissals.push_back(Dismissal {
            seq,
            series,
            start_ns,
            features,
            at_ns,
        });
        if inner.dismissals.len() > MAX_DISMISSALS {
            inner.dismissals.pop_front();
        }
        self.latest.store(seq, Ordering::Release);
        self.changes.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Changes so far (dismissals, ranges added or removed).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// The newest dismissal's `seq` (0 before any).
    pub fn latest(&self) -> u64 {
        self.latest.load(Ordering::Acquire)
    }

    /// The dismissals after `seq`, oldest first.
    pub fn dismissals_after(&self, seq: u64) -> Vec<Dismissal> {
        let inner = self.inner();
        let from = inner.dismissals.partition_point(|d| d.seq <= seq);
        inner.dismissals.range(from..).cloned().collect()
    }

    /// Every dismissal held, oldest first.
    pub fn dismissals(&self) -> Vec<Dismissal> {
        self.dismissals_after(0)
    }

    /// Adds an expected range (the same one again changes nothing but its note).
    pub fn expect(&self, range: ExpectedRange) -> Result<ExpectedRange, FeedbackError> {
        let mut inner = self.inner();
        if let Some(r) = inner.expected.iter_mut().find(|r| r.id == range.id) {
            r.note = range.note;
            return Ok(r.clone());
        }
        if inner.expected.len() >= MAX_EXPECTED {
            return Err(FeedbackError::TooManyRanges);
        }
        inner.expected.push(range.clone());
        inner.expected.sort_by_key(|r| (r.from_ns, r.to_ns));
        self.any_expected.store(true, Ordering::Release);
        self.changes.fetch_add(1, Ordering::AcqRel);
        Ok(range)
    }

    /// Removes an expected range; `false` if there was none with that id.
    pub fn withdraw(&self, id: &str) -> bool {
        let mut inner = self.inner();
        let before = inner.expected.len();
        inner.expected.retain(|r| r.id != id);
        self.any_expected
            .store(!inner.expected.is_empty(), Ordering::Release);
        let removed = inner.expected.len() < before;
        if removed {
            self.changes.fetch_add(1, Ordering::AcqRel);
        }
        removed
    }

    /// The expected ranges held, by start.
    pub fn expected(&self) -> Vec<ExpectedRange> {
        self.inner().expected.clone()
    }

    /// Takes ranges read back from saved models (those beyond the cap are dropped, oldest
    /// kept: a saved file holds at most the cap).
    pub fn restore(&self, ranges: Vec<ExpectedRange>) {
        for r in ranges {
            if self.expect(r).is_err() {
                break;
            }
        }
    }

    /// The expected range a window of `service` over `[start_ns, end_ns)` falls in, if any.
    pub fn expected_at(&self, service: &str, start_ns: u64, end_ns: u64) -> Option<String> {
        if !self.any_expected.load(Ordering::Acquire) {
            return None;
        }
        self.inner()
            .expected
            .iter()
            .find(|r| r.covers(service, start_ns, end_ns))
            .map(|r| r.id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dismissals_are_taken_in_order_once_each_and_bounded() {
        let b = FeedbackBoard::new();
        let key = Arc::new(SeriesKey::service("a"));
        assert_eq!(b.latest(), 0);
        assert!(b.dismiss(key.clone(), 10, [1.0; N_FEATURES], 5));
        assert!(!b.dismiss(key.clone(), 10, [1.0; N_FEATURES], 6));
        assert!(b.dismiss(key.clone(), 20, [2.0; N_FEATURES], 7));
        assert_eq!(b.latest(), 2);
        let after_first: Vec<u64> = b.dismissals_after(1).iter().map(|d| d.start_ns).collect();
        assert_eq!(after_first, [20]);
        assert!(b.dismissals_after(2).is_empty());
        for i in 0..MAX_DISMISSALS as u64 + 5 {
            b.dismiss(key.clone(), 100 + i, [0.0; N_FEATURES], 0);
        }
        assert_eq!(b.dismissals().len(), MAX_DISMISSALS);
        assert_eq!(b.dismissals_after(b.latest() - 1).len(), 1);
    }

    #[test]
    fn an_expected_range_covers_the_windows_it_overlaps_for_its_service() {
        let b = FeedbackBoard::new();
        assert_eq!(b.expected_at("a", 0, 10), None);
        assert_eq!(
            ExpectedRange::new(5, 5, None, String::new()),
            Err(FeedbackError::EmptyRange)
        );
        let all = b
            .expect(ExpectedRange::new(100, 200, None, "load test".into()).unwrap())
            .unwrap();
        let one = b
            .expect(ExpectedRange::new(300, 400, Some("b".into()), String::new()).unwrap())
            .unwrap();
        assert_eq!(b.expected_at("a", 90, 100), None);
        assert_eq!(b.expected_at("a", 90, 110), Some(all.id.clone()));
        assert_eq!(b.expected_at("a", 199, 209), Some(all.id.clone()));
        assert_eq!(b.expected_at("a", 300, 310), None);
        assert_eq!(b.expected_at("b", 300, 310), Some(one.id.clone()));
        // The same range again is the same range.
        let again = b
            .expect(ExpectedRange::new(100, 200, None, "moved".into()).unwrap())
            .unwrap();
        assert_eq!(again.id, all.id);
        assert_eq!(b.expected().len(), 2);
        assert!(b.withdraw(&all.id));
        assert!(!b.withdraw(&all.id));
        assert_eq!(b.expected_at("a", 150, 160), None);
        let restored = FeedbackBoard::new();
        restored.restore(b.expected());
        assert_eq!(restored.expected_at("b", 350, 360), Some(one.id));
    }
}
