//! The README's main command works: `otelwatch demo` runs the pipeline with the target system
//! (the real services, or the simulator where they cannot run), prints the injected anomalies
//! live, finds them, and ends by itself with a summary.

use crate::support;
use std::path::PathBuf;
use std::process::Command;

fn demo(args: &[&str], out: &std::path::Path) -> String {
    let run = Command::new(env!("CARGO_BIN_EXE_otelwatch"))
        .arg("demo")
        .args(args)
        .arg("--out")
        .arg(out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}

/// The flagged windows per signal from the summary's line, e.g. `spans 7, logs 2, metrics 0`.
fn by_signal(stdout: &str) -> std::collections::BTreeMap<String, usize> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("flagged windows by signal: "))
        .unwrap_or_else(|| panic!("no per-signal line:\n{stdout}"));
    line.split(", ")
        .filter_map(|p| {
            let (s, n) = p.split_once(' ')?;
            Some((s.to_string(), n.parse().ok()?))
        })
        .collect()
}

/// `(injected, detected, flagged outside the injections)` from the summary line.
fn summary(stdout: &str, source: &str) -> (usize, usize, usize) {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("summary ({source}): ")))
        .unwrap_or_else(|| panic!("no summary from the {source}:\n{stdout}"));
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1], numbers[2])
}

#[test]
fn without_the_services_the_simulator_plays_them_and_everything_is_found() {
    let _heavy = support::heavy();
    let dir = tempfile::tempdir().unwrap();
    // No target system where it is looked for: the demo says so and uses its simulator.
    let stdout = demo(
        &[
            "--interval",
            "1s",
            "--anomalies",
            "4",
            "--target-system",
            "/nonexistent/target-system",
        ],
        dir.path(),
    );
    assert!(
        stdout.contains("the built-in simulator plays it instead"),
        "{stdout}"
    );
    assert_eq!(stdout.matches(">> injecting").count(), 4, "{stdout}");
    assert!(
        stdout.contains("ANOMALY"),
        "anomalies are printed live:\n{stdout}"
    );
    assert!(
        stdout.contains("latency_"),
        "with their explanation:\n{stdout}"
    );
    assert_eq!(summary(&stdout, "simulator"), (4, 4, 0), "{stdout}");
    // The simulator sends spans only: every flagged window is a span window.
    let signals = by_signal(&stdout);
    assert!(signals["spans"] >= 4, "{signals:?}");
    assert_eq!((signals["logs"], signals["metrics"]), (0, 0), "{signals:?}");
    // The anomalies are grouped into incidents, printed as they open and resolve, and counted
    // with their likely causes.
    assert!(stdout.contains("INCIDENT"), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("incidents: "))
        .unwrap_or_else(|| panic!("no incidents line:\n{stdout}"));
    let opened: usize = line
        .trim_start_matches("incidents: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!((1..=8).contains(&opened), "{line}");
    let windows = std::fs::read_to_string(dir.path().join("demo-windows.jsonl")).unwrap();
    assert!(
        windows.lines().count() > 150,
        "every scored window is written"
    );
    // And drawn: a PNG of normal vs anomalous windows.
    let png = std::fs::read(dir.path().join("demo-anomalies.png")).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        png.len()
    );
    assert!(stdout.contains("demo-anomalies.png"), "{stdout}");
}

#[test]
fn with_the_real_services_the_injected_anomalies_are_found() {
    let installed = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target-system/service-b/node_modules")
        .exists()
        && std::env::var_os("OTELWATCH_TARGET_PYTHON").is_some();
    if !installed {
        if std::env::var("OTELWATCH_REQUIRE_TARGET").is_ok_and(|v| v == "1") {
            panic!("the target system is not installed: run ./scripts/test");
        }
        eprintln!("SKIPPED: target system not installed (run ./scripts/test)");
        return;
    }
    let _heavy = support::heavy();
    let dir = tempfile::tempdir().unwrap();
    let stdout = demo(
        &[
            "--interval",
            "1s",
            "--anomalies",
            "6",
            "--traffic",
            "services",
        ],
        dir.path(),
    );
    assert!(stdout.contains("service A (Flask)"), "{stdout}");
    assert_eq!(stdout.matches(">> injected").count(), 6, "{stdout}");
    assert!(stdout.contains("ANOMALY"), "{stdout}");
    let (injected, detected, outside) = summary(&stdout, "services");
    assert_eq!(injected, 6);
    // Live processes on a shared 2-core machine (the simulator demo runs beside this one, and
    // a request held up by the scheduler for a few hundred milliseconds is a real outlier in
    // 1 s windows): one miss and two stray flags, of the few hundred windows judged, are
    // tolerated here; the strict rule (no flag at all in a quiet stretch) is the
    // real-services test's.
    assert!(detected >= 5, "{stdout}");
    assert!(outside <= 2, "{stdout}");
    // The services send logs and metrics too: the injected error (every fourth injection)
    // logs an ERROR line in a template never seen before, flagged beside the span windows.
    let signals = by_signal(&stdout);
    assert!(signals["spans"] >= 5, "{signals:?}\n{stdout}");
    assert!(signals["logs"] >= 1, "{signals:?}\n{stdout}");
    let services_log = std::fs::read_to_string(dir.path().join("service-a.log")).unwrap();
    assert!(
        services_log.contains("/start"),
        "service A served the traffic"
    );
}
