//! wiretrace's SQL side: a DataFusion session over the span store and a Postgres wire server.
//!
//! Layout: `session` builds the SessionContext (tables, pg_catalog, Postgres functions);
//! `buffered` unions a table's Parquet files with the store's unflushed rows; `pinned` keeps
//! the files a scan listed alive until it ends; `files` reads a file a compaction replaced
//! from the retired folder; `cache` keeps Parquet metadata in a byte-bounded LRU; `udf/`
//! holds wiretrace's scalar functions (`decap`, `inner_tcp_seq`); `stats` exposes live
//! counters as a table; `server` is the pgwire accept loop; `guard` refuses queries nested
//! deep enough to exhaust a stack; `readonly` refuses every statement that could write;
//! `noop` answers pool resets (DISCARD ALL, …); `output` runs one statement and renders it
//! for a terminal; `access` admits clients (SCRAM passwords, loopback trust, TLS).

pub mod access;
pub mod buffered;
pub mod cache;
mod cancel;
mod error;
pub mod files;
pub mod guard;
pub mod noop;
pub mod output;
mod pinned;
pub mod readonly;
pub mod server;
pub mod session;
pub mod stats;
pub mod trace;
pub mod udf;

pub use access::{Access, Users};
pub use datafusion::prelude::SessionContext;
pub use error::QueryError;
pub use server::SqlServer;
pub use session::session;
pub use stats::StatsTable;
