//! Errors at the query boundary.

/// What can go wrong setting up or running SQL.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// DataFusion planning or execution failed.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// Setting up the Postgres catalog failed.
    #[error("setting up pg_catalog: {0}")]
    Catalog(String),
    /// A socket or file operation failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server's access settings are unusable (users file, TLS files, an exposed address
    /// without passwords).
    #[error("{0}")]
    Access(String),
}
