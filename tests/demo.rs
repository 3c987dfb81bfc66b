//! The README's main command works: `otelwatch demo` runs the pipeline with the simulated target
//! system, prints the injected anomalies live, finds them, and ends by itself with a summary.

use std::process::Command;

#[test]
fn the_demo_finds_what_it_injects_and_ends_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_otelwatch"))
        .args(["demo", "--interval", "1s", "--anomalies", "4", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
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
    assert!(
        stdout.contains("summary: 4 anomalies injected, 4 detected; 0 windows flagged outside"),
        "{stdout}"
    );
    let windows = std::fs::read_to_string(dir.path().join("demo-windows.jsonl")).unwrap();
    assert!(
        windows.lines().count() > 150,
        "every scored window is written"
    );
}
