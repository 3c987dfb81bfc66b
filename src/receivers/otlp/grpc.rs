//! OTLP/gRPC: the three `Export` services on one listener.

use super::{Shared, Transport, RETRY_AFTER};
use crate::extensions::Authenticator;
use crate::otlp::codec::ServerCodec;
use crate::otlp::compression::Encoding;
use crate::otlp::status::RpcStatus;
use crate::otlp::Signal;
use crate::pipeline::{Refused, SignalKind};
use crate::receivers::ReceiverError;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Status};

/// One signal's `Export` service, taking requests as raw bytes (see `otlp::codec`).
struct GrpcSignal<S> {
    shared: Arc<Shared>,
    max_recv: usize,
    auth: Option<Arc<Authenticator>>,
    _signal: PhantomData<fn() -> S>,
}

impl<S> Clone for GrpcSignal<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            max_recv: self.max_recv,
            auth: self.auth.clone(),
            _signal: PhantomData,
        }
    }
}

impl<S: Signal> NamedService for GrpcSignal<S> {
    const NAME: &'static str = S::SERVICE;
}

impl<S: Signal, B> Service<http::Request<B>> for GrpcSignal<S>
where
    B: tonic::codegen::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if req.uri().path() != S::GRPC_PATH {
                return Ok(Status::unimplemented("unknown method").into_http());
            }
            // Credentials first: a refused request's message is never read.
            let auth = this.auth.as_deref();
            if let Err(f) = this
                .shared
                .authenticate(Transport::Grpc, auth, req.headers())
            {
                return Ok(Status::unauthenticated(f.message()).into_http());
            }
            // An unsupported encoding is refused by tonic below, and not counted.
            let encoding = req
                .headers()
                .get("grpc-encoding")
                .and_then(|v| v.to_str().ok());
            if let Ok(e) = Encoding::from_header(encoding) {
                this.shared.request(Transport::Grpc, e);
            }
            let mut grpc = tonic::server::Grpc::new(ServerCodec::<S::Response>::default())
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(this.max_recv);
            let unary = Unary::<S> {
                shared: this.shared.clone(),
                _signal: PhantomData,
            };
            let mut res = grpc.unary(unary, req).await;
            too_large_is_resource_exhausted(&mut res, &this.shared, S::SIGNAL);
            Ok(res)
        })
    }
}

/// tonic reports an uncompressed message over the limit as OUT_OF_RANGE, a code OTLP clients
/// retry. gRPC's own servers use RESOURCE_EXHAUSTED (without RetryInfo: not retryable under
/// OTLP), as tonic already does for a compressed one.
fn too_large_is_resource_exhausted(
    res: &mut http::Response<tonic::body::Body>,
    shared: &Shared,
    kind: SignalKind,
) {
    let headers = res.headers_mut();
    let status = headers.get("grpc-status").and_then(|v| v.to_str().ok());
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let out_of_range = status == Some(&(Code::OutOfRange as i32).to_string());
    let exhausted = status == Some(&(Code::ResourceExhausted as i32).to_string());
    let too_large = ["too%20large", "too large", "size%20limit", "size limit"]
        .iter()
        .any(|m| message.contains(m));
    if !(too_large && (out_of_range || exhausted)) {
        return;
    }
    shared.bad_request(Transport::Grpc, kind);
    if out_of_range {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from(Code::ResourceExhausted as i32),
        );
    }
}

struct Unary<S> {
    shared: Arc<Shared>,
    _signal: PhantomData<fn() -> S>,
}

impl<S: Signal> UnaryService<Bytes> for Unary<S> {
    type Response = S::Response;
    type Future = BoxFuture<tonic::Response<S::Response>, Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            let raw = request.into_inner();
            let received = match S::receive(raw) {
                Ok(r) => r,
                Err(e) => {
                    shared.bad_request(Transport::Grpc, S::SIGNAL);
                    return Err(Status::invalid_argument(format!(
                        "malformed OTLP {} request: {e}",
                        S::SIGNAL
                    )));
                }
            };
            match shared.accept::<S>(Transport::Grpc, received).await {
                Ok(checked) => Ok(tonic::Response::new(S::response(
                    checked.rejected,
                    checked.reason,
                ))),
                Err(Refused::Full) => Err(RpcStatus::new(
                    Code::ResourceExhausted,
                    "otelwatch: the pipeline is full, retry later",
                )
                .with_retry_delay(RETRY_AFTER)
                .into_tonic()),
                Err(Refused::ShuttingDown) => Err(RpcStatus::new(
                    Code::Unavailable,
                    "otelwatch is shutting down, retry later",
                )
                .with_retry_delay(RETRY_AFTER)
                .into_tonic()),
            }
        })
    }
}

pub(super) async fn start(
    id: &str,
    cfg: &super::GrpcConfig,
    shared: Arc<Shared>,
    auth: Option<Arc<Authenticator>>,
    stop: CancellationToken,
) -> Result<JoinHandle<()>, ReceiverError> {
    let listener = super::bind(id, &cfg.endpoint).await?;
    let local = listener.local_addr().ok();
    let max_recv = cfg.max_recv_msg_size_mib.saturating_mul(1024 * 1024);
    fn svc<S>(
        shared: &Arc<Shared>,
        max_recv: usize,
        auth: &Option<Arc<Authenticator>>,
    ) -> GrpcSignal<S> {
        GrpcSignal {
            shared: shared.clone(),
            max_recv,
            auth: auth.clone(),
            _signal: PhantomData,
        }
    }
    let mut routes = tonic::service::RoutesBuilder::default();
    if shared.has_consumer(SignalKind::Traces) {
        routes.add_service(svc::<ExportTraceServiceRequest>(&shared, max_recv, &auth));
    }
    if shared.has_consumer(SignalKind::Metrics) {
        routes.add_service(svc::<ExportMetricsServiceRequest>(&shared, max_recv, &auth));
    }
    if shared.has_consumer(SignalKind::Logs) {
        routes.add_service(svc::<ExportLogsServiceRequest>(&shared, max_recv, &auth));
    }
    let mut server = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(cfg.max_concurrent_streams))
        .timeout(cfg.request_timeout.get())
        // Dead peers are found by pings, not left holding their streams.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(60)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)));
    if let Some(tls) = &cfg.tls {
        let start_err = |message: String| ReceiverError::Start {
            receiver: id.to_string(),
            message,
        };
        let tls = crate::config::tls::tonic_server(tls).map_err(|e| start_err(e.to_string()))?;
        server = server
            .tls_config(tls)
            .map_err(|e| start_err(format!("TLS: {e}")))?;
    }
    let limits = super::conn::ConnLimits {
        max_connections: cfg.max_connections,
        handshake_timeout: cfg.handshake_timeout.get(),
        idle_timeout: None,
    };
    tracing::info!(receiver = id, endpoint = ?local, tls = cfg.tls.is_some(), auth = auth.as_ref().map(|a| a.id()), "OTLP/gRPC receiver listening");
    let id = id.to_string();
    Ok(tokio::spawn(async move {
        // Nodelay, connection slots and the handshake deadline are set on accepted sockets
        // here: tonic applies its own socket options only to listeners it binds itself.
        let incoming = super::conn::Acceptor::new(listener, limits).into_stream();
        let result = server
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await;
        if let Err(e) = result {
            tracing::error!(receiver = %id, error = %e, "OTLP/gRPC server failed");
        }
    }))
}
