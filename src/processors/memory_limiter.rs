//! Processor `memory_limiter`: keeps what otelwatch holds of accepted telemetry within a
//! budget, in the shape of the Collector's processor of the same name. While the bytes held by
//! batches (received and not yet delivered or consumed, see `pipeline::memory`) are above the
//! soft limit (`limit_mib - spike_limit_mib`), the pipelines it is in take no new data:
//! receivers answer `RESOURCE_EXHAUSTED` / HTTP 429 with a retry hint (a forwarding pipeline),
//! or the batch skips detection, counted, so forwarding goes on (a detection pipeline beside a
//! forwarding one). Put it first in a pipeline; it passes batches on unchanged.
//!
//! ```yaml
//! processors:
//!   memory_limiter:
//!     limit_mib: 512
//!     spike_limit_mib: 100      # default: a fifth of limit_mib
//!     check_interval: 1s        # accepted for compatibility: the budget is checked per request
//! ```

use super::Processor;
use crate::config::decode::decode_section;
use crate::config::duration::ConfigDuration;
use crate::config::error::ConfigError;
use crate::pipeline::{Batch, DataKind};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimiterConfig {
    pub limit_mib: u64,
    pub spike_limit_mib: Option<u64>,
    pub check_interval: ConfigDuration,
}

impl MemoryLimiterConfig {
    /// Above this many bytes held, new data is refused.
    pub fn soft_limit_bytes(&self) -> usize {
        let spike = self.spike_limit_mib.unwrap_or(self.limit_mib / 5);
        (self.limit_mib.saturating_sub(spike) as usize).saturating_mul(1024 * 1024)
    }
}

impl crate::processors::ProcessorType for MemoryLimiterConfig {
    const NAME: &'static str = "memory_limiter";

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        let cfg: Self = decode_section(path, value).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if cfg.limit_mib == 0 {
            errors.push(ConfigError::new(
                format!("{path}.limit_mib"),
                "required: the budget in MiB (at least 1)",
            ));
        }
        if cfg
            .spike_limit_mib
            .is_some_and(|s| s >= cfg.limit_mib && cfg.limit_mib > 0)
        {
            errors.push(ConfigError::new(
                format!("{path}.spike_limit_mib"),
                "must be below limit_mib",
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

    fn build(&self, _ctx: &crate::processors::ProcessorContext<'_>) -> Box<dyn Processor> {
        Box::new(PassOn)
    }
}

/// The limit acts where data enters (the pipeline's input); the stage itself passes batches on.
struct PassOn;

impl Processor for PassOn {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        out.push(batch);
    }
}
