//! wiretrace's agent: from kernel events to span batches.
//!
//! Layout: `loader` loads and attaches the eBPF programs with offsets from `offsets` (the
//! running kernel's BTF); `agent` drains their ring buffer; `event` decodes records;
//! `proto/` recognises application protocols (HTTP/1.x); `pairing` finds messages on each
//! socket and pairs requests with responses into `span::Span`s; `batch` turns spans into
//! `l7_flow_log` Arrow batches; `counters` counts everything dropped or unparsed.

pub mod agent;
pub mod batch;
pub mod counters;
mod error;
pub mod event;
pub mod loader;
pub mod offsets;
pub mod pairing;
pub mod proto;
pub mod span;
pub mod synth;

pub use agent::{Agent, AgentConfig};
pub use counters::IngestCounters;
pub use error::IngestError;
