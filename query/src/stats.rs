//! A table whose rows are read from live counters at query time (name, value, description).

use std::{fmt, sync::Arc};

use arrow::{
    array::{RecordBatch, StringArray, UInt64Array},
    datatypes::{DataType, Field, Schema, SchemaRef},
};
use async_trait::async_trait;
use datafusion::{
    catalog::{Session, TableProvider},
    datasource::{TableType, memory::MemorySourceConfig},
    error::Result,
    logical_expr::Expr,
    physical_plan::ExecutionPlan,
};

/// Source of counter rows: (name, value, description).
pub type CounterSource = Arc<dyn Fn() -> Vec<(&'static str, u64, &'static str)> + Send + Sync>;

/// Counters as a SQL table with columns `name`, `value`, `description`.
pub struct StatsTable {
    source: CounterSource,
    schema: SchemaRef,
}

impl fmt::Debug for StatsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatsTable").finish_non_exhaustive()
    }
}

impl StatsTable {
    /// A table reading `source` on every scan.
    pub fn new(source: CounterSource) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("value", DataType::UInt64, false),
            Field::new("description", DataType::Utf8, false),
        ]));
        Self { source, schema }
    }
}

#[async_trait]
impl TableProvider for StatsTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rows = (self.source)();
        let batch = RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![
                Arc::new(rows.iter().map(|r| Some(r.0)).collect::<StringArray>()),
                Arc::new(rows.iter().map(|r| r.1).collect::<UInt64Array>()),
                Arc::new(rows.iter().map(|r| Some(r.2)).collect::<StringArray>()),
            ],
        )?;
        let exec: Arc<dyn ExecutionPlan> = MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            Arc::clone(&self.schema),
            projection.cloned(),
        )?;
        Ok(exec)
    }
}
