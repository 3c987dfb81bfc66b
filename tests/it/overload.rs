//! Overload: clients send far more than otelwatch can pass on (its downstream is down), so the
//! memory budget (`memory_limiter`) is what stops it. What otelwatch holds stays within the
//! budget, clients are answered RESOURCE_EXHAUSTED with a retry hint, every span it
//! acknowledged reaches the downstream once it is up, and new data is taken again soon after.

use crate::support::*;
use std::time::{Duration, Instant};

/// A process's resident and peak resident memory, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

// The heavy-test guard orders whole tests; no task of this runtime takes it.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_holds_under_overload_and_nothing_acknowledged_is_lost() {
    let _heavy = heavy();
    let (grpc, down) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        "overload-with-memory-limit.yaml",
        &[("GRPC", &grpc), ("DOWNSTREAM", &down)],
    );
    let d = dir.path().to_path_buf();
    let ow = tokio::task::spawn_blocking(move || Otelwatch::start(&d, "ow", &cfg))
        .await
        .unwrap();
    let (baseline, _) = memory_kib(ow.pid());

    // Four clients, 2,000 spans a request, as fast as they are answered, for 6 s
    // (`OTELWATCH_OVERLOAD_CLIENTS`, `OTELWATCH_OVERLOAD_SECS`).
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let secs = env("OTELWATCH_OVERLOAD_SECS", 6);
    let clients: Vec<_> = (0..env("OTELWATCH_OVERLOAD_CLIENTS", 4))
        .map(|c| {
            tokio::spawn(async move {
                let mut sent = SpanSet::new();
                let requests = make_requests(40, 2000, 100 + c, &mut sent);
                let mut acknowledged = SpanSet::new();
                let (mut refused, mut hinted) = (0, 0);
                let end = Instant::now() + Duration::from_secs(secs);
                let mut i = 0;
                while Instant::now() < end && i < requests.len() {
                    match grpc_send(grpc, requests[i].clone(), false, TRACES).await {
                        Ok(_) => {
                            let req = <opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest as prost::Message>::decode(requests[i].clone()).unwrap();
                            let mut dups = 0;
                            spans_of(&req, &mut acknowledged, &mut dups);
                            i += 1;
                        }
                        Err(e) => {
                            assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
                            refused += 1;
                            if let Some(wait) = otelwatch::otlp::status::retry_delay(&e) {
                                hinted += 1;
                                tokio::time::sleep(wait.min(Duration::from_millis(200))).await;
                            }
                        }
                    }
                }
                (acknowledged, refused, hinted)
            })
        })
        .collect();
    let mut acknowledged = SpanSet::new();
    let (mut refused, mut hinted) = (0, 0);
    for c in clients {
        let (a, r, h) = c.await.unwrap();
        acknowledged.extend(a);
        refused += r;
        hinted += h;
    }
    let (_, peak) = memory_kib(ow.pid());
    let held = ow.metric("otelwatch_memory_held_bytes");
    eprintln!(
        "{secs} s: acknowledged {} spans, refused {refused} requests ({hinted} with a retry hint); held {:.1} MiB; RSS {:.1} MiB at start, peak {:.1} MiB",
        acknowledged.len(),
        held / 1048576.0,
        baseline as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    assert!(refused > 0, "the budget was reached");
    assert_eq!(hinted, refused, "every refusal carries a retry hint");
    assert!(held <= 64.0 * 1048576.0, "held {held} bytes");
    let limit_kib = 64 * 1024;
    assert!(
        peak <= baseline + limit_kib + limit_kib / 10,
        "peak RSS {peak} KiB over the budget (start {baseline} KiB)"
    );
    assert!(
        ow.metric("otelwatch_memory_refused_items_total{processor=\"memory_limiter@traces\"}")
            > 0.0
    );

    // The downstream comes up: everything acknowledged arrives; new data is taken again.
    let http = free_port();
    let cfg = config("otlp-to-file.yaml", &[("GRPC", &down), ("HTTP", &http)]);
    let d = dir.path().join("downstream");
    std::fs::create_dir_all(&d).unwrap();
    let d2 = d.clone();
    let _downstream = tokio::task::spawn_blocking(move || Otelwatch::start(&d2, "down", &cfg))
        .await
        .unwrap();
    let started = Instant::now();
    let mut extra = SpanSet::new();
    let next = make_requests(1, 100, 999, &mut extra).remove(0);
    loop {
        match grpc_send(grpc, next.clone(), false, TRACES).await {
            Ok(_) => break,
            Err(e) => assert_eq!(e.code(), tonic::Code::ResourceExhausted),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still refusing 10 s after the downstream came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "taking data again {:.1} s after the downstream came up",
        started.elapsed().as_secs_f64()
    );
    acknowledged.extend(extra);
    let file = d.join("spans.jsonl");
    wait_for_spans(&file, &acknowledged, Duration::from_secs(60), || {
        ow.stderr()
    });
    let (got, dups) = read_spans(&file);
    assert_eq!(dups, 0, "nothing doubled");
    assert_eq!(
        got.len(),
        acknowledged.len(),
        "every acknowledged span, once"
    );
}
