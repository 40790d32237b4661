//! Errors at the ingest boundary.

/// What can stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Capture needs privileges or kernel features that are missing.
    #[error("eBPF capture unavailable: {0}")]
    Unavailable(String),
    /// The kernel's BTF could not be read.
    #[error("reading kernel BTF: {0}")]
    Btf(String),
    /// A struct field the programs need is not in the kernel's BTF.
    #[error("kernel BTF has no field {ty}.{field}")]
    BtfField {
        /// The struct.
        ty: String,
        /// The member path.
        field: String,
    },
    /// Loading or attaching the eBPF programs failed.
    #[error("loading eBPF programs: {0}")]
    Load(String),
    /// An I/O error while reading events.
    #[error("reading events: {0}")]
    Io(#[from] std::io::Error),
    /// A capture file could not be read.
    #[error("{path}: {detail}")]
    Pcap {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// Building an Arrow batch failed.
    #[error("building span batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}
