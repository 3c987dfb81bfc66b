//! Where accepted documents wait for the cluster: numbered segments, one per exported batch,
//! either as files in the disk queue (`queue.directory`, the default) or in memory
//! (`directory: ""`). The delivery task reads segments in order and removes each one once
//! every document in it is settled (written, already there, or dead-lettered).
//!
//! On disk the segments are a [`SegmentDir`] with fsync on (each written atomically and made
//! durable before the batch is acknowledged); a file resent after a crash is harmless (ids are
//! deterministic and `create` answers 409).

use super::Doc;
use crate::storage::SegmentDir;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{oneshot, Notify};

/// A segment as read back.
pub enum Segment {
    Docs {
        seq: u64,
        docs: Vec<Doc>,
        /// Lines of a spool file that do not parse as a document (with the reason).
        unreadable: Vec<(String, String)>,
    },
    /// A spool file that cannot be read at all (moved aside by [`Spool::quarantine`]).
    Unreadable { seq: u64, error: String },
}

enum Store {
    Disk(SegmentDir),
    Memory(Mutex<HashMap<u64, Vec<Doc>>>),
}

pub struct Spool {
    store: Store,
    max_bytes: u64,
    next_seq: AtomicU64,
    bytes: AtomicU64,
    /// Every segment present, with its size.
    segments: Mutex<BTreeMap<u64, u64>>,
    /// Exports waiting for their segment to be settled (memory mode), told how many of its
    /// documents were given up.
    waiters: Mutex<HashMap<u64, oneshot::Sender<usize>>>,
    /// Woken when a segment is added (for the delivery) or removed (for a waiting writer).
    pub changed: Arc<Notify>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn doc_size(d: &Doc) -> u64 {
    (d.body.get().len() + d.index.len() + d.id.len() + 32) as u64
}

impl Spool {
    /// The disk queue in `dir`: created if missing, locked for this process, its segments
    /// (left by an earlier run) listed for delivery.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, crate::storage::StorageError> {
        let (files, segments) = SegmentDir::open(dir, "spool", "ndjson", true)?;
        let next = segments.keys().next_back().map_or(0, |s| s + 1);
        let bytes = segments.values().sum();
        Ok(Self {
            store: Store::Disk(files),
            max_bytes,
            next_seq: AtomicU64::new(next),
            bytes: AtomicU64::new(bytes),
            segments: Mutex::new(segments),
            waiters: Mutex::new(HashMap::new()),
            changed: Arc::new(Notify::new()),
        })
    }

    /// Segments kept in memory only (lost at a crash; a shutdown waits for them).
    pub fn memory(max_bytes: u64) -> Self {
        Self {
            store: Store::Memory(Mutex::new(HashMap::new())),
            max_bytes,
            next_seq: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            segments: Mutex::new(BTreeMap::new()),
            waiters: Mutex::new(HashMap::new()),
            changed: Arc::new(Notify::new()),
        }
    }

    pub fn on_disk(&self) -> bool {
        matches!(self.store, Store::Disk { .. })
    }

    /// The directory of the disk queue.
    pub fn dir(&self) -> Option<&Path> {
        match &self.store {
            Store::Disk(files) => Some(files.dir()),
            Store::Memory(_) => None,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn is_full(&self) -> bool {
        self.bytes() >= self.max_bytes
    }

    /// Segments waiting, delivered or not yet.
    pub fn len(&self) -> usize {
        lock(&self.segments).len()
    }

    /// Stores the documents as one new segment; returns its number.
    pub fn append(&self, docs: Vec<Doc>) -> std::io::Result<u64> {
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let size = match &self.store {
            Store::Disk(files) => {
                let mut text = Vec::new();
                for d in &docs {
                    serde_json::to_writer(&mut text, d)?;
                    text.push(b'\n');
                }
                files.write(seq, &text)?;
                text.len() as u64
            }
            Store::Memory(m) => {
                let size = docs.iter().map(doc_size).sum();
                lock(m).insert(seq, docs);
                size
            }
        };
        lock(&self.segments).insert(seq, size);
        self.bytes.fetch_add(size, Ordering::Relaxed);
        self.changed.notify_waiters();
        Ok(seq)
    }

    /// Told how many documents of segment `seq` were given up, once it is settled.
    pub fn settled(&self, seq: u64) -> oneshot::Receiver<usize> {
        let (tx, rx) = oneshot::channel();
        // Waiters before segments, as in `forget`: a segment settled meanwhile is not missed.
        let mut waiters = lock(&self.waiters);
        if lock(&self.segments).contains_key(&seq) {
            waiters.insert(seq, tx);
        } else {
            let _ = tx.send(0);
        }
        rx
    }

    /// The oldest segment for which `taken` is false. (Writers append concurrently, so a
    /// segment can appear before one with a lower number: a cursor would skip it.)
    pub fn next_untaken(&self, taken: impl Fn(u64) -> bool) -> std::io::Result<Option<Segment>> {
        let Some(seq) = lock(&self.segments).keys().copied().find(|s| !taken(*s)) else {
            return Ok(None);
        };
        match &self.store {
            Store::Memory(m) => Ok(Some(Segment::Docs {
                seq,
                docs: lock(m).get(&seq).cloned().unwrap_or_default(),
                unreadable: Vec::new(),
            })),
            Store::Disk(files) => {
                let path = files.path(seq);
                let bytes = match files.read(seq) {
                    Ok(b) => b,
                    Err(e) => {
                        return Ok(Some(Segment::Unreadable {
                            seq,
                            error: e.to_string(),
                        }))
                    }
                };
                let (docs, unreadable) = parse_segment(&bytes, &path.display().to_string());
                Ok(Some(Segment::Docs {
                    seq,
                    docs,
                    unreadable,
                }))
            }
        }
    }

    /// Drops a settled segment and tells its waiter how many documents were given up.
    pub fn remove(&self, seq: u64, given_up: usize) -> std::io::Result<()> {
        match &self.store {
            Store::Disk(files) => files.remove(seq)?,
            Store::Memory(m) => {
                lock(m).remove(&seq);
            }
        }
        self.forget(seq, given_up);
        Ok(())
    }

    /// Moves an unreadable spool file aside (into `dead/`), so it never blocks the queue.
    pub fn quarantine(&self, seq: u64) -> std::io::Result<PathBuf> {
        let Store::Disk(files) = &self.store else {
            self.forget(seq, 0);
            return Ok(PathBuf::new());
        };
        let to = files.quarantine(seq)?;
        self.forget(seq, 0);
        Ok(to)
    }

    fn forget(&self, seq: u64, given_up: usize) {
        let mut waiters = lock(&self.waiters);
        let size = lock(&self.segments).remove(&seq).unwrap_or(0);
        self.bytes
            .fetch_sub(size.min(self.bytes()), Ordering::Relaxed);
        if let Some(w) = waiters.remove(&seq) {
            let _ = w.send(given_up);
        }
        drop(waiters);
        self.changed.notify_waiters();
    }
}

/// A spool file's documents, and its lines that are not one (each with the reason).
pub fn parse_segment(bytes: &[u8], name: &str) -> (Vec<Doc>, Vec<(String, String)>) {
    let mut docs = Vec::new();
    let mut unreadable = Vec::new();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Doc>(line) {
            Ok(d) => docs.push(d),
            Err(e) => unreadable.push((
                String::from_utf8_lossy(line).into_owned(),
                format!("unreadable line in {name}: {e}"),
            )),
        }
    }
    (docs, unreadable)
}

/// Runs spool work on a blocking thread (file I/O stays off the runtime's workers).
pub(super) async fn blocking<T: Send + 'static>(
    spool: &Arc<Spool>,
    job: impl FnOnce(&Spool) -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let spool = spool.clone();
    tokio::task::spawn_blocking(move || job(&spool))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str) -> Doc {
        Doc::new(
            "i".into(),
            id.into(),
            &serde_json::json!({ "id": id }),
            false,
        )
    }

    fn ids(s: &Spool, after: Option<u64>) -> (u64, Vec<String>) {
        let taken = |seq: u64| after.is_some_and(|a| seq <= a);
        match s.next_untaken(taken).unwrap().unwrap() {
            Segment::Docs { seq, docs, .. } => (seq, docs.into_iter().map(|d| d.id).collect()),
            Segment::Unreadable { error, .. } => panic!("{error}"),
        }
    }

    #[test]
    fn segments_come_back_in_order_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(vec![doc("a"), doc("b")]).unwrap();
        s.append(vec![doc("c")]).unwrap();
        assert!(s.bytes() > 0);
        assert!(
            Spool::open(dir.path(), 1 << 20).is_err(),
            "one process per directory"
        );
        drop(s);
        std::fs::write(dir.path().join(".spool-00000000000000000009.tmp"), "torn").unwrap();
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(!dir.path().join(".spool-00000000000000000009.tmp").exists());
        let (first, docs) = ids(&s, None);
        assert_eq!(docs, ["a", "b"]);
        let (second, docs) = ids(&s, Some(first));
        assert_eq!(docs, ["c"]);
        s.remove(first, 0).unwrap();
        s.append(vec![doc("d")]).unwrap();
        assert_eq!(ids(&s, Some(second)).1, ["d"]);
        assert_eq!(ids(&s, None).1, ["c"]);
        assert_eq!(s.len(), 2);
        drop(s);
        let tiny = Spool::open(dir.path(), 1).unwrap();
        assert!(tiny.is_full());
    }

    #[test]
    fn unreadable_lines_and_files_are_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let good = serde_json::to_string(&doc("a")).unwrap();
        std::fs::write(
            dir.path().join("spool-00000000000000000000.ndjson"),
            format!("{good}\n{{\"broken\n"),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("spool-00000000000000000001.ndjson")).unwrap();
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        let Some(Segment::Docs {
            seq,
            docs,
            unreadable,
        }) = s.next_untaken(|_| false).unwrap()
        else {
            panic!("a segment")
        };
        assert_eq!((docs.len(), unreadable.len()), (1, 1));
        assert!(unreadable[0].1.contains("unreadable line"));
        let Some(Segment::Unreadable { seq: bad, .. }) = s.next_untaken(|n| n <= seq).unwrap()
        else {
            panic!("an unreadable file")
        };
        let moved = s.quarantine(bad).unwrap();
        assert!(moved.exists());
        assert!(s.next_untaken(|n| n <= seq).unwrap().is_none());
        // A segment numbered below one already taken is still found.
        let late = Spool::memory(1 << 20);
        let (a, b) = (
            late.append(vec![doc("x")]).unwrap(),
            late.append(vec![doc("y")]).unwrap(),
        );
        let Some(Segment::Docs { seq, .. }) = late.next_untaken(|n| n == b).unwrap() else {
            panic!("the lower one")
        };
        assert_eq!(seq, a);
    }

    #[tokio::test]
    async fn memory_segments_tell_their_writer_when_settled() {
        let s = Spool::memory(1 << 20);
        let seq = s.append(vec![doc("a")]).unwrap();
        let rx = s.settled(seq);
        assert!(s.bytes() > 0);
        s.remove(seq, 1).unwrap();
        assert_eq!(rx.await.unwrap(), 1);
        assert_eq!(s.bytes(), 0);
        assert_eq!(s.settled(seq).await.unwrap(), 0, "already settled");
    }
}
