//! Exporter `file`: OTLP/JSON lines, one export request per line — the format the
//! `otlpjsonfile` receiver (and the OpenTelemetry Collector's file tools) read back.
//!
//! ```yaml
//! exporters:
//!   file:
//!     path: ./out/traces.jsonl
//!     append: true          # false truncates the file at start
//! ```
//! Each batch is written and flushed as one line, so a reader never sees half a request; the
//! file is synced to disk when the exporter stops.

use super::framework::{Delivered, Export, ExportError};
use crate::config::decode::decode_section;
use crate::config::error::ConfigError;
use crate::pipeline::Batch;
use crate::pipeline::DataKind;
use serde::Deserialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub path: String,
    pub append: bool,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            path: String::new(),
            append: true,
        }
    }
}

impl crate::exporters::ExporterType for FileConfig {
    type Exporter = FileExporter;
    const NAME: &'static str = "file";

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        if cfg.path.trim().is_empty() {
            return Err(vec![ConfigError::new(
                format!("{path}.path"),
                "required: the file to write",
            )]);
        }
        Ok(cfg)
    }

    fn accepts(&self) -> &'static [DataKind] {
        &DataKind::ALL
    }

    fn build(
        &self,
        _id: &str,
        _telemetry: &crate::telemetry::Telemetry,
    ) -> Result<Self::Exporter, crate::exporters::BuildError> {
        Ok(FileExporter::new(self)?)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileExporterError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct FileExporter {
    path: PathBuf,
    file: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl FileExporter {
    pub fn new(cfg: &FileConfig) -> Result<Self, FileExporterError> {
        let path = PathBuf::from(&cfg.path);
        let open = || -> std::io::Result<std::fs::File> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(cfg.append)
                .truncate(!cfg.append)
                .open(&path)
        };
        let file = open().map_err(|source| FileExporterError::Open {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            file: Mutex::new(std::io::BufWriter::with_capacity(1 << 20, file)),
        })
    }
}

impl Export for FileExporter {
    async fn export(&self, batch: &Batch) -> Result<Delivered, ExportError> {
        let mut line = Vec::with_capacity(batch.items * 256 + 64);
        crate::otlp::encode_json_line(&batch.payload, &mut line)
            .map_err(|e| ExportError::permanent(format!("encoding JSON: {e}")))?;
        line.push(b'\n');
        let mut f = self
            .file
            .lock()
            .map_err(|_| ExportError::permanent("file writer poisoned"))?;
        f.write_all(&line)
            .and_then(|_| f.flush())
            .map_err(|e| ExportError::retryable(format!("writing {}: {e}", self.path.display())))?;
        Ok(Delivered::default())
    }

    async fn shutdown(&self) {
        if let Ok(mut f) = self.file.lock() {
            let synced = f.flush().and_then(|_| f.get_ref().sync_all());
            if let Err(e) = synced {
                tracing::error!(path = %self.path.display(), error = %e, "final flush failed");
            }
        }
    }
}
