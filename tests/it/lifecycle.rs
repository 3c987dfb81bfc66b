//! Shutdown drains everything accepted; file replay ends by itself; a full pipeline refuses
//! with retryable statuses and never hangs.

use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::process::Command;
use std::time::{Duration, Instant};

fn shutdown_drains(signal: &str) {
    let Some(python) = sdk_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    // The batch processor holds everything: only the shutdown drain can get these spans into
    // the file.
    let cfg = config("batch-holds-until-shutdown.yaml", &[("GRPC", &grpc)]);
    let mut ow = Otelwatch::start(dir.path(), "ow", &cfg);
    let record = dir.path().join("sent");
    let out = Command::new(&python)
        .arg(sdk_script("send_spans.py"))
        .args([
            "--protocol",
            "grpc",
            "--endpoint",
            &format!("localhost:{grpc}"),
        ])
        .args(["--spans", "500", "--service", "shutdown-test", "--record"])
        .arg(&record)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = dir.path().join("out.jsonl");
    assert_eq!(
        read_spans(&file).0.len(),
        0,
        "the batch processor should still hold them"
    );

    ow.signal(signal);
    let status = ow.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit {status}:\n{}", ow.stderr());
    let (spans, dups) = read_spans(&file);
    assert_eq!(dups, 0);
    let sent = std::fs::read_to_string(&record).unwrap().lines().count();
    assert_eq!(sent, 500);
    assert_eq!(
        spans.len(),
        500,
        "every acknowledged span must be written on shutdown"
    );
    assert!(ow.stderr().contains("shutdown complete"));
}

#[test]
fn sigterm_drains_every_acknowledged_span() {
    shutdown_drains("TERM");
}

#[test]
fn sigint_drains_every_acknowledged_span() {
    shutdown_drains("INT");
}

#[test]
fn a_file_replay_ends_by_itself_with_everything_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut sent = SpanSet::new();
    let mut text = String::new();
    let mut f = otelwatch::tools::loadgen::SpanFactory::new(4, 9);
    let mut dups = 0;
    for i in 0..20 {
        let req = f.request(25);
        spans_of(&req, &mut sent, &mut dups);
        let mut line = Vec::new();
        otelwatch::otlp::encode_json_line(
            &otelwatch::pipeline::Payload::Traces(otelwatch::pipeline::Traces::decoded(req)),
            &mut line,
        )
        .unwrap();
        text.push_str(&String::from_utf8(line).unwrap());
        text.push('\n');
        if i == 10 {
            text.push_str("{this is not json\n\n");
        }
    }
    std::fs::write(dir.path().join("recording.jsonl"), text).unwrap();
    let cfg = config("replay-to-file.yaml", &[]);
    let mut ow = Otelwatch::start_finite(dir.path(), "replay", &cfg);
    let status = ow.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{}", ow.stderr());
    let (got, dups) = read_spans(&dir.path().join("replayed.jsonl"));
    assert_eq!(dups, 0);
    assert_eq!(got, sent);
    assert!(
        ow.stderr().contains(":12: skipped: not valid JSON"),
        "{}",
        ow.stderr()
    );
}

#[test]
fn original_pace_keeps_the_recorded_gaps() {
    let dir = tempfile::tempdir().unwrap();
    // Three lines recorded 2 s apart, replayed at speed 4: at least 1 s in all.
    let mut text = String::new();
    for (i, t) in [0u64, 2, 4].iter().enumerate() {
        let end = 1_700_000_000_000_000_000u64 + t * 1_000_000_000;
        text.push_str(&format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"0{i}0000000000000000000000000000ff","spanId":"00000000000000a{i}","name":"s{i}","startTimeUnixNano":"{end}","endTimeUnixNano":"{end}"}}]}}]}}]}}"#
        ));
        text.push('\n');
    }
    std::fs::write(dir.path().join("paced.jsonl"), text).unwrap();
    let cfg = config("replay-at-recorded-pace.yaml", &[]);
    let started = Instant::now();
    let mut ow = Otelwatch::start_finite(dir.path(), "paced", &cfg);
    let status = ow.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{}", ow.stderr());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "gaps were not kept"
    );
    assert_eq!(read_spans(&dir.path().join("out.jsonl")).0.len(), 3);
}

/// Accepts TCP connections and never answers: a downstream that hangs.
fn blackhole() -> (u16, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().take(64).flatten() {
            held.push(c);
        }
    });
    (port, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pipeline_refuses_with_retry_hints_and_shutdown_reports_losses() {
    let dir = tempfile::tempdir().unwrap();
    let (hole, _h) = blackhole();
    let (grpc, http) = (free_port(), free_port());
    let cfg = config(
        "forward-to-unresponsive-downstream.yaml",
        &[("GRPC", &grpc), ("HTTP", &http), ("DOWNSTREAM", &hole)],
    );
    let d = dir.path().to_path_buf();
    let mut ow = tokio::task::spawn_blocking(move || Otelwatch::start(&d, "ow", &cfg))
        .await
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut sent = SpanSet::new();
    let bodies = make_requests(200, 2, 3, &mut sent);
    let mut accepted = 0;
    let mut refused = None;
    for body in bodies {
        let req = http::Request::post(format!("http://127.0.0.1:{http}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(Full::new(body))
            .unwrap();
        let started = Instant::now();
        let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .expect("a full pipeline must answer, not hang")
            .unwrap();
        if resp.status() == 200 {
            accepted += 1;
            continue;
        }
        let retry_after = resp.headers().get("retry-after").cloned();
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        refused = Some((status, retry_after, started.elapsed()));
        break;
    }
    let (status, retry_after, waited) = refused.expect("the pipeline never filled up");
    assert_eq!(status, 429);
    assert_eq!(retry_after.unwrap(), "1");
    assert!(waited < Duration::from_secs(5));
    assert!(accepted >= 128, "accepted {accepted} before refusing");

    let err = grpc_send(
        grpc,
        make_requests(1, 2, 4, &mut sent).remove(0),
        false,
        TRACES,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        otelwatch::otlp::status::retry_delay(&err),
        Some(Duration::from_secs(1))
    );
    let refused_items = ow.metric(
        "otelwatch_receiver_refused_items_total{receiver=\"otlp\",transport=\"http\",signal=\"traces\"}",
    );
    assert_eq!(refused_items, 2.0);

    // The downstream never answers: shutdown gives up at the deadline and says what was lost.
    let status = tokio::task::spawn_blocking(move || {
        let s = ow.terminate();
        (s, ow.stderr())
    })
    .await
    .unwrap();
    assert!(
        !status.0.success(),
        "losing data must not look like success"
    );
    assert!(status.1.contains("items undelivered"), "{}", status.1);
}
