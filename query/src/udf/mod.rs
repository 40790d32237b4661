//! Scalar functions wiretrace adds to SQL, one struct per function, and the Postgres ones
//! clients expect (`pg`).

mod decap;
mod pg;

pub use decap::{DecapUdf, InnerTcpSeqUdf};
pub use pg::VERSION;

use datafusion::{logical_expr::ScalarUDF, prelude::SessionContext};

/// Registers every wiretrace scalar function on `ctx`.
pub fn register_all(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(DecapUdf::new()));
    ctx.register_udf(ScalarUDF::from(InnerTcpSeqUdf::new()));
    for f in pg::functions() {
        ctx.register_udf(f);
    }
}
