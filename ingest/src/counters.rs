//! Counters of what the agent saw, dropped or could not parse: never fatal, always counted.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// Agent counters, shared between the capture task and whoever reports them.
        #[derive(Debug, Default)]
        pub struct IngestCounters {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        impl IngestCounters {
            /// Every counter as (name, value, doc).
            pub fn snapshot(&self) -> Vec<(&'static str, u64, &'static str)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed), concat!($($doc),*).trim_ascii()),)*]
            }
        }
    };
}

counters!(
    /// Ring-buffer records read.
    events,
    /// Events the kernel dropped because the ring buffer was full.
    kernel_ring_drops,
    /// Records too short or inconsistent to decode.
    malformed_events,
    /// Data events on sockets.
    data_events,
    /// Close events.
    close_events,
    /// Messages whose first bytes were not HTTP/1.x (other protocols, garbage, mid-stream attach).
    not_http_messages,
    /// HTTP requests recognised.
    http_requests,
    /// HTTP responses recognised.
    http_responses,
    /// Responses with no request waiting on their connection.
    orphan_responses,
    /// Requests whose connection closed (or went idle) before a response.
    unanswered_requests,
    /// Spans produced.
    spans,
    /// Connections dropped from agent state after going idle.
    idle_connections_dropped,
    /// Span batches that could not be handed to storage.
    batches_dropped,
    /// Interfaces with an open packet capture right now (a gauge, not a count).
    capture_interfaces,
    /// Frames captured on NICs (AF_PACKET) or read from pcap files.
    packets,
    /// Frames the kernel dropped because a capture ring was full.
    packet_drops,
    /// Frames no header walk could decode (truncated or malformed headers, too many tunnels).
    undecodable_packets,
    /// Frames that are not TCP/UDP over IP (ARP, ICMP, IPv6 ND, later fragments, …): skipped.
    other_packets,
    /// TCP segments that skipped ahead of the bytes seen so far (lost capture).
    packet_gaps,
    /// TCP/UDP flows opened at capture points.
    flows,
);

impl IngestCounters {
    /// Adds `n` to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}
