//! The console's API against the real binary: a scenario with an injected latency incident is
//! sent over OTLP/gRPC to a pipeline with the console enabled; the service map, a series with
//! its band, the incidents and the summary are read back over HTTP, and bad questions get
//! clear errors.

use crate::support::*;
use otelwatch::tools::scenario::{Generator, Incident, IncidentKind, Scenario};
use prost::Message;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn get(port: u16, path: &str) -> (u16, Value) {
    let (status, body) = http_get(port, path).unwrap();
    let doc = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body:?}"));
    (status, doc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_api_shows_the_services_a_series_and_the_incident() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, console) = (free_port(), free_port());
    let cfg = config(
        "detect-with-console.yaml",
        &[("GRPC", &grpc), ("CONSOLE", &console)],
    );
    let d = dir.path().to_path_buf();
    let mut ow = tokio::task::spawn_blocking(move || Otelwatch::start(&d, "ow", &cfg))
        .await
        .unwrap();

    let mut sc = Scenario::target_system(5);
    // The first is said not to be one; the second, far worse, falls in an expected range; the
    // third is like the first.
    let latency = |from, extra_ms| Incident {
        service: "service-b".into(),
        from,
        to: from + 3,
        kind: IncidentKind::Latency { extra_ms },
    };
    sc.incidents = vec![latency(50, 700.0), latency(80, 4000.0), latency(92, 700.0)];
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut g = Generator::new(sc, now - 3600 * 1_000_000_000);
    let t0 = g.window_start_ns(0);
    for _ in 0..70 {
        let req = g.next_window();
        grpc_send(grpc, req.encode_to_vec().into(), false, TRACES)
            .await
            .expect("accepted");
    }
    // The windows up to the incident's end and past it are closed by the later data.
    let closed = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(30), || {
            let (_, s) = get(console, "/api/summary");
            s["windows_held"].as_u64().unwrap_or(0) >= 3 * 60
        })
    })
    .await
    .unwrap();
    let (_, summary) = get(console, "/api/summary");
    assert!(closed, "{summary}");
    // service-a, service-b, the edge and the edge's time between the two (its network series).
    assert_eq!(summary["series"], 4, "{summary}");
    // Spans in, per second over the last minute; no forwarding (no OTLP exporter).
    assert!(
        summary["spans_per_second_in"].as_f64() > Some(0.0),
        "{summary}"
    );
    assert_eq!(
        summary["spans_per_second_forwarded"],
        Value::Null,
        "{summary}"
    );
    assert!(
        summary["anomalies_last_hour"].as_u64() >= Some(1),
        "{summary}"
    );

    // The service map: both services and the call between them.
    let (status, map) = get(console, "/api/services");
    assert_eq!(status, 200);
    let services = map["services"].as_array().unwrap();
    let names: Vec<&str> = services
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["service-a", "service-b"], "{map}");
    let a = &services[0];
    assert_eq!(a["calls"][0]["target"], "service-b", "{a}");
    assert!(a["spans"]["request_rate"].as_f64() > Some(0.5), "{a}");
    assert!(
        ["normal", "anomalous"].contains(&a["state"].as_str().unwrap()),
        "{a}"
    );

    // Service B's series: every window kept, the incident's windows flagged with their
    // explanation and incident, the band of its p95 around its normal latency.
    let (status, series) = get(console, "/api/series?service=service-b");
    assert_eq!(status, 200, "{series}");
    let windows = series["windows"].as_array().unwrap();
    assert!(windows.len() >= 60, "{} windows", windows.len());
    let start = move |w: &Value| {
        let ns = otelwatch::model::time::parse_rfc3339_ns(w["start"].as_str().unwrap()).unwrap();
        (ns - t0) / 10_000_000_000
    };
    let flagged: Vec<&Value> = windows.iter().filter(|w| w["is_anomaly"] == true).collect();
    assert!(
        flagged.iter().any(|w| (50..=53).contains(&start(w))),
        "{flagged:#?}"
    );
    let hit = flagged
        .iter()
        .find(|w| (50..=53).contains(&start(w)))
        .unwrap();
    assert!(hit["contributions"][0]["feature"]
        .as_str()
        .unwrap()
        .starts_with("latency_"));
    let incident_id = hit["incident"].as_str().unwrap().to_string();
    // Its example traces: the slowest spans' (no span failed), longest first, each linked
    // through the console's trace_url; at least as slow as the window's p95.
    let examples = hit["examples"].as_array().expect("examples");
    assert!(!examples.is_empty() && examples.len() <= 6, "{hit}");
    for e in examples {
        let id = e["trace_id"].as_str().unwrap();
        assert!(
            id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{e}"
        );
        assert_eq!(e["url"], format!("https://traces.example/trace/{id}"));
    }
    let slowest = examples[0]["duration_ms"].as_f64().unwrap();
    assert!(
        slowest >= hit["features"]["latency_p95_ms"].as_f64().unwrap() * 0.99,
        "{hit}"
    );
    assert!(
        windows
            .iter()
            .filter(|w| w["is_anomaly"] == false)
            .all(|w| w.get("examples").is_none()),
        "only anomalies carry examples"
    );
    let band = series["bands"]["latency_p95_ms"].as_array().unwrap();
    let at_hit = band.iter().find(|b| b["start"] == hit["start"]).unwrap();
    let p95 = hit["features"]["latency_p95_ms"].as_f64().unwrap();
    assert!(
        at_hit["high"].as_f64().unwrap() < p95 && at_hit["typical"].as_f64() > Some(0.0),
        "{at_hit} against {p95}"
    );

    // The incident, with service-b first.
    let (_, incidents) = get(console, "/api/incidents");
    let list = incidents["incidents"].as_array().unwrap();
    assert!(!list.is_empty());
    let (status, one) = get(console, &format!("/api/incidents/{incident_id}"));
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["incident"]["id"], incident_id.as_str());
    assert_eq!(
        one["incident"]["root_cause"][0]["service"], "service-b",
        "{one}"
    );
    let examples = one["examples"].as_array().unwrap();
    assert!(!examples.is_empty(), "{one}");
    assert!(
        examples.iter().all(|e| e["url"]
            .as_str()
            .unwrap()
            .ends_with(e["trace_id"].as_str().unwrap())
            && e["window"].is_string()
            && e["service"].is_string()),
        "{one}"
    );

    // Feedback. The incident was not one: its windows are marked, and listed.
    let post = |path: &str, body: &str| {
        let (status, answer) = http_request(
            console,
            "POST",
            path,
            "Content-Type: application/json\r\n",
            body,
        )
        .unwrap();
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (
            status,
            serde_json::from_str::<Value>(body).unwrap_or(Value::Null),
        )
    };
    let (status, said) = post(
        "/api/feedback/not-anomaly",
        &format!(r#"{{"incident": "{incident_id}"}}"#),
    );
    assert_eq!(status, 200, "{said}");
    assert!(said["not_anomaly"].as_u64() >= Some(1), "{said}");
    let (_, again) = get(console, "/api/series?service=service-b");
    let marked = again["windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["start"] == hit["start"])
        .unwrap();
    assert_eq!(marked["dismissed"], true, "{marked}");
    let (_, listed) = get(console, "/api/feedback");
    assert!(
        listed["not_anomaly"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["service"] == "service-b" && d["window"] == hit["start"]),
        "{listed}"
    );
    // The same again changes nothing.
    let (_, twice) = post(
        "/api/feedback/not-anomaly",
        &format!(r#"{{"incident": "{incident_id}"}}"#),
    );
    assert_eq!(twice["not_anomaly"], 0, "{twice}");
    // An expected range: added, listed, removed.
    let (status, added) = post(
        "/api/feedback/expected",
        r#"{"from": "2030-01-01T00:00:00Z", "to": "2030-01-01T01:00:00Z", "service": "service-b", "note": "load test"}"#,
    );
    assert_eq!(status, 201, "{added}");
    let id = added["expected"]["id"].as_str().unwrap().to_string();
    let (_, listed) = get(console, "/api/feedback");
    assert_eq!(listed["expected"][0]["note"], "load test", "{listed}");
    let (status, _) = http_request(
        console,
        "DELETE",
        &format!("/api/feedback/expected/{id}"),
        "",
        "",
    )
    .unwrap();
    assert_eq!(status, 204);
    let (status, _) = http_request(
        console,
        "DELETE",
        &format!("/api/feedback/expected/{id}"),
        "",
        "",
    )
    .unwrap();
    assert_eq!(status, 404);
    // Bad feedback: a clear error, nothing changed.
    for (body, want) in [
        (
            r#"{"from": "2030-01-01T01:00:00Z", "to": "2030-01-01T00:00:00Z"}"#,
            "end after",
        ),
        (
            r#"{"from": "soon", "to": "2030-01-01T00:00:00Z"}"#,
            "RFC 3339",
        ),
        (r#"{"from": "2030-01-01T00:00:00Z"}"#, "to"),
        ("not json", "not valid"),
    ] {
        let (status, e) = post("/api/feedback/expected", body);
        assert_eq!(status, 400, "{body}: {e}");
        assert!(e["error"].as_str().unwrap().contains(want), "{body}: {e}");
    }
    let (status, e) = post("/api/feedback/not-anomaly", r#"{"service": "service-b"}"#);
    assert_eq!(status, 400, "{e}");
    let (status, e) = post(
        "/api/feedback/not-anomaly",
        r#"{"service": "service-b", "window": "2001-01-01T00:00:00Z"}"#,
    );
    assert_eq!(status, 404, "{e}");
    let (status, _) = http_request(
        console,
        "POST",
        "/api/feedback/expected",
        "Content-Type: text/plain\r\n",
        r#"{"from": "2030-01-01T00:00:00Z", "to": "2030-01-01T01:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(status, 415);
    let (_, listed) = get(console, "/api/feedback");
    assert_eq!(listed["expected"], serde_json::json!([]), "{listed}");

    // The page itself: one embedded file that asks nothing of anyone but this server.
    let (status, page) = http_get(console, "/").unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("<title>otelwatch console</title>"));
    assert!(page.contains("new EventSource(\"/api/events\")"));
    // No address but the SVG namespace's: nothing loaded from elsewhere, works offline.
    assert_eq!(
        page.matches("http").count(),
        page.matches("http://www.w3.org/2000/svg").count()
    );

    // Questions it cannot answer.
    let (status, e) = get(console, "/api/series?service=nobody");
    assert_eq!(status, 404, "{e}");
    assert!(e["error"].as_str().unwrap().contains("nobody"), "{e}");
    let (status, e) = get(console, "/api/series?target=service-b");
    assert_eq!(status, 400, "{e}");
    let (status, e) = get(console, "/api/series?service=service-b&from=yesterday");
    assert_eq!(status, 400, "{e}");
    let (status, _) = get(console, "/api/incidents/0000000000000000");
    assert_eq!(status, 404);
    // A window range: only the windows starting in it.
    let from = otelwatch::model::time::rfc3339(t0 + 500_000_000_000);
    let to = otelwatch::model::time::rfc3339(t0 + 540_000_000_000);
    let (_, part) = get(
        console,
        &format!("/api/series?service=service-a&target=service-b&from={from}&to={to}"),
    );
    assert_eq!(part["windows"].as_array().unwrap().len(), 4, "{part}");
    // A series by its name, as the API writes it.
    let (status, by_key) = get(
        console,
        "/api/series?key=service-a%20%E2%86%92%20service-b&from=2000-01-01T00:00:00Z",
    );
    assert_eq!(status, 200, "{by_key}");
    assert_eq!(by_key["series"], "service-a → service-b");
    assert_eq!(by_key["target"], "service-b");
    let (status, e) = get(console, "/api/series?key=nobody%20(logs)");
    assert_eq!(status, 404, "{e}");

    // Live: a page following /api/events hears of the windows that arrive next, without asking.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", console)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    use std::io::{BufRead, Write};
    write!(
        stream,
        "GET /api/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let heard = tokio::task::spawn_blocking(move || {
        reader
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("event: update"))
            .is_some()
    });
    // Anomalies are expected from window 78 to 87, for every service.
    let at = |w: u64| otelwatch::model::time::rfc3339(t0 + w * 10_000_000_000);
    let (status, e) = post(
        "/api/feedback/expected",
        &format!(
            r#"{{"from": "{}", "to": "{}", "note": "load test"}}"#,
            at(78),
            at(88)
        ),
    );
    assert_eq!(status, 201, "{e}");
    let sent_to = 105;
    for _ in 70..sent_to {
        let req = g.next_window();
        grpc_send(grpc, req.encode_to_vec().into(), false, TRACES)
            .await
            .expect("accepted");
    }
    assert!(heard.await.unwrap(), "no update event");

    // What the detector made of the feedback, once those windows are closed.
    let closed = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(30), || {
            let (_, s) = get(console, "/api/series?service=service-b");
            s["windows"]
                .as_array()
                .is_some_and(|w| w.iter().any(|w| start(w) >= 100))
        })
    })
    .await
    .unwrap();
    assert!(closed);
    let (_, series) = get(console, "/api/series?service=service-b");
    let windows = series["windows"].as_array().unwrap();
    let in_range = |from, to| {
        windows
            .iter()
            .filter(move |w| (from..=to).contains(&start(w)))
            .collect::<Vec<_>>()
    };
    // The far worse anomaly is flagged, as expected: no incident.
    let expected: Vec<&Value> = in_range(80, 83)
        .into_iter()
        .filter(|w| w["is_anomaly"] == true)
        .collect();
    assert!(!expected.is_empty(), "{:#?}", in_range(80, 83));
    assert!(
        expected
            .iter()
            .all(|w| w["expected"] == true && w.get("incident").is_none()),
        "{expected:#?}"
    );
    // The like of the dismissed one no longer alarms.
    assert!(
        in_range(92, 95).iter().all(|w| w["is_anomaly"] == false),
        "{:#?}",
        in_range(92, 95)
    );
    let (_, incidents) = get(console, "/api/incidents");
    let later = incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            otelwatch::model::time::parse_rfc3339_ns(i["start"].as_str().unwrap()).unwrap()
                >= t0 + 78 * 10_000_000_000
        })
        .count();
    assert_eq!(later, 0, "{incidents}");
    // An open stream does not hold up the stop.
    let status = tokio::task::spawn_blocking(move || ow.terminate())
        .await
        .unwrap();
    assert!(status.success());
    drop(stream);
}

fn get_with(port: u16, path: &str, headers: &str) -> (u16, String) {
    http_get_with(port, path, headers).unwrap()
}

#[test]
fn with_an_authenticator_the_console_answers_only_with_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, console) = (free_port(), free_port());
    let cfg = config(
        "console-with-auth.yaml",
        &[
            ("GRPC", &grpc),
            ("CONSOLE", &console),
            ("USER", &"ann"),
            ("PASSWORD", &"s3cret-pw"),
        ],
    );
    let _ow = Otelwatch::start(dir.path(), "ow", &cfg);
    for path in ["/", "/api/summary", "/api/events", "/api/series?service=x"] {
        let (status, answer) = get_with(console, path, "");
        assert_eq!(status, 401, "{path}: {answer}");
        assert!(
            answer.contains("www-authenticate: Basic realm=\"otelwatch\""),
            "{answer}"
        );
        let wrong = "Authorization: Basic YW5uOndyb25n\r\n"; // ann:wrong
        assert_eq!(get_with(console, path, wrong).0, 401, "{path}");
    }
    let right = "Authorization: Basic YW5uOnMzY3JldC1wdw==\r\n"; // ann:s3cret-pw
    let (status, answer) = get_with(console, "/api/summary", right);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"windows_held\""), "{answer}");
}

/// Node.js with playwright-core installed in `tests/browser` and a Chromium to drive, if set
/// up (`scripts/test` does it). Under `OTELWATCH_REQUIRE_BROWSER=1` (CI) a missing one fails
/// the test instead of skipping it.
fn browser() -> Option<(std::path::PathBuf, String)> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if dir.join("node_modules/playwright-core").is_dir() && std::path::Path::new(&chromium).exists()
    {
        return Some((dir, chromium));
    }
    if std::env::var("OTELWATCH_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!(
            "Chromium and playwright-core are required (run ./scripts/test, which installs them)"
        );
    }
    eprintln!("SKIPPED: no Chromium or playwright-core; run ./scripts/test");
    None
}

/// The demo's pipeline with its simulator, looked at in a real browser: the checks are in
/// `tests/browser/console.mjs`; the screenshots of each page go to `out/console/`.
#[test]
fn the_console_in_a_real_browser_shows_the_demo() {
    let Some((dir, chromium)) = browser() else {
        return;
    };
    let _heavy = heavy();
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut demo = std::process::Command::new(env!("CARGO_BIN_EXE_otelwatch"))
        .args(["demo", "--traffic", "simulator", "--interval", "1s"])
        .args(["--anomalies", "14", "--console-port", &port.to_string()])
        .arg("--out")
        .arg(out.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let shots = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("out/console");
    let _ = std::fs::remove_dir_all(&shots);
    let run = std::process::Command::new("node")
        .arg(dir.join("console.mjs"))
        .arg(format!("http://127.0.0.1:{port}/"))
        .arg(&shots)
        .env("CHROMIUM", chromium)
        .output()
        .unwrap();
    let _ = demo.kill();
    let _ = demo.wait();
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("{stdout}");
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for page in [
        "overview",
        "incident",
        "service-b",
        "service-b-feedback",
        "overview-expected",
        "edge",
        "overview-dark",
    ] {
        assert!(shots.join(format!("{page}.png")).is_file(), "{page}.png");
    }
}
