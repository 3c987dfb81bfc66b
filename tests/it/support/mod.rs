//! Shared test support: run the real `otelwatch` binary on a temporary config, talk to it over
//! real sockets, read what it wrote.
#![allow(dead_code)]

pub mod certs;
pub mod collector;
pub mod fake_es;
pub mod search;
pub mod secrets;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otelwatch::otlp::{count_items, decode_json_line};
use otelwatch::pipeline::DataKind;
use otelwatch::pipeline::Payload;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Held by the heavy, timing-sensitive tests (the real services, the demos, a search engine, the
/// real-data benchmark) for their whole run: every test runs in this one process, and these must
/// not run beside each other. A test that failed while holding it does not fail the next one.
pub fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A port that was free a moment ago and that no other test has been given: all tests run in
/// one process, and two of them picking the same port before either binds it would collide.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port");
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

pub struct Otelwatch {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub metrics_port: u16,
    pub stderr_path: PathBuf,
    pub stdout_path: PathBuf,
    pub config_path: PathBuf,
}

impl Otelwatch {
    /// Writes `config` (with `{METRICS}` replaced by a free port and `{DIR}` by the work
    /// directory) and starts the binary; returns once `/healthz` answers.
    pub fn start(dir: &Path, name: &str, config: &str) -> Self {
        let mut ow = Self::prepare(dir, name, config);
        ow.spawn();
        ow
    }

    /// Starts without waiting for `/healthz`: for runs that may end by themselves.
    pub fn start_finite(dir: &Path, name: &str, config: &str) -> Self {
        let mut ow = Self::prepare(dir, name, config);
        ow.launch();
        ow
    }

    /// Writes the config as [`Otelwatch::start`] does, without starting anything.
    pub fn prepare(dir: &Path, name: &str, config: &str) -> Self {
        let metrics_port = free_port();
        let config_path = write_config(dir, name, config, metrics_port);
        Self {
            child: None,
            dir: dir.to_path_buf(),
            metrics_port,
            stderr_path: dir.join(format!("{name}.stderr")),
            stdout_path: dir.join(format!("{name}.stdout")),
            config_path,
        }
    }

    /// Starts (again) and waits until healthy.
    pub fn spawn(&mut self) {
        self.launch();
        self.wait_healthy();
    }

    fn launch(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .unwrap();
        let stdout = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stdout_path)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_otelwatch"))
            .args(["run", "--config"])
            .arg(&self.config_path)
            .current_dir(&self.dir)
            .env("RUST_LOG", "info")
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("cannot start otelwatch");
        self.child = Some(child);
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("otelwatch exited early ({status}):\n{}", self.stderr());
            }
            if let Ok((200, _)) = http_get(self.metrics_port, "/healthz") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("otelwatch did not become healthy:\n{}", self.stderr());
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The value of one metric line (`name{labels}`), 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("not running").id()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(Duration::from_secs(30))
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} failed");
    }

    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("not running");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("otelwatch did not exit in {limit:?}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Otelwatch {
    /// Stops the process, then checks its logs hold none of the config's secrets.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            return;
        }
        let config = std::fs::read_to_string(&self.config_path).unwrap_or_default();
        let logs = self.stderr() + &self.stdout();
        let leaked = secrets::leaked(&config, &logs);
        assert!(
            leaked.is_empty(),
            "{} secret(s) of {} are in its logs ({})",
            leaked.len(),
            self.config_path.display(),
            self.stderr_path.display()
        );
    }
}

/// The pipeline files the tests run, `tests/it/configs/`.
pub fn configs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/configs")
}

/// The text of `tests/it/configs/<name>` with each `{KEY}` of `values` filled in, e.g.
/// `config("forward-traces-with-queue.yaml", &[("GRPC", &port), ("DOWNSTREAM", &down)])`.
/// `{DIR}` (the run's work directory) and `{METRICS}` (a free port for `/metrics`) are left for
/// [`Otelwatch::start`] unless given here. A key the file does not use, or a placeholder left
/// unfilled, fails the test.
pub fn config(name: &str, values: &[(&str, &dyn std::fmt::Display)]) -> String {
    let path = configs_dir().join(name);
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    for (key, value) in values {
        let placeholder = format!("{{{key}}}");
        assert!(text.contains(&placeholder), "{name} has no {placeholder}");
        text = text.replace(&placeholder, &value.to_string());
    }
    let left: Vec<String> = placeholders(&text)
        .into_iter()
        .filter(|p| p != "DIR" && p != "METRICS")
        .collect();
    assert!(left.is_empty(), "{name}: no value given for {left:?}");
    text
}

/// The `{NAME}` placeholders (capitals, digits, `_`) in a config text, in order, each once.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for (i, _) in text.match_indices('{') {
        let rest = &text[i + 1..];
        let len = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..len];
        if len > 0 && rest[len..].starts_with('}') && !found.iter().any(|f| f == name) {
            found.push(name.to_string());
        }
    }
    found
}

/// Writes `config` as `<dir>/<name>.yaml` with `{DIR}` and `{METRICS}` filled in; every other
/// placeholder must have been filled by [`config`].
pub fn write_config(dir: &Path, name: &str, config: &str, metrics_port: u16) -> PathBuf {
    let config = config
        .replace("{METRICS}", &metrics_port.to_string())
        .replace("{DIR}", &dir.display().to_string());
    let left = placeholders(&config);
    assert!(left.is_empty(), "{name}: no value given for {left:?}");
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, config).unwrap();
    path
}

/// A minimal HTTP/1.1 GET, enough for `/metrics` and `/healthz`.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let (status, answer) = http_get_with(port, path, "")?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_string()))
}

/// The same with extra header lines (each ending in CRLF); the status and the whole answer,
/// headers included.
pub fn http_get_with(port: u16, path: &str, headers: &str) -> std::io::Result<(u16, String)> {
    http_request(port, "GET", path, headers, "")
}

/// A minimal HTTP/1.1 request with a body: the status and the whole answer, headers included.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let length = if body.is_empty() && method == "GET" {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}{length}Connection: close\r\n\r\n{body}"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, buf))
}

/// Span identity as written in files: (trace id hex, span id hex) → (service, name).
pub type SpanSet = BTreeMap<(String, String), (String, String)>;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn spans_of(req: &ExportTraceServiceRequest, into: &mut SpanSet, dups: &mut usize) {
    for rs in &req.resource_spans {
        let svc = otelwatch::exporters::debug::service_name(rs.resource.as_ref()).to_string();
        for s in rs.scope_spans.iter().flat_map(|s| &s.spans) {
            let prev = into.insert(
                (hex(&s.trace_id), hex(&s.span_id)),
                (svc.clone(), s.name.clone()),
            );
            if prev.is_some() {
                *dups += 1;
            }
        }
    }
}

/// Every span in an OTLP/JSON lines file, and how many spans appeared more than once.
pub fn read_spans(path: &Path) -> (SpanSet, usize) {
    let mut set = SpanSet::new();
    let mut dups = 0;
    let text = std::fs::read(path).unwrap_or_default();
    for line in complete_lines(&text) {
        let (batch, _) = decode_json_line(line).expect("file exporter wrote an invalid line");
        if let Payload::Traces(t) = &batch.payload {
            spans_of(t.request(), &mut set, &mut dups);
        }
    }
    (set, dups)
}

/// Waits up to `limit` for `file` to hold as many spans as were `sent`; on time-out, panics with
/// how many came and `context()` (the processes' logs).
pub fn wait_for_spans(file: &Path, sent: &SpanSet, limit: Duration, context: impl Fn() -> String) {
    let complete = wait_until(limit, || read_spans(file).0.len() >= sent.len());
    assert!(
        complete,
        "{} of {} spans arrived:\n{}",
        read_spans(file).0.len(),
        sent.len(),
        context()
    );
}

/// `file` holds exactly the spans `sent`, each once.
pub fn assert_exactly(file: &Path, sent: &SpanSet) {
    let (got, dups) = read_spans(file);
    assert_eq!(dups, 0, "a span arrived twice");
    assert_eq!(&got, sent, "not exactly the spans sent");
}

/// The JSON documents of a file the file exporter wrote with window and incident documents
/// (one per line; none if it does not exist).
pub fn read_docs(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Polls until `f` is true or the time is up.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// The Python interpreter with the OpenTelemetry SDK, if set up (`scripts/test` does it).
/// Under `OTELWATCH_REQUIRE_SDK=1` (CI) a missing SDK fails the test instead of skipping it.
pub fn sdk_python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("OTELWATCH_PYTHON").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")),
    ];
    for c in candidates.into_iter().flatten() {
        let ok = Command::new(&c)
            .args([
                "-c",
                "import opentelemetry.sdk, opentelemetry.exporter.otlp",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return Some(c);
        }
    }
    if std::env::var("OTELWATCH_REQUIRE_SDK").is_ok_and(|v| v == "1") {
        panic!("the OpenTelemetry Python SDK is required (run ./scripts/test, which installs it into .venv)");
    }
    eprintln!("SKIPPED: OpenTelemetry Python SDK not installed; run ./scripts/test");
    None
}

pub fn sdk_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(name)
}

pub const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
pub const METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// Sends raw protobuf bytes to an OTLP/gRPC `Export` method, gzip-compressed if asked.
pub async fn grpc_send(
    port: u16,
    body: bytes::Bytes,
    gzip: bool,
    path: &'static str,
) -> Result<
    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
    tonic::Status,
> {
    let c = gzip.then_some(tonic::codec::CompressionEncoding::Gzip);
    grpc_send_with(port, body, c, path).await
}

pub async fn grpc_send_with(
    port: u16,
    body: bytes::Bytes,
    compression: Option<tonic::codec::CompressionEncoding>,
    path: &'static str,
) -> Result<
    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
    tonic::Status,
> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Some(c) = compression {
        grpc = grpc.send_compressed(c);
    }
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(body),
        http::uri::PathAndQuery::from_static(path),
        otelwatch::otlp::codec::ClientCodec::<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >::default(),
    )
    .await
    .map(|r| r.into_inner())
}

/// Builds `n` requests of `spans` realistic spans each, remembering every span sent.
pub fn make_requests(n: usize, spans: usize, seed: u64, sent: &mut SpanSet) -> Vec<bytes::Bytes> {
    use prost::Message;
    let mut f = otelwatch::tools::loadgen::SpanFactory::new(3, seed);
    let mut dups = 0;
    (0..n)
        .map(|_| {
            let r = f.request(spans);
            spans_of(&r, sent, &mut dups);
            bytes::Bytes::from(r.encode_to_vec())
        })
        .collect()
}

/// Items per signal (spans, metric data points, log records) in an OTLP/JSON lines file.
pub fn items_by_kind(path: &Path) -> (usize, usize, usize) {
    let text = std::fs::read(path).unwrap_or_default();
    let (mut t, mut m, mut l) = (0, 0, 0);
    for line in complete_lines(&text) {
        let (b, _) = decode_json_line(line).expect("an invalid OTLP/JSON line");
        let n = count_items(&b.payload);
        match b.kind() {
            DataKind::Traces => t += n,
            DataKind::Metrics => m += n,
            DataKind::Logs => l += n,
            DataKind::Windows => panic!("no windows expected here"),
        }
    }
    (t, m, l)
}

/// Sends `n` spans with the OpenTelemetry Python SDK (`tests/sdk/send_spans.py`) and returns
/// the spans it saw acknowledged. `endpoint` is `host:port` for gRPC, a full URL for HTTP;
/// `flags` are the script's options (`--gzip`, `--ca FILE`).
pub fn sdk_send_spans(
    python: &Path,
    protocol: &str,
    endpoint: &str,
    n: usize,
    service: &str,
    flags: &[&str],
    record: &Path,
) -> Result<SpanSet, String> {
    let mut cmd = Command::new(python);
    cmd.arg(sdk_script("send_spans.py"))
        .args(["--protocol", protocol, "--endpoint", endpoint])
        .args(["--spans", &n.to_string(), "--service", service])
        .arg("--record")
        .arg(record)
        .args(flags);
    let out = cmd.output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{service}: SDK export failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut sent = SpanSet::new();
    for line in std::fs::read_to_string(record).unwrap_or_default().lines() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        sent.insert((s("trace_id"), s("span_id")), (s("service"), s("name")));
    }
    Ok(sent)
}

/// The lines of a file being written: a last line without its newline is not complete yet.
pub fn complete_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let end = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    text[..end].split(|b| *b == b'\n').filter(|l| !l.is_empty())
}

/// One HTTP/1.1 POST; the status, headers and body of the answer.
pub async fn http_post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, http::HeaderMap, Vec<u8>) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut req = http::Request::post(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(
            req.body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}
