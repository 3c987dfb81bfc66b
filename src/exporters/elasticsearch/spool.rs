//! The optional on-disk queue (`queue.directory`): documents are appended to spool files before
//! the batch is acknowledged, and a drain task writes them to the cluster in order, deleting
//! each file once every document in it is written (or refused as invalid). It survives a
//! restart (files left behind are drained first) and an outage of any length up to
//! `queue.max_bytes`; past that, `export` waits, which pushes back on the pipeline.
//! A file resent after a crash is harmless: ids are deterministic and `create` answers 409.

use super::cluster::Cluster;
use super::Doc;
use crate::exporters::framework::{Backoff, ExportError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    next_seq: AtomicU64,
    bytes: AtomicU64,
    /// Woken when a file is added (for the drain) or removed (for a waiting writer).
    pub changed: Arc<Notify>,
}

fn seq_of(p: &Path) -> Option<u64> {
    p.file_name()?
        .to_str()?
        .strip_prefix("spool-")?
        .strip_suffix(".ndjson")?
        .parse()
        .ok()
}

impl Spool {
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let files = list(dir)?;
        let next = files
            .iter()
            .filter_map(|p| seq_of(p))
            .max()
            .map_or(0, |s| s + 1);
        let bytes = files
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            next_seq: AtomicU64::new(next),
            bytes: AtomicU64::new(bytes),
            changed: Arc::new(Notify::new()),
        })
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn is_full(&self) -> bool {
        self.bytes() >= self.max_bytes
    }

    /// Writes the documents as one new spool file (atomically: temp file, fsync, rename).
    pub fn append(&self, docs: &[Doc]) -> std::io::Result<()> {
        use std::io::Write;
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.join(format!("spool-{seq:020}.ndjson"));
        let tmp = self.dir.join(format!(".spool-{seq:020}.tmp"));
        let mut text = Vec::new();
        for d in docs {
            serde_json::to_writer(&mut text, d)?;
            text.push(b'\n');
        }
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        self.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
        self.changed.notify_waiters();
        Ok(())
    }

    /// The oldest spool file and its documents, if any.
    pub fn oldest(&self) -> std::io::Result<Option<(PathBuf, Vec<Doc>)>> {
        let Some(path) = list(&self.dir)?.into_iter().next() else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&path)?;
        let docs = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Doc>(l).ok())
            .collect();
        Ok(Some((path, docs)))
    }

    pub fn remove(&self, path: &Path) -> std::io::Result<()> {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        std::fs::remove_file(path)?;
        self.bytes
            .fetch_sub(len.min(self.bytes()), Ordering::Relaxed);
        self.changed.notify_waiters();
        Ok(())
    }
}

/// Writes spooled files to the cluster, oldest first, until the exporter is dropped.
pub(super) async fn drain(cluster: Arc<Cluster>, spool: Arc<Spool>) {
    // A file stays on disk until it is written: a failed request is retried without end, at
    // the configured pace (documents refused one by one are retried within `write` and, past
    // max_elapsed_time, counted as rejected).
    let mut backoff = Backoff::unbounded(&cluster.cfg.retry_on_failure);
    loop {
        let changed = spool.changed.notified();
        let next = match blocking(&spool, |s| s.oldest()).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "reading the disk queue failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some((path, docs)) = next else {
            changed.await;
            continue;
        };
        let result = match cluster.ensure_ready().await {
            Ok(()) => cluster.write(docs).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                backoff.reset();
                let file = path.clone();
                if let Err(e) = blocking(&spool, move |s| s.remove(&file)).await {
                    tracing::error!(error = %e, path = %path.display(), "cannot remove a written spool file");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Err(e) => {
                let first = backoff.retries() == 0;
                let after = match &e {
                    ExportError::Retryable { after, .. } => *after,
                    ExportError::Permanent { .. } => None,
                };
                let wait = backoff.next(after).unwrap_or(Duration::from_secs(1));
                if first {
                    tracing::warn!(error = %e, retry_in = ?wait, "disk queue: send failed; retrying (documents stay on disk)");
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Runs spool file work on a blocking thread.
pub(super) async fn blocking<T: Send + 'static>(
    spool: &Arc<Spool>,
    job: impl FnOnce(&Spool) -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let spool = spool.clone();
    tokio::task::spawn_blocking(move || job(&spool))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// Spool files, oldest first.
fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| seq_of(p).is_some())
        .collect();
    files.sort_by_key(|p| seq_of(p));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_come_back_in_order_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let doc = |id: &str| {
            Doc::new(
                "i".into(),
                id.into(),
                &serde_json::json!({ "id": id }),
                false,
            )
        };
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&[doc("a"), doc("b")]).unwrap();
        s.append(&[doc("c")]).unwrap();
        assert!(s.bytes() > 0);
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        let (p, docs) = s.oldest().unwrap().unwrap();
        assert_eq!(
            docs.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        s.remove(&p).unwrap();
        s.append(&[doc("d")]).unwrap();
        let (p, docs) = s.oldest().unwrap().unwrap();
        assert_eq!(docs[0].id, "c");
        s.remove(&p).unwrap();
        assert_eq!(s.oldest().unwrap().unwrap().1[0].id, "d");
        let tiny = Spool::open(dir.path(), 1).unwrap();
        assert!(tiny.is_full());
    }
}
