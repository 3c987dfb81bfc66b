//! Exporter `nop`: accepts and discards everything (counted in the exporter metrics). For
//! measuring the pipeline itself, and for pipelines kept only for their side effects.

use super::framework::{Delivered, Export, ExportError};
use crate::config::error::ConfigError;
use crate::pipeline::{Batch, DataKind};

/// `nop` takes no settings.
#[derive(Debug, Clone, Default)]
pub struct NopConfig;

impl super::ExporterType for NopConfig {
    type Exporter = NopExporter;
    const NAME: &'static str = "nop";

    fn parse(path: &str, value: serde_norway::Value) -> Result<Self, Vec<ConfigError>> {
        match value {
            serde_norway::Value::Null => Ok(NopConfig),
            serde_norway::Value::Mapping(m) if m.is_empty() => Ok(NopConfig),
            _ => Err(vec![ConfigError::new(path, "nop takes no settings")]),
        }
    }

    fn accepts(&self) -> &'static [DataKind] {
        &DataKind::ALL
    }

    fn build(
        &self,
        _id: &str,
        _telemetry: &crate::telemetry::Telemetry,
    ) -> Result<Self::Exporter, crate::exporters::BuildError> {
        Ok(NopExporter)
    }
}

pub struct NopExporter;

impl Export for NopExporter {
    async fn export(&self, _batch: &Batch) -> Result<Delivered, ExportError> {
        Ok(Delivered::default())
    }
}
