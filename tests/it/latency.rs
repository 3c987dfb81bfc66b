//! Requests one after another on one connection are answered without Nagle's stalls: with
//! TCP_NODELAY off on the accepted sockets, 27 of 400 gRPC exports of 135 spans (24 KB) waited
//! 41–44 ms for the delayed acknowledgement (30× the loopback round trip; p99 43 ms against
//! 2 ms), which a sequential run shows plainly. The bound is loose (at most 10 answers of 30 ms
//! or more in 400, against 27 with the stalls), and the test runs alone (`heavy`), so a busy
//! machine does not fail it. The HTTP receiver answers in one write and
//! is checked the same way.

use crate::support::*;
use otelwatch::tools::scenario::{Generator, Scenario};
use prost::Message;
use std::time::{Duration, Instant};

const REQUESTS: usize = 400;
const STALL: Duration = Duration::from_millis(30);
/// Slow answers allowed in `REQUESTS` (a scheduling hiccup is not a stall).
const ALLOWED: usize = 10;

/// A request of the size SDKs send: one window of the two-service scenario.
fn request() -> bytes::Bytes {
    let mut g = Generator::new(Scenario::target_system(3), 1_767_571_200_000_000_000);
    let req = g.next_window();
    req.encode_to_vec().into()
}

fn stalls(times: &[Duration]) -> Vec<u128> {
    times
        .iter()
        .filter(|t| **t >= STALL)
        .map(|t| t.as_millis())
        .collect()
}

// Held to keep the heavy tests out of the timing, not to guard data.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_are_not_held_back_by_nagle() {
    let _alone = heavy();
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let cfg = config("otlp-to-nop.yaml", &[("GRPC", &grpc), ("HTTP", &http)]);
    let d = dir.path().to_path_buf();
    let _ow = tokio::task::spawn_blocking(move || Otelwatch::start(&d, "ow", &cfg))
        .await
        .unwrap();
    let body = request();

    // OTLP/gRPC over one HTTP/2 connection.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap();
    let mut times = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let started = Instant::now();
        otelwatch::tools::loadgen::grpc_export(&channel, body.clone(), false)
            .await
            .expect("accepted");
        times.push(started.elapsed());
    }
    let slow = stalls(&times);
    assert!(
        slow.len() <= ALLOWED,
        "gRPC: {} stalls (ms): {slow:?}",
        slow.len()
    );

    // OTLP/HTTP over one kept-alive connection.
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{http}/v1/traces");
    let mut times = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let started = Instant::now();
        let r = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        r.bytes().await.unwrap();
        times.push(started.elapsed());
    }
    let slow = stalls(&times);
    assert!(
        slow.len() <= ALLOWED,
        "HTTP: {} stalls (ms): {slow:?}",
        slow.len()
    );
}
