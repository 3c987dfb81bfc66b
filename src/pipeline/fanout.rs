//! How a receiver hands a batch to the pipelines that listen to it.

use super::Batch;
use crate::telemetry::Counter;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// `Some` for a detection pipeline (its processors turn the signal into window records):
    /// what it skips when full.
    pub detection: Option<Skips>,
}

/// What a detection pipeline skipped while forwarding went on.
#[derive(Clone, Default)]
pub struct Skips {
    /// Items skipped.
    pub items: Counter,
    /// The last batch found it full (the health report names it).
    pub now: Arc<AtomicBool>,
}

impl PipelineInput {
    /// The input of a pipeline that passes the signal on (forwarding).
    pub fn forwarding(pipeline: Arc<str>, tx: mpsc::Sender<Batch>) -> Self {
        Self {
            pipeline,
            tx,
            detection: None,
        }
    }
}

/// Every pipeline a receiver feeds for one signal.
///
/// A batch goes to all of them or to none: a slot is reserved in every pipeline's bounded queue
/// before anything is sent, so a client told "retry" never causes a duplicate in the pipelines
/// that did have room, and a client told "ok" has its data in all of them.
///
/// The forwarding path comes first: when a receiver feeds forwarding pipelines too, a detection
/// pipeline that has no room (its exporter is down or slow) does not hold them up — it skips
/// the batch, counted in `otelwatch_pipeline_skipped_items_total` and logged, and the client is
/// answered by the forwarding pipelines alone. When only detection pipelines listen, they push
/// back like any other.
#[derive(Clone)]
pub struct FanOut {
    targets: Vec<PipelineInput>,
    /// How long to wait for room before refusing.
    wait: Duration,
    /// Some target forwards: detection targets then take a batch only if they have room.
    forwards: bool,
}

impl FanOut {
    pub fn new(targets: Vec<PipelineInput>, wait: Duration) -> Self {
        let forwards = targets.iter().any(|t| t.detection.is_none());
        Self {
            targets,
            wait,
            forwards,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Waits up to the configured time for room in every pipeline, then sends to all.
    pub async fn send(&self, batch: Batch) -> Result<(), Refused> {
        self.send_with(batch, self.forwards).await
    }

    /// `skip_detection`: detection pipelines without room skip the batch instead of waiting.
    async fn send_with(&self, batch: Batch, skip_detection: bool) -> Result<(), Refused> {
        let deadline = Instant::now() + self.wait;
        let mut permits = Vec::with_capacity(self.targets.len());
        let mut skipped = Vec::new();
        for t in &self.targets {
            if let (true, Some(skips)) = (skip_detection, &t.detection) {
                match t.tx.try_reserve() {
                    Ok(p) => {
                        skips.now.store(false, Ordering::Relaxed);
                        permits.push(p)
                    }
                    // Full, or closed (the pipeline has stopped): forwarding goes on.
                    Err(_) => skipped.push((t, skips)),
                }
                continue;
            }
            match timeout_at(deadline, t.tx.reserve()).await {
                Ok(Ok(p)) => permits.push(p),
                Ok(Err(_)) => return Err(Refused::ShuttingDown),
                Err(_) => return Err(Refused::Full),
            }
        }
        for (t, skips) in skipped {
            if !skips.now.swap(true, Ordering::Relaxed) {
                tracing::warn!(pipeline = %t.pipeline, "detection pipeline is full; it skips batches so that forwarding is not held up (counted in otelwatch_pipeline_skipped_items_total)");
            }
            skips.items.add(batch.items as u64);
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

    /// Sends to every pipeline, waiting as long as it takes (for sources that can simply slow
    /// down, like files: nothing needs to be skipped).
    pub async fn send_patiently(&self, batch: Batch) -> Result<(), Refused> {
        loop {
            match self.send_with(batch.clone(), false).await {
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
                PipelineInput::forwarding("a".into(), tx_a),
                PipelineInput::forwarding("b".into(), tx_b),
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

    #[tokio::test]
    async fn a_full_detection_pipeline_skips_and_counts_instead_of_holding_up_forwarding() {
        let t = crate::telemetry::Telemetry::new();
        let skips = Skips {
            items: t.counter("skipped", "", vec![]),
            now: Default::default(),
        };
        let skipped = skips.items.clone();
        let (tx_f, mut rx_f) = mpsc::channel(8);
        let (tx_d, mut rx_d) = mpsc::channel(1);
        let detect = PipelineInput {
            pipeline: "traces/detect".into(),
            tx: tx_d,
            detection: Some(skips.clone()),
        };
        let fan = FanOut::new(
            vec![
                PipelineInput::forwarding("traces/forward".into(), tx_f),
                detect.clone(),
            ],
            Duration::from_millis(20),
        );
        for _ in 0..3 {
            fan.send(batch()).await.unwrap();
        }
        assert_eq!(
            skipped.get(),
            2,
            "two batches found the detection queue full"
        );
        for _ in 0..3 {
            assert!(rx_f.try_recv().is_ok(), "forwarding got every batch");
        }
        // Files wait for room everywhere instead.
        let patient = fan.clone();
        let waiting = tokio::spawn(async move { patient.send_patiently(batch()).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "waits while detection is full");
        assert!(rx_d.recv().await.is_some(), "the one batch detection took");
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert!(rx_d.try_recv().is_ok(), "then the patient one");
        assert_eq!(skipped.get(), 2, "and nothing more was skipped");
        // Alone, a detection pipeline pushes back like any other.
        let (tx_alone, _rx_alone) = mpsc::channel(1);
        let alone = FanOut::new(
            vec![PipelineInput {
                pipeline: "traces/detect".into(),
                tx: tx_alone,
                detection: Some(skips.clone()),
            }],
            Duration::from_millis(20),
        );
        alone.send(batch()).await.unwrap();
        assert_eq!(alone.send(batch()).await, Err(Refused::Full));
    }
}
