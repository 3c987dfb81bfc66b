//! Receiver `otlp`: OTLP over gRPC (default `localhost:4317`) and HTTP (default
//! `localhost:4318`) for traces, metrics and logs. Like the OpenTelemetry Collector, it listens
//! on loopback unless told otherwise (`0.0.0.0:4317` to take telemetry from other hosts), and
//! warns at start about a listener open to other hosts without TLS.
//!
//! ```yaml
//! receivers:
//!   otlp:
//!     protocols:
//!       grpc:
//!         endpoint: localhost:4317
//!         max_recv_msg_size_mib: 4
//!         auth: { authenticator: bearertokenauth }   # optional: an authenticator extension
//!         max_connections: 1024
//!         max_concurrent_streams: 100     # per connection
//!         handshake_timeout: 10s          # first bytes (or TLS) of a new connection
//!         request_timeout: 30s
//!       http:
//!         endpoint: localhost:4318
//!         max_request_body_size: 20971520
//!         max_connections: 1024
//!         handshake_timeout: 10s
//!         read_header_timeout: 10s
//!         read_timeout: 30s               # the body (408 past it)
//!         idle_timeout: 60s               # a kept-alive connection that sends nothing
//!         max_header_bytes: 65536
//! ```
//! `otlp: {}` (or no value) enables both protocols with their defaults; listing `protocols`
//! enables only the ones listed (`grpc:` with no value means "on, with defaults").

mod conn;
mod grpc;
mod http;

use crate::config::decode::decode_section;
use crate::config::duration::ConfigDuration;
use crate::config::error::ConfigError;
use crate::config::listen::{listen_addr, Listen};
use crate::config::tls::ServerTls;
use crate::extensions::{AuthSettings, Authenticator};
use crate::otlp::compression::Encoding;
use crate::otlp::Signal;
use crate::pipeline::SignalKind;
use crate::pipeline::{DataKind, FanOut, Refused};
use crate::receivers::{ReceiverContext, ReceiverError, RunningReceiver};
use crate::telemetry::{names, Counter, Telemetry};
use serde::{Deserialize, Deserializer};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How long a client is asked to wait before retrying when the pipeline is full.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// `host:port` to listen on.
    pub endpoint: String,
    /// Largest accepted message, after decompression, in MiB.
    pub max_recv_msg_size_mib: usize,
    /// Serve TLS (and require client certificates with `client_ca_file`).
    pub tls: Option<ServerTls>,
    /// Take only requests the named authenticator extension accepts.
    pub auth: Option<AuthSettings>,
    /// Connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Requests in flight on one connection (HTTP/2 streams).
    pub max_concurrent_streams: u32,
    /// A new connection must send its first bytes (or finish TLS) within this.
    pub handshake_timeout: ConfigDuration,
    /// The longest one request may take, body included.
    pub request_timeout: ConfigDuration,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            endpoint: "localhost:4317".into(),
            max_recv_msg_size_mib: 4,
            tls: None,
            auth: None,
            max_connections: 1024,
            max_concurrent_streams: 100,
            handshake_timeout: ConfigDuration::from_secs(10),
            request_timeout: ConfigDuration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `host:port` to listen on.
    pub endpoint: String,
    /// Largest accepted body in bytes, both as sent and after decompression.
    pub max_request_body_size: usize,
    /// Serve HTTPS (and require client certificates with `client_ca_file`).
    pub tls: Option<ServerTls>,
    /// Take only requests the named authenticator extension accepts.
    pub auth: Option<AuthSettings>,
    /// Connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A new connection must send its first bytes (or finish TLS) within this.
    pub handshake_timeout: ConfigDuration,
    /// A request's headers must arrive within this.
    pub read_header_timeout: ConfigDuration,
    /// A request's body must arrive within this (408 otherwise).
    pub read_timeout: ConfigDuration,
    /// A kept-alive connection that sends nothing for this long is closed.
    pub idle_timeout: ConfigDuration,
    /// The largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            endpoint: "localhost:4318".into(),
            max_request_body_size: 20 * 1024 * 1024,
            tls: None,
            auth: None,
            max_connections: 1024,
            handshake_timeout: ConfigDuration::from_secs(10),
            read_header_timeout: ConfigDuration::from_secs(10),
            read_timeout: ConfigDuration::from_secs(30),
            idle_timeout: ConfigDuration::from_secs(60),
            max_header_bytes: 64 * 1024,
        }
    }
}

/// A limit or timeout that must be above zero.
fn positive(path: &str, field: &str, value: u64, errors: &mut Vec<ConfigError>) {
    if value == 0 {
        errors.push(ConfigError::new(
            format!("{path}.{field}"),
            "must be above 0",
        ));
    }
}

/// A present key with no value (`grpc:`) means "enabled with defaults"; an absent key, disabled.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "present")]
    pub grpc: Option<GrpcConfig>,
    #[serde(default, deserialize_with = "present")]
    pub http: Option<HttpConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpReceiverConfig {
    pub protocols: Protocols,
}

impl Default for OtlpReceiverConfig {
    fn default() -> Self {
        Self {
            protocols: Protocols {
                grpc: Some(GrpcConfig::default()),
                http: Some(HttpConfig::default()),
            },
        }
    }
}

impl crate::receivers::ReceiverType for OtlpReceiverConfig {
    const NAME: &'static str = "otlp";

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        let p = &cfg.protocols;
        if p.grpc.is_none() && p.http.is_none() {
            errors.push(ConfigError::new(
                format!("{path}.protocols"),
                "enable at least one protocol (grpc or http)",
            ));
        }
        if let Some(g) = &p.grpc {
            if let Err(e) = listen_addr(&g.endpoint) {
                errors.push(ConfigError::new(
                    format!("{path}.protocols.grpc.endpoint"),
                    e,
                ));
            }
            if g.max_recv_msg_size_mib == 0 {
                errors.push(ConfigError::new(
                    format!("{path}.protocols.grpc.max_recv_msg_size_mib"),
                    "must be at least 1",
                ));
            }
            if let Some(tls) = &g.tls {
                tls.validate(&format!("{path}.protocols.grpc.tls"), &mut errors);
            }
            let p = format!("{path}.protocols.grpc");
            positive(&p, "max_connections", g.max_connections as u64, &mut errors);
            positive(
                &p,
                "max_concurrent_streams",
                g.max_concurrent_streams as u64,
                &mut errors,
            );
            for (field, d) in [
                ("handshake_timeout", g.handshake_timeout),
                ("request_timeout", g.request_timeout),
            ] {
                positive(&p, field, d.get().as_millis() as u64, &mut errors);
            }
        }
        if let Some(h) = &p.http {
            if let Err(e) = listen_addr(&h.endpoint) {
                errors.push(ConfigError::new(
                    format!("{path}.protocols.http.endpoint"),
                    e,
                ));
            }
            if let Some(tls) = &h.tls {
                tls.validate(&format!("{path}.protocols.http.tls"), &mut errors);
            }
            let p = format!("{path}.protocols.http");
            positive(&p, "max_connections", h.max_connections as u64, &mut errors);
            for (field, d) in [
                ("handshake_timeout", h.handshake_timeout),
                ("read_header_timeout", h.read_header_timeout),
                ("read_timeout", h.read_timeout),
                ("idle_timeout", h.idle_timeout),
            ] {
                positive(&p, field, d.get().as_millis() as u64, &mut errors);
            }
            if h.max_header_bytes < 8192 {
                errors.push(ConfigError::new(
                    format!("{p}.max_header_bytes"),
                    "must be at least 8192",
                ));
            }
            if h.max_request_body_size == 0 {
                errors.push(ConfigError::new(
                    format!("{path}.protocols.http.max_request_body_size"),
                    "must be at least 1",
                ));
            }
        }
        crate::config::decode::validated(cfg, errors)
    }

    fn listens(&self, path: &str) -> Vec<Listen> {
        OtlpReceiverConfig::listens(self, path)
    }

    fn authenticators(&self, path: &str) -> Vec<(String, String)> {
        let p = &self.protocols;
        [
            ("grpc", p.grpc.as_ref().and_then(|g| g.auth.as_ref())),
            ("http", p.http.as_ref().and_then(|h| h.auth.as_ref())),
        ]
        .into_iter()
        .filter_map(|(proto, auth)| {
            auth.map(|a| {
                (
                    format!("{path}.protocols.{proto}.auth.authenticator"),
                    a.authenticator.clone(),
                )
            })
        })
        .collect()
    }

    async fn start(&self, ctx: ReceiverContext) -> Result<RunningReceiver, ReceiverError> {
        start(self, ctx).await
    }
}

impl OtlpReceiverConfig {
    pub fn listens(&self, path: &str) -> Vec<Listen> {
        let mut out = Vec::new();
        if let Some(g) = &self.protocols.grpc {
            out.push(Listen {
                path: format!("{path}.protocols.grpc.endpoint"),
                endpoint: g.endpoint.clone(),
            });
        }
        if let Some(h) = &self.protocols.http {
            out.push(Listen {
                path: format!("{path}.protocols.http.endpoint"),
                endpoint: h.endpoint.clone(),
            });
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Grpc = 0,
    Http = 1,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// Counters for one transport and signal.
struct SignalCounters {
    accepted: Counter,
    refused: Counter,
    rejected: Counter,
    bad_requests: Counter,
}

/// What both transports share: where batches go and what is counted.
pub(crate) struct Shared {
    consumers: RwLock<[Option<FanOut>; 3]>,
    counters: Vec<SignalCounters>,
    /// Requests per transport and content encoding (which clients compress, and how).
    requests: Vec<Counter>,
    /// Requests refused for missing or invalid credentials, per transport.
    unauthenticated: [Counter; 2],
    memory: Arc<crate::pipeline::memory::MemoryPool>,
}

impl Shared {
    fn new(
        id: &str,
        consumers: [Option<FanOut>; 3],
        telemetry: &Telemetry,
        memory: Arc<crate::pipeline::memory::MemoryPool>,
    ) -> Self {
        let mut counters = Vec::new();
        for transport in [Transport::Grpc, Transport::Http] {
            for kind in DataKind::SIGNALS {
                let labels = vec![
                    ("receiver", id.to_string()),
                    ("transport", transport.as_str().to_string()),
                    ("signal", kind.to_string()),
                ];
                counters.push(SignalCounters {
                    accepted: telemetry.counter(
                        names::RECEIVER_ACCEPTED,
                        "Items accepted into the pipelines.",
                        labels.clone(),
                    ),
                    refused: telemetry.counter(
                        names::RECEIVER_REFUSED,
                        "Items refused with a retryable status (pipeline full or shutting down).",
                        labels.clone(),
                    ),
                    rejected: telemetry.counter(
                        names::RECEIVER_REJECTED_ITEMS,
                        "Items rejected as invalid (reported to the client as partial success).",
                        labels.clone(),
                    ),
                    bad_requests: telemetry.counter(
                        names::RECEIVER_BAD_REQUESTS,
                        "Requests refused as malformed, too large or of an unsupported type.",
                        labels,
                    ),
                });
            }
        }
        let mut requests = Vec::new();
        for transport in [Transport::Grpc, Transport::Http] {
            for encoding in Encoding::ALL {
                requests.push(telemetry.counter(
                    names::RECEIVER_REQUESTS,
                    "Requests received, by transport and content encoding.",
                    vec![
                        ("receiver", id.to_string()),
                        ("transport", transport.as_str().to_string()),
                        ("encoding", encoding.name().to_string()),
                    ],
                ));
            }
        }
        let unauthenticated = [Transport::Grpc, Transport::Http].map(|t| {
            telemetry.counter(
                names::RECEIVER_UNAUTHENTICATED,
                "Requests refused for missing or invalid credentials.",
                vec![
                    ("receiver", id.to_string()),
                    ("transport", t.as_str().to_string()),
                ],
            )
        });
        Self {
            consumers: RwLock::new(consumers),
            counters,
            requests,
            unauthenticated,
            memory,
        }
    }

    /// Counts one request by its content encoding.
    pub(crate) fn request(&self, t: Transport, encoding: Encoding) {
        let i = Encoding::ALL
            .iter()
            .position(|e| *e == encoding)
            .unwrap_or(0);
        if let Some(c) = self.requests.get(t as usize * Encoding::ALL.len() + i) {
            c.inc();
        }
    }

    /// Checks a request's credentials (when the protocol has an authenticator), counting a
    /// refusal.
    pub(crate) fn authenticate(
        &self,
        t: Transport,
        auth: Option<&Authenticator>,
        headers: &axum::http::HeaderMap,
    ) -> Result<(), crate::extensions::AuthFailure> {
        let Some(a) = auth else {
            return Ok(());
        };
        a.check(headers).inspect_err(|_| {
            self.unauthenticated[t as usize].inc();
        })
    }

    fn counters(&self, t: Transport, kind: SignalKind) -> &SignalCounters {
        &self.counters[t as usize * 3 + kind.index()]
    }

    fn has_consumer(&self, kind: SignalKind) -> bool {
        self.consumers
            .read()
            .map(|c| c[kind.index()].is_some())
            .unwrap_or(false)
    }

    pub(crate) fn bad_request(&self, t: Transport, kind: SignalKind) {
        self.counters(t, kind).bad_requests.inc();
    }

    /// Hands a checked request to the pipelines. Returns the rejected items.
    pub(crate) async fn accept<S: Signal>(
        &self,
        t: Transport,
        (mut batch, checked): (crate::pipeline::Batch, crate::otlp::Checked),
    ) -> Result<crate::otlp::Checked, Refused> {
        let c = self.counters(t, S::SIGNAL);
        c.rejected.add(checked.rejected as u64);
        if checked.accepted == 0 {
            return Ok(checked);
        }
        let fan = self
            .consumers
            .read()
            .ok()
            .and_then(|c| c[S::SIGNAL.index()].clone())
            .ok_or(Refused::ShuttingDown)?;
        batch.held = self.memory.hold(crate::pipeline::memory::estimate(&batch));
        match fan.send(batch).await {
            Ok(()) => {
                c.accepted.add(checked.accepted as u64);
                Ok(checked)
            }
            Err(e) => {
                c.refused.add(checked.accepted as u64);
                Err(e)
            }
        }
    }

    /// Drops the pipeline handles so the pipelines can drain even if a connection lingers.
    fn close(&self) {
        if let Ok(mut c) = self.consumers.write() {
            *c = [None, None, None];
        }
    }
}

/// Binds a listener now, so a taken port fails startup naming the receiver and endpoint.
pub(crate) async fn bind(
    id: &str,
    endpoint: &str,
) -> Result<tokio::net::TcpListener, ReceiverError> {
    tokio::net::TcpListener::bind(endpoint)
        .await
        .map_err(|source| ReceiverError::Bind {
            receiver: id.to_string(),
            endpoint: endpoint.to_string(),
            source,
        })
}

/// A listener other hosts can reach with neither TLS nor authentication: anyone on the
/// network can send telemetry; with authentication but no TLS, credentials cross in clear.
fn warn_if_open(id: &str, protocol: &str, endpoint: &str, tls: bool, auth: bool) {
    let open = listen_addr(endpoint).is_ok_and(|a| !a.ip().is_loopback());
    if open && !tls && !auth {
        tracing::warn!(
            receiver = id,
            protocol,
            endpoint,
            "listening beyond this host with neither TLS nor authentication: any host that reaches it can send telemetry"
        );
    } else if open && !tls {
        tracing::warn!(
            receiver = id,
            protocol,
            endpoint,
            "listening beyond this host with authentication but without TLS: credentials cross the network in clear"
        );
    }
}

/// The authenticator a protocol names (checked to exist when the config was loaded).
fn authenticator(
    id: &str,
    auth: Option<&AuthSettings>,
    ctx: &ReceiverContext,
) -> Result<Option<Arc<Authenticator>>, ReceiverError> {
    let Some(a) = auth else {
        return Ok(None);
    };
    ctx.extensions
        .authenticator(&a.authenticator)
        .map(Some)
        .ok_or_else(|| ReceiverError::Start {
            receiver: id.to_string(),
            message: format!("authenticator {:?} is not running", a.authenticator),
        })
}

pub async fn start(
    cfg: &OtlpReceiverConfig,
    ctx: ReceiverContext,
) -> Result<RunningReceiver, ReceiverError> {
    let id = ctx.id.to_string();
    let grpc_auth = cfg.protocols.grpc.as_ref().and_then(|g| g.auth.as_ref());
    let grpc_auth = authenticator(&id, grpc_auth, &ctx)?;
    let http_auth = cfg.protocols.http.as_ref().and_then(|h| h.auth.as_ref());
    let http_auth = authenticator(&id, http_auth, &ctx)?;
    let shared = Arc::new(Shared::new(
        &id,
        ctx.consumers,
        &ctx.telemetry,
        ctx.memory.clone(),
    ));
    let mut tasks = Vec::new();
    if let Some(g) = &cfg.protocols.grpc {
        let auth = grpc_auth;
        warn_if_open(&id, "grpc", &g.endpoint, g.tls.is_some(), auth.is_some());
        tasks.push(grpc::start(&id, g, shared.clone(), auth, ctx.stop.clone()).await?);
    }
    if let Some(h) = &cfg.protocols.http {
        let auth = http_auth;
        warn_if_open(&id, "http", &h.endpoint, h.tls.is_some(), auth.is_some());
        tasks.push(http::start(&id, h, shared.clone(), auth, ctx.stop.clone()).await?);
    }
    let task = tokio::spawn(async move {
        for t in tasks {
            let _ = t.await;
        }
        shared.close();
    });
    Ok(RunningReceiver {
        task,
        finite: false,
    })
}
