//! Processor `batch`: merges requests until `send_batch_size` items or `timeout`, so a stream of
//! tiny SDK exports reaches the exporters as fewer, larger requests.
//!
//! ```yaml
//! processors:
//!   batch:
//!     send_batch_size: 8192
//!     timeout: 200ms
//! ```
//! Batches that arrived as protobuf are merged on the wire: a request's only field is its
//! repeated list of resources, so the concatenation of two requests' bytes is exactly the
//! encoding of the merged request. The merged bytes are forwarded as they are, and a traces
//! request held as bytes stays bytes (nothing is decoded or encoded again); batches without
//! their bytes are merged decoded, and the `otlp` exporter encodes the result.

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
    /// The batches waiting, all of one kind, merged when they leave (merging one by one would
    /// copy the bytes gathered so far at every step).
    pending: Vec<Batch>,
    /// Their items.
    items: usize,
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
            pending: Vec::new(),
            items: 0,
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
        if self.pending.is_empty() {
            return;
        }
        trigger(&self.sent).inc();
        self.items = 0;
        out.extend(Batch::merge_all(std::mem::take(&mut self.pending)));
    }
}

impl Processor for BatchProcessor {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        if self
            .pending
            .first()
            .is_some_and(|p| p.kind() != batch.kind())
        {
            self.send(out, |s| &s.signal);
        }
        if self.pending.is_empty() {
            self.since = Instant::now();
        }
        self.items += batch.items;
        self.pending.push(batch);
        // Requests without items (empty ones are valid) count as one each here, so what is
        // held stays bounded whatever a client sends.
        if self.items.max(self.pending.len()) >= self.cfg.send_batch_size {
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
    use crate::pipeline::{Payload, Traces};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    /// A request of `n` resources named after `tag`, each with one span.
    fn request(n: usize, tag: &str) -> ExportTraceServiceRequest {
        let resource = |i: usize| ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    name: format!("{tag}-{i}"),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: (0..n).map(resource).collect(),
        }
    }

    /// A batch decoded, with its bytes (`wire`: held as the bytes only, as the receiver does).
    fn traces(n: usize, tag: &str, wire: bool) -> Batch {
        let req = request(n, tag);
        let bytes = bytes::Bytes::from(req.encode_to_vec());
        Batch {
            payload: Payload::Traces(if wire {
                Traces::wire(bytes.clone())
            } else {
                Traces::decoded(req)
            }),
            encoded: Some(bytes),
            items: n,
            held: Default::default(),
        }
    }

    fn names(b: &Batch) -> Vec<String> {
        match &b.payload {
            Payload::Traces(t) => t
                .request()
                .resource_spans
                .iter()
                .map(|r| r.scope_spans[0].spans[0].name.clone())
                .collect(),
            _ => panic!("kind changed"),
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
        p.process(traces(2, "a", false), &mut out);
        p.process(traces(2, "b", false), &mut out);
        assert!(out.is_empty());
        p.process(traces(2, "c", false), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].items, 6);
        assert_eq!(names(&out[0]), ["a-0", "a-1", "b-0", "b-1", "c-0", "c-1"]);
        let merged = ExportTraceServiceRequest {
            resource_spans: ["a", "b", "c"]
                .iter()
                .flat_map(|tag| request(2, tag).resource_spans)
                .collect(),
        };
        assert_eq!(
            out[0].encoded.as_deref(),
            Some(&merged.encode_to_vec()[..]),
            "the merged bytes are the merged request's encoding"
        );
        let sent = |trigger| {
            t.sum(
                "otelwatch_batch_batches_sent_total",
                &[("trigger", trigger)],
            )
        };
        assert_eq!((sent("size"), sent("timeout"), sent("shutdown")), (1, 0, 0));
    }

    #[test]
    fn requests_held_as_bytes_merge_as_bytes() {
        let t = Telemetry::new();
        let mut p = BatchProcessor::new(BatchConfig::default(), "batch@traces", &t);
        let mut out = Vec::new();
        let parts: Vec<Batch> = ["a", "b", "c"]
            .iter()
            .map(|tag| traces(2, tag, true))
            .collect();
        let joined: Vec<u8> = parts
            .iter()
            .flat_map(|b| b.encoded.as_deref().unwrap().to_vec())
            .collect();
        for b in parts {
            p.process(b, &mut out);
        }
        p.on_tick(&mut out);
        assert!(out.is_empty(), "the timeout has not passed");
        p.on_shutdown(&mut out);
        assert_eq!(out.len(), 1);
        let Payload::Traces(merged) = &out[0].payload else {
            panic!("kind changed")
        };
        assert_eq!(
            merged.undecoded().map(|b| b.to_vec()),
            Some(joined.clone()),
            "nothing decoded"
        );
        assert_eq!(out[0].encoded.as_deref(), Some(&joined[..]));
        assert_eq!(out[0].items, 6);
        assert_eq!(names(&out[0]), ["a-0", "a-1", "b-0", "b-1", "c-0", "c-1"]);
    }

    #[test]
    fn a_batch_without_its_bytes_makes_the_merge_decoded() {
        let t = Telemetry::new();
        let mut p = BatchProcessor::new(BatchConfig::default(), "batch@traces", &t);
        let mut out = Vec::new();
        p.process(traces(1, "a", true), &mut out);
        let mut changed = traces(1, "b", false);
        changed.encoded = None;
        p.process(changed, &mut out);
        p.on_shutdown(&mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].encoded.is_none(), "no bytes for part of it");
        assert_eq!(names(&out[0]), ["a-0", "b-0"]);
    }

    #[test]
    fn shutdown_emits_what_is_held() {
        let t = Telemetry::new();
        let mut p = BatchProcessor::new(BatchConfig::default(), "batch@traces", &t);
        let mut out = Vec::new();
        p.process(traces(1, "a", true), &mut out);
        assert!(out.is_empty());
        p.on_shutdown(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].items, 1);
        assert!(out[0].encoded.is_some(), "a lone batch keeps its bytes");
        let shutdown = [("trigger", "shutdown")];
        assert_eq!(t.sum("otelwatch_batch_batches_sent_total", &shutdown), 1);
    }
}
