//! One `incidents` processor for several pipelines: the window records of the traces, logs and
//! metrics pipelines that list the same component id are joined by window start, so a
//! service's slow spans, its error logs and its CPU are judged together, in one incident and
//! one ranking.
//!
//! Each pipeline's instance (`Member`) hands its records to the shared `Hub`. A window is
//! judged once every member has delivered it (a member's windows close in order, so its
//! progress is the latest window start it delivered), or once it has waited `join_wait` for a
//! member that delivers nothing at all (a pipeline with no data). Each member gets its own
//! records back, annotated; incident events go out through one member: the first listed that
//! has not stopped. A pipeline whose input has closed waits (up to `join_wait`, ticking) for the
//! others to get as far before its member stops (`StopGate`): a stopping member's windows are
//! judged with what the others have delivered, so without the wait a replay whose signals end
//! at different moments would judge its last windows without the slower signals' records. Windows waiting are bounded (`MAX_PENDING` window starts; beyond, the
//! oldest is judged with what it has). With one pipeline a window is judged as it arrives.

use super::IncidentsProcessor;
use crate::model::incident::IncidentEvent;
use crate::model::window::WindowRecord;
use crate::pipeline::{Batch, Payload};
use crate::processors::{Processor, StopGate};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Window starts held at most while a member catches up.
const MAX_PENDING: usize = 4096;

struct Member {
    /// The latest window start delivered (none yet: 0).
    progress: u64,
    /// When it last delivered (or registered).
    heard: Instant,
    finished: bool,
    out: Vec<Batch>,
}

pub struct Hub {
    processor: IncidentsProcessor,
    wait: Duration,
    members: Vec<Member>,
    /// Records waiting, by window start: (member, record), and when the first arrived.
    pending: BTreeMap<u64, (Instant, Vec<(usize, WindowRecord)>)>,
    /// Where the members' pipelines wait for each other when they stop.
    gate: StopGate,
}

impl Hub {
    pub fn new(processor: IncidentsProcessor, wait: Duration) -> Self {
        Self {
            processor,
            wait,
            members: Vec::new(),
            pending: BTreeMap::new(),
            gate: StopGate::new(wait),
        }
    }

    fn register(&mut self) -> usize {
        self.gate.join();
        self.members.push(Member {
            progress: 0,
            heard: Instant::now(),
            finished: false,
            out: Vec::new(),
        });
        self.members.len() - 1
    }

    fn offer(&mut self, member: usize, records: Vec<WindowRecord>, now: Instant) {
        let m = &mut self.members[member];
        m.heard = now;
        for r in records {
            m.progress = m.progress.max(r.start_ns);
            self.pending
                .entry(r.start_ns)
                .or_insert_with(|| (now, Vec::new()))
                .1
                .push((member, r));
        }
    }

    /// Whether window `start`, waiting since `since`, has all it will get (or must go now:
    /// up to `through`).
    fn ready(&self, start: u64, since: Instant, now: Instant, through: u64) -> bool {
        start <= through
            || self.pending.len() > MAX_PENDING
            || self.members.iter().all(|m| {
                m.finished
                    || m.progress >= start
                    || (now.duration_since(m.heard) >= self.wait
                        && now.duration_since(since) >= self.wait)
            })
    }

    /// Judges every window that is ready, oldest first.
    fn flush(&mut self, now: Instant) {
        self.flush_through(now, 0);
    }

    /// Judges every window that is ready and every one up to `through`, oldest first.
    fn flush_through(&mut self, now: Instant, through: u64) {
        let mut by_member: Vec<Vec<WindowRecord>> = vec![Vec::new(); self.members.len()];
        let mut events: Vec<IncidentEvent> = Vec::new();
        while let Some((&start, (since, _))) = self.pending.first_key_value() {
            if !self.ready(start, *since, now, through) {
                break;
            }
            let Some((_, (_, mut entries))) = self.pending.pop_first() else {
                break;
            };
            // Judged in one order whatever order the pipelines delivered in, so a replay
            // gives the same incidents every time.
            entries.sort_by(|a, b| a.1.series.cmp(&b.1.series).then(a.0.cmp(&b.0)));
            let (owners, mut records): (Vec<usize>, Vec<WindowRecord>) =
                entries.into_iter().unzip();
            self.processor.on_window(&mut records, &mut events);
            for (owner, r) in owners.into_iter().zip(records) {
                by_member[owner].push(r);
            }
        }
        for (m, records) in self.members.iter_mut().zip(by_member) {
            if !records.is_empty() {
                m.out.push(windows_batch(records));
            }
        }
        self.route(events);
    }

    /// Incident events go out through the first member still running (or the last one).
    fn route(&mut self, events: Vec<IncidentEvent>) {
        if events.is_empty() {
            return;
        }
        let to = self
            .members
            .iter()
            .position(|m| !m.finished)
            .unwrap_or(self.members.len().saturating_sub(1));
        if let Some(m) = self.members.get_mut(to) {
            m.out.push(Batch {
                items: events.len(),
                payload: Payload::Incidents(Arc::new(events)),
                encoded: None,
                held: Default::default(),
            });
        }
    }

    /// A member stops: its windows still waiting are judged now with what the others have
    /// delivered (its records can leave only through its own pipeline, which is stopping);
    /// what the others deliver for them later is judged as it comes.
    fn finish(&mut self, member: usize, now: Instant) {
        self.members[member].finished = true;
        let through = self
            .pending
            .iter()
            .filter(|(_, (_, entries))| entries.iter().any(|(m, _)| *m == member))
            .map(|(start, _)| *start)
            .max()
            .unwrap_or(0);
        self.flush_through(now, through);
        if self.members.iter().all(|m| m.finished) {
            let mut events = Vec::new();
            self.processor.resolve_all(&mut events);
            // Every member has stopped: the one stopping now takes them.
            self.members[member].finished = false;
            self.route(events);
            self.members[member].finished = true;
        }
    }
}

fn windows_batch(records: Vec<WindowRecord>) -> Batch {
    Batch {
        items: records.len(),
        payload: Payload::Windows(Arc::new(records)),
        encoded: None,
        held: Default::default(),
    }
}

/// One pipeline's instance of a shared `incidents` processor.
pub struct MemberStage {
    hub: Arc<Mutex<Hub>>,
    member: usize,
}

impl MemberStage {
    pub fn join(hub: Arc<Mutex<Hub>>) -> Self {
        let member = lock(&hub).register();
        Self { hub, member }
    }
}

fn lock(hub: &Mutex<Hub>) -> std::sync::MutexGuard<'_, Hub> {
    // A panic elsewhere while holding it leaves the state as consistent as any window's end.
    hub.lock().unwrap_or_else(|e| e.into_inner())
}

impl Processor for MemberStage {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        let Payload::Windows(records) = batch.payload else {
            out.push(batch);
            return;
        };
        let records = Arc::try_unwrap(records).unwrap_or_else(|a| (*a).clone());
        let now = Instant::now();
        let mut hub = lock(&self.hub);
        hub.offer(self.member, records, now);
        hub.flush(now);
        out.append(&mut hub.members[self.member].out);
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(200))
    }

    fn on_tick(&mut self, out: &mut Vec<Batch>) {
        let now = Instant::now();
        let mut hub = lock(&self.hub);
        hub.flush(now);
        out.append(&mut hub.members[self.member].out);
    }

    fn stop_gate(&self) -> Option<StopGate> {
        Some(lock(&self.hub).gate.clone())
    }

    fn on_shutdown(&mut self, out: &mut Vec<Batch>) {
        let mut hub = lock(&self.hub);
        hub.finish(self.member, Instant::now());
        out.append(&mut hub.members[self.member].out);
    }
}
