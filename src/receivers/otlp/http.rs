//! OTLP/HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs`, protobuf or JSON, optionally
//! compressed. Errors carry a `google.rpc.Status` body in the request's encoding.

use super::{Shared, Transport, RETRY_AFTER};
use crate::extensions::Authenticator;
use crate::otlp::compression::{self, DecompressError, Encoding};
use crate::otlp::status::RpcStatus;
use crate::otlp::Signal;
use crate::pipeline::{Refused, SignalKind};
use crate::receivers::ReceiverError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct HttpState {
    shared: Arc<Shared>,
    max_body: usize,
    auth: Option<Arc<Authenticator>>,
    read_timeout: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }

    fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let mime = ct.split(';').next()?.trim().to_ascii_lowercase();
        match mime.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Format::Protobuf),
            "application/json" => Some(Format::Json),
            _ => None,
        }
    }
}

fn error_response(
    status: StatusCode,
    format: Format,
    code: tonic::Code,
    message: String,
    retry_after: bool,
) -> Response {
    let mut st = RpcStatus::new(code, message);
    if retry_after {
        st = st.with_retry_delay(RETRY_AFTER);
    }
    let body = match format {
        Format::Protobuf => st.encode_to_vec(),
        Format::Json => st.to_json(),
    };
    let mut res = (status, body).into_response();
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if retry_after {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(RETRY_AFTER.as_secs().max(1)),
        );
    }
    res
}

async fn handle<S: Signal>(State(st): State<HttpState>, req: Request) -> Response {
    let shared = &st.shared;
    // Credentials first: a refused request's body is never read.
    if let Err(f) = shared.authenticate(Transport::Http, st.auth.as_deref(), req.headers()) {
        let format = Format::from_headers(req.headers()).unwrap_or(Format::Protobuf);
        let mut res = error_response(
            StatusCode::UNAUTHORIZED,
            format,
            tonic::Code::Unauthenticated,
            f.message().into(),
            false,
        );
        if let Some(challenge) = st
            .auth
            .as_ref()
            .and_then(|a| HeaderValue::from_str(&a.challenge()).ok())
        {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        return res;
    }
    let (format, received) = match read_request::<S>(&st, req).await {
        Ok(r) => r,
        Err(Bad(status, format, message)) => {
            shared.bad_request(Transport::Http, S::SIGNAL);
            let code = tonic::Code::InvalidArgument;
            return error_response(status, format, code, message, false);
        }
    };
    match shared.accept::<S>(Transport::Http, received).await {
        Ok(checked) => {
            let resp = S::response(checked.rejected, checked.reason);
            let body = match format {
                Format::Protobuf => resp.encode_to_vec(),
                Format::Json => serde_json::to_vec(&resp).unwrap_or_else(|_| b"{}".to_vec()),
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, format.content_type())],
                body,
            )
                .into_response()
        }
        Err(Refused::Full) => error_response(
            StatusCode::TOO_MANY_REQUESTS,
            format,
            tonic::Code::ResourceExhausted,
            "otelwatch: the pipeline is full, retry later".into(),
            true,
        ),
        Err(Refused::ShuttingDown) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format,
            tonic::Code::Unavailable,
            "otelwatch is shutting down, retry later".into(),
            true,
        ),
    }
}

/// A request refused before it reached the pipelines: the HTTP status, the format to answer
/// in, and why.
struct Bad(StatusCode, Format, String);

/// Reads, decompresses and checks one export request; the protobuf bytes are kept for
/// forwarding as they are.
async fn read_request<S: Signal>(
    st: &HttpState,
    req: Request,
) -> Result<(Format, (crate::pipeline::Batch, crate::otlp::Checked)), Bad> {
    let Some(format) = Format::from_headers(req.headers()) else {
        let got = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_else(|| "none".into());
        let message = format!(
            "unsupported Content-Type {got:?}: use application/x-protobuf or application/json"
        );
        return Err(Bad(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Format::Protobuf,
            message,
        ));
    };
    let bad = |status: StatusCode, message: String| Bad(status, format, message);
    let content_encoding = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let encoding = Encoding::from_header(content_encoding)
        .map_err(|e| bad(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()))?;
    st.shared.request(Transport::Http, encoding);
    let read = axum::body::to_bytes(req.into_body(), st.max_body);
    let body = tokio::time::timeout(st.read_timeout, read)
        .await
        .map_err(|_| {
            let message = format!(
                "the request body did not arrive within {:?}",
                st.read_timeout
            );
            bad(StatusCode::REQUEST_TIMEOUT, message)
        })?
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                let message = format!("request body is larger than {} bytes", st.max_body);
                bad(StatusCode::PAYLOAD_TOO_LARGE, message)
            } else {
                bad(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read request body: {e}"),
                )
            }
        })?;
    let body = compression::decompress(encoding, body, st.max_body).map_err(|e| match e {
        DecompressError::TooLarge { .. } => bad(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        _ => bad(StatusCode::BAD_REQUEST, e.to_string()),
    })?;
    let received = match format {
        Format::Protobuf => S::receive(body).map_err(|e| e.to_string()),
        Format::Json => serde_json::from_slice::<S>(&body)
            .map(|mut msg| {
                let checked = msg.check();
                (crate::otlp::batch_from(msg, None, &checked), checked)
            })
            .map_err(|e| e.to_string()),
    };
    let received = received.map_err(|e| {
        let message = format!("malformed OTLP {} request: {e}", S::SIGNAL);
        bad(StatusCode::BAD_REQUEST, message)
    })?;
    Ok((format, received))
}

pub(super) async fn start(
    id: &str,
    cfg: &super::HttpConfig,
    shared: Arc<Shared>,
    auth: Option<Arc<Authenticator>>,
    stop: CancellationToken,
) -> Result<JoinHandle<()>, ReceiverError> {
    let listener = super::bind(id, &cfg.endpoint).await?;
    let local = listener.local_addr().ok();
    let mut router: Router<HttpState> = Router::new();
    if shared.has_consumer(SignalKind::Traces) {
        router = router.route(
            ExportTraceServiceRequest::HTTP_PATH,
            post(handle::<ExportTraceServiceRequest>),
        );
    }
    if shared.has_consumer(SignalKind::Metrics) {
        router = router.route(
            ExportMetricsServiceRequest::HTTP_PATH,
            post(handle::<ExportMetricsServiceRequest>),
        );
    }
    if shared.has_consumer(SignalKind::Logs) {
        router = router.route(
            ExportLogsServiceRequest::HTTP_PATH,
            post(handle::<ExportLogsServiceRequest>),
        );
    }
    let auth_id = auth.as_ref().map(|a| a.id().to_string());
    let app = router.with_state(HttpState {
        shared,
        max_body: cfg.max_request_body_size,
        auth,
        read_timeout: cfg.read_timeout.get(),
    });
    let app = app.fallback(|| async {
        (StatusCode::NOT_FOUND, Body::from("not an OTLP path\n")).into_response()
    });
    let tls = match &cfg.tls {
        Some(t) => {
            Some(
                crate::config::tls::rustls_server(t).map_err(|e| ReceiverError::Start {
                    receiver: id.to_string(),
                    message: e.to_string(),
                })?,
            )
        }
        None => None,
    };
    let limits = Limits {
        conn: super::conn::ConnLimits {
            max_connections: cfg.max_connections,
            handshake_timeout: cfg.handshake_timeout.get(),
            idle_timeout: Some(cfg.idle_timeout.get()),
        },
        read_header_timeout: cfg.read_header_timeout.get(),
        max_header_bytes: cfg.max_header_bytes,
    };
    tracing::info!(receiver = id, endpoint = ?local, tls = tls.is_some(), auth = auth_id, "OTLP/HTTP receiver listening");
    Ok(tokio::spawn(serve(listener, app, tls, limits, stop)))
}

struct Limits {
    conn: super::conn::ConnLimits,
    read_header_timeout: std::time::Duration,
    max_header_bytes: usize,
}

/// HTTP/1.1, plain or TLS: each connection in its own task (a slow client holds up no one),
/// within the connection limits; on stop, no new connections are taken and the open ones
/// finish their requests.
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    stop: CancellationToken,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let connections = super::conn::Acceptor::new(listener, limits.conn);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let handshake = limits.conn.handshake_timeout;
    loop {
        let conn = tokio::select! {
            c = connections.accept() => c,
            _ = stop.cancelled() => break,
        };
        let peer = conn.peer();
        let (acceptor, app, watcher) = (acceptor.clone(), app.clone(), graceful.watcher());
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.read_header_timeout)
            .max_buf_size(limits.max_header_bytes);
        tokio::spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new(app);
            let result = match acceptor {
                None => {
                    let conn = http1.serve_connection(hyper_util::rt::TokioIo::new(conn), service);
                    watcher.watch(conn).await
                }
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(handshake, acceptor.accept(conn)).await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(?peer, error = %e, "OTLP/HTTP: TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(?peer, "OTLP/HTTP: TLS handshake timed out");
                            return;
                        }
                    };
                    let conn =
                        http1.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(?peer, error = %e, "OTLP/HTTP: connection ended with an error");
            }
        });
    }
    drop(connections);
    graceful.shutdown().await;
}
