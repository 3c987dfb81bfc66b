//! Detection on real telemetry: one day of the Nezha data (Train-Ticket or Online Boutique: real
//! microservices with injected faults) converted to OTLP, replayed through the real pipeline (`otlpjsonfile` →
//! `window` → `iforest` → `incidents` → `file`), and scored against the fault list.
//!
//! Conversion (the data has no span kinds, statuses or attributes): a span whose parent runs in
//! another pod, or that has none, is its pod's SERVER span; a span with a child in another pod is
//! a CLIENT span with `peer.service` the child's service; the rest are INTERNAL. A pod's service
//! is its name without the two trailing hash segments. Traces exist only in blocks of consecutive
//! minute files around each injection, so the replay puts them end to end: first the fault-free
//! minute repeated for the warm-up, then each fault's block, with `gap_min` fault-free minutes
//! between blocks, each shifted in time to whole minutes (so windows stay aligned). A block's
//! minutes are where most of its spans end; a span shared by two of its files counts once. A
//! fault is placed in the block its `inject_time` names, at its timestamp when that lies there
//! (`place_faults`), and lasts to the end of its block. Log lines are read as the services write
//! them: a header with the level, or a JSON object with `severity` and `message`.
//!
//! Definitions (over the blocks only: not the warm-up, not the minutes between blocks):
//! - **fault recall**: faults with a flagged window (any series) while they last;
//! - **window precision**: flagged windows during a fault over all flagged windows;
//! - **false positives per service-hour**: flagged windows outside every fault, per service
//!   (distinct `service.name`) and hour outside the faults;
//! - **false incidents per hour**: incidents that overlap no fault, per hour outside the faults;
//! - **incidents per fault**: incidents that overlap a fault, per detected fault;
//! - **root cause top-1 / top-3**: faults whose incident (the one most of the fault's flagged
//!   windows belong to, as it stood when the fault ended) ranks the faulty pod's service first /
//!   among its first three;
//! - **faults named**: faults whose service a flagged window names while they last (its own
//!   series, or an edge from or to it): about the most a ranking can find (an incident's
//!   ranking also holds its windows before the fault's labelled start);
//! - **detection delay**: from the injection to the end of the first flagged window;
//! - **delay to incident**: from the injection to the end of the first window of the fault
//!   whose anomalies belong to an incident (opened or joined: when an operator is paged).
//!
//! The baseline is what a simple monitor does: per series, the z-score of each feature against
//! the series' warm-up windows (mean and standard deviation); a window's score is its largest
//! |z|, flagged above 3; the root cause is the series service with the largest z during the
//! fault (the callee for an edge).

use crate::config;
use crate::model::window::{Signal, WindowRecord, N_FEATURES};
use crate::tools::bench::roc_auc;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RealError {
    #[error("{path}: {message}")]
    Data { path: String, message: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("config: {0}")]
    Config(#[from] config::ConfigErrors),
    #[error("pipeline: {0}")]
    Service(#[from] crate::pipeline::service::ServiceError),
}

/// The entries of a folder of the data set; a missing one is named in the error.
fn list_dir(dir: &Path) -> Result<std::fs::ReadDir, RealError> {
    std::fs::read_dir(dir).map_err(|e| data_err(dir, e.to_string()))
}

pub(crate) fn data_err(path: &Path, message: impl Into<String>) -> RealError {
    RealError::Data {
        path: path.display().to_string(),
        message: message.into(),
    }
}

pub struct RealOptions {
    /// The data set: the unpacked folder (with `rca_data/`) or the `.tar.gz`.
    pub data: PathBuf,
    pub out: PathBuf,
    pub interval_s: u64,
    /// Minutes of the fault-free minute replayed before the first fault.
    pub warmup_min: u64,
    /// Minutes of the fault-free minute replayed between two faults' blocks.
    pub gap_min: u64,
    /// Only the first this many faults (a small slice, for a quick check).
    pub faults: Option<usize>,
}

/// One injected fault, on the replay's clock.
#[derive(Debug, Clone)]
pub struct Fault {
    pub service: String,
    pub kind: String,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The pod's service: its name without the two trailing hash segments.
pub fn service_of(pod: &str) -> &str {
    let mut cut = pod;
    for _ in 0..2 {
        match cut.rfind('-') {
            Some(i) => cut = &cut[..i],
            None => return pod,
        }
    }
    cut
}

/// Splits one CSV line (RFC 4180 quoting; a field may not span lines in these files).
pub fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

struct Row {
    trace: [u8; 16],
    span: [u8; 8],
    parent: Option<[u8; 8]>,
    pod: String,
    name: String,
    start: u64,
    end: u64,
}

fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.trim();
    if s.len() != 2 * N {
        return None;
    }
    let mut b = [0u8; N];
    for (i, out) in b.iter_mut().enumerate() {
        *out = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(b)
}

/// The data rows of a CSV file (its header line and blank lines skipped), each split into its
/// fields and checked for at least `fields` of them, handed to `row` with its line number.
fn read_csv<T>(
    path: &Path,
    fields: usize,
    mut row: impl FnMut(usize, Vec<String>) -> Result<T, RealError>,
) -> Result<Vec<T>, RealError> {
    let file = std::fs::File::open(path).map_err(|e| data_err(path, e.to_string()))?;
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| data_err(path, e.to_string()))?;
        if i == 0 || line.trim().is_empty() {
            continue;
        }
        let f = csv_fields(&line);
        if f.len() < fields {
            return Err(data_err(path, format!("line {}: expected 8 fields", i + 1)));
        }
        rows.push(row(i + 1, f)?);
    }
    Ok(rows)
}

fn read_rows(path: &Path) -> Result<Vec<Row>, RealError> {
    read_csv(path, 7, |line, f| {
        let bad = || data_err(path, format!("line {line}: bad ids or times"));
        Ok(Row {
            trace: hex_bytes(&f[0]).ok_or_else(bad)?,
            span: hex_bytes(&f[1]).ok_or_else(bad)?,
            parent: if f[2] == "root" {
                None
            } else {
                Some(hex_bytes(&f[2]).ok_or_else(bad)?)
            },
            pod: f[3].clone(),
            name: f[4].clone(),
            start: f[5].trim().parse().map_err(|_| bad())?,
            end: f[6].trim().parse().map_err(|_| bad())?,
        })
    })
}

/// One log line of a pod, as the data set has it: a container's stdout line with a header
/// (`19:39:03.269 INFO  o.s.OrderServiceImpl#365 TraceID: … SpanID: … message`).
struct LogRow {
    time: u64,
    pod: String,
    trace: Option<[u8; 16]>,
    span: Option<[u8; 8]>,
    level: String,
    message: String,
    /// The logger and source line of the header (`o.s.OrderServiceImpl#365`), as a log
    /// appender sends them: the instrumentation scope's name and `code.line.number`.
    origin: Option<(String, Option<i64>)>,
}

/// The level and the message of a log line: what an OpenTelemetry log appender sends as
/// `severity_text` and body (the header's time, logger and ids are fields of their own).
pub fn split_log_line(line: &str) -> (String, String) {
    let line = line.trim_end();
    if let Some(split) = split_json_log_line(line) {
        return split;
    }
    // A line with the trace context and no header (no level given).
    if line.trim_start().starts_with("TraceID: ") {
        if let Some(message) = after_trace_context(line) {
            return (String::new(), message.trim().to_string());
        }
    }
    let mut tokens = line.split_whitespace();
    let (Some(time), Some(level)) = (tokens.next(), tokens.next()) else {
        return (String::new(), line.trim().to_string());
    };
    let levels = [
        "TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL",
    ];
    if !time.contains(':') || !levels.contains(&level) {
        // A continuation line (a stack frame, an exception's text): the message as it is.
        return (String::new(), line.trim().to_string());
    }
    let message = match after_trace_context(line) {
        Some(message) => message,
        // time level logger message
        None => line
            .splitn(4, char::is_whitespace)
            .filter(|t| !t.is_empty())
            .nth(3)
            .unwrap_or(""),
    };
    (level.to_string(), message.trim().to_string())
}

/// A structured (JSON) log line, as the services of some systems write them
/// (`{"severity": "info", "message": "TraceID: … SpanID: … text", …}`): its level, upper-cased,
/// and its message without the trace context (kept in fields of its own). `None` when the line
/// is not a JSON object with a message.
fn split_json_log_line(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    if !line.starts_with('{') {
        return None;
    }
    let v: Value = serde_json::from_str(line).ok()?;
    let message = ["message", "msg"].iter().find_map(|k| v[*k].as_str())?;
    let level = ["severity", "level", "levelname"]
        .iter()
        .find_map(|k| v[*k].as_str())
        .unwrap_or("")
        .trim()
        .to_ascii_uppercase();
    let message = after_trace_context(message).unwrap_or(message);
    Some((level, message.trim().to_string()))
}

/// The text after a line's trace context (`… SpanID: <id> text`), when it has one.
/// The logger and line of a plain log line's header (`19:39:03.269 INFO  o.s.OrderServiceImpl#365
/// TraceID: …`): the token after the level, split at `#`. `None` for a line without that header.
pub fn log_origin(line: &str) -> Option<(String, Option<i64>)> {
    let mut tokens = line.split_whitespace();
    let (time, level, logger) = (tokens.next()?, tokens.next()?, tokens.next()?);
    let levels = [
        "TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL",
    ];
    if !time.contains(':') || !levels.contains(&level) || logger == "TraceID:" {
        return None;
    }
    match logger.rsplit_once('#') {
        Some((name, n)) if !name.is_empty() => Some((name.to_string(), n.parse().ok())),
        _ => Some((logger.to_string(), None)),
    }
}

fn after_trace_context(line: &str) -> Option<&str> {
    let i = line.find("SpanID: ")?;
    let rest = &line[i + "SpanID: ".len()..];
    Some(rest.split_once(char::is_whitespace).map_or("", |(_, m)| m))
}

fn read_log_rows(path: &Path) -> Result<Vec<LogRow>, RealError> {
    read_csv(path, 8, |line, f| {
        // A few lines have a broken `TimeUnixNano` (negative): their `Timestamp` is good.
        let time = f[1]
            .trim()
            .parse::<u64>()
            .ok()
            .or_else(|| {
                let ts = f[0].trim();
                let ts = if ts.ends_with('Z') {
                    ts.to_string()
                } else {
                    format!("{ts}Z")
                };
                crate::model::time::parse_rfc3339_ns(&ts)
            })
            .ok_or_else(|| data_err(path, format!("line {line}: bad time")))?;
        let raw: Value = serde_json::from_str(&f[7]).unwrap_or(Value::Null);
        let text = raw["log"].as_str().unwrap_or(&f[7]);
        let (level, message) = split_log_line(text);
        Ok(LogRow {
            time,
            pod: f[3].clone(),
            trace: hex_bytes(&f[5]),
            span: hex_bytes(&f[6]),
            level,
            message,
            origin: log_origin(text),
        })
    })
}

/// The log file of the same minute as a trace file (`log/HH_MM_log.csv` beside
/// `trace/HH_MM_trace.csv`), if the data set has one.
fn log_rows_beside(trace_file: &Path) -> Result<Vec<LogRow>, RealError> {
    let Some(name) = trace_file.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let Some(dir) = trace_file.parent().and_then(Path::parent) else {
        return Ok(Vec::new());
    };
    let log_file = dir.join("log").join(name.replace("_trace.csv", "_log.csv"));
    if log_file.exists() {
        read_log_rows(&log_file)
    } else {
        Ok(Vec::new())
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    crate::otlp::string_attribute(key, value)
}

/// Spans of one block with kinds and `peer.service` derived, shifted by `shift_ns` and with
/// `copy` mixed into the trace ids (so repeated copies are distinct traces).
fn to_spans(rows: &[Row], shift_ns: i64, copy: u8) -> Vec<(String, Span)> {
    let pod_of: HashMap<[u8; 8], &str> = rows.iter().map(|r| (r.span, r.pod.as_str())).collect();
    let mut remote_child: HashMap<[u8; 8], &str> = HashMap::new();
    for r in rows {
        if let Some(p) = r.parent {
            if pod_of.get(&p).is_some_and(|pp| *pp != r.pod) {
                remote_child.entry(p).or_insert(service_of(&r.pod));
            }
        }
    }
    let shift = |t: u64| (t as i64 + shift_ns).max(1) as u64;
    rows.iter()
        .map(|r| {
            let server = match r.parent {
                None => true,
                Some(p) => pod_of.get(&p).is_none_or(|pp| *pp != r.pod),
            };
            let mut attributes = Vec::new();
            let kind = if server {
                SpanKind::Server
            } else if let Some(peer) = remote_child.get(&r.span) {
                attributes.push(kv("peer.service", peer));
                SpanKind::Client
            } else {
                SpanKind::Internal
            };
            let mut trace_id = r.trace.to_vec();
            trace_id[15] ^= copy;
            (
                service_of(&r.pod).to_string(),
                Span {
                    trace_id,
                    span_id: r.span.to_vec(),
                    parent_span_id: r.parent.map(|p| p.to_vec()).unwrap_or_default(),
                    name: r.name.clone(),
                    kind: kind as i32,
                    start_time_unix_nano: shift(r.start),
                    end_time_unix_nano: shift(r.end.max(r.start)),
                    attributes,
                    ..Default::default()
                },
            )
        })
        .collect()
}

/// The folder with `rca_data/` and `construct_data/`, unpacking a `.tar.gz` first if given one.
fn data_root(data: &Path, out: &Path) -> Result<PathBuf, RealError> {
    if data.is_dir() {
        return Ok(data.to_path_buf());
    }
    let dir = out.join("data");
    if !dir.join("rca_data").is_dir() {
        std::fs::create_dir_all(&dir)?;
        let status = std::process::Command::new("tar")
            .arg("-xzf")
            .arg(data)
            .arg("-C")
            .arg(&dir)
            .status()
            .map_err(|e| data_err(data, format!("cannot run tar: {e}")))?;
        if !status.success() {
            return Err(data_err(data, "tar could not unpack it"));
        }
    }
    Ok(dir)
}

fn day_dir(root: &Path, part: &str) -> Result<PathBuf, RealError> {
    let base = root.join(part);
    let mut days: Vec<PathBuf> = std::fs::read_dir(&base)
        .map_err(|e| data_err(&base, e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    days.sort();
    days.into_iter()
        .next()
        .ok_or_else(|| data_err(&base, "no day folder"))
}

struct RawFault {
    pod: String,
    kind: String,
    /// `inject_timestamp`, until `place_faults` settles when the injection was.
    at_s: u64,
    /// `inject_time`, read as UTC (the traces' clock, and the minute the trace files are
    /// named after).
    named_s: Option<u64>,
}

fn read_faults(day: &Path) -> Result<Vec<RawFault>, RealError> {
    let path = list_dir(day)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("fault_list.json"))
        .ok_or_else(|| data_err(day, "no *fault_list.json"))?;
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .map_err(|e| data_err(&path, e.to_string()))?;
    let mut out = Vec::new();
    for list in v.as_object().into_iter().flat_map(|m| m.values()) {
        for f in list.as_array().into_iter().flatten() {
            let at_s = f["inject_timestamp"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| f["inject_timestamp"].as_u64())
                .ok_or_else(|| data_err(&path, "a fault without inject_timestamp"))?;
            let named_s = f["inject_time"]
                .as_str()
                .and_then(|t| {
                    crate::model::time::parse_rfc3339_ns(&format!(
                        "{}Z",
                        t.trim().replace(' ', "T")
                    ))
                })
                .map(|ns| ns / 1_000_000_000);
            out.push(RawFault {
                pod: f["inject_pod"].as_str().unwrap_or("").to_string(),
                kind: f["inject_type"].as_str().unwrap_or("").to_string(),
                at_s,
                named_s,
            });
        }
    }
    out.sort_by_key(|f| f.at_s);
    Ok(out)
}

/// A run of consecutive per-minute trace files (`HH_MM_trace.csv`): the spans recorded around
/// one injection.
struct Block {
    rows: Vec<Row>,
    /// The pods' log lines of the same minutes.
    logs: Vec<LogRow>,
    /// The first span's start and the last span's end, on the data's clock.
    first_ns: u64,
    last_ns: u64,
    /// Where the block's minutes begin on the data's clock, on a whole second
    /// (`busiest_stretch`).
    from_ns: u64,
    /// The minute files it was read from.
    files: u64,
}

impl Block {
    fn from_rows(rows: Vec<Row>, logs: Vec<LogRow>, files: u64) -> Option<Block> {
        let first_ns = rows.iter().map(|r| r.start).min()?;
        let last_ns = rows.iter().map(|r| r.end.max(r.start)).max()?;
        let mut ends: Vec<u64> = rows.iter().map(|r| r.end.max(r.start)).collect();
        let from_ns = busiest_stretch(&mut ends, files.max(1) * 60_000_000_000);
        Some(Block {
            rows,
            logs,
            first_ns,
            last_ns,
            from_ns,
            files,
        })
    }

    /// Whole minutes the block takes on the replay's clock (so windows stay aligned): one per
    /// minute file. The spans of a file straddle its minute's edges by a few seconds, so a
    /// block of three files can run a second or two past three minutes; a fourth minute for
    /// those seconds would be near silence, which reads as every service's traffic stopping.
    /// The spans ending past the block's minutes are left out (`ReplayWriter::spans_outside`).
    fn minutes(&self) -> u64 {
        self.files.max(1)
    }

    /// Where the block's minutes end on the data's clock.
    fn end_ns(&self) -> u64 {
        self.from_ns + self.minutes() * 60_000_000_000
    }
}

/// The start (on a whole second) of the `len_ns`-long stretch holding the most of `ends`, the
/// earliest of equals. A trace file holds about a minute of spans by when they ended, but a
/// few long traces started minutes before it: the first start would put the block's minutes
/// before most of its spans (on one day's fault-free minute, four fifths of them).
fn busiest_stretch(ends: &mut [u64], len_ns: u64) -> u64 {
    ends.sort_unstable();
    let (mut best, mut best_count, mut j) = (0, 0, 0);
    for i in 0..ends.len() {
        let from = ends[i] / 1_000_000_000 * 1_000_000_000;
        if i > 0 && ends[i - 1] / 1_000_000_000 * 1_000_000_000 == from {
            continue;
        }
        j = j.max(i);
        while j < ends.len() && ends[j] < from + len_ns {
            j += 1;
        }
        if j - i > best_count {
            (best, best_count) = (from, j - i);
        }
    }
    best
}

/// The trace files of `dir` grouped into blocks of consecutive minutes (`place_faults` says
/// which fault each block is for).
fn trace_blocks(dir: &Path) -> Result<Vec<Block>, RealError> {
    let mut minutes: Vec<(u32, PathBuf)> = Vec::new();
    for e in list_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(stem) = name.strip_suffix("_trace.csv") else {
            continue;
        };
        let mut hm = stem.split('_').map(|x| x.parse::<u32>());
        if let (Some(Ok(h)), Some(Ok(m)), None) = (hm.next(), hm.next(), hm.next()) {
            minutes.push((h * 60 + m, p));
        }
    }
    minutes.sort();
    let mut blocks = Vec::new();
    let (mut rows, mut logs) = (Vec::new(), Vec::new());
    let mut prev: Option<u32> = None;
    let mut files = 0;
    // Neighbouring files of a day share a few spans (up to a whole file's worth): a span is
    // its trace and span id, kept once per block.
    let mut seen: HashSet<([u8; 16], [u8; 8])> = HashSet::new();
    for (m, p) in minutes {
        if prev.is_some_and(|x| x + 1 != m) {
            seen.clear();
            blocks.extend(Block::from_rows(
                std::mem::take(&mut rows),
                std::mem::take(&mut logs),
                std::mem::take(&mut files),
            ));
        }
        rows.extend(
            read_rows(&p)?
                .into_iter()
                .filter(|r| seen.insert((r.trace, r.span))),
        );
        logs.extend(log_rows_beside(&p)?);
        files += 1;
        prev = Some(m);
    }
    blocks.extend(Block::from_rows(rows, logs, files));
    Ok(blocks)
}

/// The replay's plan on its own clock.
pub struct Plan {
    pub faults: Vec<Fault>,
    /// Faults the data set lists (those without a block of traces are left out of `faults`).
    pub faults_listed: usize,
    /// The end of the warm-up.
    pub warm_end_ns: u64,
    /// Where each fault's block lies: the day's own data, the only time that is scored.
    pub blocks: Vec<(u64, u64)>,
    /// Time outside every fault inside the blocks (what false positives are counted over).
    pub quiet_ns: u64,
    pub end_ns: u64,
    /// Log lines replayed, and left out (outside their block's minutes).
    pub log_lines: (usize, usize),
    /// Spans left out (ending past their block's minutes).
    pub spans_outside: usize,
    /// Metric data points replayed.
    pub metric_points: usize,
}

/// Where a replay's three signals are written.
pub struct ReplayFiles {
    pub traces: PathBuf,
    pub logs: PathBuf,
    pub metrics: PathBuf,
}

/// Writes the replay file: the fault-free minute `warmup_min` times, then each fault's block,
/// with `gap_min` fault-free minutes between blocks (the day had minutes of normal traffic
/// between injections; without them one fault's aftermath runs into the next one's start).
/// The pods' log lines go to `logs_file` on the same clock.
pub fn convert(root: &Path, opts: &RealOptions, files: &ReplayFiles) -> Result<Plan, RealError> {
    let rca = day_dir(root, "rca_data")?;
    let construct = day_dir(root, "construct_data")?;
    let raw = read_faults(&rca)?;
    let faults_listed = raw.len();
    let blocks = trace_blocks(&rca.join("trace"))?;
    let mut placed = place_faults(raw, &blocks);
    if let Some(n) = opts.faults {
        placed.truncate(n);
    }
    let normal = normal_block(&construct)?;
    let total_min = opts.warmup_min * normal.minutes()
        + placed
            .iter()
            .map(|(_, b)| blocks[*b].minutes() + opts.gap_min * normal.minutes())
            .sum::<u64>();
    let now_s = crate::model::time::now_ns() / 1_000_000_000;
    let pods = super::real_metrics::read_metric_dir(&rca.join("metric"))?;
    let mut replay = ReplayWriter {
        w: std::io::BufWriter::new(std::fs::File::create(&files.traces)?),
        logs: std::io::BufWriter::new(std::fs::File::create(&files.logs)?),
        metrics: std::io::BufWriter::new(std::fs::File::create(&files.metrics)?),
        pods,
        metric_points: 0,
        logs_written: 0,
        logs_outside: 0,
        spans_outside: 0,
        path: &files.traces,
        // Whole minutes, ending ten minutes ago (inside the window processor's clock-skew
        // limit).
        cursor_s: (now_s - total_min * 60 - 600) / 60 * 60,
    };
    // The pods' metrics are continuous: each replayed minute gets the metrics of the real
    // minute it stands for (the warm-up the minutes from the fault-free one on, a gap the
    // minutes just before its block).
    let normal_from = normal.from_ns;
    for copy in 0..opts.warmup_min {
        let at_s = replay.write_block(&normal, copy as u8)?;
        replay.write_metrics(normal_from + copy * 60_000_000_000, 1, at_s)?;
    }
    let mut plan = Plan {
        faults: Vec::new(),
        faults_listed,
        warm_end_ns: replay.cursor_s * 1_000_000_000,
        blocks: Vec::new(),
        quiet_ns: 0,
        end_ns: 0,
        log_lines: (0, 0),
        spans_outside: 0,
        metric_points: 0,
    };
    for (i, (f, b)) in placed.iter().enumerate() {
        let block = &blocks[*b];
        let block_from = block.from_ns;
        if i > 0 {
            for copy in 0..opts.gap_min {
                let at_s = replay.write_block(&normal, (100 + copy) as u8)?;
                let before = (opts.gap_min - copy) * 60_000_000_000;
                replay.write_metrics(block_from.saturating_sub(before), 1, at_s)?;
            }
        }
        let at_s = replay.write_block(block, 0)?;
        replay.write_metrics(block_from, block.minutes(), at_s)?;
        let (from, to) = (at_s * 1_000_000_000, replay.cursor_s * 1_000_000_000);
        let start_ns = from + (f.at_s * 1_000_000_000).saturating_sub(block.from_ns);
        plan.quiet_ns += start_ns - from;
        plan.blocks.push((from, to));
        plan.faults.push(Fault {
            service: service_of(&f.pod).to_string(),
            kind: f.kind.clone(),
            start_ns,
            end_ns: to,
        });
    }
    replay.w.flush()?;
    replay.logs.flush()?;
    replay.metrics.flush()?;
    plan.log_lines = (replay.logs_written, replay.logs_outside);
    plan.spans_outside = replay.spans_outside;
    plan.metric_points = replay.metric_points;
    plan.end_ns = replay.cursor_s * 1_000_000_000;
    Ok(plan)
}

/// Each fault with the index of the block its injection falls in, or of one that starts
/// within a minute after it (the spans were recorded from shortly after some injections); a
/// fault without a block, or whose block an earlier fault has, is left out.
///
/// The block is the one `inject_time` falls in (the trace files are named after it, on the
/// traces' clock). The injection is `inject_timestamp` when that lies in the same block (it is
/// to the second, where `inject_time` is a minute off for some faults), else `inject_time`:
/// on some days the timestamps are hours off the traces' clock (a local time zone), or one
/// fault's timestamp is repeated for the next. A fault whose `inject_time` names no block is
/// placed by its timestamp alone.
fn place_faults(raw: Vec<RawFault>, blocks: &[Block]) -> Vec<(RawFault, usize)> {
    let block_of = |at_s: u64| {
        let at = at_s.saturating_mul(1_000_000_000);
        blocks
            .iter()
            .position(|b| b.first_ns <= at + 60_000_000_000 && at <= b.last_ns)
    };
    let mut placed: Vec<(RawFault, usize)> = Vec::new();
    for mut f in raw {
        let by_stamp = block_of(f.at_s);
        let found = match f.named_s.and_then(|t| block_of(t).map(|b| (t, b))) {
            Some((_, b)) if by_stamp == Some(b) => Some(b),
            Some((t, b)) => {
                f.at_s = t;
                Some(b)
            }
            None => by_stamp,
        };
        if let Some(b) = found {
            if !placed.iter().any(|(_, x)| *x == b) {
                placed.push((f, b));
            }
        }
    }
    placed.sort_by_key(|(f, _)| f.at_s);
    placed
}

/// The fault-free minute: a trace file of the day's fault-free data.
fn normal_block(construct: &Path) -> Result<Block, RealError> {
    let normal_file = list_dir(&construct.join("trace"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("_trace.csv"))
        .ok_or_else(|| data_err(construct, "no fault-free trace file"))?;
    Block::from_rows(read_rows(&normal_file)?, log_rows_beside(&normal_file)?, 1)
        .ok_or_else(|| data_err(&normal_file, "no spans"))
}

/// The replay file being written, with the replay's clock at the end of what it holds.
struct ReplayWriter<'a> {
    w: std::io::BufWriter<std::fs::File>,
    logs: std::io::BufWriter<std::fs::File>,
    metrics: std::io::BufWriter<std::fs::File>,
    pods: Vec<super::real_metrics::PodMetrics>,
    metric_points: usize,
    logs_written: usize,
    logs_outside: usize,
    /// Spans ending past their block's whole minutes, left out.
    spans_outside: usize,
    path: &'a Path,
    cursor_s: u64,
}

impl ReplayWriter<'_> {
    /// Writes the pods' metrics of `minutes` minutes from `from_ns` (the data's clock) at
    /// `at_s` (the replay's).
    fn write_metrics(&mut self, from_ns: u64, minutes: u64, at_s: u64) -> Result<(), RealError> {
        let shift = at_s as i64 * 1_000_000_000 - from_ns as i64;
        let to = from_ns + minutes * 60_000_000_000;
        self.metric_points +=
            super::real_metrics::write_metrics(&mut self.metrics, &self.pods, from_ns, to, shift)
                .map_err(|e| data_err(self.path, e.to_string()))?;
        Ok(())
    }

    /// Writes a block at the cursor (its minutes from there, `copy` mixed into its trace ids)
    /// and moves the cursor past it; returns where it was written. Spans ending outside the
    /// block's minutes are left out (counted).
    fn write_block(&mut self, b: &Block, copy: u8) -> Result<u64, RealError> {
        let at_s = self.cursor_s;
        let shift = at_s as i64 * 1_000_000_000 - b.from_ns as i64;
        let mut spans = to_spans(&b.rows, shift, copy);
        let (start_ns, end_ns) = (
            at_s * 1_000_000_000,
            (at_s + b.minutes() * 60) * 1_000_000_000,
        );
        let all = spans.len();
        spans.retain(|(_, s)| (start_ns..end_ns).contains(&s.end_time_unix_nano));
        self.spans_outside += all - spans.len();
        spans.sort_by_key(|(_, s)| s.end_time_unix_nano);
        for chunk in spans.chunks(2000) {
            write_request(&mut self.w, chunk).map_err(|e| data_err(self.path, e.to_string()))?;
        }
        // Log lines outside the block's minutes have no place on the replay's clock.
        let (from, to) = (b.from_ns, b.end_ns());
        let mut logs: Vec<&LogRow> = b
            .logs
            .iter()
            .filter(|l| (from..to).contains(&l.time))
            .collect();
        self.logs_outside += b.logs.len() - logs.len();
        self.logs_written += logs.len();
        logs.sort_by_key(|l| l.time);
        for chunk in logs.chunks(2000) {
            write_logs(&mut self.logs, chunk, shift, copy)
                .map_err(|e| data_err(self.path, e.to_string()))?;
        }
        self.cursor_s += b.minutes() * 60;
        Ok(at_s)
    }
}

/// One OTLP/JSON request line: the spans grouped by service.
fn write_request(w: &mut impl Write, spans: &[(String, Span)]) -> std::io::Result<()> {
    let mut by_service: BTreeMap<&str, Vec<Span>> = BTreeMap::new();
    for (svc, s) in spans {
        by_service.entry(svc).or_default().push(s.clone());
    }
    let req = ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .map(|(svc, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", svc)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "nezha-replay".into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    };
    serde_json::to_writer(&mut *w, &req).map_err(std::io::Error::other)?;
    w.write_all(b"\n")
}

/// One logs request: the records grouped by service and logger, their level as
/// `severity_text` (the number unset, as many appenders send it), the message as body, the
/// trace context kept; the logger is the instrumentation scope's name and the source line
/// `code.line.number`, as an OpenTelemetry log appender sends them.
fn write_logs(
    w: &mut impl Write,
    rows: &[&LogRow],
    shift_ns: i64,
    copy: u8,
) -> std::io::Result<()> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    type ByLogger<'a> = BTreeMap<&'a str, Vec<LogRecord>>;
    let mut by_service: BTreeMap<&str, ByLogger<'_>> = BTreeMap::new();
    for r in rows {
        let time = (r.time as i64 + shift_ns).max(1) as u64;
        let logger = r.origin.as_ref().map_or("", |(l, _)| l.as_str());
        let attributes = match r.origin.as_ref().and_then(|(_, n)| *n) {
            Some(n) => vec![KeyValue {
                key: "code.line.number".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(n)),
                }),
                ..Default::default()
            }],
            None => Vec::new(),
        };
        by_service
            .entry(service_of(&r.pod))
            .or_default()
            .entry(logger)
            .or_default()
            .push(LogRecord {
                time_unix_nano: time,
                observed_time_unix_nano: time,
                severity_text: r.level.clone(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(r.message.clone())),
                }),
                attributes,
                trace_id: r
                    .trace
                    .map(|t| {
                        let mut t = t.to_vec();
                        t[15] ^= copy;
                        t
                    })
                    .unwrap_or_default(),
                span_id: r.span.map(|s| s.to_vec()).unwrap_or_default(),
                ..Default::default()
            });
    }
    let req = ExportLogsServiceRequest {
        resource_logs: by_service
            .into_iter()
            .map(|(svc, loggers)| ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", svc)],
                    ..Default::default()
                }),
                scope_logs: loggers
                    .into_iter()
                    .map(|(logger, log_records)| ScopeLogs {
                        scope: (!logger.is_empty()).then(|| InstrumentationScope {
                            name: logger.to_string(),
                            ..Default::default()
                        }),
                        log_records,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
    };
    serde_json::to_writer(&mut *w, &req).map_err(std::io::Error::other)?;
    w.write_all(b"\n")
}

/// What the replay produced: every scored window and every incident's final state (with its
/// first-seen time).
struct Output {
    windows: Vec<WindowRecord>,
    incidents: BTreeMap<String, (u64, Value)>,
    /// Every incident change in order: (when, id, ranked services).
    changes: Vec<(u64, String, Vec<String>)>,
}

fn causes_of(incident: &Value) -> Vec<String> {
    incident["root_cause"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["service"].as_str().map(str::to_string))
        .collect()
}

fn read_output(path: &Path) -> Result<Output, RealError> {
    let file = std::fs::File::open(path)?;
    let mut out = Output {
        windows: Vec::new(),
        incidents: BTreeMap::new(),
        changes: Vec::new(),
    };
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        let Ok(doc) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if doc["event"]["dataset"] == "otelwatch.incident" {
            let id = doc["incident"]["id"].as_str().unwrap_or("").to_string();
            let at = doc["incident"]["start"]
                .as_str()
                .and_then(crate::model::time::parse_rfc3339_ns)
                .unwrap_or(0);
            let when = doc["@timestamp"]
                .as_str()
                .and_then(crate::model::time::parse_rfc3339_ns)
                .unwrap_or(0);
            out.changes
                .push((when, id.clone(), causes_of(&doc["incident"])));
            let e = out.incidents.entry(id).or_insert((at, Value::Null));
            e.1 = doc;
        } else if let Some(mut w) = WindowRecord::from_document(&doc) {
            w.anomaly = crate::model::window::Anomaly::from_document(&doc);
            out.windows.push(w);
        }
    }
    Ok(out)
}

#[derive(Debug, Default)]
pub struct Figures {
    pub faults: usize,
    pub detected: usize,
    pub flagged: usize,
    pub flagged_in_faults: usize,
    pub fp_per_service_hour: f64,
    pub false_incidents_per_hour: f64,
    pub incidents_per_fault: f64,
    pub top1: usize,
    pub top3: usize,
    pub ranked: usize,
    pub auc: f64,
    pub mean_delay_s: f64,
    /// From the injection to the end of the first window of the fault whose anomaly belongs to
    /// an incident (when an operator is paged), over the faults that have one.
    pub mean_incident_delay_s: Option<f64>,
    pub services: usize,
    pub quiet_hours: f64,
    /// Flagged windows outside every fault.
    pub false_flags: usize,
    /// Of them, those that are a block's first window (where the replay turns from the
    /// fault-free minute to the day's data of another hour).
    pub false_flags_first: usize,
    /// Of them, those that are a block's second window (the other hour's traffic still new).
    pub false_flags_second: usize,
    /// Faults whose service a flagged window names while they last (its series' service, or
    /// the callee of an edge): about the most a ranking can find.
    pub named: usize,
}

fn in_fault(faults: &[Fault], start: u64, end: u64) -> Option<usize> {
    faults
        .iter()
        .position(|f| start < f.end_ns && end > f.start_ns)
}

/// Scores windows (by index: `score`, flagged by `flag`) against the faults. Only windows
/// inside the day's blocks count (not the warm-up, not the fault-free minutes between blocks).
fn figures(
    plan: &Plan,
    windows: &[&WindowRecord],
    score: &dyn Fn(usize) -> f64,
    flag: &dyn Fn(usize) -> bool,
) -> Figures {
    let faults = &plan.faults;
    let mut fig = Figures {
        faults: faults.len(),
        ..Default::default()
    };
    let services: HashSet<&str> = windows.iter().map(|w| &*w.series.service).collect();
    fig.services = services.len();
    fig.quiet_hours = plan.quiet_ns as f64 / 3.6e12;
    let mut first_flag: Vec<Option<u64>> = vec![None; faults.len()];
    let mut named = vec![false; faults.len()];
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    let mut false_flags = 0usize;
    for (i, w) in windows.iter().enumerate() {
        let Some((block_from, _)) = plan
            .blocks
            .iter()
            .find(|(a, b)| w.start_ns >= *a && w.start_ns < *b)
        else {
            continue;
        };
        let first_window = w.start_ns < block_from + w.interval_ns;
        let second_window = !first_window && w.start_ns < block_from + 2 * w.interval_ns;
        let f = in_fault(faults, w.start_ns, w.end_ns());
        scores.push(score(i));
        labels.push(f.is_some());
        if flag(i) {
            fig.flagged += 1;
            match f {
                Some(i) => {
                    fig.flagged_in_faults += 1;
                    let names = |s: &str| s == faults[i].service;
                    if names(&w.series.service) || w.series.target.as_deref().is_some_and(names) {
                        named[i] = true;
                    }
                    let t = w.end_ns();
                    if first_flag[i].is_none_or(|x| t < x) {
                        first_flag[i] = Some(t);
                    }
                }
                None => {
                    false_flags += 1;
                    fig.false_flags_first += usize::from(first_window);
                    fig.false_flags_second += usize::from(second_window);
                }
            }
        }
    }
    fig.detected = first_flag.iter().filter(|x| x.is_some()).count();
    fig.named = named.iter().filter(|x| **x).count();
    let delays: Vec<f64> = first_flag
        .iter()
        .zip(faults)
        .filter_map(|(t, f)| t.map(|t| t.saturating_sub(f.start_ns) as f64 / 1e9))
        .collect();
    fig.mean_delay_s = delays.iter().sum::<f64>() / delays.len().max(1) as f64;
    fig.false_flags = false_flags;
    fig.fp_per_service_hour =
        false_flags as f64 / (fig.services.max(1) as f64 * fig.quiet_hours.max(1e-9));
    fig.auc = roc_auc(&scores, &labels);
    fig
}

fn rank_score(fig: &mut Figures, faults: &[Fault], ranked: &[Option<Vec<String>>]) {
    (fig.ranked, fig.top1, fig.top3) =
        crate::tools::bench::root_cause_hits(faults.iter().map(|f| f.service.as_str()), ranked);
}

/// The baseline's per-window score: the largest |z| of its features against the series'
/// warm-up windows.
fn baseline_scores(windows: &[&WindowRecord], warm_end: u64) -> Vec<f64> {
    let mut stats: HashMap<&crate::model::window::SeriesKey, Vec<[f64; N_FEATURES]>> =
        HashMap::new();
    for w in windows.iter().filter(|w| w.start_ns < warm_end) {
        stats.entry(&w.series).or_default().push(w.features);
    }
    let moments: HashMap<_, _> = stats
        .into_iter()
        .map(|(k, v)| {
            let n = v.len() as f64;
            let mut m = [0.0; N_FEATURES];
            let mut s = [0.0; N_FEATURES];
            for i in 0..N_FEATURES {
                m[i] = v.iter().map(|f| f[i]).sum::<f64>() / n;
                s[i] = (v.iter().map(|f| (f[i] - m[i]).powi(2)).sum::<f64>() / n).sqrt();
            }
            (k, (m, s))
        })
        .collect();
    let mut out = Vec::with_capacity(windows.len());
    for w in windows {
        let z = match moments.get(&*w.series) {
            Some((m, s)) => (0..N_FEATURES)
                .map(|i| (w.features[i] - m[i]).abs() / (s[i] + 1e-6 * m[i].abs() + 1e-9))
                .fold(0.0, f64::max),
            None => 0.0,
        };
        out.push(z);
    }
    out
}

pub async fn run(opts: RealOptions) -> Result<String, RealError> {
    std::fs::create_dir_all(&opts.out)?;
    let root = data_root(&opts.data, &opts.out)?;
    let files = ReplayFiles {
        traces: opts.out.join("replay-traces.jsonl"),
        logs: opts.out.join("replay-logs.jsonl"),
        metrics: opts.out.join("replay-metrics.jsonl"),
    };
    let plan = convert(&root, &opts, &files)?;
    write_faults(&opts.out.join("faults.json"), &plan.faults)?;
    // Three replays of the same minutes, each through one `incidents` shared by its pipelines:
    // spans alone, spans and logs, all three signals (what each signal adds to the incidents).
    let mut runs = Vec::new();
    for signals in [
        &["traces"][..],
        &["traces", "logs"],
        &["traces", "logs", "metrics"],
    ] {
        let results = opts
            .out
            .join(format!("windows-{}.jsonl", signals.join("-")));
        let _ = std::fs::remove_file(&results);
        run_pipeline(&opts, &files, signals, &results, false).await?;
        runs.push(read_output(&results)?);
    }
    let services = |ws: &[&WindowRecord]| {
        ws.iter()
            .filter(|w| w.series.signal == Signal::Spans)
            .map(|w| &*w.series.service)
            .collect::<HashSet<_>>()
            .len()
    };
    let mut rows = Vec::new();
    for (name, output) in [
        "otelwatch: spans",
        "otelwatch: spans + logs",
        "otelwatch: spans + logs + metrics",
    ]
    .into_iter()
    .zip(&runs)
    {
        let ws: Vec<&WindowRecord> = output.windows.iter().collect();
        let mut fig = scored(&plan, &ws, services(&ws));
        incident_figures(&mut fig, &plan, output);
        let ranked = incident_rankings(&plan.faults, output, opts.interval_s);
        rank_score(&mut fig, &plan.faults, &ranked);
        rows.push((name.to_string(), fig, Some(ranked)));
    }
    // Each signal's windows alone (from the run with all three).
    let all: Vec<&WindowRecord> = runs[2].windows.iter().collect();
    let n_services = services(&all);
    for (name, signal) in [
        ("otelwatch, log windows alone", Signal::Logs),
        ("otelwatch, metric windows alone", Signal::Metrics),
    ] {
        let ws: Vec<&WindowRecord> = all
            .iter()
            .copied()
            .filter(|w| w.series.signal == signal)
            .collect();
        rows.push((name.to_string(), scored(&plan, &ws, n_services), None));
    }
    // The baseline, on the span windows.
    let spans: Vec<&WindowRecord> = runs[0].windows.iter().collect();
    let z = baseline_scores(&spans, plan.warm_end_ns);
    let mut base = figures(&plan, &spans, &|i| z[i], &|i| z[i] > 3.0);
    let base_ranked = baseline_rankings(&plan.faults, &spans, &z);
    rank_score(&mut base, &plan.faults, &base_ranked);
    rows.push(("baseline: max feature z-score > 3".into(), base, None));
    let day = [
        day_metrics(&root, &opts, false).await?,
        day_metrics(&root, &opts, true).await?,
    ];
    Ok(report(&opts, &plan, &rows, &day))
}

/// One detector's row of the report: its name, figures and, for those with incidents, the
/// ranking each fault got.
type ReportRow = (String, Figures, Option<Vec<Option<Vec<String>>>>);

/// Window figures of otelwatch's own verdicts, false positives per service of the traces.
fn scored(plan: &Plan, ws: &[&WindowRecord], services: usize) -> Figures {
    let mut fig = figures(
        plan,
        ws,
        &|i| ws[i].anomaly.as_ref().map(|a| a.score).unwrap_or(0.0),
        &|i| ws[i].is_anomaly(),
    );
    fig.services = services;
    fig.fp_per_service_hour =
        fig.false_flags as f64 / (fig.services.max(1) as f64 * fig.quiet_hours.max(1e-9));
    fig
}

/// The metrics alone over the whole day as it was recorded (11:39 to midnight, continuously,
/// the faults where they happened, each lasting as long as its block of traces): the only
/// signal of the data set with fault-free hours, so its false-positive rate is measured on
/// them.
async fn day_metrics(
    root: &Path,
    opts: &RealOptions,
    every_pod_metric: bool,
) -> Result<Figures, RealError> {
    let rca = day_dir(root, "rca_data")?;
    let pods = super::real_metrics::read_metric_dir(&rca.join("metric"))?;
    let first = pods
        .iter()
        .filter_map(|p| p.samples.first().map(|s| s.0))
        .min()
        .ok_or_else(|| data_err(&rca, "no metric samples"))?;
    let last = pods
        .iter()
        .filter_map(|p| p.samples.last().map(|s| s.0))
        .max()
        .unwrap_or(first);
    let day_from = first / 60_000_000_000 * 60_000_000_000;
    let day_to = (last / 60_000_000_000 + 1) * 60_000_000_000;
    // Ending ten minutes ago, on whole minutes (windows stay aligned).
    let now = crate::model::time::now_ns() / 60_000_000_000 * 60_000_000_000;
    let at = now - 600_000_000_000 - (day_to - day_from);
    let shift = at as i64 - day_from as i64;
    let on_replay = |t: u64| (t as i64 + shift) as u64;
    let blocks = trace_blocks(&rca.join("trace"))?;
    let raw = read_faults(&rca)?;
    let faults_listed = raw.len();
    let mut placed = place_faults(raw, &blocks);
    if let Some(n) = opts.faults {
        placed.truncate(n);
    }
    let faults: Vec<Fault> = placed
        .iter()
        .map(|(f, b)| {
            let block = &blocks[*b];
            let block_end = block.end_ns();
            Fault {
                service: service_of(&f.pod).to_string(),
                kind: f.kind.clone(),
                start_ns: on_replay(f.at_s * 1_000_000_000),
                end_ns: on_replay(block_end),
            }
        })
        .collect();
    // A slice of the faults (`--faults N`): the day up to an hour after the last of them.
    let day_to = match opts.faults {
        Some(_) => placed
            .iter()
            .map(|(_, b)| blocks[*b].last_ns + 3_600_000_000_000)
            .max()
            .map_or(day_to, |t| {
                (t / 60_000_000_000 * 60_000_000_000).min(day_to)
            }),
        None => day_to,
    };
    let replay = opts.out.join("replay-day-metrics.jsonl");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&replay)?);
    super::real_metrics::write_metrics(&mut w, &pods, day_from, day_to, shift)
        .map_err(|e| data_err(&replay, e.to_string()))?;
    w.flush()?;
    drop(w);
    let results = opts.out.join(if every_pod_metric {
        "windows-day-every-metric.jsonl"
    } else {
        "windows-day-metrics.jsonl"
    });
    let _ = std::fs::remove_file(&results);
    let files = ReplayFiles {
        traces: PathBuf::new(),
        logs: PathBuf::new(),
        metrics: replay,
    };
    run_pipeline(opts, &files, &["metrics"], &results, every_pod_metric).await?;
    let output = read_output(&results)?;
    // Scored from the first injection's hour on (the minutes before it are the warm-up).
    let warm_end = faults.iter().map(|f| f.start_ns).min().unwrap_or(at);
    let warm_end = warm_end.min(at + opts.warmup_min.max(10) * 60_000_000_000);
    let end = on_replay(day_to);
    let in_faults: u64 = faults
        .iter()
        .map(|f| f.end_ns.min(end).saturating_sub(f.start_ns.max(warm_end)))
        .sum();
    let plan = Plan {
        faults,
        faults_listed,
        warm_end_ns: warm_end,
        blocks: vec![(warm_end, end)],
        quiet_ns: (end - warm_end).saturating_sub(in_faults),
        end_ns: end,
        log_lines: (0, 0),
        spans_outside: 0,
        metric_points: 0,
    };
    let ws: Vec<&WindowRecord> = output.windows.iter().collect();
    let services = ws
        .iter()
        .map(|w| &*w.series.service)
        .collect::<HashSet<_>>()
        .len();
    Ok(scored(&plan, &ws, services))
}

/// The replay through `window` → `iforest` → `incidents` → `file`, one pipeline per signal
/// named, all sharing the one `incidents` (their windows joined) and the one file. A replay
/// runs at a thousand times the recorded pace with three pipelines sharing two cores, so the
/// windows wait a minute of event time for records a busy moment held back (a second of
/// wall-clock time), and the stop waits for the file to be written.
async fn run_pipeline(
    opts: &RealOptions,
    files: &ReplayFiles,
    signals: &[&str],
    results: &Path,
    every_pod_metric: bool,
) -> Result<(), RealError> {
    // The window processor's default selection takes the pods' CPU and memory
    // (`k8s.pod.cpu.*`, `k8s.pod.memory.*`); every column adds their network and system calls
    // and the pre-aggregated latency percentiles and workload of the data set.
    let metrics = if every_pod_metric {
        r#", metrics: { include: ["k8s.pod.*", "nezha.pod.*"] }"#
    } else {
        ""
    };
    let warmup_windows = (opts.warmup_min * 60 / opts.interval_s).max(16);
    let mut receivers = String::new();
    let mut forests = String::new();
    let mut pipelines = String::new();
    for signal in signals {
        let file = match *signal {
            "traces" => &files.traces,
            "logs" => &files.logs,
            _ => &files.metrics,
        };
        receivers.push_str(&format!(
            "  otlpjsonfile/{signal}: {{ include: [\"{}\"] }}\n",
            file.display()
        ));
        forests.push_str(&format!(
            "  iforest/{signal}: {{ warmup: {warmup_windows} }}\n"
        ));
        pipelines.push_str(&format!(
            "    {signal}: {{ receivers: [otlpjsonfile/{signal}], processors: [window, iforest/{signal}, incidents], exporters: [file] }}\n"
        ));
    }
    let yaml = format!(
        r#"
receivers:
{receivers}processors:
  window: {{ interval: {}s, allowed_lateness: 60s{metrics} }}
{forests}  incidents: {{ join_wait: 600s }}
exporters:
  file: {{ path: "{}" }}
service:
  telemetry: {{ metrics: {{ address: "" }} }}
  shutdown_timeout: 600s
  pipelines:
{pipelines}"#,
        opts.interval_s,
        results.display(),
    );
    let cfg = config::parse(&yaml, &|_| None)?;
    let telemetry = crate::telemetry::Telemetry::new();
    crate::pipeline::service::run(cfg, telemetry, std::future::pending::<()>()).await?;
    Ok(())
}

/// The faults as placed on the replay's clock, for checking the results by hand.
fn write_faults(path: &Path, faults: &[Fault]) -> Result<(), RealError> {
    let faults_json: Vec<Value> = faults
        .iter()
        .map(|f| {
            serde_json::json!({
                "service": f.service,
                "kind": f.kind,
                "start": crate::model::time::rfc3339(f.start_ns),
                "end": crate::model::time::rfc3339(f.end_ns),
            })
        })
        .collect();
    std::fs::write(
        path,
        serde_json::to_string_pretty(&faults_json).unwrap_or_default(),
    )?;
    Ok(())
}

/// False incidents per quiet hour and incidents per detected fault.
fn incident_figures(ours: &mut Figures, plan: &Plan, output: &Output) {
    let mut on_fault = 0usize;
    let mut false_incidents = 0usize;
    for (_, d) in output.incidents.values() {
        let i = &d["incident"];
        let t = |k: &str| {
            i[k].as_str()
                .and_then(crate::model::time::parse_rfc3339_ns)
                .unwrap_or(0)
        };
        if t("end") <= plan.warm_end_ns {
            continue;
        }
        match in_fault(&plan.faults, t("start"), t("end")) {
            Some(_) => on_fault += 1,
            None => false_incidents += 1,
        }
    }
    ours.false_incidents_per_hour = false_incidents as f64 / ours.quiet_hours.max(1e-9);
    let delays: Vec<f64> = plan
        .faults
        .iter()
        .filter_map(|f| {
            output
                .windows
                .iter()
                .filter(|w| w.start_ns < f.end_ns && w.end_ns() > f.start_ns)
                .filter(|w| w.anomaly.as_ref().is_some_and(|a| a.incident.is_some()))
                .map(|w| w.end_ns().saturating_sub(f.start_ns) as f64 / 1e9)
                .min_by(f64::total_cmp)
        })
        .collect();
    ours.mean_incident_delay_s =
        (!delays.is_empty()).then(|| delays.iter().sum::<f64>() / delays.len() as f64);
    ours.incidents_per_fault = on_fault as f64 / ours.detected.max(1) as f64;
}

/// Per fault: the ranking of the incident most of its flagged windows belong to, as it stood
/// when the fault ended (one window later).
fn incident_rankings(
    faults: &[Fault],
    output: &Output,
    interval_s: u64,
) -> Vec<Option<Vec<String>>> {
    faults
        .iter()
        .map(|f| {
            let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
            for w in &output.windows {
                if w.start_ns < f.end_ns && w.end_ns() > f.start_ns {
                    if let Some(id) = w.anomaly.as_ref().and_then(|a| a.incident.as_deref()) {
                        *votes.entry(id).or_default() += 1;
                    }
                }
            }
            let id = votes.iter().max_by_key(|(_, n)| **n).map(|(id, _)| *id)?;
            let until = f.end_ns + interval_s * 1_000_000_000;
            output
                .changes
                .iter()
                .rfind(|(t, i, _)| i == id && *t <= until)
                .or_else(|| output.changes.iter().find(|(_, i, _)| i == id))
                .map(|(_, _, c)| c.clone())
        })
        .collect()
}

/// The baseline's ranking per fault: services (callees for edges) by their largest z during it.
fn baseline_rankings(
    faults: &[Fault],
    windows: &[&WindowRecord],
    z: &[f64],
) -> Vec<Option<Vec<String>>> {
    faults
        .iter()
        .map(|f| {
            let mut best: HashMap<String, f64> = HashMap::new();
            for (i, w) in windows.iter().enumerate() {
                if w.start_ns < f.end_ns && w.end_ns() > f.start_ns {
                    let svc = w.series.target.as_deref().unwrap_or(&w.series.service);
                    let e = best.entry(svc.to_string()).or_insert(0.0);
                    *e = e.max(z[i]);
                }
            }
            crate::tools::bench::ranked_by_score(best)
        })
        .collect()
}

fn report(opts: &RealOptions, plan: &Plan, rows: &[ReportRow], day: &[Figures; 2]) -> String {
    let faults = &plan.faults;
    let services = rows.first().map_or(0, |r| r.1.services);
    let quiet = rows.first().map_or(0.0, |r| r.1.quiet_hours);
    let mut t = String::new();
    t.push_str(&format!(
        "Nezha replay: {} faults ({}; {} listed, those without traces left out), {services} services, {quiet:.2} h outside faults after a {}-minute warm-up, {} s windows; {} spans ending past their block's minutes left out; {} log lines replayed ({} outside their block's minutes left out), {} metric points\n\n",
        faults.len(),
        kinds(faults),
        plan.faults_listed,
        opts.warmup_min,
        opts.interval_s,
        plan.spans_outside,
        plan.log_lines.0,
        plan.log_lines.1,
        plan.metric_points,
    ));
    t.push_str("| detector | fault recall | window precision | FP per service-hour | false incidents per hour | incidents per fault | root cause top-1 | top-3 | ROC AUC | mean delay | mean delay to incident |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (name, fig, ranked) in rows {
        t.push_str(&row(name, fig, ranked.is_some()));
    }
    t.push_str(
        "| Nezha (published, logs+metrics+traces) | – | – | – | – | – | 0.867 | 0.978 | – | – | – |\n",
    );
    let scored_s = plan.quiet_ns as f64 / 1e9 / plan.blocks.len().max(1) as f64;
    t.push_str(&format!(
        "\nThe time outside faults that is scored is each block's stretch before its fault ({scored_s:.0} s a block on average). False-positive windows that are a block's first, where the replay turns from the fault-free minute to the day's data of another hour, and its second: {}\n",
        rows.iter()
            .filter(|(name, _, _)| name.starts_with("otelwatch"))
            .map(|(name, f, _)| {
                format!(
                    "{name} {} and {} of {}",
                    f.false_flags_first, f.false_flags_second, f.false_flags
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    ));
    t.push_str(&format!(
        "\nFaults whose service a flagged window names while they last (its series' service, or the callee of an edge): about the most a ranking can find (an incident's ranking also holds its windows before the fault's labelled start). {}\n",
        rows.iter()
            .filter(|(_, _, ranked)| ranked.is_some())
            .map(|(name, f, _)| format!(
                "{name} {} of {} (top-1 {}, top-3 {})",
                f.named, f.faults, f.top1, f.top3
            ))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    t.push_str(&format!(
        "\nThe pods' metrics over the whole day ({} services, {:.2} h outside faults):\n\n| detector | fault recall | window precision | FP per service-hour | ROC AUC | mean delay |\n|---|---|---|---|---|---|\n",
        day[0].services, day[0].quiet_hours
    ));
    for (name, fig) in [
        "otelwatch, metric windows, whole day (default selection: CPU, memory)",
        "otelwatch, metric windows, whole day (every pod column)",
    ]
    .into_iter()
    .zip(day)
    {
        let c = cells(fig, false);
        t.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} |\n",
            c.recall, c.precision, c.fp, c.auc, c.delay
        ));
    }
    for (name, _, ranked) in rows {
        let Some(ranked) = ranked else { continue };
        t.push_str(&format!(
            "\nper fault ({name}): injected service, kind → its incident's ranking\n"
        ));
        for (f, r) in faults.iter().zip(ranked) {
            t.push_str(&format!(
                "  {} {} → {}\n",
                f.service,
                f.kind,
                r.as_ref()
                    .map(|r| r.iter().take(3).cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_else(|| "no incident".into())
            ));
        }
    }
    t
}

fn kinds(faults: &[Fault]) -> String {
    let mut c: BTreeMap<&str, usize> = BTreeMap::new();
    for f in faults {
        *c.entry(&f.kind).or_default() += 1;
    }
    c.iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A row's cells, formatted (what both tables pick from).
struct Cells {
    recall: String,
    precision: String,
    fp: String,
    false_incidents: String,
    per_fault: String,
    top1: String,
    top3: String,
    auc: String,
    delay: String,
    incident_delay: String,
}

fn cells(f: &Figures, incidents: bool) -> Cells {
    let frac = |a: usize, b: usize| {
        if b == 0 {
            "–".to_string()
        } else {
            format!("{:.2} ({a}/{b})", a as f64 / b as f64)
        }
    };
    let if_incidents = |v: f64| {
        if incidents {
            format!("{v:.2}")
        } else {
            "–".into()
        }
    };
    let ranked = |a: usize| {
        if f.ranked == 0 {
            "–".into()
        } else {
            frac(a, f.faults)
        }
    };
    Cells {
        recall: frac(f.detected, f.faults),
        precision: frac(f.flagged_in_faults, f.flagged),
        fp: format!("{:.2}", f.fp_per_service_hour),
        false_incidents: if_incidents(f.false_incidents_per_hour),
        per_fault: if_incidents(f.incidents_per_fault),
        top1: ranked(f.top1),
        top3: ranked(f.top3),
        auc: format!("{:.3}", f.auc),
        delay: format!("{:.0} s", f.mean_delay_s),
        incident_delay: f
            .mean_incident_delay_s
            .map_or("–".into(), |d| format!("{d:.0} s")),
    }
}

fn row(name: &str, f: &Figures, incidents: bool) -> String {
    let c = cells(f, incidents);
    format!(
        "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        c.recall,
        c.precision,
        c.fp,
        c.false_incidents,
        c.per_fault,
        c.top1,
        c.top3,
        c.auc,
        c.delay,
        c.incident_delay
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_pods_without_their_hashes() {
        assert_eq!(
            service_of("ts-order-service-5b67c48447-fj8b7"),
            "ts-order-service"
        );
        assert_eq!(service_of("frontend"), "frontend");
    }

    #[test]
    fn blocks_are_runs_of_consecutive_minute_files() {
        let dir = tempfile::tempdir().unwrap();
        let header = "TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration\n";
        // Minute files 12:06, 12:07 (one block) and 12:15 (another); each holds one span that
        // starts 7 s before its minute ends, as in the data set, and 12:07 the span of 12:06
        // again, as neighbouring files sometimes do.
        let line = |minute: u64| {
            let start = (minute * 60 + 53) * 1_000_000_000;
            format!(
                "{:032x},{:016x},root,gw-a-b,/,{start},{},1000\n",
                minute,
                minute,
                start + 1_000_000
            )
        };
        for (name, minute) in [("12_06", 726u64), ("12_07", 727), ("12_15", 735)] {
            let again = if minute == 727 {
                line(726)
            } else {
                String::new()
            };
            std::fs::write(
                dir.path().join(format!("{name}_trace.csv")),
                format!("{header}{}{again}", line(minute)),
            )
            .unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "not a trace file").unwrap();
        let blocks = trace_blocks(dir.path()).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].rows.len(), 2);
        assert_eq!(blocks[0].first_ns, (726 * 60 + 53) * 1_000_000_000);
        assert_eq!(blocks[0].from_ns, (726 * 60 + 53) * 1_000_000_000);
        assert_eq!(blocks[1].rows.len(), 1);
        // A minute per file, though the two spans are 60 s and a millisecond apart.
        assert_eq!(blocks[0].minutes(), 2);
        assert_eq!(blocks[1].minutes(), 1);
    }

    #[test]
    fn a_blocks_minutes_are_where_most_of_its_spans_end() {
        let s = 1_000_000_000u64;
        // A minute's spans end from 100 s to 159.5 s; two long traces ended at 20 s and 30 s.
        let mut ends: Vec<u64> = (0..120).map(|i| 100 * s + i * s / 2).collect();
        ends.extend([20 * s, 30 * s + 5]);
        assert_eq!(busiest_stretch(&mut ends, 60 * s), 100 * s);
        // Equally many in two stretches: the earlier.
        let mut ends = vec![10 * s, 11 * s, 200 * s, 201 * s];
        assert_eq!(busiest_stretch(&mut ends, 60 * s), 10 * s);
        // Whole seconds: the stretch starts on the second of its first end.
        let mut ends = vec![10 * s + 700, 12 * s, 69 * s + 999];
        assert_eq!(busiest_stretch(&mut ends, 60 * s), 10 * s);
        assert_eq!(busiest_stretch(&mut [], 60 * s), 0);
    }

    #[test]
    fn log_lines_give_their_level_and_message_plain_or_structured() {
        assert_eq!(
            split_log_line("19:39:03.269 ERROR f.s.FoodServiceImpl#302 TraceID: ab SpanID: cd [getFood] failed\n"),
            ("ERROR".to_string(), "[getFood] failed".to_string())
        );
        assert_eq!(
            split_log_line("\tat java.base/java.lang.Thread.run(Thread.java:829)"),
            (
                String::new(),
                "at java.base/java.lang.Thread.run(Thread.java:829)".to_string()
            )
        );
        assert_eq!(
            split_log_line(
                r#"{"message":"TraceID: ab SpanID: cd Query product 1YMWWN1N4O","severity":"info","timestamp":"2022-08-22T05:18:42Z"}"#
            ),
            ("INFO".to_string(), "Query product 1YMWWN1N4O".to_string())
        );
        assert_eq!(
            split_log_line(
                r#"{"timestamp": "x", "severity": "ERROR", "message": "charge failed"}"#
            ),
            ("ERROR".to_string(), "charge failed".to_string())
        );
        assert_eq!(
            split_log_line("TraceID: ab SpanID: cd GetCartAsync called with userId=1"),
            (
                String::new(),
                "GetCartAsync called with userId=1".to_string()
            )
        );
        assert_eq!(
            log_origin("19:39:03.269 ERROR f.s.FoodServiceImpl#302 TraceID: ab SpanID: cd x"),
            Some(("f.s.FoodServiceImpl".to_string(), Some(302)))
        );
        assert_eq!(
            log_origin("19:39:03.269 INFO  o.a.c.c.C.[.[.[.[dispatcherServlet] TraceID: ab"),
            Some(("o.a.c.c.C.[.[.[.[dispatcherServlet]".to_string(), None))
        );
        assert_eq!(
            log_origin("19:39:03.269 INFO TraceID: ab SpanID: cd x"),
            None
        );
        assert_eq!(
            log_origin("\tat java.base/java.lang.Thread.run(Thread.java:829)"),
            None
        );
        // JSON without a message is a message as it is.
        assert_eq!(
            split_log_line(r#"{"a": 1}"#),
            (String::new(), r#"{"a": 1}"#.to_string())
        );
    }

    /// A block from 940 s to 1090 s after a warm-up ending at 900 s, with one fault from
    /// 1000 s to its end.
    fn one_fault_plan() -> Plan {
        const S: u64 = 1_000_000_000;
        Plan {
            faults: vec![Fault {
                service: "ts-order-service".into(),
                kind: "network_delay".into(),
                start_ns: 1000 * S,
                end_ns: 1090 * S,
            }],
            faults_listed: 1,
            warm_end_ns: 900 * S,
            blocks: vec![(940 * S, 1090 * S)],
            quiet_ns: 60 * S,
            end_ns: 1090 * S,
            log_lines: (0, 0),
            spans_outside: 0,
            metric_points: 0,
        }
    }

    #[test]
    fn false_positives_in_a_blocks_first_and_second_window_are_counted_apart() {
        const S: u64 = 1_000_000_000;
        let plan = one_fault_plan();
        let key = std::sync::Arc::new(crate::model::window::SeriesKey::service("ts-order-service"));
        let windows: Vec<WindowRecord> = [910, 940, 970, 1000, 1030]
            .iter()
            .map(|s| WindowRecord::new(key.clone(), s * S, 30 * S, [0.0; N_FEATURES]))
            .collect();
        let refs: Vec<&WindowRecord> = windows.iter().collect();
        // Every window flagged: the one before the block is not scored, the block's first and
        // second are false, the last two are in the fault.
        let fig = figures(&plan, &refs, &|_| 1.0, &|_| true);
        assert_eq!(
            (
                fig.false_flags,
                fig.false_flags_first,
                fig.false_flags_second
            ),
            (2, 1, 1)
        );
        assert_eq!((fig.flagged_in_faults, fig.detected), (2, 1));
    }

    #[test]
    fn a_fault_is_named_by_a_flagged_window_of_its_service_or_of_an_edge_to_it() {
        const S: u64 = 1_000_000_000;
        let plan = one_fault_plan();
        let record = |key: crate::model::window::SeriesKey, start: u64| {
            WindowRecord::new(
                std::sync::Arc::new(key),
                start * S,
                30 * S,
                [0.0; N_FEATURES],
            )
        };
        // Every window given is flagged.
        let count = |windows: &[WindowRecord]| {
            let refs: Vec<&WindowRecord> = windows.iter().collect();
            figures(&plan, &refs, &|_| 1.0, &|_| true).named
        };
        use crate::model::window::SeriesKey;
        // Flagged in the fault, but another service: not named; its flagged record before the
        // fault does not count either.
        let elsewhere = [
            record(SeriesKey::service("ts-user-service"), 1000),
            record(SeriesKey::service("ts-order-service"), 940),
        ];
        assert_eq!(count(&elsewhere), 0);
        // A caller's edge to it, during the fault: named.
        let edge = [record(
            SeriesKey::edge("ts-preserve-service", "ts-order-service"),
            1030,
        )];
        assert_eq!(count(&edge), 1);
        // Its own record, during the fault: named.
        let own = [record(SeriesKey::service("ts-order-service"), 1000)];
        assert_eq!(count(&own), 1);
    }

    #[test]
    fn the_delay_to_incident_runs_to_the_first_window_of_the_fault_in_an_incident() {
        const S: u64 = 1_000_000_000;
        let plan = one_fault_plan();
        let key = std::sync::Arc::new(crate::model::window::SeriesKey::service("ts-order-service"));
        // Before the fault, in an incident; the fault's first window anomalous without one (a
        // lone reading, pending); its second in an incident: paged at its end, 60 s in.
        let windows: Vec<WindowRecord> = [(970, true), (1000, false), (1030, true)]
            .iter()
            .map(|&(s, paged)| {
                let mut w = WindowRecord::new(key.clone(), s * S, 30 * S, [0.0; N_FEATURES]);
                w.anomaly = Some(crate::model::window::Anomaly {
                    score: 0.8,
                    threshold: 0.6,
                    is_anomaly: true,
                    severity: Some(crate::model::window::Severity::Major),
                    warming_up: false,
                    contributions: Vec::new(),
                    message: String::new(),
                    incident: paged.then(|| "0123456789abcdef".into()),
                    expected: false,
                });
                w
            })
            .collect();
        let output = Output {
            windows,
            incidents: BTreeMap::new(),
            changes: Vec::new(),
        };
        let mut fig = Figures::default();
        incident_figures(&mut fig, &plan, &output);
        assert_eq!(fig.mean_incident_delay_s, Some(60.0));
        // No window of the fault in an incident: no delay, and the report says so.
        let output = Output {
            windows: output.windows[..2].to_vec(),
            ..output
        };
        incident_figures(&mut fig, &plan, &output);
        assert_eq!(fig.mean_incident_delay_s, None);
        assert!(row("x", &fig, true).trim_end().ends_with("| – |"));
    }

    #[test]
    fn csv_fields_follow_quoting() {
        assert_eq!(
            csv_fields(r#"a,"b,""c""",d"#),
            vec!["a".to_string(), "b,\"c\"".into(), "d".into()]
        );
    }

    #[test]
    fn kinds_and_peers_are_derived_from_the_pods() {
        let row = |span: u8, parent: Option<u8>, pod: &str| Row {
            trace: [1; 16],
            span: [span; 8],
            parent: parent.map(|p| [p; 8]),
            pod: pod.into(),
            name: "op".into(),
            start: 10,
            end: 20,
        };
        let rows = vec![
            row(1, None, "gw-aaaa-bbbb"),
            row(2, Some(1), "gw-aaaa-bbbb"),
            row(3, Some(2), "order-cccc-dddd"),
            row(4, Some(3), "order-cccc-dddd"),
        ];
        let spans = to_spans(&rows, 100, 0);
        let kinds: Vec<i32> = spans.iter().map(|(_, s)| s.kind).collect();
        assert_eq!(
            kinds,
            vec![
                SpanKind::Server as i32,
                SpanKind::Client as i32,
                SpanKind::Server as i32,
                SpanKind::Internal as i32
            ]
        );
        assert_eq!(spans[1].1.attributes[0].key, "peer.service");
        assert_eq!(spans[2].0, "order");
        assert_eq!(spans[0].1.start_time_unix_nano, 110);
    }
}
