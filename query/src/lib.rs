//! wiretrace's SQL side: a DataFusion session over the span store and a Postgres wire server.
//!
//! Layout: `session` builds the SessionContext (tables, pg_catalog, Postgres functions);
//! `stats` exposes live counters as a table; `server` is the pgwire accept loop; `output`
//! runs one statement and renders it for a terminal.

mod error;
pub mod output;
pub mod server;
pub mod session;
pub mod stats;

pub use error::QueryError;
pub use server::SqlServer;
pub use session::session;
pub use stats::StatsTable;
