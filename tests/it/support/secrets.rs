//! The secrets a config names (tokens, passwords, API keys, header values, chat webhook URLs),
//! so that every run's logs can be checked for them: when an `Otelwatch` of a test is dropped
//! its stdout and stderr must hold none of them.

use serde_norway::Value;

/// Keys whose string values (or list of values) are credentials.
const SECRET_KEYS: &[&str] = &["token", "tokens", "password", "api_key"];

/// Shorter values are not worth checking (they occur anywhere).
const MIN_LEN: usize = 6;

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Sequence(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Mapping(m) => m.values().for_each(|i| strings(i, out)),
        _ => {}
    }
}

fn walk(v: &Value, out: &mut Vec<String>) {
    let Value::Mapping(m) = v else {
        if let Value::Sequence(items) = v {
            items.iter().for_each(|i| walk(i, out));
        }
        return;
    };
    let slack = m.get("format").and_then(Value::as_str) == Some("slack");
    for (k, v) in m {
        let key = k.as_str().unwrap_or_default();
        if SECRET_KEYS.contains(&key) || key == "headers" || (slack && key == "endpoint") {
            strings(v, out);
        } else if key == "inline" {
            // htpasswd lines: user:password
            if let Some(text) = v.as_str() {
                for line in text.lines() {
                    if let Some((_, pw)) = line.split_once(':') {
                        out.push(pw.trim().to_string());
                    }
                }
            }
        } else {
            walk(v, out);
        }
    }
}

/// The secrets in a config file's text (values from the environment are not known here).
pub fn in_config(text: &str) -> Vec<String> {
    let Ok(v) = serde_norway::from_str::<Value>(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(&v, &mut out);
    out.retain(|s| s.len() >= MIN_LEN && !s.contains("${"));
    out.sort();
    out.dedup();
    out
}

/// The secrets of `config` that occur in `logs`.
pub fn leaked(config: &str, logs: &str) -> Vec<String> {
    in_config(config)
        .into_iter()
        .filter(|s| logs.contains(s.as_str()))
        .collect()
}

#[test]
fn the_secrets_of_a_config_are_found() {
    let cfg = r#"
extensions:
  bearertokenauth: { token: "tok-123456" }
  basicauth: { htpasswd: { inline: "ann:pw-ann-1\nbob:pw-bob-2" } }
exporters:
  webhook/slack: { endpoint: "http://h/services/T1/B2/abcdef", format: slack }
  webhook/json: { endpoint: "http://h/json", headers: { Authorization: "Bearer hdr-1234" } }
  elasticsearch: { endpoints: ["http://es:9200"], user: u, password: "es-pw-1234", api_key: "${env:K}" }
"#;
    assert_eq!(
        in_config(cfg),
        [
            "Bearer hdr-1234",
            "es-pw-1234",
            "http://h/services/T1/B2/abcdef",
            "pw-ann-1",
            "pw-bob-2",
            "tok-123456"
        ]
    );
    assert_eq!(leaked(cfg, "posting to tok-123456 failed"), ["tok-123456"]);
    assert!(leaked(cfg, "posting to http://h/json failed").is_empty());
}
