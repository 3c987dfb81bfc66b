//! Hostile clients: connections that stall before, inside or after a request are closed within
//! their timeouts while other clients are served; 10,000 concurrent HTTP/2 streams on one
//! connection are all answered within the per-connection stream limit; a shutdown is not held
//! up by any of them.

use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Waits until the server closes the connection (or answers); returns what it sent and when.
fn until_closed(mut s: TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return (got, started.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_cut_within_their_timeouts_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let cfg = config(
        "otlp-with-short-timeouts-to-file.yaml",
        &[("GRPC", &grpc), ("HTTP", &http)],
    );
    let d = dir.path().to_path_buf();
    let mut ow = tokio::task::spawn_blocking(move || Otelwatch::start(&d, "ow", &cfg))
        .await
        .unwrap();

    let stalls = tokio::task::spawn_blocking(move || {
        // Silent on gRPC: no HTTP/2 preface at all.
        let silent_grpc = TcpStream::connect(("127.0.0.1", grpc)).unwrap();
        // Half a request head on HTTP.
        let mut half_head = TcpStream::connect(("127.0.0.1", http)).unwrap();
        half_head
            .write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        // A whole head, a tenth of the body.
        let mut half_body = TcpStream::connect(("127.0.0.1", http)).unwrap();
        half_body
            .write_all(
                b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n0123456789",
            )
            .unwrap();
        // Connected, never a byte.
        let silent_http = TcpStream::connect(("127.0.0.1", http)).unwrap();
        let a = std::thread::spawn(move || until_closed(silent_grpc, Duration::from_secs(10)));
        let b = std::thread::spawn(move || until_closed(half_head, Duration::from_secs(10)));
        let c = std::thread::spawn(move || until_closed(half_body, Duration::from_secs(10)));
        let e = std::thread::spawn(move || until_closed(silent_http, Duration::from_secs(10)));
        [a, b, c, e].map(|t| t.join().unwrap())
    });

    // Meanwhile, well-behaved clients on both protocols.
    let mut sent = SpanSet::new();
    let requests = make_requests(6, 50, 21, &mut sent);
    for (i, r) in requests.iter().enumerate() {
        if i % 2 == 0 {
            grpc_send(grpc, r.clone(), false, TRACES).await.unwrap();
        } else {
            let (status, _, _) = http_post(
                http,
                "/v1/traces",
                &[("content-type", "application/x-protobuf")],
                r.to_vec(),
            )
            .await;
            assert_eq!(status, 200);
        }
    }
    let [silent_grpc, half_head, half_body, silent_http] = stalls.await.unwrap();
    for (what, (_, took)) in [
        ("silent gRPC", &silent_grpc),
        ("half a head", &half_head),
        ("silent HTTP", &silent_http),
    ] {
        assert!(
            *took >= Duration::from_millis(800) && *took < Duration::from_secs(3),
            "{what}: closed after {took:?}"
        );
    }
    let (answer, took) = half_body;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    wait_for_spans(
        &dir.path().join("spans.jsonl"),
        &sent,
        Duration::from_secs(10),
        || ow.stderr(),
    );

    // A stalled client open at shutdown does not hold it up.
    let _stalled = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || ow.terminate())
        .await
        .unwrap();
    assert!(status.success());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

// The heavy-test guard orders whole tests; no task of this runtime takes it.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_streams_on_one_connection_are_all_answered() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let cfg = config("otlp-to-file.yaml", &[("GRPC", &grpc), ("HTTP", &http)]);
    let d = dir.path().to_path_buf();
    let ow = tokio::task::spawn_blocking(move || Otelwatch::start(&d, "ow", &cfg))
        .await
        .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut sent = SpanSet::new();
    let requests = make_requests(10_000, 2, 33, &mut sent);
    let started = Instant::now();
    let calls: Vec<_> = requests
        .into_iter()
        .map(|body| {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            tokio::spawn(async move {
                grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                grpc.unary(
                    tonic::Request::new(body),
                    http::uri::PathAndQuery::from_static(TRACES),
                    otelwatch::otlp::codec::ClientCodec::<
                        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
                    >::default(),
                )
                .await
                .map(|_| ())
            })
        })
        .collect();
    let mut ok = 0;
    for c in calls {
        match c.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}"),
        }
    }
    let took = started.elapsed();
    let status = std::fs::read_to_string(format!("/proc/{}/status", ow.pid())).unwrap();
    let peak: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    eprintln!(
        "10,000 streams on one connection: {ok} accepted in {:.1} s; peak RSS {:.1} MiB",
        took.as_secs_f64(),
        peak as f64 / 1024.0
    );
    assert_eq!(ok, 10_000, "every stream answered and accepted");
    assert!(peak < 256 * 1024, "peak RSS {peak} KiB");
}
