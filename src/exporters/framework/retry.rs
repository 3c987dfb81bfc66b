//! Retrying with jittered exponential backoff: the settings (`retry_on_failure`) and the one
//! place that decides how long to wait next and when to give up. The framework retries whole
//! batches with it; an exporter that retries parts of a batch (the Elasticsearch items a
//! `_bulk` request refused) or drains a disk queue uses the same [`Backoff`].

use crate::config::duration::ConfigDuration;
use crate::config::error::ConfigError;
use rand::RngExt;
use serde::Deserialize;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    pub enabled: bool,
    pub initial_interval: ConfigDuration,
    pub max_interval: ConfigDuration,
    /// Give up on a batch after this long; `0` retries until shutdown.
    pub max_elapsed_time: ConfigDuration,
    pub multiplier: f64,
    pub randomization_factor: f64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_interval: ConfigDuration::from_secs(5),
            max_interval: ConfigDuration::from_secs(30),
            max_elapsed_time: ConfigDuration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

impl RetrySettings {
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    pub fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            errors.push(ConfigError::new(
                format!("{path}.multiplier"),
                "must be at least 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            errors.push(ConfigError::new(
                format!("{path}.randomization_factor"),
                "must be between 0 and 1",
            ));
        }
        if self.enabled && self.initial_interval.get().is_zero() {
            errors.push(ConfigError::new(
                format!("{path}.initial_interval"),
                "must be longer than 0",
            ));
        }
        if self.max_interval < self.initial_interval {
            errors.push(ConfigError::new(
                format!("{path}.max_interval"),
                "must not be shorter than initial_interval",
            ));
        }
    }

    /// The `attempt`-th wait (0-based), jittered by ± randomization_factor.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.initial_interval.get().as_secs_f64()
            * self.multiplier.powi(attempt.min(64) as i32);
        let base = base.min(self.max_interval.get().as_secs_f64());
        let f = self.randomization_factor;
        let jitter = if f > 0.0 {
            rand::rng().random_range(1.0 - f..=1.0 + f)
        } else {
            1.0
        };
        Duration::from_secs_f64((base * jitter).max(0.0))
    }
}

/// One retry sequence: the waits grow from `initial_interval` by `multiplier` up to
/// `max_interval`; the sequence ends when retrying is disabled or the next wait would pass
/// `max_elapsed_time` since it began (unless it is [`Backoff::unbounded`]).
#[derive(Debug)]
pub struct Backoff<'a> {
    settings: &'a RetrySettings,
    started: Instant,
    retries: u32,
    bounded: bool,
}

impl<'a> Backoff<'a> {
    pub fn new(settings: &'a RetrySettings) -> Self {
        Self {
            settings,
            started: Instant::now(),
            retries: 0,
            bounded: true,
        }
    }

    /// Never gives up (for data that is safe where it is, such as a disk queue's files).
    pub fn unbounded(settings: &'a RetrySettings) -> Self {
        Self {
            bounded: false,
            ..Self::new(settings)
        }
    }

    /// Retries so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.started = Instant::now();
        self.retries = 0;
    }

    /// The wait before the next attempt, or `None` when the sequence is over. The peer's
    /// requested delay (`after`) is a floor, clamped to `max_interval`: `Retry-After: 0` does
    /// not make a client spin, and a delay of years does not stall it (or overflow).
    pub fn next(&mut self, after: Option<Duration>) -> Option<Duration> {
        let s = self.settings;
        let computed = s.backoff(self.retries.min(64));
        let wait = match after {
            Some(a) => a.min(s.max_interval.get()).max(computed),
            None => computed,
        };
        if self.bounded {
            let limit = s.max_elapsed_time.get();
            let until = self.started.elapsed().checked_add(wait);
            let exhausted = !limit.is_zero() && until.is_none_or(|t| t > limit);
            if !s.enabled || exhausted {
                return None;
            }
        }
        self.retries += 1;
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = RetrySettings {
            initial_interval: ConfigDuration::from_secs(1),
            max_interval: ConfigDuration::from_secs(4),
            randomization_factor: 0.0,
            ..RetrySettings::default()
        };
        assert_eq!(r.backoff(0), Duration::from_secs(1));
        assert_eq!(r.backoff(1), Duration::from_millis(1500));
        assert_eq!(r.backoff(10), Duration::from_secs(4));
        let j = RetrySettings {
            randomization_factor: 0.5,
            ..r
        };
        for _ in 0..100 {
            let d = j.backoff(0);
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1500));
        }
    }

    #[test]
    fn a_sequence_ends_at_max_elapsed_time_unless_unbounded() {
        let r = RetrySettings {
            initial_interval: ConfigDuration::from_secs(2),
            max_interval: ConfigDuration::from_secs(4),
            max_elapsed_time: ConfigDuration::from_secs(5),
            randomization_factor: 0.0,
            multiplier: 1.0,
            ..RetrySettings::default()
        };
        let mut b = Backoff::new(&r);
        assert_eq!(b.next(None), Some(Duration::from_secs(2)));
        // The peer's delay is a floor: shorter ones do not shorten the wait, longer ones do
        // lengthen it, up to max_interval.
        assert_eq!(b.next(Some(Duration::ZERO)), Some(Duration::from_secs(2)));
        assert_eq!(
            b.next(Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(b.retries(), 3);
        let years = Duration::from_secs(u64::MAX / 2);
        let mut u = Backoff::unbounded(&r);
        assert_eq!(u.next(Some(years)), Some(Duration::from_secs(4)));
        // Past max_elapsed_time the sequence ends.
        let short = RetrySettings {
            max_elapsed_time: ConfigDuration::from_secs(3),
            ..r.clone()
        };
        let mut s = Backoff::new(&short);
        assert_eq!(s.next(Some(Duration::from_secs(4))), None);
        let off = RetrySettings::disabled();
        assert_eq!(Backoff::new(&off).next(None), None);
    }

    /// Property: whatever the settings and the peer's delays, every wait is at least the
    /// jittered initial interval and at most the jittered maximum, never zero, and the peer's
    /// delay is honoured up to `max_interval`.
    #[test]
    fn every_wait_stays_within_its_bounds() {
        let mut rng = crate::processors::iforest::forest::Rng::new(0x9e37_79b9_7f4a_7c15u64);
        let mut next = move || rng.next_u64();
        for _ in 0..2000 {
            let initial = Duration::from_millis(1 + next() % 10_000);
            let max = initial + Duration::from_millis(next() % 60_000);
            let f = (next() % 100) as f64 / 100.0;
            let r = RetrySettings {
                initial_interval: ConfigDuration::from_millis(initial.as_millis() as u64),
                max_interval: ConfigDuration::from_millis(max.as_millis() as u64),
                max_elapsed_time: ConfigDuration::from_secs(0),
                multiplier: 1.0 + (next() % 300) as f64 / 100.0,
                randomization_factor: f,
                enabled: true,
            };
            let mut b = Backoff::new(&r);
            for _ in 0..40 {
                let after = match next() % 4 {
                    0 => None,
                    1 => Some(Duration::ZERO),
                    2 => Some(Duration::from_millis(next() % 120_000)),
                    _ => Some(Duration::from_secs(u64::MAX / 4)),
                };
                let wait = b.next(after).expect("max_elapsed_time 0 never ends");
                let low = initial.mul_f64(1.0 - f);
                let high = max.mul_f64(1.0 + f).max(max);
                assert!(
                    wait >= low.min(max) && wait <= high,
                    "{wait:?} not in {low:?}..{high:?}"
                );
                assert!(!wait.is_zero());
                if let Some(a) = after {
                    assert!(wait >= a.min(max), "the peer's delay is a floor");
                }
            }
        }
    }
}
