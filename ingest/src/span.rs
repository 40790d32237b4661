//! One span as the agent builds it, before it becomes a row of `l7_flow_log`.

use std::sync::Arc;

use wiretrace_packet::Tunnel;

use crate::capture::CapturePoint;

/// A request/response exchange seen at one observation point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Unix µs of the request.
    pub start_us: i64,
    /// Unix µs of the response.
    pub end_us: i64,
    /// "c-p" / "s-p" (process), "c" / "s" (pod NIC), "c-nd" / "s-nd" (node NIC), "local", "rest".
    pub observation_point: &'static str,
    /// Client address (formatted once per connection) and port.
    pub client: (Arc<str>, u16),
    /// Server address and port.
    pub server: (Arc<str>, u16),
    /// "1.0" or "1.1".
    pub version: &'static str,
    /// Method.
    pub method: String,
    /// Host header.
    pub host: Option<String>,
    /// Request target.
    pub path: String,
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Request bytes.
    pub request_len: u64,
    /// Response bytes.
    pub response_len: u64,
    /// TCP seq of the request's first byte.
    pub req_tcp_seq: u32,
    /// TCP seq of the response's first byte.
    pub resp_tcp_seq: u32,
    /// X-Request-ID of request and response.
    pub x_request_id: (Option<String>, Option<String>),
    /// Trace context from request headers.
    pub trace_id: Option<String>,
    /// Span id from request headers.
    pub span_id: Option<String>,
    /// Parent span id from request headers.
    pub parent_span_id: Option<String>,
    /// The socket or flow id.
    pub flow_id: u64,
    /// What only one kind of observer knows.
    pub seen: Seen,
}

/// The observer of a span and what it alone knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A process's socket syscalls (eBPF).
    Process(ProcessSeen),
    /// Packets on a NIC.
    Packet(PacketSeen),
}

/// What the socket syscalls of one process tell about a span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSeen {
    /// Syscall trace id of the request event.
    pub syscall_trace_id_request: u64,
    /// Syscall trace id of the response event.
    pub syscall_trace_id_response: u64,
    /// Thread of the request event.
    pub thread_0: u32,
    /// Thread of the response event.
    pub thread_1: u32,
    /// Capture sequence of the request event.
    pub cap_seq_0: u64,
    /// Capture sequence of the response event.
    pub cap_seq_1: u64,
    /// The observing process.
    pub pid: u32,
    /// Its name (shared by the spans of one connection).
    pub comm: Arc<str>,
}

/// What packets on one NIC tell about a span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketSeen {
    /// The interface and namespace.
    pub point: Arc<CapturePoint>,
    /// The outermost tunnel around the request's first packet, if any.
    pub tunnel: Option<Tunnel>,
    /// The request's first packet's headers, outer and inner, up to the TCP payload.
    pub headers: Vec<u8>,
}

impl Span {
    /// The process view, for eBPF spans.
    pub fn process(&self) -> Option<&ProcessSeen> {
        match &self.seen {
            Seen::Process(p) => Some(p),
            Seen::Packet(_) => None,
        }
    }

    /// The packet view, for packet spans.
    pub fn packet(&self) -> Option<&PacketSeen> {
        match &self.seen {
            Seen::Packet(p) => Some(p),
            Seen::Process(_) => None,
        }
    }
}
