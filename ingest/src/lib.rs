//! wiretrace's agent: from kernel events to span batches.
//!
//! Layout: `loader` loads and attaches the eBPF programs with offsets from `offsets` (the
//! running kernel's BTF); `event` decodes their records; `capture` reads frames from AF_PACKET
//! rings on chosen interfaces in any namespace; `pcap` reads them from files; `proto/`
//! recognises application protocols (HTTP/1.x); `pairing` finds messages in a connection's
//! bytes and pairs requests with responses, fed by `sockets` (eBPF events) and `flows` (TCP
//! segments, which also yield `l4_flow_log` rows); `span::Span` is the result; `batch` turns
//! spans and flows into Arrow batches; `agent` runs it all; `counters` counts everything
//! dropped or unparsed.

pub mod agent;
pub mod batch;
pub mod capture;
pub mod counters;
mod error;
pub mod event;
pub mod flows;
pub mod generate;
pub mod loader;
pub mod nics;
pub mod offsets;
pub mod pairing;
pub mod pcap;
pub mod proto;
pub mod sockets;
pub mod span;
pub mod synth;

pub use agent::{Agent, AgentConfig, DEFAULT_RING_MIB, DEFAULT_SNAPLEN, TableBatch};
pub use counters::IngestCounters;
pub use error::IngestError;
