//! Exporter `otlphttp`: OTLP/HTTP to a downstream collector, for collectors reached over HTTP
//! (behind an HTTP load balancer or gateway, or with only the HTTP protocol open).
//!
//! ```yaml
//! exporters:
//!   otlphttp/collector:
//!     endpoint: http://collector:4318   # /v1/traces, /v1/metrics, /v1/logs are appended
//!     traces_endpoint: ""               # a full URL instead, per signal (also metrics_, logs_)
//!     encoding: proto                   # proto (default) | json
//!     compression: gzip                 # gzip (default) | zstd | none
//!     timeout: 5s
//!     headers: { x-tenant: acme }
//!     tls: { ca_file: ca.pem, cert_file: client.pem, key_file: client.key }  # for https://
//!     retry_on_failure: { initial_interval: 1s, max_elapsed_time: 300s }
//!     sending_queue: { num_consumers: 10, queue_size: 1000 }
//!     max_request_size: 20971520        # protobuf bodies above it are split (the Collector's limit)
//! ```
//!
//! With `encoding: proto` the received bytes go on unchanged, split on the wire when larger
//! than `max_request_size` (each part keeps its resource and scope). Answers follow the OTLP/HTTP
//! specification: 2xx is delivered (a partial success is logged and counted), 429, 502, 503 and
//! 504 are retried after `Retry-After` when given, any other status is a permanent failure whose
//! `google.rpc.Status` message is reported; connection failures are retried.

use super::framework::{Delivered, Export, ExportError, QueueSettings, RetrySettings, RunSettings};
use super::otlp::Compression;
use crate::config::decode::decode_section;
use crate::config::duration::ConfigDuration;
use crate::config::error::ConfigError;
use crate::config::secret::Secret;
use crate::config::tls::{read_pem, ClientTls, TlsError};
use crate::otlp::compression::{compress, Encoding};
use crate::otlp::status::RpcStatus;
use crate::otlp::Signal;
use crate::pipeline::DataKind;
use crate::pipeline::SignalKind;
use crate::pipeline::{Batch, Payload};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    #[default]
    Proto,
    Json,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpHttpConfig {
    /// Base URL; the signal paths are appended.
    pub endpoint: String,
    pub traces_endpoint: Option<String>,
    pub metrics_endpoint: Option<String>,
    pub logs_endpoint: Option<String>,
    pub encoding: BodyEncoding,
    pub compression: Compression,
    pub timeout: ConfigDuration,
    /// Values are kept as secrets (never printed): they often carry credentials.
    pub headers: BTreeMap<String, Secret>,
    pub tls: Option<ClientTls>,
    pub retry_on_failure: RetrySettings,
    pub sending_queue: QueueSettings,
    /// Protobuf bodies larger than this (before compression) are split into several requests,
    /// by resource, scope and item (`otlp::split`); the default is the Collector's HTTP limit.
    pub max_request_size: usize,
}

impl Default for OtlpHttpConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            traces_endpoint: None,
            metrics_endpoint: None,
            logs_endpoint: None,
            encoding: BodyEncoding::Proto,
            compression: Compression::Gzip,
            timeout: ConfigDuration::from_secs(5),
            headers: BTreeMap::new(),
            tls: None,
            retry_on_failure: RetrySettings::default(),
            sending_queue: QueueSettings::default(),
            max_request_size: 20 * 1024 * 1024,
        }
    }
}

fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(format!("{url:?}: must be an http:// or https:// URL")),
        Err(e) => Err(format!("invalid URL {url:?}: {e}")),
    }
}

impl crate::exporters::ExporterType for OtlpHttpConfig {
    type Exporter = OtlpHttpExporter;
    const NAME: &'static str = "otlphttp";

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        let per_signal = [
            ("traces_endpoint", &cfg.traces_endpoint),
            ("metrics_endpoint", &cfg.metrics_endpoint),
            ("logs_endpoint", &cfg.logs_endpoint),
        ];
        if cfg.endpoint.is_empty() {
            if per_signal.iter().any(|(_, e)| e.is_none()) {
                errors.push(ConfigError::new(
                    format!("{path}.endpoint"),
                    "required (e.g. http://collector:4318), unless every signal has its own *_endpoint",
                ));
            }
        } else if let Err(e) = check_url(&cfg.endpoint) {
            errors.push(ConfigError::new(format!("{path}.endpoint"), e));
        }
        for (key, url) in per_signal {
            if let Some(Err(e)) = url.as_deref().map(check_url) {
                errors.push(ConfigError::new(format!("{path}.{key}"), e));
            }
        }
        super::http::validate_headers(path, &cfg.headers, &mut errors);
        if let Some(tls) = &cfg.tls {
            tls.validate(&format!("{path}.tls"), &mut errors);
            if tls.server_name_override.is_some() {
                errors.push(ConfigError::new(
                    format!("{path}.tls.server_name_override"),
                    "not supported by otlphttp: use the name in the endpoint URL",
                ));
            }
        }
        if cfg.max_request_size < 1024 {
            errors.push(ConfigError::new(
                format!("{path}.max_request_size"),
                "must be at least 1024",
            ));
        }
        super::framework::validate_remote(
            path,
            &cfg.timeout,
            &cfg.retry_on_failure,
            &cfg.sending_queue,
            &mut errors,
        );
        crate::config::decode::validated(cfg, errors)
    }

    const STORES_QUEUE: bool = true;

    fn accepts(&self) -> &'static [DataKind] {
        &DataKind::ALL
    }

    fn build(
        &self,
        _id: &str,
        _telemetry: &crate::telemetry::Telemetry,
    ) -> Result<Self::Exporter, crate::exporters::BuildError> {
        Ok(OtlpHttpExporter::new(self)?)
    }

    fn run_settings(&self) -> RunSettings {
        RunSettings {
            // As protobuf, only the received bytes are sent on.
            encoded_only: self.encoding == BodyEncoding::Proto,
            ..RunSettings::remote(
                &self.sending_queue,
                &self.retry_on_failure,
                self.timeout.get(),
            )
        }
    }
}

impl OtlpHttpConfig {
    /// Where one signal goes: its own endpoint, else the base URL with the signal's path.
    fn url_for<S: Signal>(&self) -> String {
        let own = match S::SIGNAL {
            SignalKind::Traces => &self.traces_endpoint,
            SignalKind::Metrics => &self.metrics_endpoint,
            SignalKind::Logs => &self.logs_endpoint,
        };
        own.clone()
            .unwrap_or_else(|| format!("{}{}", self.endpoint.trim_end_matches('/'), S::HTTP_PATH))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OtlpHttpError {
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

pub struct OtlpHttpExporter {
    client: reqwest::Client,
    urls: [String; 3],
    encoding: BodyEncoding,
    compression: Option<Encoding>,
    max_request_size: usize,
}

impl OtlpHttpExporter {
    pub fn new(cfg: &OtlpHttpConfig) -> Result<Self, OtlpHttpError> {
        let mut builder = reqwest::Client::builder()
            .default_headers(super::http::header_map(&cfg.headers))
            .timeout(cfg.timeout.get())
            .connect_timeout(cfg.timeout.get())
            .tcp_nodelay(true)
            .user_agent(concat!("otelwatch/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = cfg.tls.as_ref().filter(|t| !t.insecure) {
            if let Some(ca) = &tls.ca_file {
                let pem = read_pem(ca)?;
                let certs =
                    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| TlsError::Pem {
                        file: ca.clone(),
                        message: e.to_string(),
                    })?;
                // Only this CA: a private collector's certificate is not for the web's roots.
                builder = builder.tls_built_in_root_certs(false);
                for c in certs {
                    builder = builder.add_root_certificate(c);
                }
            }
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                let mut pem = read_pem(cert)?;
                pem.push(b'\n');
                pem.extend(read_pem(key)?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| TlsError::Pem {
                    file: cert.clone(),
                    message: e.to_string(),
                })?;
                builder = builder.identity(identity);
            }
        }
        Ok(Self {
            client: builder.build()?,
            urls: [
                cfg.url_for::<ExportTraceServiceRequest>(),
                cfg.url_for::<ExportMetricsServiceRequest>(),
                cfg.url_for::<ExportLogsServiceRequest>(),
            ],
            encoding: cfg.encoding,
            max_request_size: cfg.max_request_size,
            compression: match cfg.compression {
                Compression::Gzip => Some(Encoding::Gzip),
                Compression::Zstd => Some(Encoding::Zstd),
                Compression::None => None,
            },
        })
    }

    /// `msg` is called only when the payload must be encoded (reading a traces payload held as
    /// bytes would decode it).
    async fn send<'a, S: Signal>(
        &self,
        batch: &Batch,
        msg: impl FnOnce() -> &'a S,
    ) -> Result<Delivered, ExportError> {
        let (body, content_type): (Bytes, &'static str) = match self.encoding {
            BodyEncoding::Proto => (
                batch
                    .encoded
                    .clone()
                    .unwrap_or_else(|| msg().encode_to_vec().into()),
                "application/x-protobuf",
            ),
            BodyEncoding::Json => (
                serde_json::to_vec(msg())
                    .map_err(|e| ExportError::permanent(format!("encoding JSON: {e}")))?
                    .into(),
                "application/json",
            ),
        };
        if self.encoding == BodyEncoding::Proto {
            if let Some(parts) = crate::otlp::split::parts_to_send(&body, self.max_request_size) {
                // A part that fails fails the batch: it is retried whole (at least once).
                let mut delivered = Delivered::default();
                for part in parts {
                    let d = self.post::<S>(part.into(), content_type).await?;
                    delivered.rejected += d.rejected;
                }
                return Ok(delivered);
            }
        }
        self.post::<S>(body, content_type).await
    }

    async fn post<S: Signal>(
        &self,
        body: Bytes,
        content_type: &'static str,
    ) -> Result<Delivered, ExportError> {
        let url = &self.urls[S::SIGNAL.index()];
        let mut req = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type);
        let body =
            match self.compression {
                Some(e) => {
                    req = req.header(reqwest::header::CONTENT_ENCODING, e.name());
                    Bytes::from(compress(e, &body).map_err(|e| {
                        ExportError::permanent(format!("compressing the request: {e}"))
                    })?)
                }
                None => body,
            };
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| ExportError::retryable(format!("POST {url}: {e}")))?;
        let status = resp.status();
        let after = super::http::retry_after(resp.headers());
        let is_json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let text = resp
            .bytes()
            .await
            .map_err(|e| ExportError::retryable(format!("reading the answer of {url}: {e}")))?;
        if status.is_success() {
            return Ok(Delivered {
                rejected: rejected::<S>(&text, is_json),
            });
        }
        let message = format!("{url} answered {status}: {}", error_message(&text, is_json));
        match status.as_u16() {
            429 | 502 | 503 | 504 => Err(ExportError::Retryable { message, after }),
            _ => Err(ExportError::Permanent { message }),
        }
    }
}

/// Items the peer rejected, from its (possibly empty) success answer.
fn rejected<S: Signal>(body: &[u8], is_json: bool) -> usize {
    if body.is_empty() {
        return 0;
    }
    let decoded = if is_json {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                let p = v.get("partialSuccess")?;
                let n = ["rejectedSpans", "rejectedDataPoints", "rejectedLogRecords"]
                    .iter()
                    .find_map(|k| p.get(*k))?;
                n.as_i64()
                    .or_else(|| n.as_str().and_then(|s| s.parse().ok()))
                    .map(|n| (n, p["errorMessage"].as_str().unwrap_or("").to_string()))
            })
    } else {
        S::Response::decode(body).ok().map(|r| S::rejected_in(&r))
    };
    match decoded {
        Some((n, message)) if n > 0 => {
            tracing::warn!(rejected = n, %message, "downstream rejected part of a batch");
            n as usize
        }
        _ => 0,
    }
}

/// The `google.rpc.Status` message of an error answer, else its first characters.
fn error_message(body: &[u8], is_json: bool) -> String {
    let from_status = if is_json {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
    } else {
        RpcStatus::decode(body).ok().map(|s| s.message)
    };
    from_status
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect())
}

impl Export for OtlpHttpExporter {
    async fn export(&self, batch: &Batch) -> Result<Delivered, ExportError> {
        match &batch.payload {
            Payload::Traces(t) => self.send(batch, || t.request()).await,
            Payload::Metrics(m) => self.send(batch, || m.as_ref()).await,
            Payload::Logs(l) => self.send(batch, || l.as_ref()).await,
            Payload::Windows(_) | Payload::Incidents(_) => {
                let Some(logs) = crate::otlp::records::as_logs(&batch.payload) else {
                    return Ok(Delivered::default());
                };
                self.send(batch, || &logs).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporters::ExporterType;

    fn cfg(yaml: &str) -> Result<OtlpHttpConfig, Vec<ConfigError>> {
        OtlpHttpConfig::parse("exporters.otlphttp", serde_norway::from_str(yaml).unwrap())
    }

    #[test]
    fn urls_come_from_the_base_or_per_signal() {
        let c = cfg("endpoint: http://collector:4318/\nlogs_endpoint: https://logs.example/ingest")
            .unwrap();
        assert_eq!(
            c.url_for::<ExportTraceServiceRequest>(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            c.url_for::<ExportLogsServiceRequest>(),
            "https://logs.example/ingest"
        );
    }

    #[test]
    fn bad_settings_are_named_by_path() {
        let errs = cfg("endpoint: collector:4318\nheaders: { \"bad header\": x }\ntls: { server_name_override: x }")
            .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "exporters.otlphttp.endpoint",
                "exporters.otlphttp.headers.bad header",
                "exporters.otlphttp.tls.server_name_override"
            ]
        );
        assert!(cfg("traces_endpoint: http://a/v1/traces").is_err());
    }

    #[test]
    fn error_bodies_and_partial_success_are_read() {
        let status = RpcStatus::new(tonic::Code::InvalidArgument, "bad span").encode_to_vec();
        assert_eq!(error_message(&status, false), "bad span");
        assert_eq!(
            error_message(br#"{"code":3,"message":"bad json"}"#, true),
            "bad json"
        );
        assert_eq!(error_message(b"plain text", false), "plain text");
        let partial = ExportTraceServiceRequest::response(3, "ids".into()).encode_to_vec();
        assert_eq!(rejected::<ExportTraceServiceRequest>(&partial, false), 3);
        assert_eq!(
            rejected::<ExportTraceServiceRequest>(
                br#"{"partialSuccess":{"rejectedSpans":"2","errorMessage":"x"}}"#,
                true
            ),
            2
        );
        assert_eq!(rejected::<ExportTraceServiceRequest>(b"", false), 0);
    }
}
