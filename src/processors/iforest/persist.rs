//! Saved models: a versioned JSON file holding, per series, the points in its forest's window
//! (already transformed), its recent normal windows and scores, and its counters.
//!
//! A forest is determined by its seed and the points it learned, so a loaded model rebuilds each
//! forest from its saved window in one batch: the result is deterministic (the same file always
//! gives the same forest) and independent of the tree parameters in force when it was saved, so
//! a model survives a change of `trees` or `max_leaf_samples`.

use super::{narrow, IForestConfig, SeriesModel};
use crate::model::window::{SeriesKey, Signal, N_FEATURES};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const FORMAT: &str = "otelwatch-iforest";
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read or write model file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("model file {path} is not valid: {source}")]
    Format {
        path: String,
        source: serde_json::Error,
    },
    #[error("model file {path} is a {format:?} version {version} file; this otelwatch reads {FORMAT:?} version {VERSION}")]
    Version {
        path: String,
        format: String,
        version: u32,
    },
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedSeries {
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
    /// `logs` for a log series; absent for spans (files written before logs were scored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    pub learned: usize,
    pub consecutive: usize,
    /// Anomalous windows of the current run since it last bridged a normal one (absent in
    /// files written before runs bridged them).
    #[serde(default, skip_serializing_if = "is_zero_count")]
    pub since_bridge: usize,
    /// The forest's window, oldest first, in the forest's (transformed) space.
    pub points: Vec<Vec<f64>>,
    /// Recent normal windows' raw features, oldest first.
    pub normal: Vec<[f64; N_FEATURES]>,
    pub scores: Vec<f64>,
    /// A log series' decayed sums of lines and traces in normal windows (absent in files
    /// written before they were kept: lines then count as independent).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub log_lines: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub log_traces: f64,
    /// How far off typical (feature, actual − typical) windows someone said are not anomalies
    /// were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted: Vec<(String, f64)>,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_zero_count(v: &usize) -> bool {
    *v == 0
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelFile {
    pub format: String,
    pub version: u32,
    pub seed: u64,
    pub series: Vec<SavedSeries>,
    /// The time ranges when anomalies are expected (the process's, when saved).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected: Vec<crate::model::feedback::ExpectedRange>,
}

impl SeriesModel {
    pub(super) fn save(&self, key: &SeriesKey) -> SavedSeries {
        SavedSeries {
            service: key.service.to_string(),
            target: key.target.as_ref().map(|t| t.to_string()),
            labels: key
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            signal: (key.signal != Signal::Spans).then(|| key.signal.as_str().to_string()),
            learned: self.learned,
            consecutive: self.consecutive,
            since_bridge: self.since_bridge,
            points: self.forest.window().collect(),
            normal: self.normal().collect(),
            scores: self.scores.iter().copied().collect(),
            log_lines: self.log_lines,
            log_traces: self.log_traces,
            accepted: self
                .accepted
                .iter()
                .filter_map(|(i, z)| {
                    let name = key.signal.feature_names().get(*i as usize)?;
                    Some((name.to_string(), *z))
                })
                .collect(),
        }
    }

    fn restore(cfg: &IForestConfig, key: &SeriesKey, s: &SavedSeries) -> Self {
        let mut m = SeriesModel::new(cfg, key);
        m.forest.learn_batch(&s.points);
        m.normal = s.normal.iter().map(narrow).collect();
        m.scores = s.scores.iter().copied().collect();
        m.learned = s.learned;
        m.consecutive = s.consecutive;
        m.since_bridge = s.since_bridge.min(s.consecutive);
        if s.log_lines.is_finite() && s.log_traces.is_finite() {
            m.log_lines = s.log_lines.max(0.0);
            m.log_traces = s.log_traces.max(0.0);
        }
        let names = key.signal.feature_names();
        m.accepted = s
            .accepted
            .iter()
            .filter(|(_, z)| z.is_finite())
            .filter_map(|(n, z)| Some((names.iter().position(|f| f == n)? as u8, *z)))
            .collect();
        m
    }
}

pub fn to_file(cfg: &IForestConfig, models: &HashMap<Arc<SeriesKey>, SeriesModel>) -> ModelFile {
    let mut keys: Vec<&Arc<SeriesKey>> = models.keys().collect();
    keys.sort();
    ModelFile {
        format: FORMAT.into(),
        version: VERSION,
        seed: cfg.seed,
        series: keys.into_iter().map(|k| models[k].save(k)).collect(),
        expected: Vec::new(),
    }
}

/// The models of a file; series of a signal this version does not know are left out.
pub fn from_file(cfg: &IForestConfig, file: &ModelFile) -> HashMap<Arc<SeriesKey>, SeriesModel> {
    file.series.iter().filter_map(|s| restore(cfg, s)).collect()
}

/// One saved series' key and model (None for a signal this version does not know).
pub(super) fn restore(
    cfg: &IForestConfig,
    s: &SavedSeries,
) -> Option<(Arc<SeriesKey>, SeriesModel)> {
    let signal = match &s.signal {
        None => Signal::Spans,
        Some(name) => Signal::parse(name)?,
    };
    let key = SeriesKey {
        service: s.service.as_str().into(),
        target: s.target.as_deref().map(Into::into),
        labels: s
            .labels
            .iter()
            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
            .collect(),
        signal,
    };
    let model = SeriesModel::restore(cfg, &key, s);
    Some((Arc::new(key), model))
}

/// Writes atomically: a crash mid-write leaves the previous file intact.
pub fn write(path: &Path, file: &ModelFile) -> Result<(), ModelError> {
    let io = |source| ModelError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_vec(file).map_err(|source| ModelError::Format {
        path: path.display().to_string(),
        source,
    })?;
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes the processor's model file off the pipeline's thread. Writes are numbered and a
/// write older than the one on disk is skipped, so the final save on shutdown is never
/// overwritten by a periodic save that started before it.
pub struct ModelWriter {
    path: PathBuf,
    /// The number of the newest write on disk.
    written: Arc<Mutex<u64>>,
    next: u64,
    pending: Option<tokio::task::JoinHandle<()>>,
    /// The last background write failed: what it held is not on disk.
    failed: Arc<std::sync::atomic::AtomicBool>,
}

impl ModelWriter {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            written: Arc::new(Mutex::new(0)),
            next: 0,
            pending: None,
            failed: Default::default(),
        }
    }

    /// Starts writing `file` on a blocking thread; false (nothing started) while the last
    /// one is still being written. Without a runtime it writes at once.
    pub fn write_in_background(&mut self, file: ModelFile) -> bool {
        if self.pending.as_ref().is_some_and(|p| !p.is_finished()) {
            return false;
        }
        self.next += 1;
        let (generation, path, written) = (self.next, self.path.clone(), self.written.clone());
        let failed = self.failed.clone();
        let job = move || {
            let series = file.series.len();
            let result = write_numbered(&path, &file, generation, &written);
            failed.store(result.is_err(), std::sync::atomic::Ordering::Relaxed);
            match result {
                Ok(()) => tracing::debug!(path = %path.display(), series, "models saved"),
                Err(e) => tracing::warn!(error = %e, "saving models failed"),
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => self.pending = Some(rt.spawn_blocking(job)),
            Err(_) => job(),
        }
        true
    }

    /// A background write is still running, or the last one failed: the final save must be
    /// written even if nothing changed since.
    pub fn needs_final_write(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| !p.is_finished())
            || self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes `file` now, after any write in progress (the last save, on shutdown).
    pub fn write_now(&mut self, file: &ModelFile) -> Result<(), ModelError> {
        self.next += 1;
        write_numbered(&self.path, file, self.next, &self.written)
    }
}

fn write_numbered(
    path: &Path,
    file: &ModelFile,
    generation: u64,
    written: &Mutex<u64>,
) -> Result<(), ModelError> {
    let mut on_disk = written.lock().unwrap_or_else(|p| p.into_inner());
    if *on_disk >= generation {
        return Ok(());
    }
    write(path, file)?;
    *on_disk = generation;
    Ok(())
}

pub fn read(path: &Path) -> Result<ModelFile, ModelError> {
    let text = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        source,
    })?;
    #[derive(Deserialize)]
    struct Header {
        format: String,
        version: u32,
    }
    let format_err = |source| ModelError::Format {
        path: path.display().to_string(),
        source,
    };
    let header: Header = serde_json::from_slice(&text).map_err(format_err)?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(ModelError::Version {
            path: path.display().to_string(),
            format: header.format,
            version: header.version,
        });
    }
    serde_json::from_slice(&text).map_err(format_err)
}
