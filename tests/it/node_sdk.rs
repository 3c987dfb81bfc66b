//! The official OpenTelemetry Node.js SDK (service B, as it is set up in the target system)
//! sends to otelwatch over each OTLP transport it offers: gRPC, HTTP/protobuf and HTTP/JSON.
//! Every request service B served arrives as its server span, once.

use crate::support::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn service_b() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target-system/service-b");
    if dir.join("node_modules").exists() {
        return Some(dir);
    }
    if std::env::var("OTELWATCH_REQUIRE_TARGET").is_ok_and(|v| v == "1") {
        panic!("service B's packages are not installed: run ./scripts/test");
    }
    eprintln!("SKIPPED: service B's packages not installed (run ./scripts/test)");
    None
}

#[test]
fn the_node_sdk_sends_over_grpc_http_protobuf_and_http_json() {
    let Some(b_dir) = service_b() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let cfg = config("otlp-to-file.yaml", &[("GRPC", &grpc), ("HTTP", &http)]);
    let mut ow = Otelwatch::start(dir.path(), "ow", &cfg);
    let runs = [
        ("grpc", format!("http://127.0.0.1:{grpc}"), "node-grpc"),
        (
            "http/protobuf",
            format!("http://127.0.0.1:{http}"),
            "node-http-protobuf",
        ),
        (
            "http/json",
            format!("http://127.0.0.1:{http}"),
            "node-http-json",
        ),
    ];
    const REQUESTS: usize = 25;
    for (protocol, endpoint, service) in &runs {
        let port = free_port();
        let log = std::fs::File::create(dir.path().join(format!("{service}.log"))).unwrap();
        let mut b = Command::new("node")
            .args(["--require", "./tracing.js", "server.js"])
            .current_dir(&b_dir)
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("OTEL_SERVICE_NAME", service)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("node");
        let up = wait_until(Duration::from_secs(30), || {
            matches!(http_get(port, "/healthz"), Ok((200, _)))
        });
        assert!(up, "service B ({protocol}) did not start");
        for i in 0..REQUESTS {
            let path = if i % 5 == 0 { "/ping?fail=1" } else { "/ping" };
            let (status, _) = http_get(port, path).unwrap();
            assert_eq!(status, if i % 5 == 0 { 500 } else { 200 });
        }
        // SIGTERM: the SDK flushes what it holds, then the process exits.
        Command::new("kill")
            .args(["-TERM", &b.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while b.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "service B did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let file = dir.path().join("spans.jsonl");
    let count = |service: &str| {
        read_spans(&file)
            .0
            .values()
            .filter(|(s, name)| s == service && name.contains("/ping"))
            .count()
    };
    let complete = wait_until(Duration::from_secs(10), || {
        runs.iter().all(|(_, _, s)| count(s) >= REQUESTS)
    });
    let counts: Vec<(&str, usize)> = runs.iter().map(|(_, _, s)| (*s, count(s))).collect();
    assert!(
        complete,
        "server spans per transport: {counts:?}\n{}",
        ow.stderr()
    );
    let (_, dups) = read_spans(&file);
    assert_eq!(dups, 0);
    for (service, n) in counts {
        assert_eq!(n, REQUESTS, "{service}");
    }
    assert!(
        ow.metric("otelwatch_receiver_accepted_items_total{receiver=\"otlp\",transport=\"http\",signal=\"traces\"}")
            >= 2.0 * REQUESTS as f64
    );
    assert!(ow.terminate().success(), "{}", ow.stderr());
}
