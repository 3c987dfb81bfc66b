//! Accepted connections, bounded: at most `max_connections` at once per listener (the accept
//! loop waits for one to close before taking another; the kernel's backlog holds the rest),
//! `TCP_NODELAY` on every socket, and a deadline on reading: a new connection must send its
//! first bytes within `handshake_timeout`, and an open one that sends nothing for
//! `idle_timeout` is closed. So neither a stalled nor a silent client can hold a connection, a
//! task and a file descriptor forever, or stall a shutdown.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    /// `None`: an open connection may stay silent (gRPC clients keep idle channels).
    pub idle_timeout: Option<Duration>,
}

/// A connection that holds its slot and times out silent reads.
pub struct Guarded {
    inner: TcpStream,
    _slot: OwnedSemaphorePermit,
    deadline: Option<Pin<Box<Sleep>>>,
    idle: Option<Duration>,
}

impl Guarded {
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        self.inner.peer_addr().ok()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let idle = self.idle;
                    match (idle, &mut self.deadline) {
                        (Some(idle), Some(d)) => d.as_mut().reset(Instant::now() + idle),
                        (Some(idle), None) => {
                            self.deadline = Some(Box::pin(tokio::time::sleep(idle)))
                        }
                        (None, _) => self.deadline = None,
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let expired = match &mut self.deadline {
                    Some(d) => d.as_mut().poll(cx).is_ready(),
                    None => false,
                };
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client sent nothing in time",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Guarded {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Takes connections from `listener` within `limits`.
pub struct Acceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    limits: ConnLimits,
}

impl Acceptor {
    pub fn new(listener: TcpListener, limits: ConnLimits) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
        }
    }

    /// The next connection, once a slot is free. Accept errors (out of file descriptors, a
    /// connection reset before it was taken) are passed over after a short pause.
    pub async fn accept(&self) -> Guarded {
        loop {
            let Ok(slot) = self.slots.clone().acquire_owned().await else {
                // The semaphore is never closed; wait rather than spin if it were.
                std::future::pending::<()>().await;
                continue;
            };
            match self.listener.accept().await {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    return Guarded {
                        inner: tcp,
                        _slot: slot,
                        deadline: Some(Box::pin(tokio::time::sleep(self.limits.handshake_timeout))),
                        idle: self.limits.idle_timeout,
                    };
                }
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// The connections as a stream (for the gRPC server).
    pub fn into_stream(self) -> impl futures_util::Stream<Item = io::Result<Guarded>> {
        futures_util::stream::unfold(self, |acceptor| async move {
            let conn = acceptor.accept().await;
            Some((Ok(conn), acceptor))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn silent_connections_are_cut_and_slots_are_bounded() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = Arc::new(Acceptor::new(
            listener,
            ConnLimits {
                max_connections: 1,
                handshake_timeout: Duration::from_millis(100),
                idle_timeout: Some(Duration::from_millis(300)),
            },
        ));
        let _silent = TcpStream::connect(addr).await.unwrap();
        let mut conn = acceptor.accept().await;
        let started = std::time::Instant::now();
        let mut buf = [0u8; 8];
        let err = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_millis(250));

        // One slot: a second connection is taken only after the first closes.
        let mut talking = TcpStream::connect(addr).await.unwrap();
        let a = acceptor.clone();
        let next = tokio::spawn(async move { a.accept().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!next.is_finished(), "waits for a free slot");
        drop(conn);
        let mut conn = next.await.unwrap();
        talking.write_all(b"hi").await.unwrap();
        assert_eq!(conn.read(&mut buf).await.unwrap(), 2);
        // Then idle: cut after idle_timeout, not the handshake timeout.
        let started = std::time::Instant::now();
        assert!(conn.read(&mut buf).await.is_err());
        assert!(started.elapsed() >= Duration::from_millis(250));
    }
}
