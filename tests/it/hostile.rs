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
    let peak = peak_kib(ow.pid());
    eprintln!(
        "10,000 streams on one connection: {ok} accepted in {:.1} s; peak RSS {:.1} MiB",
        took.as_secs_f64(),
        peak as f64 / 1024.0
    );
    assert_eq!(ok, 10_000, "every stream answered and accepted");
    assert!(peak < 256 * 1024, "peak RSS {peak} KiB");
}

mod requests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    pub fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    pub fn span(i: u64, end_ns: u64) -> Span {
        let mut trace_id = vec![0u8; 16];
        trace_id[..8].copy_from_slice(&(i + 1).to_be_bytes());
        Span {
            trace_id,
            span_id: (i + 1).to_be_bytes().to_vec(),
            name: "op".into(),
            kind: 2,
            start_time_unix_nano: end_ns - 5_000_000,
            end_time_unix_nano: end_ns,
            ..Default::default()
        }
    }

    /// One resource per service name, with `spans` spans each.
    pub fn request(names: &[String], spans: &[Span]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: names
                .iter()
                .map(|n| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv(
                            "service.name",
                            any_value::Value::StringValue(n.clone()),
                        )],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans: spans.to_vec(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }
    }

    /// An attribute value nested `depth` key-value lists deep.
    pub fn nested(depth: usize) -> AnyValue {
        let mut v = AnyValue {
            value: Some(any_value::Value::IntValue(1)),
        };
        for _ in 0..depth {
            v = AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![KeyValue {
                        key: "k".into(),
                        value: Some(v),
                        ..Default::default()
                    }],
                })),
            };
        }
        v
    }
}

fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

// The heavy-test guard orders whole tests; no task of this runtime takes it.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_size_request_with_a_huge_name_and_deep_nesting_cannot_exhaust_memory() {
    use prost::Message;
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let cfg = config(
        "detect-to-nop.yaml",
        &[("GRPC", &grpc), ("HTTP", &http), ("MAX", &1000)],
    );
    let d = dir.path().to_path_buf();
    let ow = tokio::task::spawn_blocking(move || Otelwatch::start(&d, "ow", &cfg))
        .await
        .unwrap();
    let now = otelwatch::model::time::now_ns();
    // Just under the 4 MiB limit: a 1 MiB service.name and 3 MiB of minimal spans.
    let spans: Vec<_> = (0..55_000).map(|i| requests::span(i, now)).collect();
    let req = requests::request(&["x".repeat(1 << 20)], &spans);
    let body = bytes::Bytes::from(req.encode_to_vec());
    assert!(
        body.len() > 3_500_000 && body.len() < 4 << 20,
        "{} bytes",
        body.len()
    );
    grpc_send(grpc, body, false, TRACES).await.unwrap();
    // Nesting far deeper than any real attribute: refused, on both protocols.
    let mut deep = requests::request(&["svc".into()], &[requests::span(1, now)]);
    deep.resource_spans[0].scope_spans[0].spans[0].attributes =
        vec![otelwatch_kv(requests::nested(300))];
    let deep_body = deep.encode_to_vec();
    let err = grpc_send(grpc, deep_body.clone().into(), false, TRACES)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let (st, _, _) = http_post(
        http,
        "/v1/traces",
        &[("content-type", "application/x-protobuf")],
        deep_body,
    )
    .await;
    assert_eq!(st, 400);
    let json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (st, _, _) = http_post(
        http,
        "/v1/traces",
        &[("content-type", "application/json")],
        json.into_bytes(),
    )
    .await;
    assert_eq!(st, 400);
    // Still serving.
    let mut sent = SpanSet::new();
    grpc_send(
        grpc,
        make_requests(1, 10, 3, &mut sent).remove(0),
        false,
        TRACES,
    )
    .await
    .unwrap();
    let peak = peak_kib(ow.pid());
    eprintln!(
        "peak RSS after a 4 MiB request with a 1 MiB name: {:.1} MiB",
        peak as f64 / 1024.0
    );
    assert!(peak < 512 * 1024, "peak RSS {peak} KiB");
}

fn otelwatch_kv(
    v: opentelemetry_proto::tonic::common::v1::AnyValue,
) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    opentelemetry_proto::tonic::common::v1::KeyValue {
        key: "deep".into(),
        value: Some(v),
        ..Default::default()
    }
}

// The heavy-test guard orders whole tests; no task of this runtime takes it.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_service_names_stays_within_the_cap_and_a_new_service_is_still_tracked() {
    use prost::Message;
    let _heavy = heavy();
    // OTELWATCH_FLOOD_NAMES=1000000 for the recorded run (docs/reliability.md).
    let names: u64 = std::env::var("OTELWATCH_FLOOD_NAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let cfg = config(
        "detect-to-nop.yaml",
        &[("GRPC", &grpc), ("HTTP", &http), ("MAX", &1000)],
    );
    let d = dir.path().to_path_buf();
    let mut ow = tokio::task::spawn_blocking(move || Otelwatch::start(&d, "ow", &cfg))
        .await
        .unwrap();
    let started = Instant::now();
    // All in one window: once it has closed, the rest of the flood is late (never tracked).
    let now = otelwatch::model::time::now_ns();
    let span = requests::span(1, now);
    let mut refused = 0;
    for chunk in (0..names).collect::<Vec<_>>().chunks(2000) {
        let batch: Vec<String> = chunk.iter().map(|i| format!("flood-{i}")).collect();
        let body = bytes::Bytes::from(
            requests::request(&batch, std::slice::from_ref(&span)).encode_to_vec(),
        );
        // Over the memory budget the client is told to wait.
        while let Err(e) = grpc_send(grpc, body.clone(), false, TRACES).await {
            assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
            refused += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Then a real service starts.
    let now = otelwatch::model::time::now_ns();
    let spans: Vec<_> = (0..7).map(|i| requests::span(100 + i, now)).collect();
    let body = requests::request(&["checkout".into()], &spans).encode_to_vec();
    grpc_send(grpc, body.into(), false, TRACES).await.unwrap();
    let series = "otelwatch_window_series_evicted_total{processor=\"window@traces\"}";
    // Everything accepted has been through the window processor once nothing is held.
    let all_in = wait_until(Duration::from_secs(60), || {
        ow.metric("otelwatch_memory_held_bytes") == 0.0
    });
    let took = started.elapsed();
    let peak = peak_kib(ow.pid());
    let evicted = ow.metric(series);
    assert!(
        all_in,
        "still held: {}",
        ow.metric("otelwatch_memory_held_bytes")
    );
    assert!(evicted > 0.0);
    assert!(ow.terminate().success(), "{}", ow.stderr());
    eprintln!(
        "{names} service names in {:.1} s ({refused} requests refused for memory): {evicted} series evicted; peak RSS {:.1} MiB",
        took.as_secs_f64(),
        peak as f64 / 1024.0
    );
    let windows = std::fs::read_to_string(dir.path().join("windows.jsonl")).unwrap();
    let checkout: Vec<serde_json::Value> = windows
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|w| w["service"]["name"] == "checkout")
        .collect();
    assert_eq!(checkout.len(), 1, "the new service is tracked");
    assert_eq!(checkout[0]["features"]["request_count"], 7.0);
    let mut per_window = std::collections::HashMap::<String, usize>::new();
    for l in windows.lines() {
        let w: serde_json::Value = serde_json::from_str(l).unwrap();
        *per_window
            .entry(w["window"]["start"].to_string())
            .or_default() += 1;
    }
    assert!(
        per_window.values().all(|n| *n <= 1000),
        "at most the cap of series in a window: {per_window:?}"
    );
    assert!(peak < 512 * 1024, "peak RSS {peak} KiB");
}
