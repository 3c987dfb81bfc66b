//! Exporter `otlp`: OTLP/gRPC to a downstream collector. This is how otelwatch sits between the
//! services and their collector: what arrived as protobuf is sent on as the same bytes.
//!
//! ```yaml
//! exporters:
//!   otlp/collector:
//!     endpoint: localhost:14317     # or http://host:port, or https://host:port for TLS
//!     compression: gzip             # gzip (default), zstd or none
//!     tls: { ca_file: ca.pem }      # TLS (see config::tls); without `tls`, plaintext
//!     timeout: 5s
//!     max_request_size: 4194304     # bytes; larger requests are split (the Collector's limit)
//!     headers: { x-tenant: acme }
//!     retry_on_failure: { initial_interval: 1s, max_elapsed_time: 300s }
//!     sending_queue: { num_consumers: 10, queue_size: 1000 }
//! ```
//!
//! TLS is on when the endpoint says `https://`, or when a `tls` section is given without
//! `insecure: true`. Unlike the Collector, a bare `host:port` with no `tls` section is plaintext:
//! the usual place of otelwatch is next to its collector, and a silent switch to TLS would
//! break every existing plaintext setup.

use super::framework::{Delivered, Export, ExportError, QueueSettings, RetrySettings, RunSettings};
use crate::config::decode::decode_section;
use crate::config::duration::ConfigDuration;
use crate::config::error::ConfigError;
use crate::config::listen::parse_endpoint;
use crate::config::secret::Secret;
use crate::config::tls::{ClientTls, TlsError};
use crate::otlp::codec::ClientCodec;
use crate::otlp::split::parts_to_send;
use crate::otlp::status::retry_delay;
use crate::otlp::Signal;
use crate::pipeline::DataKind;
use crate::pipeline::{Batch, Payload};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::str::FromStr;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpExporterConfig {
    /// `host:port`, `http://host:port` or `https://host:port` of the downstream OTLP/gRPC server.
    pub endpoint: String,
    pub compression: Compression,
    pub tls: Option<ClientTls>,
    /// Per attempt.
    pub timeout: ConfigDuration,
    /// The largest request the downstream takes (bytes, before compression); a larger batch
    /// is split into several requests, by resource, scope and item (`otlp::split`).
    pub max_request_size: usize,
    /// Extra gRPC metadata sent with every request.
    /// Values are kept as secrets (never printed): they often carry credentials.
    pub headers: BTreeMap<String, Secret>,
    pub retry_on_failure: RetrySettings,
    pub sending_queue: QueueSettings,
}

impl Default for OtlpExporterConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            compression: Compression::Gzip,
            tls: None,
            timeout: ConfigDuration::from_secs(5),
            max_request_size: 4 * 1024 * 1024,
            headers: BTreeMap::new(),
            retry_on_failure: RetrySettings::default(),
            sending_queue: QueueSettings::default(),
        }
    }
}

impl crate::exporters::ExporterType for OtlpExporterConfig {
    type Exporter = OtlpExporter;
    const NAME: &'static str = "otlp";

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if cfg.endpoint.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.endpoint"),
                "required: host:port of the downstream collector",
            ));
        } else if let Err(e) = cfg.uri() {
            errors.push(ConfigError::new(format!("{path}.endpoint"), e));
        }
        if let Some(tls) = &cfg.tls {
            tls.validate(&format!("{path}.tls"), &mut errors);
        }
        if cfg.max_request_size < 1024 {
            errors.push(ConfigError::new(
                format!("{path}.max_request_size"),
                "must be at least 1024 bytes",
            ));
        }
        for k in cfg.headers.keys() {
            if MetadataKey::<tonic::metadata::Ascii>::from_str(&k.to_ascii_lowercase()).is_err() {
                errors.push(ConfigError::new(
                    format!("{path}.headers.{k}"),
                    "not a valid gRPC metadata key",
                ));
            }
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
        Ok(OtlpExporter::new(self)?)
    }

    fn run_settings(&self) -> RunSettings {
        RunSettings {
            // Only the received bytes are sent on.
            encoded_only: true,
            // Per request, by the exporter: a split batch is several requests.
            timeout: None,
            ..RunSettings::remote(
                &self.sending_queue,
                &self.retry_on_failure,
                self.timeout.get(),
            )
        }
    }
}

impl OtlpExporterConfig {
    /// The endpoint as a URI: `https://` when TLS is on, else `http://`.
    pub fn uri(&self) -> Result<String, String> {
        let e = self.endpoint.trim();
        let insecure = self.tls.as_ref().map(|t| t.insecure);
        let (hostport, tls) = if let Some(rest) = e.strip_prefix("https://") {
            if insecure == Some(true) {
                return Err(format!(
                    "{e:?} asks for TLS but tls.insecure is true; use http:// or drop insecure"
                ));
            }
            (rest, true)
        } else if let Some(rest) = e.strip_prefix("http://") {
            if insecure == Some(false) {
                return Err(format!(
                    "{e:?} is plaintext but a tls section is set; use https:// or host:port, or tls.insecure: true"
                ));
            }
            (rest, false)
        } else {
            (e, insecure == Some(false))
        };
        let hostport = hostport.trim_end_matches('/');
        parse_endpoint(hostport).map_err(|e| e.to_string())?;
        Ok(format!(
            "{}://{hostport}",
            if tls { "https" } else { "http" }
        ))
    }
}

pub struct OtlpExporter {
    channel: Channel,
    max_request_size: usize,
    /// Per request.
    timeout: std::time::Duration,
    compression: Option<CompressionEncoding>,
    headers: MetadataMap,
}

#[derive(Debug, thiserror::Error)]
pub enum OtlpExporterError {
    #[error("invalid endpoint: {0}")]
    Endpoint(String),
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
}

impl OtlpExporter {
    /// Connects lazily: a collector that is down at start delays delivery, it does not stop
    /// otelwatch.
    pub fn new(cfg: &OtlpExporterConfig) -> Result<Self, OtlpExporterError> {
        let uri = cfg.uri().map_err(OtlpExporterError::Endpoint)?;
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| OtlpExporterError::Endpoint(e.to_string()))?
            .tcp_nodelay(true)
            .connect_timeout(cfg.timeout.get());
        if uri.starts_with("https://") {
            let tls = crate::config::tls::tonic_client(&cfg.tls.clone().unwrap_or_default())?;
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| TlsError::Setup(e.to_string()))?;
        }
        let channel = endpoint.connect_lazy();
        let mut headers = MetadataMap::new();
        for (k, v) in &cfg.headers {
            if let (Ok(k), Ok(v)) = (
                MetadataKey::from_str(&k.to_ascii_lowercase()),
                MetadataValue::from_str(v.expose()),
            ) {
                headers.insert(k, v);
            }
        }
        Ok(Self {
            channel,
            max_request_size: cfg.max_request_size,
            timeout: cfg.timeout.get(),
            compression: match cfg.compression {
                Compression::Gzip => Some(CompressionEncoding::Gzip),
                Compression::Zstd => Some(CompressionEncoding::Zstd),
                Compression::None => None,
            },
            headers,
        })
    }

    /// Sends a request, split first if it is larger than the downstream takes. A part that
    /// fails fails the batch (it is retried whole: parts already sent are sent again).
    async fn send<S: Signal>(&self, body: Bytes) -> Result<Delivered, ExportError> {
        let Some(parts) = parts_to_send(&body, self.max_request_size) else {
            return self.send_one::<S>(body).await;
        };
        let mut delivered = Delivered::default();
        for part in parts {
            delivered.rejected += self.send_one::<S>(part.into()).await?.rejected;
        }
        Ok(delivered)
    }

    async fn send_one<S: Signal>(&self, body: Bytes) -> Result<Delivered, ExportError> {
        let t = self.timeout;
        tokio::time::timeout(t, self.call::<S>(body))
            .await
            .unwrap_or_else(|_| Err(ExportError::retryable(format!("timed out after {t:?}"))))
    }

    async fn call<S: Signal>(&self, body: Bytes) -> Result<Delivered, ExportError> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        if let Some(c) = self.compression {
            grpc = grpc.send_compressed(c);
        }
        grpc = grpc
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(usize::MAX);
        grpc.ready()
            .await
            .map_err(|e| ExportError::retryable(format!("connecting: {e}")))?;
        let mut req = tonic::Request::new(body);
        *req.metadata_mut() = self.headers.clone();
        let path = http::uri::PathAndQuery::from_static(S::GRPC_PATH);
        match grpc
            .unary(req, path, ClientCodec::<S::Response>::default())
            .await
        {
            Ok(resp) => {
                let (rejected, message) = S::rejected_in(resp.get_ref());
                if rejected > 0 {
                    tracing::warn!(rejected, %message, "downstream rejected part of a batch");
                }
                Ok(Delivered {
                    rejected: rejected.max(0) as usize,
                })
            }
            Err(status) => Err(classify(&status)),
        }
    }
}

/// OTLP's rule: these codes are retryable; RESOURCE_EXHAUSTED only when the server says when.
pub fn classify(status: &tonic::Status) -> ExportError {
    let message = format!("{:?}: {}", status.code(), status.message());
    let after = retry_delay(status);
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => ExportError::Retryable { message, after },
        Code::ResourceExhausted if after.is_some() => ExportError::Retryable { message, after },
        _ => ExportError::Permanent { message },
    }
}

/// The batch's received bytes, or the payload encoded (`msg` is called only then: reading a
/// traces payload held as bytes would decode it).
fn encoded<'a, S: Signal>(batch: &Batch, msg: impl FnOnce() -> &'a S) -> Bytes {
    batch
        .encoded
        .clone()
        .unwrap_or_else(|| msg().encode_to_vec().into())
}

impl Export for OtlpExporter {
    async fn export(&self, batch: &Batch) -> Result<Delivered, ExportError> {
        match &batch.payload {
            Payload::Traces(t) => {
                self.send::<ExportTraceServiceRequest>(encoded(batch, || t.request()))
                    .await
            }
            Payload::Metrics(m) => {
                self.send::<ExportMetricsServiceRequest>(encoded(batch, || m.as_ref()))
                    .await
            }
            Payload::Logs(l) => {
                self.send::<ExportLogsServiceRequest>(encoded(batch, || l.as_ref()))
                    .await
            }
            Payload::Windows(_) | Payload::Incidents(_) => {
                let Some(logs) = crate::otlp::records::as_logs(&batch.payload) else {
                    return Ok(Delivered::default());
                };
                self.send::<ExportLogsServiceRequest>(prost::Message::encode_to_vec(&logs).into())
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::status::RpcStatus;
    use std::time::Duration;

    #[test]
    fn classification_follows_otlp() {
        assert!(matches!(
            classify(&tonic::Status::unavailable("x")),
            ExportError::Retryable { .. }
        ));
        assert!(matches!(
            classify(&tonic::Status::invalid_argument("x")),
            ExportError::Permanent { .. }
        ));
        assert!(matches!(
            classify(&tonic::Status::resource_exhausted("x")),
            ExportError::Permanent { .. }
        ));
        let throttled = RpcStatus::new(Code::ResourceExhausted, "slow down")
            .with_retry_delay(Duration::from_secs(2))
            .into_tonic();
        assert_eq!(
            classify(&throttled),
            ExportError::Retryable {
                message: "ResourceExhausted: slow down".into(),
                after: Some(Duration::from_secs(2))
            }
        );
    }

    #[test]
    fn endpoints_are_checked() {
        let mut c = OtlpExporterConfig {
            endpoint: "localhost:4317".into(),
            ..Default::default()
        };
        assert_eq!(c.uri().unwrap(), "http://localhost:4317");
        c.endpoint = "http://collector:4317/".into();
        assert_eq!(c.uri().unwrap(), "http://collector:4317");
        c.endpoint = "https://collector:4317".into();
        assert_eq!(c.uri().unwrap(), "https://collector:4317");
        c.endpoint = "collector".into();
        assert!(c.uri().is_err());
        // A tls section turns TLS on for host:port, unless it says insecure.
        c.endpoint = "collector:4317".into();
        c.tls = Some(ClientTls::default());
        assert_eq!(c.uri().unwrap(), "https://collector:4317");
        c.tls = Some(ClientTls {
            insecure: true,
            ..Default::default()
        });
        assert_eq!(c.uri().unwrap(), "http://collector:4317");
        c.endpoint = "https://collector:4317".into();
        assert!(c.uri().unwrap_err().contains("insecure"));
        c.endpoint = "http://collector:4317".into();
        c.tls = Some(ClientTls::default());
        assert!(c.uri().unwrap_err().contains("plaintext"));
    }
}
