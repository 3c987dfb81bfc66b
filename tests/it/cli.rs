//! The command line: validate, version, help, and startup failures that name the problem.

use crate::support::{self, free_port};
use std::process::Command;

fn otelwatch(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_otelwatch"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_accepts_the_shipped_pipeline_files() {
    let root = env!("CARGO_MANIFEST_DIR");
    for f in ["pipeline.yaml", "src/default-pipeline.yaml"] {
        let path = format!("{root}/{f}");
        let (code, out, err) = otelwatch(&["validate", "--config", &path]);
        assert_eq!(code, 0, "{f}: {out}{err}");
        assert!(out.contains("valid"), "{out}");
    }
}

#[test]
fn validate_lists_every_error_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "receivers:\n  otlp:\n    protocols:\n      grpc: { endpoint: nowhere }\nexporters:\n  otlp/collector:\n    endpoint: \"\"\n  debug: { verbosity: loud }\nservice:\n  pipelines:\n    traces: { receivers: [otlp], exporters: [otlp/collector, debug, nop] }\n",
    )
    .unwrap();
    let (code, _, err) = otelwatch(&["validate", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    for needle in [
        "invalid configuration (4 errors)",
        "receivers.otlp.protocols.grpc.endpoint: endpoint \"nowhere\" must be host:port",
        "exporters.otlp/collector.endpoint: required",
        "exporters.debug.verbosity: unknown variant `loud`",
        "service.pipelines.traces.exporters[2]: exporter \"nop\" is not defined under exporters",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    let (code, _, err) = otelwatch(&["validate", "--config", "/nonexistent.yaml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read config file /nonexistent.yaml"),
        "{err}"
    );
}

#[test]
fn version_and_help() {
    let (code, out, _) = otelwatch(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("otelwatch "), "{out}");
    let (code, out, _) = otelwatch(&["--help"]);
    assert_eq!(code, 0);
    for sub in ["run", "validate", "loadgen"] {
        assert!(out.contains(sub), "{out}");
    }
}

#[test]
fn a_taken_port_fails_startup_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = support::config(
        "otlp-to-nop.yaml",
        &[("GRPC", &port), ("HTTP", &free_port())],
    );
    let path = support::write_config(dir.path(), "p", &cfg, free_port());
    let (code, _, err) = otelwatch(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("receiver otlp: cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn loadgen_reports_failure_when_nothing_listens() {
    let port = free_port();
    let (code, out, err) = otelwatch(&[
        "loadgen",
        "--endpoint",
        &format!("127.0.0.1:{port}"),
        "--duration",
        "300ms",
        "--rate",
        "100",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no span was accepted"), "{err}");
}

#[test]
fn loadgen_sends_every_signal_over_grpc_and_http_and_every_item_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let cfg = support::config("otlp-to-nop.yaml", &[("GRPC", &grpc), ("HTTP", &http)]);
    let ow = support::Otelwatch::start(dir.path(), "ow", &cfg);
    for (signal, items) in [
        ("traces", "spans"),
        ("logs", "log records"),
        ("metrics", "metric points"),
    ] {
        let mut total = 0u64;
        for (proto, endpoint) in [
            ("grpc", format!("127.0.0.1:{grpc}")),
            ("http", format!("http://127.0.0.1:{http}")),
        ] {
            let (code, out, err) = otelwatch(&[
                "loadgen",
                "--signal",
                signal,
                "--protocol",
                proto,
                "--endpoint",
                &endpoint,
                "--duration",
                "500ms",
                "--rate",
                "4000",
                "--batch-size",
                "100",
                "--gzip",
            ]);
            assert_eq!(code, 0, "{out}{err}");
            let sent: u64 = out
                .strip_prefix("sent ")
                .and_then(|r| r.split_once(&format!(" {items} in ")))
                .and_then(|(n, _)| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected output {out:?}"));
            assert!(sent > 0);
            total += sent;
        }
        let series =
            format!("otelwatch_exporter_sent_items_total{{exporter=\"nop\",signal=\"{signal}\"}}");
        assert!(
            support::wait_until(std::time::Duration::from_secs(5), || ow.metric(&series)
                == total as f64),
            "{signal}: {} received, {total} sent",
            ow.metric(&series)
        );
    }
}
