//! docker-compose.yml cannot run here (no container engine), so it is kept correct by checking
//! it against everything it references: build contexts and their Dockerfiles, health checks
//! behind `service_healthy`, mounted files, and every address one service gives for another
//! (host = a compose service, port = the port that service's config or image really uses).
//! The pipeline file is validated with the environment compose gives otelwatch.

use serde_norway::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The services of the default stack (no profile).
const DEFAULT_STACK: [&str; 8] = [
    "elasticsearch",
    "kibana",
    "otel-collector",
    "otelwatch",
    "service-a",
    "service-b",
    "traffic",
    "kibana-setup",
];

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
    for want in DEFAULT_STACK {
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

/// The file a service's `--config` names, as mounted from the repository (read-only), read and
/// parsed as YAML text.
fn mounted_config(name: &str, svc: &Value) -> (String, String) {
    let args: Vec<String> = svc["command"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{name}: no command naming its config"))
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let path = args
        .iter()
        .find_map(|a| a.strip_prefix("--config=").map(str::to_string))
        .or_else(|| {
            let i = args.iter().position(|a| a == "--config")?;
            args.get(i + 1).cloned()
        })
        .unwrap_or_else(|| panic!("{name}: no --config in {args:?}"));
    let mount = svc["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap())
        .find(|v| v.split(':').nth(1) == Some(path.as_str()))
        .unwrap_or_else(|| panic!("{name}: its config {path} is not mounted"));
    let parts: Vec<&str> = mount.split(':').collect();
    assert!(
        parts[0].starts_with("./"),
        "{name}: {path} must come from the repository"
    );
    assert_eq!(parts.get(2), Some(&"ro"), "{name}: mount {mount} read-only");
    let text = std::fs::read_to_string(root().join(parts[0]))
        .unwrap_or_else(|e| panic!("{name}: {}: {e}", parts[0]));
    (parts[0].to_string(), text)
}

/// The (gRPC, HTTP) ports of an otelwatch config's OTLP receiver.
fn otlp_ports(cfg: &otelwatch::config::Config) -> (Option<u16>, Option<u16>) {
    cfg.receivers
        .iter()
        .find_map(|(_, r)| match r {
            otelwatch::receivers::ReceiverConfig::Otlp(o) => Some((
                o.protocols.grpc.as_ref().map(|g| host_port(&g.endpoint).1),
                o.protocols.http.as_ref().map(|h| host_port(&h.endpoint).1),
            )),
            _ => None,
        })
        .expect("an OTLP receiver")
}

fn otlp_exporter<'a>(
    cfg: &'a otelwatch::config::Config,
    id: &str,
) -> &'a otelwatch::exporters::otlp::OtlpExporterConfig {
    match cfg
        .exporters
        .iter()
        .find(|(i, _)| i.to_string() == id)
        .map(|(_, c)| c)
    {
        Some(otelwatch::exporters::ExporterConfig::Otlp(o)) => o,
        other => panic!("no otlp exporter {id}: {other:?}"),
    }
}

/// The `scale` profile: otelwatch instances behind the Collector's load-balancing exporter and
/// one incidents aggregator. Every address one of them gives for another names a service of the
/// profile (or the default stack) and the port that service's config really listens on; every
/// pipeline file is valid with the environment compose gives it; each keeps its state on its own
/// volume; the health check compose waits for is served where the config serves it.
#[test]
fn compose_scale_profile_is_consistent() {
    let compose = load(&root().join("docker-compose.yml"));
    let services = compose["services"].as_mapping().unwrap();
    let svc = |n: &str| &compose["services"][n];
    let profile_of = |n: &str| -> Vec<String> {
        svc(n)["profiles"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    };

    // The default stack stays as it is: none of its services is in a profile.
    for n in DEFAULT_STACK {
        assert!(
            profile_of(n).is_empty(),
            "{n} must stay in the default stack"
        );
    }
    let scale: Vec<String> = services
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .filter(|n| !profile_of(n).is_empty())
        .collect();
    for want in [
        "otelwatch-1",
        "otelwatch-2",
        "otelwatch-3",
        "otelwatch-incidents",
        "otelwatch-gateway",
    ] {
        assert!(
            scale.iter().any(|n| n == want),
            "missing scale service {want}"
        );
    }
    for n in &scale {
        assert_eq!(profile_of(n), vec!["scale".to_string()], "{n}: profiles");
    }

    // No two services publish the same host port (both profiles run together).
    let mut host_ports: BTreeMap<u16, String> = BTreeMap::new();
    for (name, s) in services {
        for p in s["ports"].as_sequence().into_iter().flatten() {
            let h: u16 = p
                .as_str()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let name = name.as_str().unwrap().to_string();
            if let Some(other) = host_ports.insert(h, name.clone()) {
                panic!("host port {h} published by both {other} and {name}");
            }
        }
    }

    // The image's health check: the port and path it asks.
    let check = dockerfile(&root())
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK"))
        .expect("a HEALTHCHECK in the Dockerfile")
        .to_string();
    let url = check
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("a URL in the HEALTHCHECK")
        .to_string();
    let health_port = host_port(&url).1;
    let data_dir = "/var/lib/otelwatch";
    assert!(
        dockerfile(&root()).contains(&format!("WORKDIR {data_dir}")),
        "the image's data directory"
    );

    // Every otelwatch of the profile: its mounted pipeline, valid under its environment.
    let collector = load(&root().join("target-system/otel-collector/config.yaml"));
    let collector_grpc = port_from(
        &collector,
        &["receivers", "otlp", "protocols", "grpc", "endpoint"],
    );
    let mut parsed = BTreeMap::new();
    let mut data_volumes: BTreeMap<String, String> = BTreeMap::new();
    for n in scale
        .iter()
        .filter(|n| svc(n)["build"].as_str() == Some("."))
    {
        let s = svc(n);
        let env = env_of(s);
        let (file, text) = mounted_config(n, s);
        let cfg = otelwatch::config::parse(&text, &|v| env.get(v).cloned())
            .unwrap_or_else(|e| panic!("{file} under compose ({n}): {e}"));
        assert_eq!(
            host_port(&cfg.telemetry.metrics.address).1,
            health_port,
            "{n}: the health check asks {url}, but {file} serves /healthz elsewhere"
        );
        // Its state on a named volume of its own, where the image keeps it.
        let volume = s["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|v| v.as_str().unwrap())
            .find(|v| v.split(':').nth(1) == Some(data_dir))
            .unwrap_or_else(|| panic!("{n}: no volume on {data_dir}"));
        let volume = volume.split(':').next().unwrap().to_string();
        assert!(
            !volume.starts_with("./"),
            "{n}: {data_dir} on a named volume"
        );
        if let Some(other) = data_volumes.insert(volume.clone(), n.clone()) {
            panic!("{n} and {other} share the volume {volume}");
        }
        for (id, p) in &cfg.processors {
            if let otelwatch::processors::ProcessorConfig::IForest(f) = p {
                assert!(
                    f.model_path.starts_with(&format!("{data_dir}/")),
                    "{n}: {id}.model_path {} is not on its volume",
                    f.model_path
                );
            }
        }
        for (id, e) in &cfg.exporters {
            if let otelwatch::exporters::ExporterConfig::Elasticsearch(es) = e {
                let dir = es.queue.directory.as_deref().unwrap_or_default();
                assert!(
                    dir.starts_with(&format!("{data_dir}/")),
                    "{n}: {id}.queue.directory {dir:?} is not on its volume"
                );
                assert_eq!(
                    host_port(&es.endpoints[0]),
                    ("elasticsearch".into(), 9200),
                    "{n}: {id}"
                );
            }
        }
        parsed.insert(n.clone(), (env, cfg));
    }

    // The aggregator: window records in over OTLP/gRPC, joined, judged, into Elasticsearch.
    let (agg_env, agg) = &parsed["otelwatch-incidents"];
    assert_eq!(
        host_port(&agg_env["ES_URL"]),
        ("elasticsearch".into(), 9200)
    );
    let agg_grpc = otlp_ports(agg)
        .0
        .expect("the aggregator's OTLP/gRPC receiver");
    let judged = agg.pipelines.iter().any(|p| {
        p.signal == otelwatch::pipeline::DataKind::Logs
            && p.processors
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                == ["records", "incidents"]
            && p.exporters.iter().any(|e| e.kind == "elasticsearch")
    });
    assert!(
        judged,
        "otelwatch-incidents: a logs pipeline [records, incidents] into elasticsearch"
    );
    assert!(
        svc("otelwatch-incidents")["depends_on"]["elasticsearch"].is_mapping(),
        "otelwatch-incidents waits for elasticsearch"
    );

    // The instances: forward to the collector, windows to the aggregator.
    let instances: Vec<&String> = parsed
        .keys()
        .filter(|n| n.as_str() != "otelwatch-incidents")
        .collect();
    let mut instance_ids = Vec::new();
    let mut instance_grpc = BTreeMap::new();
    for n in &instances {
        let (env, cfg) = &parsed[*n];
        let (h, p) = host_port(&env["OTELWATCH_FORWARD"]);
        assert_eq!((h.as_str(), p), ("otel-collector", collector_grpc), "{n}");
        assert_eq!(
            otlp_exporter(cfg, "otlp/collector").endpoint,
            env["OTELWATCH_FORWARD"],
            "{n}"
        );
        let to_agg = otlp_exporter(cfg, "otlp/incidents");
        assert_eq!(
            host_port(&to_agg.endpoint),
            ("otelwatch-incidents".into(), agg_grpc),
            "{n}: otlp/incidents"
        );
        assert!(
            to_agg.tls.as_ref().is_some_and(|t| t.insecure),
            "{n}: the aggregator listens in plaintext"
        );
        let detect = cfg
            .pipelines
            .iter()
            .find(|p| p.id == "traces/detect")
            .unwrap_or_else(|| panic!("{n}: no traces/detect"));
        assert!(detect
            .exporters
            .iter()
            .any(|e| e.to_string() == "otlp/incidents"));
        instance_ids.push(env.get("OTELWATCH_INSTANCE").cloned().unwrap_or_default());
        instance_grpc.insert(n.to_string(), otlp_ports(cfg).0.expect("OTLP/gRPC"));
    }
    let mut distinct = instance_ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        instance_ids.len(),
        "each instance names itself apart: {instance_ids:?}"
    );

    // The gateway: the Collector, routing by service over every instance, where each listens.
    let gw = svc("otelwatch-gateway");
    assert!(
        gw["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("otel/opentelemetry-collector-contrib:")),
        "otelwatch-gateway: the Collector (contrib) image"
    );
    let (file, text) = mounted_config("otelwatch-gateway", gw);
    let gcfg: Value = serde_norway::from_str(&text).unwrap();
    let lb = &gcfg["exporters"]["loadbalancing"];
    assert_eq!(lb["routing_key"].as_str(), Some("service"), "{file}");
    let mut backends: Vec<(String, u16)> = lb["resolver"]["static"]["hostnames"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{file}: a static resolver"))
        .iter()
        .map(|h| host_port(h.as_str().unwrap()))
        .collect();
    backends.sort();
    let mut want: Vec<(String, u16)> = instance_grpc.into_iter().collect();
    want.sort();
    assert_eq!(
        backends, want,
        "{file}: every instance, on its OTLP/gRPC port"
    );
    for pipeline in ["traces", "metrics", "logs"] {
        let p = &gcfg["service"]["pipelines"][pipeline];
        assert!(
            p["exporters"]
                .as_sequence()
                .is_some_and(|e| e.iter().any(|e| e.as_str() == Some("loadbalancing"))),
            "{file}: {pipeline} through loadbalancing"
        );
    }
    let gw_grpc = port_from(
        &gcfg,
        &["receivers", "otlp", "protocols", "grpc", "endpoint"],
    );
    let gw_http = port_from(
        &gcfg,
        &["receivers", "otlp", "protocols", "http", "endpoint"],
    );
    let published: Vec<u16> = gw["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            p.as_str()
                .unwrap()
                .split(':')
                .nth(1)
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    for p in [gw_grpc, gw_http] {
        assert!(
            published.contains(&p),
            "otelwatch-gateway: {p} not published"
        );
    }
    for p in &published {
        assert!(
            [gw_grpc, gw_http].contains(p),
            "otelwatch-gateway publishes {p}, where nothing listens"
        );
    }
}
