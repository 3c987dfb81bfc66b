//! docker-compose.yml cannot run here (no container engine), so it is kept correct by checking
//! it against everything it references: build contexts and their Dockerfiles, health checks
//! behind `service_healthy`, mounted files, and every address one service gives for another
//! (host = a compose service, port = the port that service's config or image really uses).
//! The pipeline file is validated with the environment compose gives otelwatch.

use serde_norway::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(path: &Path) -> Value {
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn env_of(svc: &Value) -> BTreeMap<String, String> {
    svc["environment"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => serde_norway::to_string(other).unwrap().trim().to_string(),
                    };
                    (k.as_str().unwrap().to_string(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// (host, port) of `http://host:port/...` or `host:port`.
fn host_port(addr: &str) -> (String, u16) {
    let rest = addr.split_once("://").map_or(addr, |(_, r)| r);
    let authority = rest.split('/').next().unwrap();
    let (h, p) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("no port in {addr}"));
    (h.to_string(), p.parse().unwrap())
}

fn dockerfile(context: &Path) -> String {
    std::fs::read_to_string(context.join("Dockerfile"))
        .unwrap_or_else(|_| panic!("no Dockerfile in {}", context.display()))
}

fn port_from(config: &Value, path: &[&str]) -> u16 {
    let mut v = config;
    for p in path {
        v = &v[*p];
    }
    host_port(v.as_str().unwrap()).1
}

#[test]
fn compose_references_are_consistent() {
    let compose = load(&root().join("docker-compose.yml"));
    let services = compose["services"].as_mapping().unwrap();
    let names: Vec<String> = services
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    for want in [
        "elasticsearch",
        "kibana",
        "otel-collector",
        "otelwatch",
        "service-a",
        "service-b",
        "traffic",
        "kibana-setup",
    ] {
        assert!(names.iter().any(|n| n == want), "missing service {want}");
    }
    let svc = |n: &str| &compose["services"][n];

    for (name, s) in services {
        let name = name.as_str().unwrap();
        // An image to pull or a context to build, with its Dockerfile.
        match (&s["image"], &s["build"]) {
            (Value::String(_), _) => {}
            (_, Value::String(ctx)) => {
                dockerfile(&root().join(ctx));
            }
            _ => panic!("{name}: neither image nor build"),
        }
        for p in s["ports"].as_sequence().into_iter().flatten() {
            let p = p.as_str().unwrap();
            let (h, c) = p
                .split_once(':')
                .unwrap_or_else(|| panic!("{name}: port {p}"));
            assert!(
                h.parse::<u16>().is_ok() && c.parse::<u16>().is_ok(),
                "{name}: port {p}"
            );
        }
        for (dep, cond) in s["depends_on"].as_mapping().into_iter().flatten() {
            let dep = dep.as_str().unwrap();
            assert!(
                names.iter().any(|n| n == dep),
                "{name} depends on unknown {dep}"
            );
            let cond = cond["condition"].as_str().unwrap();
            assert!(
                [
                    "service_started",
                    "service_healthy",
                    "service_completed_successfully"
                ]
                .contains(&cond),
                "{name}: {cond}"
            );
            if cond == "service_healthy" {
                let d = svc(dep);
                let has_check = d["healthcheck"].is_mapping()
                    || d["build"]
                        .as_str()
                        .is_some_and(|ctx| dockerfile(&root().join(ctx)).contains("HEALTHCHECK"));
                assert!(
                    has_check,
                    "{name} waits for {dep} to be healthy, but {dep} has no health check"
                );
            }
        }
        for v in s["volumes"].as_sequence().into_iter().flatten() {
            let v = v.as_str().unwrap();
            let src = v.split(':').next().unwrap();
            if src.starts_with("./") {
                assert!(root().join(src).exists(), "{name}: mounts missing {src}");
            } else {
                assert!(
                    compose["volumes"][src].is_mapping(),
                    "{name}: volume {src} not declared"
                );
            }
        }
    }

    // otelwatch forwards to the collector's OTLP/gRPC port, and writes to Elasticsearch.
    let ow_env = env_of(svc("otelwatch"));
    let collector = load(&root().join("target-system/otel-collector/config.yaml"));
    let (fwd_host, fwd_port) = host_port(&ow_env["OTELWATCH_FORWARD"]);
    assert_eq!(fwd_host, "otel-collector");
    assert_eq!(
        fwd_port,
        port_from(
            &collector,
            &["receivers", "otlp", "protocols", "grpc", "endpoint"]
        )
    );
    assert_eq!(host_port(&ow_env["ES_URL"]), ("elasticsearch".into(), 9200));
    let es_endpoint = collector["exporters"]["elasticsearch"]["endpoints"][0]
        .as_str()
        .unwrap();
    assert_eq!(host_port(es_endpoint), ("elasticsearch".into(), 9200));

    // The pipeline file is valid with the environment compose sets, and listens where the
    // services send.
    let text = std::fs::read_to_string(root().join("pipeline.yaml")).unwrap();
    let cfg = otelwatch::config::parse(&text, &|n| ow_env.get(n).cloned())
        .unwrap_or_else(|e| panic!("pipeline.yaml under compose: {e}"));
    let grpc_port = cfg
        .receivers
        .iter()
        .find_map(|(_, r)| match r {
            otelwatch::receivers::ReceiverConfig::Otlp(o) => o.protocols.grpc.as_ref(),
            _ => None,
        })
        .map(|g| host_port(&g.endpoint).1)
        .expect("an OTLP/gRPC receiver");
    assert!(cfg.pipelines.iter().any(|p| p.id == "traces/detect"));
    let ow_ports: Vec<&str> = svc("otelwatch")["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(ow_ports.contains(&format!("{grpc_port}:{grpc_port}").as_str()));
    assert!(dockerfile(&root()).contains(&format!("EXPOSE {grpc_port}")));

    for s in ["service-a", "service-b"] {
        let env = env_of(svc(s));
        let (h, p) = host_port(&env["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        assert_eq!(
            (h.as_str(), p),
            ("otelwatch", grpc_port),
            "{s} must send to otelwatch"
        );
        assert_eq!(env["OTEL_SERVICE_NAME"], s);
    }
    // Service A calls service B where B listens.
    let b_port: u16 = dockerfile(&root().join("target-system/service-b"))
        .lines()
        .find_map(|l| {
            l.strip_prefix("ENV PORT=")
                .map(|r| r.split_whitespace().next().unwrap().parse().unwrap())
        })
        .unwrap();
    assert_eq!(
        host_port(&env_of(svc("service-a"))["SERVICE_B_URL"]),
        ("service-b".into(), b_port)
    );

    // The traffic generator and the Kibana setup job address the right services.
    let args = |n: &str| -> Vec<String> {
        svc(n)["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    let traffic = args("traffic");
    let target = &traffic[traffic.iter().position(|a| a == "--target").unwrap() + 1];
    assert_eq!(host_port(target), ("service-a".into(), 5000));
    let setup = args("kibana-setup");
    let kibana = &setup[setup.iter().position(|a| a == "--kibana-url").unwrap() + 1];
    assert_eq!(host_port(kibana), ("kibana".into(), 5601));
    assert_eq!(svc("kibana-setup")["restart"], Value::String("no".into()));
}
