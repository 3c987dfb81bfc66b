//! Calls joined with the spans that served them. A CLIENT span and the SERVER span whose parent
//! it is (same trace) describe one call from both ends: the call's duration less the served
//! span's is the time spent between the two services (the network, the callee's accept queue,
//! the caller's connection pool). A delay at a service's network shows there, in every call to
//! and from it, whatever the services' own spans do; measured per call, it does not mix the
//! callee's other callers' operations in, as a caller's mean less the callee's mean would.
//!
//! The two halves arrive in any order and in different requests (the caller's and the
//! callee's exporters). Each waits here for the other until its window has closed; at most
//! `MAX_PENDING` of each kind wait, and a span that finds the table full is not joined
//! (counted by the processor).

use crate::model::window::{SeriesKey, Signal};
use std::collections::VecDeque;

/// Calls (and served spans) waiting for their other half, at most this many of each.
pub const MAX_PENDING: usize = 65_536;

/// One end of a call, as the join needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct End {
    pub end_ns: u64,
    pub ms: f64,
    pub error: bool,
    pub client_error: bool,
}

/// A call whose served span was seen: what it adds to its edge's network series.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    /// The edge's network series (`Signal::Network`).
    pub key: SeriesKey,
    /// The call's end: its window is the call's.
    pub end_ns: u64,
    /// The call's time beyond the served span's (never below zero).
    pub ms: f64,
    /// The call failed while the span that served it did not (a connection refused or reset,
    /// a proxy's 502/503/504, a timeout before the answer).
    pub error: bool,
    /// The call got a client error (4xx) the served span did not answer (a proxy's 429, 408).
    pub client_error: bool,
}

type Id = (u128, u64);

#[derive(Default)]
pub struct Joins {
    /// Calls by (trace, their span id), with their edge.
    calls: foldhash::HashMap<Id, (SeriesKey, End)>,
    /// Served spans by (trace, their parent's span id).
    served: foldhash::HashMap<Id, End>,
    /// What was put in, oldest first, to let go of (end time, id, a call or not); entries
    /// joined since are skipped when their turn comes.
    order: VecDeque<(u64, Id, bool)>,
}

fn join(key: &SeriesKey, call: End, served: End) -> Joined {
    Joined {
        key: SeriesKey {
            signal: Signal::Network,
            ..key.clone()
        },
        end_ns: call.end_ns,
        ms: (call.ms - served.ms).max(0.0),
        error: call.error && !served.error,
        client_error: call.client_error && !served.client_error,
    }
}

impl Joins {
    /// A CLIENT span `span` of `trace`, on edge `key`: joined if its served span was seen,
    /// else kept for it. `Err` when the table is full (the call is not joined).
    pub fn call(
        &mut self,
        trace: u128,
        span: u64,
        key: &SeriesKey,
        end: End,
    ) -> Result<Option<Joined>, Full> {
        let id = (trace, span);
        if let Some(served) = self.served.remove(&id) {
            return Ok(Some(join(key, end, served)));
        }
        if self.calls.len() >= MAX_PENDING || self.order.len() >= 2 * MAX_PENDING {
            return Err(Full);
        }
        self.calls.insert(id, (key.clone(), end));
        self.order.push_back((end.end_ns, id, true));
        Ok(None)
    }

    /// A SERVER span of `trace` whose parent is `parent`: joined with that call if it was seen,
    /// else kept for it.
    pub fn served(&mut self, trace: u128, parent: u64, end: End) -> Result<Option<Joined>, Full> {
        let id = (trace, parent);
        if let Some((key, call)) = self.calls.remove(&id) {
            return Ok(Some(join(&key, call, end)));
        }
        if self.served.len() >= MAX_PENDING || self.order.len() >= 2 * MAX_PENDING {
            return Err(Full);
        }
        self.served.insert(id, end);
        self.order.push_back((end.end_ns, id, false));
        Ok(None)
    }

    /// Lets go of the halves that ended before `before_ns` (their windows have closed: the
    /// other half could add nothing).
    pub fn expire(&mut self, before_ns: u64) {
        while let Some(&(end_ns, id, is_call)) = self.order.front() {
            if end_ns >= before_ns {
                break;
            }
            self.order.pop_front();
            if is_call {
                if self.calls.get(&id).is_some_and(|(_, e)| e.end_ns == end_ns) {
                    self.calls.remove(&id);
                }
            } else if self.served.get(&id).is_some_and(|e| e.end_ns == end_ns) {
                self.served.remove(&id);
            }
        }
    }

    /// Halves waiting.
    pub fn pending(&self) -> usize {
        self.calls.len() + self.served.len()
    }
}

/// The table was full: the span is not joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A trace id as a number (zeros: none).
pub fn trace_number(trace: &[u8; 16]) -> u128 {
    u128::from_le_bytes(*trace)
}

/// A span id as a number: its 8 bytes; none (0) when it is not 8 bytes long or all zeros.
pub fn span_number(id: &[u8]) -> u64 {
    <[u8; 8]>::try_from(id).map_or(0, u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(end_ns: u64, ms: f64) -> End {
        End {
            end_ns,
            ms,
            error: false,
            client_error: false,
        }
    }

    #[test]
    fn a_call_and_the_span_that_served_it_join_in_either_order() {
        let edge = SeriesKey::edge("a", "b");
        let mut j = Joins::default();
        // Call first.
        assert_eq!(j.call(1, 10, &edge, end(100, 50.0)), Ok(None));
        let got = j.served(1, 10, end(99, 30.0)).unwrap().unwrap();
        assert_eq!(got.key, SeriesKey::network("a", "b"));
        assert_eq!((got.end_ns, got.ms), (100, 20.0));
        // Served first; another trace with the same span id does not join.
        assert_eq!(j.served(2, 11, end(200, 5.0)), Ok(None));
        assert_eq!(j.call(3, 11, &edge, end(201, 9.0)), Ok(None));
        let got = j.call(2, 11, &edge, end(201, 9.0)).unwrap().unwrap();
        assert_eq!(got.ms, 4.0);
        assert_eq!(j.pending(), 1);
    }

    #[test]
    fn a_failure_only_the_caller_saw_is_a_transport_error() {
        let edge = SeriesKey::edge("a", "b");
        let mut j = Joins::default();
        let failed = End {
            error: true,
            ..end(100, 5.0)
        };
        j.call(1, 1, &edge, failed).unwrap();
        let got = j.served(1, 1, end(99, 1.0)).unwrap().unwrap();
        assert!(got.error);
        j.call(1, 2, &edge, failed).unwrap();
        let both = j.served(1, 2, failed).unwrap().unwrap();
        assert!(
            !both.error,
            "the callee failed: the callee's error, not the network's"
        );
        // A served span longer than its call (clocks of two hosts) is no negative time.
        j.call(1, 3, &edge, end(100, 5.0)).unwrap();
        assert_eq!(j.served(1, 3, end(99, 6.0)).unwrap().unwrap().ms, 0.0);
    }

    #[test]
    fn halves_whose_windows_closed_are_let_go_and_the_table_is_bounded() {
        let edge = SeriesKey::edge("a", "b");
        let mut j = Joins::default();
        j.call(1, 1, &edge, end(100, 5.0)).unwrap();
        j.served(1, 2, end(300, 5.0)).unwrap();
        j.expire(200);
        assert_eq!(j.pending(), 1);
        assert_eq!(
            j.served(1, 1, end(99, 1.0)),
            Ok(None),
            "the call was let go"
        );
        let mut j = Joins::default();
        for i in 0..MAX_PENDING as u64 {
            j.call(1, i, &edge, end(100, 5.0)).unwrap();
        }
        assert_eq!(j.call(1, u64::MAX, &edge, end(100, 5.0)), Err(Full));
        // Its other half still joins what waits.
        assert!(j.served(1, 7, end(99, 1.0)).unwrap().is_some());
        j.expire(101);
        assert_eq!(j.pending(), 0);
        assert!(j.order.is_empty());
    }
}
