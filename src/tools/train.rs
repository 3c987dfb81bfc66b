//! `otelwatch train`: builds the detector's models offline from recorded OTLP (the `file`
//! exporter's OTLP/JSON lines), writes them where the `iforest` processor loads them, and draws
//! the picture of normal vs anomalous windows.

use crate::config::{self, LoadError};
use crate::exporters::elasticsearch::ElasticsearchConfig;
use crate::model::window::WindowRecord;
use crate::otlp::decode_json_line;
use crate::pipeline::{Batch, DataKind, Payload};
use crate::processors::iforest::{persist::ModelError, IForestConfig, IForestProcessor};
use crate::processors::window::{WindowConfig, WindowProcessor};
use crate::processors::{Processor, ProcessorConfig};
use crate::receivers::otlpjsonfile::expand_includes;
use crate::telemetry::Telemetry;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] LoadError),
    #[error("input: {0}")]
    Input(String),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Plot(#[from] crate::tools::plot::PlotError),
    #[error(
        "the recording holds no spans that make windows (SERVER/CONSUMER or CLIENT/PRODUCER spans)"
    )]
    NoWindows,
}

#[derive(Debug, Clone)]
pub struct TrainReport {
    pub lines: u64,
    pub bad_lines: u64,
    pub series: usize,
    pub windows: usize,
    pub anomalies: usize,
    pub model_path: PathBuf,
    pub windows_path: PathBuf,
    pub picture_path: PathBuf,
}

/// The `window` and `iforest` settings of the first pipeline that has both, else the defaults.
pub fn detection_settings(cfg: Option<&config::Config>) -> (WindowConfig, IForestConfig) {
    let mut w = WindowConfig::default();
    let mut f = IForestConfig::default();
    if let Some(cfg) = cfg {
        for p in &cfg.pipelines {
            let procs: Vec<&ProcessorConfig> = p
                .processors
                .iter()
                .filter_map(|id| cfg.processor(id))
                .collect();
            let win = procs.iter().find_map(|pc| match pc {
                ProcessorConfig::Window(c) => Some(c.clone()),
                _ => None,
            });
            let ifo = procs.iter().find_map(|pc| match pc {
                ProcessorConfig::IForest(c) => Some(c.clone()),
                _ => None,
            });
            if let (Some(a), Some(b)) = (win, ifo) {
                w = a;
                f = b;
                break;
            }
        }
    }
    (w, f)
}

pub fn train(
    inputs: &[String],
    config_path: Option<&Path>,
    out_dir: &Path,
) -> Result<TrainReport, TrainError> {
    let cfg = match config_path {
        Some(p) => Some(config::load_file(p)?),
        None => None,
    };
    let (wcfg, mut fcfg) = detection_settings(cfg.as_ref());
    fcfg.model_path = String::new();
    let files = expand_includes(inputs).map_err(TrainError::Input)?;
    let telemetry = Telemetry::new();
    let mut window = WindowProcessor::new(&wcfg, "train", &telemetry);
    let mut records: Vec<WindowRecord> = Vec::new();
    let collect = |batches: Vec<Batch>, records: &mut Vec<WindowRecord>| {
        for b in batches {
            if let Payload::Windows(ws) = b.payload {
                records.extend(ws.iter().cloned());
            }
        }
    };
    let (mut lines, mut bad_lines) = (0u64, 0u64);
    for file in &files {
        let f = std::fs::File::open(file).map_err(|source| TrainError::Read {
            path: file.display().to_string(),
            source,
        })?;
        let reader = std::io::BufReader::with_capacity(1 << 20, f);
        for line in reader.split(b'\n') {
            let line = line.map_err(|source| TrainError::Read {
                path: file.display().to_string(),
                source,
            })?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            lines += 1;
            let batch = match decode_json_line(&line) {
                Ok((b, _)) if b.kind() == DataKind::Traces => b,
                Ok(_) => continue,
                Err(e) => {
                    bad_lines += 1;
                    tracing::warn!("{}:{lines}: skipped: {e}", file.display());
                    continue;
                }
            };
            let mut out = Vec::new();
            window.process(batch, &mut out);
            collect(out, &mut records);
        }
    }
    let mut last = Vec::new();
    window.on_shutdown(&mut last);
    collect(last, &mut records);
    score_and_write(records, &fcfg, out_dir, lines, bad_lines)
}

/// Trains from window documents stored by the `elasticsearch` exporter (as the original
/// prototype trained from Elasticsearch): reads `index` back with the scroll API and scores
/// the windows in time order.
pub async fn train_from_es(
    source: &ElasticsearchConfig,
    index: &str,
    config_path: Option<&Path>,
    out_dir: &Path,
) -> Result<TrainReport, TrainError> {
    let cfg = match config_path {
        Some(p) => Some(config::load_file(p)?),
        None => None,
    };
    let (_, mut fcfg) = detection_settings(cfg.as_ref());
    fcfg.model_path = String::new();
    let client = crate::exporters::elasticsearch::build_client(source)
        .map_err(|e| TrainError::Input(e.to_string()))?;
    let records = crate::exporters::elasticsearch::read_windows(&client, index)
        .await
        .map_err(TrainError::Input)?;
    let n = records.len() as u64;
    score_and_write(records, &fcfg, out_dir, n, 0)
}

/// Scores window records in order with a fresh detector, then writes the models, the scored
/// windows and the picture.
fn score_and_write(
    records: Vec<WindowRecord>,
    fcfg: &IForestConfig,
    out: &Path,
    lines: u64,
    bad_lines: u64,
) -> Result<TrainReport, TrainError> {
    if records.is_empty() {
        return Err(TrainError::NoWindows);
    }
    let telemetry = Telemetry::new();
    let mut forest = IForestProcessor::new(fcfg, "train", &telemetry);
    let mut scored = records;
    for r in &mut scored {
        forest.score(r);
    }
    std::fs::create_dir_all(out).map_err(|source| TrainError::Write {
        path: out.display().to_string(),
        source,
    })?;
    let model_path = out.join("models.json");
    forest.save(&model_path)?;
    let windows_path = out.join("windows.jsonl");
    let write_err = |source| TrainError::Write {
        path: windows_path.display().to_string(),
        source,
    };
    let mut w = std::io::BufWriter::new(std::fs::File::create(&windows_path).map_err(write_err)?);
    for r in &scored {
        serde_json::to_writer(&mut w, &r.to_document()).map_err(|e| write_err(e.into()))?;
        w.write_all(b"\n").map_err(write_err)?;
    }
    w.flush().map_err(write_err)?;
    let picture_path = out.join("service_anomaly_detection.png");
    crate::tools::plot::render_png(&scored, &picture_path, 8)?;
    Ok(TrainReport {
        lines,
        bad_lines,
        series: forest.series(),
        windows: scored.len(),
        anomalies: scored.iter().filter(|r| r.is_anomaly()).count(),
        model_path,
        windows_path,
        picture_path,
    })
}
