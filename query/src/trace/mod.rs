//! Trace assembly at query time: spans read from `l7_flow_log` become trees, returned by the
//! table functions `trace(_id)`, `traces(start, end)`, `trace_by(key, value)` and
//! `trace_grafana(_id)`.
//!
//! `meta` decodes the columns assembly reads; `assemble` holds the rule set; `lookup` reads
//! spans (a window, or key expansion from seeds); `index` is the key index key expansion
//! probes; `table` is the SQL face.

pub mod assemble;
pub mod index;
pub mod lookup;
pub mod meta;
pub mod table;

use std::sync::Arc;

use datafusion::prelude::SessionContext;

pub use assemble::{Assembly, Tolerance, assemble, assemble_until};
pub use index::KeyIndex;
pub use meta::SpanMeta;
pub use table::{Function, TraceFunction};

/// Registers the trace table functions on `ctx`, their key lookups served by `index`.
pub fn register_all(ctx: &SessionContext, index: &Arc<KeyIndex>) {
    for (name, f) in Function::ALL {
        ctx.register_udtf(name, Arc::new(TraceFunction::new(f, Arc::clone(index))));
    }
}
