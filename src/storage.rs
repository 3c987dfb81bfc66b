//! Durable queues on disk: a directory of numbered segment files, one per queued batch, shared by
//! the Elasticsearch exporter's disk queue and the persistent `sending_queue` of the forwarding
//! exporters (`file_storage`).
//!
//! A segment is written atomically: a temporary file, optionally fsync, rename, then (with
//! fsync) an fsync of the directory so the rename survives a power cut. Without fsync a segment
//! survives the process being killed (the kernel has it) but not the machine losing power.
//! Temporary files left by a crash are removed at open (their batch was never acknowledged).
//! One process at a time owns a directory (an exclusive lock on `.lock`). A segment that cannot
//! be read is moved into `dead/`, so it never blocks the rest.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{dir}: another process holds this queue directory ({source})")]
    Locked {
        dir: PathBuf,
        source: std::fs::TryLockError,
    },
    #[error("{dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// A locked directory of segments named `<prefix>-<seq>.<extension>`.
#[derive(Debug)]
pub struct SegmentDir {
    dir: PathBuf,
    prefix: &'static str,
    extension: &'static str,
    fsync: bool,
    _lock: File,
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl SegmentDir {
    /// Opens (creating it if missing) and locks `dir`; returns it with the segments an earlier
    /// run left, by number, with their sizes.
    pub fn open(
        dir: &Path,
        prefix: &'static str,
        extension: &'static str,
        fsync: bool,
    ) -> Result<(Self, BTreeMap<u64, u64>), StorageError> {
        let io = |source| StorageError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = File::create(dir.join(".lock")).map_err(io)?;
        if let Err(source) = lock.try_lock() {
            return Err(StorageError::Locked {
                dir: dir.to_path_buf(),
                source,
            });
        }
        let s = Self {
            dir: dir.to_path_buf(),
            prefix,
            extension,
            fsync,
            _lock: lock,
        };
        let mut segments = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io)?.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name();
            if name.to_string_lossy().ends_with(".tmp") {
                std::fs::remove_file(&path).map_err(io)?;
            } else if let Some(seq) = s.seq_of(&path) {
                segments.insert(seq, entry.metadata().map(|m| m.len()).unwrap_or(0));
            }
        }
        Ok((s, segments))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn seq_of(&self, p: &Path) -> Option<u64> {
        p.file_name()?
            .to_str()?
            .strip_prefix(self.prefix)?
            .strip_prefix('-')?
            .strip_suffix(self.extension)?
            .strip_suffix('.')?
            .parse()
            .ok()
    }

    fn name(&self, seq: u64) -> String {
        format!("{}-{seq:020}.{}", self.prefix, self.extension)
    }

    pub fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(self.name(seq))
    }

    /// Writes segment `seq` whole, or not at all.
    pub fn write(&self, seq: u64, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".{}-{seq:020}.tmp", self.prefix));
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if self.fsync {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, self.path(seq))?;
        if self.fsync {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    pub fn read(&self, seq: u64) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.path(seq))
    }

    /// Removes segment `seq` (already gone is fine).
    pub fn remove(&self, seq: u64) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(seq)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Moves segment `seq` into `dead/`; returns where it went.
    pub fn quarantine(&self, seq: u64) -> std::io::Result<PathBuf> {
        let dead = self.dir.join("dead");
        std::fs::create_dir_all(&dead)?;
        let to = dead.join(self.name(seq));
        std::fs::rename(self.path(seq), &to)?;
        sync_dir(&self.dir)?;
        Ok(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_listed_locked_and_torn_writes_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (d, found) = SegmentDir::open(dir.path(), "batch", "otlp", false).unwrap();
        assert!(found.is_empty());
        d.write(3, b"three").unwrap();
        d.write(1, b"one").unwrap();
        std::fs::write(dir.path().join("other-00000000000000000002.otlp"), "x").unwrap();
        assert!(matches!(
            SegmentDir::open(dir.path(), "batch", "otlp", false),
            Err(StorageError::Locked { .. })
        ));
        drop(d);
        std::fs::write(dir.path().join(".batch-00000000000000000007.tmp"), "torn").unwrap();
        let (d, found) = SegmentDir::open(dir.path(), "batch", "otlp", true).unwrap();
        assert_eq!(found.into_iter().collect::<Vec<_>>(), [(1, 3), (3, 5)]);
        assert!(!dir.path().join(".batch-00000000000000000007.tmp").exists());
        assert_eq!(d.read(3).unwrap(), b"three");
        d.remove(3).unwrap();
        d.remove(3).unwrap();
        let moved = d.quarantine(1).unwrap();
        assert_eq!(std::fs::read(moved).unwrap(), b"one");
        assert!(d.read(1).is_err());
    }
}
