//! Tables whose rows are computed at query time: live counters (name, value, description) and
//! the storage views (`storage_partitions`, `storage_quarantine`).

use std::{fmt, path::PathBuf, sync::Arc};

use arrow::{
    array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array},
    datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit},
};
use async_trait::async_trait;
use datafusion::{
    catalog::{Session, TableProvider},
    datasource::{TableType, memory::MemorySourceConfig},
    error::{DataFusionError, Result},
    logical_expr::Expr,
    physical_plan::ExecutionPlan,
};
use wiretrace_storage::maintain;

/// Source of counter rows: (name, value, description).
pub type CounterSource = Arc<dyn Fn() -> Vec<(&'static str, u64, &'static str)> + Send + Sync>;

/// Source of a computed table's columns.
type ColumnSource = Arc<dyn Fn() -> Result<Vec<ArrayRef>> + Send + Sync>;

/// A table computed on every scan.
pub struct StatsTable {
    source: ColumnSource,
    schema: SchemaRef,
}

impl fmt::Debug for StatsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatsTable").finish_non_exhaustive()
    }
}

impl StatsTable {
    /// Counters as a table with columns `name`, `value`, `description`, read on every scan.
    pub fn new(counters: CounterSource) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("value", DataType::UInt64, false),
            Field::new("description", DataType::Utf8, false),
        ]));
        Self::computed(
            schema,
            Arc::new(move || {
                let rows = counters();
                Ok(vec![
                    Arc::new(rows.iter().map(|r| Some(r.0)).collect::<StringArray>()),
                    Arc::new(rows.iter().map(|r| r.1).collect::<UInt64Array>()),
                    Arc::new(rows.iter().map(|r| Some(r.2)).collect::<StringArray>()),
                ])
            }),
        )
    }

    /// A table of `schema` whose columns `source` computes on every scan.
    fn computed(schema: SchemaRef, source: ColumnSource) -> Self {
        Self { source, schema }
    }

    /// `storage_partitions`: table_name, partition, start, files, rows, bytes of every hour partition
    /// under `data_dir`.
    pub fn partitions(data_dir: PathBuf) -> Self {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("partition", DataType::Utf8, false),
            Field::new("start", ts, false),
            Field::new("files", DataType::UInt64, false),
            Field::new("rows", DataType::UInt64, false),
            Field::new("bytes", DataType::UInt64, false),
        ]));
        Self::computed(
            schema,
            Arc::new(move || {
                let parts = maintain::partitions(&data_dir)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                Ok(vec![
                    Arc::new(parts.iter().map(|p| Some(p.table)).collect::<StringArray>()),
                    Arc::new(
                        parts
                            .iter()
                            .map(|p| Some(p.name.as_str()))
                            .collect::<StringArray>(),
                    ),
                    Arc::new(
                        parts
                            .iter()
                            .map(|p| Some(p.start.timestamp_micros()))
                            .collect::<TimestampMicrosecondArray>()
                            .with_timezone("UTC"),
                    ),
                    Arc::new(parts.iter().map(|p| p.files).collect::<UInt64Array>()),
                    Arc::new(parts.iter().map(|p| p.rows()).collect::<UInt64Array>()),
                    Arc::new(parts.iter().map(|p| p.bytes).collect::<UInt64Array>()),
                ])
            }),
        )
    }

    /// `storage_quarantine`: path and bytes of every file moved aside as unreadable.
    pub fn quarantine(data_dir: PathBuf) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("path", DataType::Utf8, false),
            Field::new("bytes", DataType::UInt64, false),
        ]));
        Self::computed(
            schema,
            Arc::new(move || {
                let files = maintain::quarantined(&data_dir);
                Ok(vec![
                    Arc::new(
                        files
                            .iter()
                            .map(|(p, _)| Some(p.display().to_string()))
                            .collect::<StringArray>(),
                    ),
                    Arc::new(files.iter().map(|(_, b)| *b).collect::<UInt64Array>()),
                ])
            }),
        )
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
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), (self.source)()?)?;
        let exec: Arc<dyn ExecutionPlan> = MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            Arc::clone(&self.schema),
            projection.cloned(),
        )?;
        Ok(exec)
    }
}
