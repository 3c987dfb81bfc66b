//! How a receiver hands a batch to the pipelines that listen to it.

use super::memory::MemoryPool;
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
    /// `Some` when the pipeline has a `memory_limiter`.
    pub limit: Option<MemoryLimit>,
}

/// A pipeline's memory budget: it takes no new batch while the pool holds more than `soft`
/// bytes (unless the batch is all the pool holds).
#[derive(Clone)]
pub struct MemoryLimit {
    pub pool: Arc<MemoryPool>,
    pub soft: usize,
    /// Items refused (or skipped) because of the limit.
    pub refused: Counter,
    /// The last batch found it over the limit (the health report names it).
    pub now: Arc<AtomicBool>,
}

impl MemoryLimit {
    fn over(&self, own: usize) -> bool {
        let used = self.pool.used();
        let over = used > self.soft && used > own;
        if self.now.swap(over, Ordering::Relaxed) != over && over {
            tracing::warn!(
                held_bytes = used,
                soft_limit_bytes = self.soft,
                "memory limit reached: new data is refused until what is held is delivered"
            );
        }
        over
    }

    /// Waits until the pool is below the limit, or the deadline passes.
    async fn room(&self, own: usize, deadline: Instant) -> bool {
        while self.over(own) {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(MEMORY_POLL).await;
        }
        true
    }
}

/// How often a sender waiting for memory looks again.
const MEMORY_POLL: Duration = Duration::from_millis(5);

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
            limit: None,
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
        let own = batch.held.bytes();
        let mut permits = Vec::with_capacity(self.targets.len());
        let mut skipped = Vec::new();
        for t in &self.targets {
            if let (true, Some(skips)) = (skip_detection, &t.detection) {
                if t.limit.as_ref().is_some_and(|l| l.over(own)) {
                    skipped.push((t, skips));
                    continue;
                }
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
            if let Some(l) = &t.limit {
                if !l.room(own, deadline).await {
                    l.refused.add(batch.items as u64);
                    return Err(Refused::Full);
                }
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
            payload: Payload::Traces(crate::pipeline::Traces::decoded(
                ExportTraceServiceRequest::default(),
            )),
            encoded: None,
            items: 1,
            held: Default::default(),
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
            limit: None,
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
                limit: None,
            }],
            Duration::from_millis(20),
        );
        alone.send(batch()).await.unwrap();
        assert_eq!(alone.send(batch()).await, Err(Refused::Full));
    }

    #[tokio::test]
    async fn a_memory_limit_refuses_forwarding_and_skips_detection_until_memory_is_freed() {
        let pool = MemoryPool::new();
        let limit = MemoryLimit {
            pool: pool.clone(),
            soft: 500,
            refused: Counter::default(),
            now: Arc::default(),
        };
        let (tx_f, mut rx_f) = mpsc::channel(8);
        let (tx_d, mut rx_d) = mpsc::channel(8);
        let skips = Skips::default();
        let fan = FanOut::new(
            vec![
                PipelineInput {
                    limit: Some(limit.clone()),
                    ..PipelineInput::forwarding("traces".into(), tx_f)
                },
                PipelineInput {
                    pipeline: "traces/detect".into(),
                    tx: tx_d,
                    detection: Some(skips.clone()),
                    limit: Some(MemoryLimit {
                        refused: Counter::default(),
                        ..limit.clone()
                    }),
                },
            ],
            Duration::from_millis(30),
        );
        let held = |n| {
            let mut b = batch();
            b.held = pool.hold(n);
            b
        };
        // Alone in the pool, a batch larger than the limit still goes through.
        fan.send(held(800)).await.unwrap();
        assert!(rx_f.try_recv().is_ok() && rx_d.try_recv().is_ok());
        // 1,000 bytes held elsewhere: over the limit.
        let other = pool.hold(1000);
        assert_eq!(fan.send(held(10)).await, Err(Refused::Full));
        assert_eq!(limit.refused.get(), 1);
        assert!(limit.now.load(Ordering::Relaxed));
        drop(other);
        fan.send(held(10)).await.unwrap();
        assert!(rx_f.try_recv().is_ok() && rx_d.try_recv().is_ok());

        // A detection pipeline over its own (tighter) limit skips; forwarding goes on.
        let ((tx_f, _rx_f), (tx_d, _rx_d)) = (mpsc::channel(8), mpsc::channel(8));
        let tight = FanOut::new(
            vec![
                PipelineInput::forwarding("traces".into(), tx_f),
                PipelineInput {
                    pipeline: "traces/detect".into(),
                    tx: tx_d,
                    detection: Some(skips.clone()),
                    limit: Some(MemoryLimit { soft: 0, ..limit }),
                },
            ],
            Duration::from_millis(30),
        );
        let _other = pool.hold(100);
        let before = skips.items.get();
        tight.send(held(10)).await.unwrap();
        assert_eq!(skips.items.get(), before + 1);
    }

    /// Property: with any mix of queue capacities and backlogs, a batch reaches every
    /// forwarding pipeline or none of them.
    #[tokio::test]
    async fn a_batch_reaches_all_forwarding_pipelines_or_none() {
        let mut rng = crate::processors::iforest::forest::Rng::new(0x9e37_79b9_7f4a_7c15u64);
        let mut next = move || rng.next_u64();
        for _ in 0..200 {
            let n = 1 + (next() % 4) as usize;
            let mut rxs = Vec::new();
            let mut targets = Vec::new();
            for i in 0..n {
                let (tx, rx) = mpsc::channel(1 + (next() % 3) as usize);
                // Some queues start with a backlog.
                for _ in 0..next() % 3 {
                    let _ = tx.try_send(batch());
                }
                targets.push(PipelineInput::forwarding(format!("traces/{i}").into(), tx));
                rxs.push(rx);
            }
            let fan = FanOut::new(targets, Duration::from_millis(1));
            let before: Vec<usize> = rxs.iter().map(|r| r.len()).collect();
            let result = fan.send(batch()).await;
            let after: Vec<usize> = rxs.iter().map(|r| r.len()).collect();
            let grew = before.iter().zip(&after).filter(|(b, a)| a > b).count();
            match result {
                Ok(()) => assert_eq!(grew, n, "{before:?} -> {after:?}"),
                Err(Refused::Full) => assert_eq!(grew, 0, "{before:?} -> {after:?}"),
                Err(e) => panic!("{e:?}"),
            }
        }
    }
}
