//! The optional on-disk queue (`queue.directory`): documents are appended to spool files before
//! the batch is acknowledged, and a drain task writes them to the cluster in order, deleting
//! each file once every document in it is written (or refused as invalid). It survives a
//! restart (files left behind are drained first) and an outage of any length up to
//! `queue.max_bytes`; past that, `export` waits, which pushes back on the pipeline.
//! A file resent after a crash is harmless: ids are deterministic and `create` answers 409.

use super::Doc;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    index: String,
    id: String,
    body: serde_json::Value,
    /// Written with `index` (the latest state replaces the earlier one) instead of `create`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    replace: bool,
}

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
            serde_json::to_writer(
                &mut text,
                &Line {
                    index: d.index.clone(),
                    id: d.id.clone(),
                    body: d.body.clone(),
                    replace: d.replace,
                },
            )?;
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
            .filter_map(|l| serde_json::from_str::<Line>(l).ok())
            .map(|l| Doc {
                index: l.index,
                id: l.id,
                body: l.body,
                replace: l.replace,
            })
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
        let doc = |id: &str| Doc {
            index: "i".into(),
            id: id.into(),
            body: serde_json::json!({ "id": id }),
            replace: false,
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
