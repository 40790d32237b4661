//! Scalar functions wiretrace adds to SQL, one struct per function.

mod decap;

pub use decap::{DecapUdf, InnerTcpSeqUdf};

use datafusion::{logical_expr::ScalarUDF, prelude::SessionContext};

/// Registers every wiretrace scalar function on `ctx`.
pub fn register_all(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(DecapUdf::new()));
    ctx.register_udf(ScalarUDF::from(InnerTcpSeqUdf::new()));
}
