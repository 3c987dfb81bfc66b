//! The `sending_queue` kept in a storage extension (`sending_queue: { storage: file_storage }`):
//! each batch handed to the exporter is written to a segment file before the handover returns,
//! sent from there, and removed once the peer has it (or refused it for good). What is still
//! queued at a stop (or a crash) is sent by the next start, oldest first.
//!
//! A segment holds one batch as it goes on the wire: `OWQ1`, the signal (1 byte), the item
//! count and the length (8 bytes each, little-endian), then the OTLP protobuf request.

use crate::pipeline::{Batch, DataKind, Payload};
use crate::storage::SegmentDir;
use bytes::Bytes;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

const MAGIC: &[u8; 4] = b"OWQ1";
const HEADER: usize = 4 + 1 + 8 + 8;

#[derive(Debug, thiserror::Error)]
pub enum QueueFileError {
    #[error("not a queue segment (bad header)")]
    Header,
    #[error("unknown signal {0}")]
    Signal(u8),
    #[error("torn segment: {have} of {want} bytes")]
    Length { have: usize, want: usize },
    #[error("the request does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("a {0} batch cannot be kept in storage")]
    NotOtlp(DataKind),
}

/// The segment for `batch`: its received bytes when it has them, else its encoding. Window
/// records and incident events are kept as the logs request they are sent as
/// (`otlp::records`).
pub fn encode(batch: &Batch) -> Result<Vec<u8>, QueueFileError> {
    let (signal, body): (u8, Bytes) = match (&batch.encoded, &batch.payload) {
        (Some(b), Payload::Traces(_)) => (0, b.clone()),
        (Some(b), Payload::Metrics(_)) => (1, b.clone()),
        (Some(b), Payload::Logs(_)) => (2, b.clone()),
        (None, Payload::Traces(r)) => (0, r.request().encode_to_vec().into()),
        (None, Payload::Metrics(r)) => (1, r.encode_to_vec().into()),
        (None, Payload::Logs(r)) => (2, r.encode_to_vec().into()),
        (_, p) => match crate::otlp::records::as_logs(p) {
            Some(logs) => (2, logs.encode_to_vec().into()),
            None => return Err(QueueFileError::NotOtlp(batch.kind())),
        },
    };
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.push(signal);
    out.extend_from_slice(&(batch.items as u64).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The batch a segment holds. With `encoded_only` the request is checked for length only and
/// carried as bytes (the exporter sends them as they are); otherwise it is decoded too.
pub fn decode(bytes: &[u8], encoded_only: bool) -> Result<Batch, QueueFileError> {
    let header = bytes.get(..HEADER).ok_or(QueueFileError::Header)?;
    if &header[..4] != MAGIC {
        return Err(QueueFileError::Header);
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let (items, len) = (word(5), word(13));
    let body = &bytes[HEADER..];
    if body.len() as u64 != len {
        return Err(QueueFileError::Length {
            have: body.len(),
            want: usize::try_from(len).unwrap_or(usize::MAX),
        });
    }
    let encoded = Bytes::copy_from_slice(body);
    let payload = match (header[4], encoded_only) {
        (0, true) => Payload::Traces(Default::default()),
        (1, true) => Payload::Metrics(Arc::default()),
        (2, true) => Payload::Logs(Arc::default()),
        (0, false) => Payload::Traces(crate::pipeline::Traces::decoded(Message::decode(body)?)),
        (1, false) => Payload::Metrics(Arc::new(Message::decode(body)?)),
        (2, false) => Payload::Logs(Arc::new(Message::decode(body)?)),
        (s, _) => return Err(QueueFileError::Signal(s)),
    };
    Ok(Batch {
        payload,
        encoded: Some(encoded),
        items: usize::try_from(items).unwrap_or(usize::MAX),
        held: Default::default(),
    })
}

#[derive(Default)]
struct Index {
    /// Every segment present.
    present: BTreeSet<u64>,
    /// Being sent now.
    taken: BTreeSet<u64>,
}

/// The queue's files and which of them are being sent.
pub struct StoredQueue {
    files: SegmentDir,
    capacity: usize,
    next_seq: AtomicU64,
    index: Mutex<Index>,
    /// Set at the stop: nothing is sent any more, so the pipelines' last batches are written
    /// even above `capacity` (otherwise they would wait for room that never comes).
    stopping: AtomicBool,
    /// Woken when a segment is added (for the sending loop).
    pub added: Notify,
    /// Woken when a segment is removed (for a writer waiting for room).
    removed: Notify,
}

fn lock(m: &Mutex<Index>) -> MutexGuard<'_, Index> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StoredQueue {
    /// The queue in `files`, holding at most `capacity` batches, with what an earlier run left.
    pub fn new(files: SegmentDir, left: BTreeMap<u64, u64>, capacity: usize) -> Self {
        let next = left.keys().next_back().map_or(0, |s| s + 1);
        Self {
            files,
            capacity: capacity.max(1),
            next_seq: AtomicU64::new(next),
            stopping: AtomicBool::new(false),
            index: Mutex::new(Index {
                present: left.into_keys().collect(),
                taken: BTreeSet::new(),
            }),
            added: Notify::new(),
            removed: Notify::new(),
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        self.files.dir()
    }

    /// Batches stored, being sent or not.
    pub fn len(&self) -> usize {
        lock(&self.index).present.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batches stored and not being sent.
    pub fn waiting(&self) -> usize {
        let i = lock(&self.index);
        i.present.len() - i.taken.len()
    }

    /// Stores a batch, waiting while the queue is full.
    pub async fn push(self: &Arc<Self>, segment: Vec<u8>) -> std::io::Result<()> {
        loop {
            let room = self.removed.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.len() < self.capacity || self.stopping.load(Ordering::SeqCst) {
                break;
            }
            room.await;
        }
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.files.write(seq, &segment))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))?;
        lock(&self.index).present.insert(seq);
        self.added.notify_one();
        Ok(())
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// From now on a batch is written whether or not there is room.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.removed.notify_waiters();
    }

    /// The oldest segment not being sent, marked as being sent.
    pub fn take(&self) -> Option<u64> {
        let mut i = lock(&self.index);
        let seq = i.present.iter().copied().find(|s| !i.taken.contains(s))?;
        i.taken.insert(seq);
        Some(seq)
    }

    pub fn read(&self, seq: u64) -> std::io::Result<Vec<u8>> {
        self.files.read(seq)
    }

    /// Gives a taken segment back (it stays for the next start).
    pub fn untake(&self, seq: u64) {
        lock(&self.index).taken.remove(&seq);
    }

    /// Removes a segment that is settled (sent, or refused for good).
    pub fn remove(&self, seq: u64) -> std::io::Result<()> {
        let r = self.files.remove(seq);
        self.forget(seq);
        r
    }

    /// Moves an unreadable segment into `dead/`.
    pub fn quarantine(&self, seq: u64) -> std::io::Result<std::path::PathBuf> {
        let r = self.files.quarantine(seq);
        self.forget(seq);
        r
    }

    fn forget(&self, seq: u64) {
        let mut i = lock(&self.index);
        i.present.remove(&seq);
        i.taken.remove(&seq);
        drop(i);
        self.removed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

    fn batch() -> Batch {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans::default()],
        };
        Batch {
            payload: Payload::Traces(crate::pipeline::Traces::decoded(req)),
            encoded: None,
            items: 3,
            held: Default::default(),
        }
    }

    #[test]
    fn a_segment_gives_back_its_batch_and_damage_is_named() {
        let seg = encode(&batch()).unwrap();
        let back = decode(&seg, false).unwrap();
        assert_eq!(back.items, 3);
        let Payload::Traces(r) = &back.payload else {
            panic!("traces")
        };
        assert_eq!(r.request().resource_spans.len(), 1);
        assert_eq!(
            back.encoded.as_deref(),
            Some(
                &ExportTraceServiceRequest {
                    resource_spans: vec![ResourceSpans::default()]
                }
                .encode_to_vec()[..]
            )
        );
        let bytes_only = decode(&seg, true).unwrap();
        assert!(
            matches!(&bytes_only.payload, Payload::Traces(r) if r.request().resource_spans.is_empty())
        );
        assert!(matches!(
            decode(&seg[..seg.len() - 1], true),
            Err(QueueFileError::Length { .. })
        ));
        assert!(matches!(decode(b"OWQ", true), Err(QueueFileError::Header)));
        let mut other = seg.clone();
        other[4] = 9;
        assert!(matches!(
            decode(&other, true),
            Err(QueueFileError::Signal(9))
        ));
        let mut garbage = seg.clone();
        let n = garbage.len();
        garbage[n - 2] = 0xff;
        assert!(decode(&garbage, false).is_err());
    }

    #[tokio::test]
    async fn a_full_queue_waits_and_segments_come_back_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let (files, left) = SegmentDir::open(dir.path(), "batch", "otlp", false).unwrap();
        let q = Arc::new(StoredQueue::new(files, left, 2));
        let seg = encode(&batch()).unwrap();
        q.push(seg.clone()).await.unwrap();
        q.push(seg.clone()).await.unwrap();
        let q2 = q.clone();
        let last = seg.clone();
        let third = tokio::spawn(async move { q2.push(seg).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "waits for room");
        let first = q.take().unwrap();
        assert_eq!(q.take(), Some(first + 1));
        q.untake(first + 1);
        q.remove(first).unwrap();
        third.await.unwrap().unwrap();
        assert_eq!(
            q.take(),
            Some(first + 1),
            "a segment given back is taken again"
        );
        // At the stop nothing is sent any more: a full queue takes the pipelines' last batches.
        q.stop();
        tokio::time::timeout(std::time::Duration::from_secs(5), q.push(last))
            .await
            .unwrap()
            .unwrap();
        drop(q);
        let (files, left) = SegmentDir::open(dir.path(), "batch", "otlp", false).unwrap();
        assert_eq!(
            left.len(),
            3,
            "what was not settled is there at the next start"
        );
        let q = StoredQueue::new(files, left, 2);
        assert_eq!(q.take(), Some(first + 1));
    }
}
