//! What otelwatch holds of the telemetry it has accepted: every batch a receiver hands to the
//! pipelines carries a reservation of its estimated size in one process-wide pool, released
//! when the last copy of the batch is gone (delivered, consumed by detection, or dropped). The
//! `memory_limiter` processor refuses new data while the pool is above its soft limit, so what
//! is queued and in flight stays within a budget in bytes whatever the queues' lengths in
//! batches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes held per byte received: the received bytes, kept for forwarding unchanged, plus the
/// decoded request (its object tree takes about four times the protobuf encoding).
pub const HELD_PER_WIRE_BYTE: usize = 5;

/// The bytes a received batch is taken to hold: its protobuf size (the received bytes when
/// it came as protobuf; computed otherwise) times [`HELD_PER_WIRE_BYTE`].
pub fn estimate(batch: &super::Batch) -> usize {
    use super::Payload;
    use prost::Message;
    let wire = match (&batch.encoded, &batch.payload) {
        (Some(b), _) => b.len(),
        (None, Payload::Traces(r)) => r.request().encoded_len(),
        (None, Payload::Metrics(r)) => r.encoded_len(),
        (None, Payload::Logs(r)) => r.encoded_len(),
        (None, _) => 0,
    };
    wire.saturating_mul(HELD_PER_WIRE_BYTE)
}

#[derive(Debug, Default)]
pub struct MemoryPool {
    used: AtomicUsize,
}

impl MemoryPool {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Bytes held by batches now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserves `bytes` until the returned value (and every clone of it) is dropped.
    pub fn hold(self: &Arc<Self>, bytes: usize) -> Held {
        self.used.fetch_add(bytes, Ordering::Relaxed);
        Held(vec![Arc::new(Reservation {
            pool: self.clone(),
            bytes,
        })])
    }
}

#[derive(Debug)]
struct Reservation {
    pool: Arc<MemoryPool>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// The reservations a batch holds (one per request merged into it); shared by its copies.
#[derive(Debug, Clone, Default)]
pub struct Held(Vec<Arc<Reservation>>);

impl Held {
    pub fn bytes(&self) -> usize {
        self.0.iter().map(|r| r.bytes).sum()
    }

    /// Takes over another batch's reservations (when the batches are merged).
    pub fn absorb(&mut self, other: Held) {
        self.0.extend(other.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_released_with_the_last_copy() {
        let pool = MemoryPool::new();
        let a = pool.hold(100);
        let copy = a.clone();
        let mut b = pool.hold(50);
        assert_eq!(pool.used(), 150);
        drop(a);
        assert_eq!(pool.used(), 150, "a copy still holds it");
        b.absorb(copy);
        assert_eq!(b.bytes(), 150);
        drop(b);
        assert_eq!(pool.used(), 0);
    }
}
