//! One SQL statement, run and rendered as a text table.

use arrow::{
    array::{Array, Int64Array, RecordBatch},
    compute::cast,
    datatypes::DataType,
    util::pretty::pretty_format_batches,
};
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

/// The first column of the first row as an integer, if there is one and it is one.
pub fn first_i64(batches: &[RecordBatch]) -> Option<i64> {
    let batch = batches.iter().find(|b| b.num_rows() > 0)?;
    let col = cast(batch.column(0), &DataType::Int64).ok()?;
    let ints = col.as_any().downcast_ref::<Int64Array>()?;
    ints.is_valid(0).then(|| ints.value(0))
}
