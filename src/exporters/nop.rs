//! Exporter `nop`: accepts and discards everything (counted in the exporter metrics). For
//! measuring the pipeline itself, and for pipelines kept only for their side effects.

use super::framework::{Delivered, Export, ExportError};
use crate::pipeline::Batch;

pub struct NopExporter;

impl Export for NopExporter {
    async fn export(&self, _batch: &Batch) -> Result<Delivered, ExportError> {
        Ok(Delivered::default())
    }
}
