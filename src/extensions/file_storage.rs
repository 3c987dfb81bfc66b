//! Extension `file_storage`: a directory where exporters keep their `sending_queue` when it names
//! this extension as its `storage`, as the Collector's extension of the same name does. Each
//! exporter gets its own subdirectory (`exporter_<id>`); what is queued there survives a restart
//! and is sent by the next run.
//!
//! ```yaml
//! extensions:
//!   file_storage:
//!     directory: data/storage     # created if missing (create_directory: true)
//!     fsync: false                # true: every queued batch also survives a power cut
//! exporters:
//!   otlp:
//!     sending_queue: { storage: file_storage }
//! ```

use super::{ExtensionError, ExtensionType, Role};
use crate::config::decode::{decode_section, validated};
use crate::config::error::ConfigError;
use crate::storage::{SegmentDir, StorageError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileStorageConfig {
    pub directory: String,
    /// Sync each queued batch (and the directory) to the disk before acknowledging it.
    pub fsync: bool,
    pub create_directory: bool,
}

impl Default for FileStorageConfig {
    fn default() -> Self {
        Self {
            directory: "data/storage".into(),
            fsync: false,
            create_directory: true,
        }
    }
}

impl ExtensionType for FileStorageConfig {
    const NAME: &'static str = "file_storage";
    const ROLE: Role = Role::Storage;

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if cfg.directory.trim().is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.directory"),
                "must name a directory",
            ));
        }
        validated(cfg, errors)
    }

    fn storage(&self, id: &str) -> Result<FileStorage, ExtensionError> {
        let directory = PathBuf::from(&self.directory);
        let made = if self.create_directory {
            std::fs::create_dir_all(&directory)
        } else {
            std::fs::metadata(&directory).map(|_| ())
        };
        made.map_err(|source| ExtensionError::Read {
            id: id.to_string(),
            path: self.directory.clone(),
            source,
        })?;
        Ok(FileStorage {
            directory,
            fsync: self.fsync,
        })
    }
}

/// A started `file_storage`: hands out one queue directory per component.
#[derive(Debug)]
pub struct FileStorage {
    directory: PathBuf,
    fsync: bool,
}

impl FileStorage {
    /// The queue of `component` (locked for this process), with the segments an earlier run
    /// left there.
    pub fn open_queue(
        &self,
        component: &str,
    ) -> Result<(SegmentDir, BTreeMap<u64, u64>), StorageError> {
        let name: String = component
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        SegmentDir::open(
            &self.directory.join(format!("exporter_{name}")),
            "batch",
            "otlp",
            self.fsync,
        )
    }
}
