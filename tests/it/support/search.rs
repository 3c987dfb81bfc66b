//! A real search engine for the Elasticsearch exporter's tests: `ES_URL` when set (a real
//! Elasticsearch, e.g. the docker-compose stack), otherwise an OpenSearch node started here from
//! Maven Central artifacts (`scripts/search-node` prepares it; `scripts/test` does that).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SearchEngine {
    pub url: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for SearchEngine {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl SearchEngine {
    /// `None` (with a message) when no engine can be had and `OTELWATCH_REQUIRE_SEARCH` is not 1.
    pub fn start() -> Option<Self> {
        if let Ok(url) = std::env::var("ES_URL") {
            return Some(Self {
                url: url.trim_end_matches('/').to_string(),
                child: None,
                _dir: None,
            });
        }
        let required = std::env::var("OTELWATCH_REQUIRE_SEARCH").is_ok_and(|v| v == "1");
        let (java, cp) = match (
            std::env::var("OTELWATCH_SEARCH_JAVA"),
            std::env::var("OTELWATCH_SEARCH_CP"),
        ) {
            (Ok(j), Ok(c)) => (j, c),
            _ => {
                if required {
                    panic!(
                        "OTELWATCH_SEARCH_JAVA / OTELWATCH_SEARCH_CP not set: run ./scripts/test"
                    );
                }
                eprintln!("SKIPPED: no search engine (set ES_URL, or run ./scripts/test)");
                return None;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let http = super::free_port();
        let transport = super::free_port();
        let mut child = Command::new(java)
            .args(["-Xms256m", "-Xmx768m", "-cp", &cp, "SearchNode"])
            .arg(dir.path().join("node"))
            .args([http.to_string(), transport.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the search node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("READY") {
                    let _ = tx.send(());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if rx.recv_timeout(Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Ok(Some(s)) = child.try_wait() {
                panic!("the search node exited early: {s}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the search node did not start in 180 s");
            }
        }
        Some(Self {
            url: format!("http://127.0.0.1:{http}"),
            child: Some(child),
            _dir: Some(dir),
        })
    }

    /// A JSON request to the engine.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let client = reqwest::Client::new();
        let mut req = client.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("search engine request");
        let status = resp.status().as_u16();
        let v = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, v)
    }

    pub async fn count(&self, index: &str) -> u64 {
        let _ = self
            .call(reqwest::Method::POST, &format!("/{index}/_refresh"), None)
            .await;
        let (_, v) = self
            .call(reqwest::Method::GET, &format!("/{index}/_count"), None)
            .await;
        v["count"].as_u64().unwrap_or(0)
    }
}
