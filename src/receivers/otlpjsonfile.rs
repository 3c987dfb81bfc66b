//! Receiver `otlpjsonfile`: replays files of OTLP/JSON lines, one export request per line (the
//! format the `file` exporter writes), as fast as the pipeline takes them or at the pace they
//! were recorded. When every receiver is a file receiver, otelwatch exits after the replay.
//!
//! ```yaml
//! receivers:
//!   otlpjsonfile:
//!     include: [./recordings/*.jsonl]
//!     pace: original      # or fast (default)
//!     speed: 10           # with pace: original, replay ten times faster than recorded
//! ```

use crate::config::decode::decode_section;
use crate::config::error::ConfigError;
use crate::otlp::decode_json_line;
use crate::pipeline::{Payload, Refused, SignalKind};
use crate::receivers::{ReceiverContext, ReceiverError, RunningReceiver};
use crate::telemetry::{names, Counter};
use serde::Deserialize;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pace {
    /// As fast as the pipeline accepts.
    #[default]
    Fast,
    /// Keeps the recorded gaps between lines (divided by `speed`).
    Original,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpJsonFileConfig {
    /// Files to read, in order; `*` and `?` may be used in the file name part.
    pub include: Vec<String>,
    pub pace: Pace,
    /// Replay speed factor for `pace: original`.
    pub speed: f64,
}

impl Default for OtlpJsonFileConfig {
    fn default() -> Self {
        Self {
            include: Vec::new(),
            pace: Pace::Fast,
            speed: 1.0,
        }
    }
}

impl crate::receivers::ReceiverType for OtlpJsonFileConfig {
    const NAME: &'static str = "otlpjsonfile";

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if cfg.include.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.include"),
                "list at least one file to read",
            ));
        }
        if !(cfg.speed.is_finite() && cfg.speed > 0.0) {
            errors.push(ConfigError::new(
                format!("{path}.speed"),
                "must be a positive number",
            ));
        }
        crate::config::decode::validated(cfg, errors)
    }

    async fn start(&self, ctx: ReceiverContext) -> Result<RunningReceiver, ReceiverError> {
        start(self, ctx).await
    }
}

/// Expands the include list into existing files, sorted within each pattern.
pub fn expand_includes(include: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for pattern in include {
        let path = Path::new(pattern);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.contains(['*', '?']) {
            if !path.is_file() {
                return Err(format!("{pattern}: no such file"));
            }
            out.push(path.to_path_buf());
            continue;
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut matched: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| crate::config::glob::wildcard(&name, &e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        matched.sort();
        if matched.is_empty() {
            return Err(format!("{pattern}: no file matches"));
        }
        out.extend(matched);
    }
    Ok(out)
}

/// The latest event time in a payload, in Unix nanoseconds (what `pace: original` follows).
pub fn latest_time(p: &Payload) -> Option<u64> {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    match p {
        Payload::Traces(t) => t
            .request()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.end_time_unix_nano)
            .max(),
        Payload::Logs(l) => l
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .map(|r| r.time_unix_nano.max(r.observed_time_unix_nano))
            .max(),
        Payload::Metrics(m) => m
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter_map(|m| match &m.data {
                Some(Data::Gauge(g)) => g.data_points.iter().map(|d| d.time_unix_nano).max(),
                Some(Data::Sum(s)) => s.data_points.iter().map(|d| d.time_unix_nano).max(),
                Some(Data::Histogram(h)) => h.data_points.iter().map(|d| d.time_unix_nano).max(),
                Some(Data::ExponentialHistogram(h)) => {
                    h.data_points.iter().map(|d| d.time_unix_nano).max()
                }
                Some(Data::Summary(s)) => s.data_points.iter().map(|d| d.time_unix_nano).max(),
                None => None,
            })
            .max(),
        Payload::Windows(w) => w.iter().map(|w| w.end_ns()).max(),
        Payload::Incidents(e) => e.iter().map(|e| e.at_ns).max(),
    }
    .filter(|t| *t > 0)
}

pub async fn start(
    cfg: &OtlpJsonFileConfig,
    ctx: ReceiverContext,
) -> Result<RunningReceiver, ReceiverError> {
    let id = ctx.id.to_string();
    let files = expand_includes(&cfg.include).map_err(|message| ReceiverError::Start {
        receiver: id.clone(),
        message,
    })?;
    let accepted = SignalKind::ALL.map(|k| {
        ctx.telemetry.counter(
            names::RECEIVER_ACCEPTED,
            "Items accepted into the pipelines.",
            vec![
                ("receiver", id.clone()),
                ("transport", "file".into()),
                ("signal", k.to_string()),
            ],
        )
    });
    let bad_lines = ctx.telemetry.counter(
        names::RECEIVER_BAD_REQUESTS,
        "Requests refused as malformed, too large or of an unsupported type.",
        vec![("receiver", id.clone()), ("transport", "file".into())],
    );
    let mut replay = Replay {
        cfg: cfg.clone(),
        ctx,
        id,
        accepted,
        bad_lines,
        clock: None,
        lines: 0,
        items: 0,
        warned_no_pipeline: [false; 3],
    };
    let task = tokio::spawn(async move {
        for file in &files {
            if replay.file(file).await.is_break() {
                break;
            }
        }
        let Replay {
            id, lines, items, ..
        } = replay;
        tracing::info!(receiver = %id, lines, items, "replay finished");
    });
    Ok(RunningReceiver { task, finite: true })
}

/// One replay of the configured files, line by line, in order.
struct Replay {
    cfg: OtlpJsonFileConfig,
    ctx: ReceiverContext,
    id: String,
    accepted: [Counter; 3],
    bad_lines: Counter,
    /// With `pace: original`: the first item's time and the instant it was sent.
    clock: Option<(u64, Instant)>,
    lines: u64,
    items: u64,
    warned_no_pipeline: [bool; 3],
}

/// `Break`: stop the whole replay (told to stop, or the pipelines are shutting down).
type Flow = ControlFlow<()>;

impl Replay {
    async fn file(&mut self, file: &Path) -> Flow {
        let f = match tokio::fs::File::open(file).await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(receiver = %self.id, file = %file.display(), error = %e, "cannot open");
                return Flow::Continue(());
            }
        };
        let mut reader = tokio::io::BufReader::with_capacity(1 << 20, f);
        let mut line = Vec::new();
        let mut lineno = 0u64;
        loop {
            line.clear();
            let read = tokio::select! {
                r = reader.read_until(b'\n', &mut line) => r,
                _ = self.ctx.stop.cancelled() => return Flow::Break(()),
            };
            match read {
                Ok(0) => return Flow::Continue(()),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(receiver = %self.id, file = %file.display(), error = %e, "read failed");
                    return Flow::Continue(());
                }
            }
            lineno += 1;
            if !line.iter().all(u8::is_ascii_whitespace) {
                let at = format!("{}:{lineno}", file.display());
                self.line(&line, &at).await?;
            }
        }
    }

    /// Decodes one line (`at`: file and line number, for messages) and hands it on.
    async fn line(&mut self, line: &[u8], at: &str) -> Flow {
        let id = &self.id;
        let (batch, checked) = match decode_json_line(line) {
            Ok(b) => b,
            Err(e) => {
                self.bad_lines.inc();
                tracing::warn!(receiver = %id, "{at}: skipped: {e}");
                return Flow::Continue(());
            }
        };
        if checked.rejected > 0 {
            tracing::warn!(receiver = %id, "{at}: {}", checked.reason);
        }
        // A line decodes into one of the three signals.
        let Some(signal) = batch.kind().signal() else {
            return Flow::Continue(());
        };
        let Some(fan) = &self.ctx.consumers[signal.index()] else {
            if !std::mem::replace(&mut self.warned_no_pipeline[signal.index()], true) {
                tracing::warn!(receiver = %id, "{at}: no pipeline takes {signal} from this receiver; skipping them");
            }
            return Flow::Continue(());
        };
        if self.cfg.pace == Pace::Original {
            if let Some(ts) = latest_time(&batch.payload) {
                let (t0, i0) = *self.clock.get_or_insert((ts, Instant::now()));
                let offset = ts.saturating_sub(t0) as f64 / self.cfg.speed;
                let due = i0 + Duration::from_nanos(offset as u64);
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = self.ctx.stop.cancelled() => return Flow::Break(()),
                }
            }
        }
        let items = batch.items as u64;
        let mut batch = batch;
        batch.held = self
            .ctx
            .memory
            .hold(crate::pipeline::memory::estimate(&batch));
        match fan.send_patiently(batch).await {
            Ok(()) => {
                self.accepted[signal.index()].add(items);
                self.lines += 1;
                self.items += items;
                Flow::Continue(())
            }
            Err(Refused::ShuttingDown) | Err(Refused::Full) => Flow::Break(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_file_names() {
        assert!(crate::config::glob::wildcard("*.jsonl", "a.jsonl"));
        assert!(crate::config::glob::wildcard(
            "rec-??.jsonl",
            "rec-01.jsonl"
        ));
        assert!(!crate::config::glob::wildcard("*.jsonl", "a.json"));
        assert!(crate::config::glob::wildcard("*", ""));
        assert!(crate::config::glob::wildcard("a*b*c", "axxbyyc"));
        assert!(!crate::config::glob::wildcard("a*b*c", "axxbyy"));
    }

    #[test]
    fn includes_expand_sorted_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["b.jsonl", "a.jsonl", "c.txt"] {
            std::fs::write(dir.path().join(n), "").unwrap();
        }
        let pat = dir.path().join("*.jsonl").display().to_string();
        let files = expand_includes(&[pat]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.jsonl", "b.jsonl"]);
        let missing = dir.path().join("nope.jsonl").display().to_string();
        assert!(expand_includes(&[missing])
            .unwrap_err()
            .contains("no such file"));
    }
}
