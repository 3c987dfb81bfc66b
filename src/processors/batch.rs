//! Processor `batch`: merges requests until `send_batch_size` items or `timeout`, so a stream of
//! tiny SDK exports reaches the exporters as fewer, larger requests.
//!
//! ```yaml
//! processors:
//!   batch:
//!     send_batch_size: 8192
//!     timeout: 200ms
//! ```
//! Merged batches are encoded again by the `otlp` exporter; without `batch`, forwarding sends
//! the bytes as received.

use super::Processor;
use crate::config::decode::decode_section;
use crate::config::duration::ConfigDuration;
use crate::config::error::ConfigError;
use crate::pipeline::{Batch, DataKind};
use crate::telemetry::{Counter, Telemetry};
use serde::Deserialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Items (spans, data points, log records) that make a batch leave at once.
    pub send_batch_size: usize,
    /// The longest an item waits for others.
    pub timeout: ConfigDuration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            send_batch_size: 8192,
            timeout: ConfigDuration::from_millis(200),
        }
    }
}

impl crate::processors::ProcessorType for BatchConfig {
    const NAME: &'static str = "batch";

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if cfg.send_batch_size == 0 {
            errors.push(ConfigError::new(
                format!("{path}.send_batch_size"),
                "must be at least 1",
            ));
        }
        if cfg.timeout.get().is_zero() {
            errors.push(ConfigError::new(
                format!("{path}.timeout"),
                "must be longer than 0",
            ));
        }
        crate::config::decode::validated(cfg, errors)
    }

    fn output_kind(&self, input: DataKind) -> Result<DataKind, &'static str> {
        match input {
            DataKind::Windows => Err("traces, metrics, logs"),
            other => Ok(other),
        }
    }

    fn build(&self, ctx: &crate::processors::ProcessorContext<'_>) -> Box<dyn Processor> {
        Box::new(BatchProcessor::new(
            self.clone(),
            &ctx.instance(),
            ctx.telemetry,
        ))
    }
}

/// Batches sent on, by what made them leave.
struct Sent {
    size: Counter,
    timeout: Counter,
    /// A batch of another signal arrived (batches of two signals do not merge).
    signal: Counter,
    shutdown: Counter,
}

pub struct BatchProcessor {
    cfg: BatchConfig,
    pending: Option<Batch>,
    since: Instant,
    sent: Sent,
}

impl BatchProcessor {
    pub fn new(cfg: BatchConfig, id: &str, telemetry: &Telemetry) -> Self {
        let counter = |trigger: &str| {
            telemetry.counter(
                "otelwatch_batch_batches_sent_total",
                "Merged batches sent on, by what made them leave: size, timeout, signal (another signal came), shutdown.",
                vec![("processor", id.to_string()), ("trigger", trigger.to_string())],
            )
        };
        Self {
            cfg,
            pending: None,
            since: Instant::now(),
            sent: Sent {
                size: counter("size"),
                timeout: counter("timeout"),
                signal: counter("signal"),
                shutdown: counter("shutdown"),
            },
        }
    }

    fn send(&mut self, out: &mut Vec<Batch>, trigger: fn(&Sent) -> &Counter) {
        if let Some(b) = self.pending.take() {
            trigger(&self.sent).inc();
            out.push(b);
        }
    }
}

impl Processor for BatchProcessor {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        match self.pending.as_mut() {
            None => {
                self.since = Instant::now();
                self.pending = Some(batch);
            }
            Some(p) => {
                if let Err(other) = p.merge(batch) {
                    self.send(out, |s| &s.signal);
                    self.since = Instant::now();
                    self.pending = Some(other);
                }
            }
        }
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.items >= self.cfg.send_batch_size)
        {
            self.send(out, |s| &s.size);
        }
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some((self.cfg.timeout.get() / 4).max(Duration::from_millis(5)))
    }

    fn on_tick(&mut self, out: &mut Vec<Batch>) {
        if self.since.elapsed() >= self.cfg.timeout.get() {
            self.send(out, |s| &s.timeout);
        }
    }

    fn on_shutdown(&mut self, out: &mut Vec<Batch>) {
        self.send(out, |s| &s.shutdown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Payload;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

    fn traces(n: usize) -> Batch {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans::default(); n],
        };
        Batch {
            payload: Payload::Traces(crate::pipeline::Traces::decoded(req)),
            encoded: Some(bytes::Bytes::from_static(b"x")),
            items: n,
            held: Default::default(),
        }
    }

    #[test]
    fn merges_until_size_then_emits() {
        let t = Telemetry::new();
        let cfg = BatchConfig {
            send_batch_size: 5,
            timeout: ConfigDuration::from_secs(60),
        };
        let mut p = BatchProcessor::new(cfg, "batch@traces", &t);
        let mut out = Vec::new();
        p.process(traces(2), &mut out);
        p.process(traces(2), &mut out);
        assert!(out.is_empty());
        p.process(traces(2), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].items, 6);
        assert!(
            out[0].encoded.is_none(),
            "a merged batch must not keep stale bytes"
        );
        match &out[0].payload {
            Payload::Traces(t) => assert_eq!(t.request().resource_spans.len(), 6),
            _ => panic!("kind changed"),
        }
        let sent = |trigger| {
            t.sum(
                "otelwatch_batch_batches_sent_total",
                &[("trigger", trigger)],
            )
        };
        assert_eq!((sent("size"), sent("timeout"), sent("shutdown")), (1, 0, 0));
    }

    #[test]
    fn shutdown_emits_what_is_held() {
        let t = Telemetry::new();
        let mut p = BatchProcessor::new(BatchConfig::default(), "batch@traces", &t);
        let mut out = Vec::new();
        p.process(traces(1), &mut out);
        assert!(out.is_empty());
        p.on_shutdown(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].items, 1);
        assert!(out[0].encoded.is_some(), "a lone batch keeps its bytes");
        let shutdown = [("trigger", "shutdown")];
        assert_eq!(t.sum("otelwatch_batch_batches_sent_total", &shutdown), 1);
    }
}
