use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn errors_of(yaml: &str) -> Vec<String> {
    match parse(yaml, &no_env) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const GOOD: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: { endpoint: 0.0.0.0:4317 }
      http: { endpoint: 0.0.0.0:4318 }
  otlpjsonfile/replay:
    include: [Cargo.toml]
processors:
  batch: { send_batch_size: 100, timeout: 50ms }
exporters:
  otlp/collector:
    endpoint: ${env:FORWARD:-localhost:14317}
    compression: zstd
    retry_on_failure: { initial_interval: 100ms, max_interval: 1s }
  debug: { verbosity: normal }
  file: { path: ./out/x.jsonl }
service:
  shutdown_timeout: 3s
  telemetry:
    metrics: { address: 127.0.0.1:8888 }
  pipelines:
    traces/forward: { receivers: [otlp], exporters: [otlp/collector] }
    traces/detect:  { receivers: [otlp, otlpjsonfile/replay], processors: [batch], exporters: [debug, file] }
    logs: { receivers: [otlp], exporters: [otlp/collector] }
"#;

#[test]
fn a_full_config_parses_in_file_order() {
    let cfg = parse(GOOD, &no_env).unwrap();
    let ids: Vec<String> = cfg.receivers.iter().map(|(i, _)| i.to_string()).collect();
    assert_eq!(ids, ["otlp", "otlpjsonfile/replay"]);
    assert_eq!(cfg.pipelines.len(), 3);
    assert_eq!(cfg.pipelines[1].id, "traces/detect");
    assert_eq!(cfg.pipelines[1].signal, DataKind::Traces);
    assert_eq!(cfg.pipelines[2].signal, DataKind::Logs);
    assert_eq!(cfg.shutdown_timeout, ConfigDuration::from_secs(3));
    match cfg.exporter(&ComponentId::parse("otlp/collector").unwrap()) {
        Some(ExporterConfig::Otlp(o)) => {
            assert_eq!(o.endpoint, "localhost:14317");
            assert_eq!(
                o.retry_on_failure.initial_interval,
                ConfigDuration::from_millis(100)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn env_values_replace_defaults_and_are_read_as_yaml() {
    let env = |n: &str| match n {
        "FORWARD" => Some("collector:4317".to_string()),
        _ => None,
    };
    let cfg = parse(GOOD, &env).unwrap();
    match cfg.exporter(&ComponentId::parse("otlp/collector").unwrap()) {
        Some(ExporterConfig::Otlp(o)) => assert_eq!(o.endpoint, "collector:4317"),
        other => panic!("{other:?}"),
    }
    let yaml = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        max_recv_msg_size_mib: ${env:MIB}\nexporters:\n  nop:\nservice:\n  pipelines:\n    traces: { receivers: [otlp], exporters: [nop] }\n";
    let env = |n: &str| (n == "MIB").then(|| "16".to_string());
    let cfg = parse(yaml, &env).unwrap();
    match &cfg.receivers[0].1 {
        ReceiverConfig::Otlp(o) => {
            assert_eq!(o.protocols.grpc.as_ref().unwrap().max_recv_msg_size_mib, 16);
            assert!(
                o.protocols.http.is_none(),
                "only listed protocols are enabled"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_embedded_default_is_valid() {
    let cfg = parse(crate::DEFAULT_PIPELINE, &no_env).unwrap();
    assert!(!cfg.pipelines.is_empty());
    // With the console on, where the README says.
    let console = cfg.extensions.iter().find(|(id, _)| id.kind == "console");
    assert_eq!(
        console.and_then(|(_, e)| e.listens()).as_deref(),
        Some("localhost:8080")
    );
    assert!(cfg.service_extensions.iter().any(|id| id.kind == "console"));
}

#[test]
fn every_error_is_reported_with_its_path() {
    let yaml = r#"
receivers:
  otlp:
    protocols:
      grpc: { endpoint: 0.0.0.0:4317, bogus: 1 }
  kafka: {}
exporters:
  otlp/collector:
    endpoint: "htp:/x"
    compression: brotli
  file: {}
  debug: { verbosity: loud }
  nop:
service:
  telemetry: { metrics: { address: nowhere } }
  pipelines:
    traces/detect: { receivers: [otlp], exporters: [nop, missing] }
    traces/empty: { receivers: [], exporters: [] }
    spans: { receivers: [otlp], exporters: [nop] }
connectors: {}
"#;
    let errs = errors_of(yaml);
    let expect = [
        "connectors: unknown top-level key",
        "receivers.otlp.protocols.grpc.bogus: unknown field `bogus`",
        "receivers.kafka: unknown receiver type \"kafka\" (known: otlp, otlpjsonfile)",
        "exporters.otlp/collector.compression: unknown variant `brotli`",
        "exporters.file.path: required",
        "exporters.debug.verbosity: unknown variant `loud`",
        "service.telemetry.metrics.address: endpoint \"nowhere\" must be host:port",
        "service.pipelines.traces/detect.exporters[1]: exporter \"missing\" is not defined under exporters",
        "service.pipelines.traces/empty.receivers: a pipeline needs at least one receiver",
        "service.pipelines.traces/empty.exporters: a pipeline needs at least one exporter",
        "service.pipelines.spans: unknown pipeline type \"spans\"",
    ];
    assert_has_errors(&errs, &expect);
}

#[test]
fn an_invalid_endpoint_in_a_valid_shape_is_named() {
    let yaml = "receivers:\n  otlp:\nexporters:\n  otlp:\n    endpoint: \"htp:/x\"\nservice:\n  pipelines:\n    traces: { receivers: [otlp], exporters: [otlp] }\n";
    let errs = errors_of(yaml);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("exporters.otlp.endpoint: "), "{errs:?}");
}

#[test]
fn console_settings_and_its_port_are_checked() {
    let yaml = r#"
extensions:
  console:
    endpoint: 127.0.0.1:4317
  console/bad:
    endpoint: "nowhere"
    retention: 0s
    max_memory_mib: 0
receivers:
  otlp:
exporters:
  nop:
service:
  extensions: [console]
  pipelines:
    traces: { receivers: [otlp], exporters: [nop] }
"#;
    let errs = errors_of(yaml);
    for e in [
        "extensions.console/bad.retention: must be longer than 0s",
        "extensions.console/bad.max_memory_mib: must be at least 1",
        "extensions.console.endpoint: port 4317 is already used by receivers.otlp.protocols.grpc.endpoint",
    ] {
        assert!(
            errs.iter().any(|got| got == e),
            "missing {e:?} in:\n{}",
            errs.join("\n")
        );
    }
    assert!(
        errs.iter()
            .any(|e| e.starts_with("extensions.console/bad.endpoint: ")),
        "{errs:?}"
    );
    // Its authenticator: defined, an authenticator, enabled.
    let yaml = r#"
extensions:
  console: { auth: { authenticator: file_storage } }
  console/2: { endpoint: "localhost:8081", auth: { authenticator: basicauth } }
  file_storage:
  basicauth: { htpasswd: { inline: "a:b" } }
receivers:
  otlp:
exporters:
  nop:
service:
  extensions: [console, console/2, file_storage]
  pipelines:
    traces: { receivers: [otlp], exporters: [nop] }
"#;
    let errs = errors_of(yaml);
    for e in [
        "extensions.console.auth.authenticator: extension \"file_storage\" is not a authenticator",
        "extensions.console/2.auth.authenticator: authenticator \"basicauth\" is not enabled: list it in service.extensions",
    ] {
        assert!(
            errs.iter().any(|got| got == e),
            "missing {e:?} in:\n{}",
            errs.join("\n")
        );
    }
}

#[test]
fn unused_components_and_port_clashes_are_errors() {
    let yaml = r#"
receivers:
  otlp:
  otlp/second:
    protocols:
      grpc: { endpoint: 127.0.0.1:4317 }
processors:
  batch:
exporters:
  nop:
  debug:
service:
  telemetry: { metrics: { address: 0.0.0.0:4318 } }
  pipelines:
    traces: { receivers: [otlp, otlp/second], exporters: [nop] }
"#;
    let errs = errors_of(yaml);
    let expect = [
        "processors.batch: defined but not used in any pipeline",
        "exporters.debug: defined but not used in any pipeline",
        "receivers.otlp/second.protocols.grpc.endpoint: port 4317 is already used by receivers.otlp.protocols.grpc.endpoint",
        "service.telemetry.metrics.address: port 4318 is already used by receivers.otlp.protocols.http.endpoint",
    ];
    for e in expect {
        assert!(
            errs.iter().any(|got| got == e),
            "missing {e:?} in:\n{}",
            errs.join("\n")
        );
    }
    assert_eq!(errs.len(), expect.len(), "{errs:?}");
}

#[test]
fn bad_ids_duplicates_and_env_errors() {
    let yaml = r#"
receivers:
  OTLP: {}
  otlp:
exporters:
  nop/:
  nop:
service:
  pipelines:
    traces: { receivers: [otlp, otlp], exporters: [nop, "${env:EXPORTER}"] }
"#;
    let errs = errors_of(yaml);
    let expect = [
        "line 10: environment variable EXPORTER is not set",
        "receivers.OTLP: invalid component id \"OTLP\"",
        "exporters.nop/: invalid component id \"nop/\"",
        "service.pipelines.traces.receivers[1]: \"otlp\" is listed twice",
    ];
    assert_has_errors(&errs, &expect);
}

#[test]
fn yaml_syntax_errors_say_where() {
    let errs = errors_of("receivers: [otlp\nexporters: {}\n");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].contains("not valid YAML") && errs[0].contains("line"),
        "{errs:?}"
    );
}

#[test]
fn numbers_are_not_durations() {
    let yaml = "receivers:\n  otlp:\nprocessors:\n  batch: { timeout: 5 }\nexporters:\n  nop:\nservice:\n  pipelines:\n    traces: { receivers: [otlp], processors: [batch], exporters: [nop] }\n";
    let errs = errors_of(yaml);
    assert!(
        errs[0]
            .starts_with("processors.batch.timeout: invalid type: integer `5`, expected a string"),
        "{errs:?}"
    );
}

#[test]
fn component_ids() {
    let id = ComponentId::parse("otlp/collector").unwrap();
    assert_eq!(id.kind, "otlp");
    assert_eq!(id.name.as_deref(), Some("collector"));
    assert_eq!(id.to_string(), "otlp/collector");
    assert!(ComponentId::parse("a b").is_err());
    assert!(ComponentId::parse("").is_err());
}

#[test]
fn an_empty_file_needs_a_pipeline() {
    let errs = errors_of("");
    assert_eq!(
        errs,
        ["service.pipelines: at least one pipeline is required"]
    );
}

#[test]
fn authenticators_must_be_defined_enabled_and_valid() {
    let yaml = r#"
extensions:
  bearertokenauth: { token: "t0ken" }
  bearertokenauth/idle: { token: "x" }
  basicauth: { htpasswd: { inline: "nopassword" } }
  bearertokenauth/both: { token: "a", filename: "/f" }
  oauth2client: {}
receivers:
  otlp:
    protocols:
      grpc: { auth: { authenticator: bearertokenauth } }
      http: { auth: { authenticator: bearertokenauth/idle } }
  otlp/b:
    protocols:
      grpc: { endpoint: "localhost:5317", auth: { authenticator: missing } }
exporters:
  nop:
service:
  extensions: [bearertokenauth, bearertokenauth, nothere]
  pipelines:
    traces: { receivers: [otlp, otlp/b], exporters: [nop] }
"#;
    let errs = errors_of(yaml);
    let expect = [
        "extensions.basicauth.htpasswd.inline: inline line 1: expected user:password",
        "extensions.bearertokenauth/both: set exactly one of token, tokens or filename",
        "extensions.oauth2client: unknown extension type \"oauth2client\" (known: bearertokenauth, basicauth, file_storage, console)",
        "service.extensions[1]: \"bearertokenauth\" is listed twice",
        "service.extensions[2]: extension \"nothere\" is not defined under extensions",
        "receivers.otlp.protocols.http.auth.authenticator: authenticator \"bearertokenauth/idle\" is not enabled: list it in service.extensions",
        "receivers.otlp/b.protocols.grpc.auth.authenticator: authenticator \"missing\" is not defined under extensions",
    ];
    assert_has_errors(&errs, &expect);
    assert_eq!(errs.len(), expect.len(), "{}", errs.join("\n"));

    let ok = r#"
extensions:
  basicauth/team: { htpasswd: { inline: "ann:pw" } }
receivers:
  otlp: { protocols: { http: { auth: { authenticator: basicauth/team } } } }
exporters:
  nop:
service:
  extensions: [basicauth/team]
  pipelines:
    traces: { receivers: [otlp], exporters: [nop] }
"#;
    let cfg = parse(ok, &no_env).unwrap();
    assert_eq!(cfg.service_extensions.len(), 1);
    assert!(format!("{cfg:?}").contains("***") && !format!("{cfg:?}").contains("ann:pw"));
}

#[test]
fn a_queue_in_storage_names_a_running_storage_on_an_exporter_that_can_use_it() {
    let yaml = r#"
extensions:
  file_storage: { directory: /tmp/q }
  file_storage/off: {}
  file_storage/empty: { directory: "" }
  bearertokenauth: { token: "t" }
receivers:
  otlp:
exporters:
  otlp/a: { endpoint: "localhost:4317", sending_queue: { storage: file_storage } }
  otlp/b: { endpoint: "localhost:4317", sending_queue: { storage: file_storage/off } }
  otlp/c: { endpoint: "localhost:4317", sending_queue: { storage: bearertokenauth } }
  otlphttp: { endpoint: "http://localhost:4318", sending_queue: { storage: nothere } }
  webhook: { endpoint: "http://localhost:9/x", sending_queue: { storage: file_storage } }
service:
  extensions: [file_storage, bearertokenauth]
  pipelines:
    traces: { receivers: [otlp], exporters: [otlp/a, otlp/b, otlp/c, otlphttp] }
"#;
    let errs = errors_of(yaml);
    let expect = [
        "extensions.file_storage/empty.directory: must name a directory",
        "exporters.otlp/b.sending_queue.storage: storage \"file_storage/off\" is not enabled: list it in service.extensions",
        "exporters.otlp/c.sending_queue.storage: extension \"bearertokenauth\" is not a storage",
        "exporters.otlphttp.sending_queue.storage: storage \"nothere\" is not defined under extensions",
        "exporters.webhook: defined but not used in any pipeline",
        "exporters.webhook.sending_queue.storage: a webhook exporter cannot keep its sending queue in storage (only otlp, otlphttp can)",
    ];
    assert_has_errors(&errs, &expect);
    assert_eq!(errs.len(), expect.len(), "{}", errs.join("\n"));
}

#[test]
fn a_model_file_belongs_to_one_pipeline() {
    let yaml = r#"
receivers:
  otlp:
processors:
  window:
  iforest: { model_path: ./out/models.json }
  iforest/logs: { model_path: ./out/log-models.json }
exporters:
  nop:
service:
  pipelines:
    traces: { receivers: [otlp], processors: [window, iforest], exporters: [nop] }
    logs: { receivers: [otlp], processors: [window, iforest], exporters: [nop] }
"#;
    let errs = errors_of(yaml);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs.iter().any(|e| e.starts_with(
            "service.pipelines.logs.processors[1]: iforest saves its models to \"./out/models.json\", as iforest in pipeline traces does"
        )),
        "{errs:?}"
    );
    let ok = yaml.replace(
        "logs: { receivers: [otlp], processors: [window, iforest]",
        "logs: { receivers: [otlp], processors: [window, iforest/logs]",
    );
    assert!(parse(&ok, &no_env).is_ok());
}

/// Every expected message begins one of the errors.
fn assert_has_errors(errs: &[String], expect: &[&str]) {
    for e in expect {
        assert!(
            errs.iter().any(|got| got.starts_with(e)),
            "missing {e:?} in:\n{}",
            errs.join("\n")
        );
    }
}
