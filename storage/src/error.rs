//! Errors at the storage boundary.

use std::path::{Path, PathBuf};

/// What can go wrong storing or reading spans.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a Parquet file failed.
    #[error("writing Parquet {path}: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The Parquet error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// An Arrow computation on a batch failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The in-memory buffer is at its limit (flushes are not keeping up or failing).
    #[error("span buffer full ({bytes} bytes): batch refused")]
    Full {
        /// Bytes buffered.
        bytes: u64,
    },
    /// Another process holds the write-ahead log.
    #[error("{path} is locked: another wiretrace writes to this data dir")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A batch does not have the table's schema.
    #[error("batch schema does not match table {table}: {detail}")]
    Schema {
        /// The table.
        table: String,
        /// What differs.
        detail: String,
    },
}

/// Maps an OS error while doing `op` on `path` to [`StorageError::Io`].
pub(crate) fn io<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Result with [`StorageError`].
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
