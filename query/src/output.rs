//! One SQL statement, run and rendered as a text table.

use arrow::{array::RecordBatch, util::pretty::pretty_format_batches};
use datafusion::prelude::SessionContext;

use crate::error::QueryError;

/// Runs `sql` and collects the result.
pub async fn run_sql(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Renders batches as a table (like psql's aligned output).
pub fn render(batches: &[RecordBatch]) -> Result<String, QueryError> {
    Ok(pretty_format_batches(batches)
        .map_err(datafusion::error::DataFusionError::from)?
        .to_string())
}
