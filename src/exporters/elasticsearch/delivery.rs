//! Delivery: one task takes documents from the spool in order and writes them in `_bulk`
//! requests, up to `sending_queue.num_consumers` at a time, never giving up on a document the
//! cluster may still take:
//! - a batch of documents gathers across segments, up to `max_documents` / `max_bytes`, so a
//!   backlog drains in full requests;
//! - an item refused with 429/5xx waits out its own backoff and then rejoins a following
//!   request; nothing sleeps while holding a request slot;
//! - a whole request refused with 429/5xx, a connection failure, or a refusal of the
//!   credentials (401/403) pauses sending (jittered backoff, `Retry-After` as a floor), keeping
//!   every document;
//! - 413 splits the request and lowers the request size from then on; 400 for a whole request
//!   splits it until the document at fault stands alone;
//! - a document refused for itself (an item's 400, a lone document over the size limit) and a
//!   spool file or line that cannot be read go to the dead-letter file with the reason, counted;
//!   they never block the rest.
//!
//! At most about `max_documents × (num_consumers + 2)` documents are held in memory; the rest
//! waits in the spool.

use super::bulk::{self, ItemOutcome};
use super::cluster::{BulkFailure, Cluster};
use super::spool::{blocking, Segment, Spool};
use super::Doc;
use crate::exporters::framework::{Backoff, ExportError};
use crate::model::time::now_ns;
use crate::telemetry::Counter;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

/// Documents given up, with the reason, one JSON object per line.
pub(super) struct DeadLetter {
    pub path: Option<PathBuf>,
    /// By reason: rejected (an item refused as invalid), too_large, unreadable.
    pub counters: [Counter; 3],
}

#[derive(Clone, Copy)]
enum Reason {
    Rejected,
    TooLarge,
    Unreadable,
}

impl DeadLetter {
    async fn write(&self, entries: Vec<(Reason, serde_json::Value)>) {
        if entries.is_empty() {
            return;
        }
        for (reason, _) in &entries {
            self.counters[match reason {
                Reason::Rejected => 0,
                Reason::TooLarge => 1,
                Reason::Unreadable => 2,
            }]
            .inc();
        }
        let Some(path) = self.path.clone() else {
            return;
        };
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let mut text = Vec::new();
            for (_, e) in entries {
                serde_json::to_writer(&mut text, &e)?;
                text.push(b'\n');
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(&text)?;
            f.sync_all()
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot write the dead-letter file");
        }
    }
}

fn dead_doc(doc: &Doc, status: Option<u16>, reason: &str) -> serde_json::Value {
    json!({
        "time": crate::model::time::rfc3339(now_ns()),
        "reason": reason,
        "status": status,
        "index": doc.index,
        "id": doc.id,
        "document": doc.body,
    })
}

struct Item {
    seq: u64,
    doc: Doc,
    attempts: u32,
}

/// A segment whose documents are loaded and not all settled.
struct Open {
    remaining: usize,
    given_up: usize,
}

pub(super) struct Delivery {
    pub cluster: Arc<Cluster>,
    pub spool: Arc<Spool>,
    pub dead: DeadLetter,
    /// 1 while sending fails as a whole (health).
    pub failing: Arc<AtomicBool>,
    /// Documents held by the delivery: loaded, waiting to be retried, in flight.
    pub held: Arc<AtomicUsize>,
}

struct State {
    d: Delivery,
    consumers: usize,
    cap: usize,
    max_docs: usize,
    max_bytes: usize,
    open: HashMap<u64, Open>,
    /// Unreadable segments that could not be moved aside: not read again in this run.
    skipped: HashSet<u64>,
    ready: VecDeque<Item>,
    /// Requests split after a 400/413, sent before anything else.
    split: VecDeque<Vec<Item>>,
    /// Items refused for now, by when they may go again.
    waiting: BTreeMap<(Instant, u64), Item>,
    ticket: u64,
    inflight: JoinSet<Result<Vec<ItemOutcome>, BulkFailure>>,
    sent: HashMap<Id, Vec<Item>>,
    paused_until: Option<Instant>,
    pauses: u32,
}

enum Wake {
    Done(Id, Option<Result<Vec<ItemOutcome>, BulkFailure>>),
    Changed,
    Timer,
    Stop,
}

/// Runs until `stop` turns true; what is not delivered by then stays in the spool.
pub(super) async fn run(d: Delivery, mut stop: watch::Receiver<bool>) {
    let cfg = &d.cluster.cfg;
    let consumers = cfg.sending_queue.num_consumers.max(1);
    let mut s = State {
        consumers,
        cap: cfg.max_documents.saturating_mul(consumers + 2),
        max_docs: cfg.max_documents,
        max_bytes: cfg.max_bytes,
        open: HashMap::new(),
        skipped: HashSet::new(),
        ready: VecDeque::new(),
        split: VecDeque::new(),
        waiting: BTreeMap::new(),
        ticket: 0,
        inflight: JoinSet::new(),
        sent: HashMap::new(),
        paused_until: None,
        pauses: 0,
        d,
    };
    let changed = s.d.spool.changed.clone();
    loop {
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        s.promote_due();
        s.load().await;
        s.fill().await;
        s.d.held.store(s.held(), Ordering::Relaxed);
        let timer = s.next_timer();
        let wake = tokio::select! {
            r = s.inflight.join_next_with_id(), if !s.inflight.is_empty() => match r {
                Some(Ok((id, r))) => Wake::Done(id, Some(r)),
                Some(Err(e)) => Wake::Done(e.id(), None),
                None => Wake::Changed,
            },
            _ = &mut notified => Wake::Changed,
            _ = tokio::time::sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() => Wake::Timer,
            _ = stop.wait_for(|stop| *stop) => Wake::Stop,
        };
        match wake {
            Wake::Done(id, result) => s.finished(id, result).await,
            Wake::Changed | Wake::Timer => {}
            Wake::Stop => break,
        }
    }
}

impl State {
    fn held(&self) -> usize {
        self.ready.len()
            + self.waiting.len()
            + self.split.iter().map(Vec::len).sum::<usize>()
            + self.sent.values().map(Vec::len).sum::<usize>()
    }

    fn next_timer(&self) -> Option<Instant> {
        let retry = self.waiting.keys().next().map(|(due, _)| *due);
        match (self.paused_until, retry) {
            (Some(p), Some(r)) => Some(p.max(r)),
            (Some(p), None) => Some(p),
            (None, r) => r,
        }
    }

    /// Items whose wait is over go first, oldest first.
    fn promote_due(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(entry) = self.waiting.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        for item in due.into_iter().rev() {
            self.ready.push_front(item);
        }
    }

    /// Reads segments from the spool while fewer than `cap` documents are held.
    async fn load(&mut self) {
        while self.held() < self.cap {
            let taken: HashSet<u64> = self.open.keys().chain(&self.skipped).copied().collect();
            let next = match blocking(&self.d.spool, move |s| {
                s.next_untaken(|seq| taken.contains(&seq))
            })
            .await
            {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "reading the disk queue failed");
                    return;
                }
            };
            match next {
                None => return,
                Some(Segment::Docs {
                    seq,
                    docs,
                    unreadable,
                }) => {
                    let lost = unreadable.len();
                    if lost > 0 {
                        tracing::error!(
                            lines = lost,
                            "disk queue: unreadable lines moved to the dead-letter file"
                        );
                        let entries = unreadable
                            .into_iter()
                            .map(|(line, reason)| {
                                (Reason::Unreadable, json!({ "time": crate::model::time::rfc3339(now_ns()), "reason": reason, "line": line }))
                            })
                            .collect();
                        self.d.dead.write(entries).await;
                    }
                    if docs.is_empty() {
                        self.remove(seq, lost).await;
                        continue;
                    }
                    self.open.insert(
                        seq,
                        Open {
                            remaining: docs.len(),
                            given_up: lost,
                        },
                    );
                    self.ready.extend(docs.into_iter().map(|doc| Item {
                        seq,
                        doc,
                        attempts: 0,
                    }));
                }
                Some(Segment::Unreadable { seq, error }) => {
                    let moved = blocking(&self.d.spool, move |s| s.quarantine(seq)).await;
                    let reason = format!("unreadable spool file: {error}");
                    match &moved {
                        Ok(to) => {
                            tracing::error!(%error, moved_to = %to.display(), "disk queue: an unreadable spool file was moved aside")
                        }
                        Err(e) => {
                            self.skipped.insert(seq);
                            tracing::error!(%error, move_error = %e, "disk queue: an unreadable spool file is skipped until the next start")
                        }
                    }
                    let file = moved.map(|p| p.display().to_string()).ok();
                    let entry = json!({ "time": crate::model::time::rfc3339(now_ns()), "reason": reason, "file": file });
                    self.d.dead.write(vec![(Reason::Unreadable, entry)]).await;
                }
            }
        }
    }

    /// Starts requests while slots are free and sending is not paused.
    async fn fill(&mut self) {
        if self.paused_until.is_some_and(|p| p > Instant::now()) {
            return;
        }
        self.paused_until = None;
        if self.ready.is_empty() && self.split.is_empty() {
            return;
        }
        if let Err(e) = self.d.cluster.ensure_ready().await {
            self.pause(None, e);
            return;
        }
        while self.inflight.len() < self.consumers {
            let items = match self.split.pop_front() {
                Some(items) => items,
                None => self.take_chunk(),
            };
            if items.is_empty() {
                break;
            }
            let docs: Vec<Doc> = items.iter().map(|i| i.doc.clone()).collect();
            let cluster = self.d.cluster.clone();
            let handle = self
                .inflight
                .spawn(async move { cluster.send(&docs).await });
            self.sent.insert(handle.id(), items);
        }
    }

    fn take_chunk(&mut self) -> Vec<Item> {
        let n = bulk::next_request(
            self.ready.iter().map(|i| &i.doc),
            self.max_docs,
            self.max_bytes,
        );
        self.ready.drain(..n).collect()
    }

    fn pause(&mut self, after: Option<std::time::Duration>, error: ExportError) {
        let retry = &self.d.cluster.cfg.retry_on_failure;
        let mut backoff = Backoff::unbounded(retry);
        for _ in 0..self.pauses {
            backoff.next(None);
        }
        let wait = backoff.next(after).unwrap_or(retry.initial_interval.get());
        if self.pauses == 0 {
            tracing::warn!(%error, retry_in = ?wait, "elasticsearch: send failed; retrying (documents are kept)");
        } else {
            tracing::debug!(%error, retry_in = ?wait, "elasticsearch: send failed again");
        }
        self.pauses = self.pauses.saturating_add(1);
        self.paused_until = Some(Instant::now() + wait);
        self.d.failing.store(true, Ordering::Relaxed);
    }

    fn put_back(&mut self, items: Vec<Item>) {
        for item in items.into_iter().rev() {
            self.ready.push_front(item);
        }
    }

    async fn finished(&mut self, id: Id, result: Option<Result<Vec<ItemOutcome>, BulkFailure>>) {
        let Some(items) = self.sent.remove(&id) else {
            return;
        };
        match result {
            Some(Ok(outcomes)) => self.answered(items, outcomes).await,
            Some(Err(failure)) => self.refused(items, failure).await,
            None => {
                tracing::error!("a _bulk request task failed; its documents are sent again");
                self.put_back(items);
            }
        }
    }

    async fn answered(&mut self, items: Vec<Item>, outcomes: Vec<ItemOutcome>) {
        if self.pauses > 0 {
            tracing::info!("elasticsearch: sending again");
        }
        self.pauses = 0;
        self.d.failing.store(false, Ordering::Relaxed);
        let counters = &self.d.cluster.counters;
        let retry = &self.d.cluster.cfg.retry_on_failure;
        let mut settled = Vec::new();
        let mut dead = Vec::new();
        for (mut item, outcome) in items.into_iter().zip(outcomes) {
            match outcome {
                ItemOutcome::Written => {
                    counters.written.inc();
                    settled.push((item.seq, false));
                }
                ItemOutcome::AlreadyWritten => {
                    counters.duplicates.inc();
                    settled.push((item.seq, false));
                }
                ItemOutcome::Retry(_) => {
                    counters.retried.inc();
                    let due = Instant::now() + retry.backoff(item.attempts);
                    item.attempts = item.attempts.saturating_add(1);
                    self.ticket += 1;
                    self.waiting.insert((due, self.ticket), item);
                }
                ItemOutcome::Rejected { status, reason } => {
                    counters.rejected.inc();
                    tracing::warn!(index = %item.doc.index, id = %item.doc.id, status, %reason, "document rejected; written to the dead-letter file");
                    dead.push((Reason::Rejected, dead_doc(&item.doc, Some(status), &reason)));
                    settled.push((item.seq, true));
                }
            }
        }
        self.d.dead.write(dead).await;
        for (seq, given_up) in settled {
            self.settle(seq, given_up).await;
        }
    }

    async fn refused(&mut self, mut items: Vec<Item>, failure: BulkFailure) {
        match failure.status {
            Some(status @ (400 | 413)) if items.len() > 1 => {
                if status == 413 {
                    let bytes: usize = items.iter().map(|i| bulk::size(&i.doc)).sum();
                    self.max_bytes = (bytes / 2).max(1);
                    self.max_docs = (items.len() / 2).max(1);
                    tracing::warn!(
                        max_bytes = self.max_bytes,
                        "elasticsearch: request too large (413); smaller requests from now on"
                    );
                }
                let second = items.split_off(items.len() / 2);
                self.split.push_front(second);
                self.split.push_front(items);
            }
            Some(status @ (400 | 413)) => {
                let why = if status == 413 {
                    "the document alone is larger than the cluster takes (413)".to_string()
                } else {
                    failure.error.to_string()
                };
                let reason = if status == 413 {
                    Reason::TooLarge
                } else {
                    Reason::Rejected
                };
                let mut dead = Vec::new();
                for item in &items {
                    self.d.cluster.counters.rejected.inc();
                    tracing::warn!(index = %item.doc.index, id = %item.doc.id, status, %why, "document refused; written to the dead-letter file");
                    dead.push(dead_doc(&item.doc, Some(status), &why));
                }
                self.d
                    .dead
                    .write(dead.into_iter().map(|e| (reason, e)).collect())
                    .await;
                for item in items {
                    self.settle(item.seq, true).await;
                }
            }
            status => {
                let after = match &failure.error {
                    ExportError::Retryable { after, .. } => *after,
                    ExportError::Permanent { .. } => None,
                };
                if matches!(status, Some(401 | 403)) && self.pauses == 0 {
                    tracing::error!(error = %failure.error, "elasticsearch refuses otelwatch's credentials; documents are kept until it accepts them");
                }
                self.put_back(items);
                self.pause(after, failure.error);
            }
        }
    }

    async fn settle(&mut self, seq: u64, given_up: bool) {
        let Some(open) = self.open.get_mut(&seq) else {
            return;
        };
        open.remaining -= 1;
        open.given_up += given_up as usize;
        if open.remaining == 0 {
            let given_up = open.given_up;
            self.open.remove(&seq);
            self.remove(seq, given_up).await;
        }
    }

    async fn remove(&mut self, seq: u64, given_up: usize) {
        if let Err(e) = blocking(&self.d.spool, move |s| s.remove(seq, given_up)).await {
            self.skipped.insert(seq);
            tracing::error!(error = %e, "cannot remove a delivered spool file (it is sent again at the next start)");
        }
    }
}
