//! How a receiver hands a batch to the pipelines that listen to it.

use super::Batch;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

/// Why a batch was not taken. Both are retryable for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the pipeline is full; retry later")]
    Full,
    #[error("otelwatch is shutting down")]
    ShuttingDown,
}

/// The input of one pipeline.
#[derive(Clone)]
pub struct PipelineInput {
    pub pipeline: Arc<str>,
    pub tx: mpsc::Sender<Batch>,
}

/// Every pipeline a receiver feeds for one signal.
///
/// A batch goes to all of them or to none: a slot is reserved in every pipeline's bounded queue
/// before anything is sent, so a client told "retry" never causes a duplicate in the pipelines
/// that did have room, and a client told "ok" has its data in all of them.
#[derive(Clone)]
pub struct FanOut {
    targets: Vec<PipelineInput>,
    /// How long to wait for room before refusing.
    wait: Duration,
}

impl FanOut {
    pub fn new(targets: Vec<PipelineInput>, wait: Duration) -> Self {
        Self { targets, wait }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Waits up to the configured time for room in every pipeline, then sends to all.
    pub async fn send(&self, batch: Batch) -> Result<(), Refused> {
        let deadline = Instant::now() + self.wait;
        let mut permits = Vec::with_capacity(self.targets.len());
        for t in &self.targets {
            match timeout_at(deadline, t.tx.reserve()).await {
                Ok(Ok(p)) => permits.push(p),
                Ok(Err(_)) => return Err(Refused::ShuttingDown),
                Err(_) => return Err(Refused::Full),
            }
        }
        let last = permits.pop();
        for p in permits {
            p.send(batch.clone());
        }
        if let Some(p) = last {
            p.send(batch);
        }
        Ok(())
    }

    /// Sends, waiting as long as it takes (for sources that can simply slow down, like files).
    pub async fn send_patiently(&self, batch: Batch) -> Result<(), Refused> {
        loop {
            match self.send(batch.clone()).await {
                Err(Refused::Full) => continue,
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Payload;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

    fn batch() -> Batch {
        Batch {
            payload: Payload::Traces(Arc::new(ExportTraceServiceRequest::default())),
            encoded: None,
            items: 1,
        }
    }

    #[tokio::test]
    async fn all_or_nothing_when_one_pipeline_is_full() {
        let (tx_a, mut rx_a) = mpsc::channel(4);
        let (tx_b, mut rx_b) = mpsc::channel(1);
        let fan = FanOut::new(
            vec![
                PipelineInput {
                    pipeline: "a".into(),
                    tx: tx_a,
                },
                PipelineInput {
                    pipeline: "b".into(),
                    tx: tx_b,
                },
            ],
            Duration::from_millis(20),
        );
        fan.send(batch()).await.unwrap();
        assert_eq!(fan.send(batch()).await, Err(Refused::Full));
        // "a" had room but must not have received the refused batch.
        assert!(rx_a.recv().await.is_some());
        assert!(rx_a.try_recv().is_err());
        assert!(rx_b.recv().await.is_some());
        drop(rx_b);
        assert_eq!(fan.send(batch()).await, Err(Refused::ShuttingDown));
    }
}
