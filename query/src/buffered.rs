//! A table over Parquet files and the store's not-yet-flushed rows: one scan of the files
//! (pruned as usual) unioned with the buffer, both taken under the store's flush barrier so
//! each row is seen exactly once; the scan holds a store pin so a compaction that replaces the
//! listed files meanwhile keeps them readable until the query ends.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::{
    arrow::datatypes::SchemaRef,
    catalog::{Session, TableProvider},
    datasource::{TableType, listing::ListingTable, memory::MemorySourceConfig},
    error::Result,
    logical_expr::{Expr, TableProviderFilterPushDown},
    physical_plan::{ExecutionPlan, union::UnionExec},
};
use wiretrace_storage::Store;

use crate::pinned::PinnedExec;

/// `table`'s Parquet files plus its rows buffered in `store`.
#[derive(Debug)]
pub struct BufferedTable {
    files: Arc<ListingTable>,
    store: Arc<Store>,
    table: String,
}

impl BufferedTable {
    /// The files of `files` and the rows of `table` still in `store`.
    pub fn new(files: Arc<ListingTable>, store: Arc<Store>, table: &str) -> Self {
        Self {
            files,
            store,
            table: table.to_string(),
        }
    }
}

#[async_trait]
impl TableProvider for BufferedTable {
    fn schema(&self) -> SchemaRef {
        self.files.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Filters prune the files; they are applied again above the union (the buffer is not
    /// filtered by the scan).
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (files, buffered, pin) = {
            let _no_swap = self.store.barrier().read().await;
            let pin = Arc::new(self.store.pin());
            let files = self.files.scan(state, projection, filters, limit).await?;
            (files, self.store.buffered(&self.table), pin)
        };
        let files: Arc<dyn ExecutionPlan> = Arc::new(PinnedExec::new(files, pin));
        if buffered.is_empty() {
            return Ok(files);
        }
        let memory =
            MemorySourceConfig::try_new_exec(&[buffered], self.schema(), projection.cloned())?;
        UnionExec::try_new(vec![files, memory])
    }
}
