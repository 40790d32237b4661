//! wiretrace's storage: the span schema (defined once) and its Parquet store.
//!
//! Layout: `schema.rs` holds every table's Arrow schema with column docs; `paths.rs` builds
//! every path under the data dir; `writer.rs` turns batches into hour-partitioned, zstd
//! Parquet files with bloom filters on the trace lookup keys; `error.rs` is the crate's error.

mod error;
pub mod paths;
pub mod schema;
mod writer;

pub use error::{Result, StorageError};
pub use writer::{LOOKUP_KEY_COLUMNS, PartitionedWriter, TableWriters, WriteStats};
