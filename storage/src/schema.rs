//! The one definition of wiretrace's tables. Every column carries a doc (Arrow field metadata
//! `doc`), shown by `wiretrace schema` and in the README.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Name of the span table.
pub const L7_FLOW_LOG: &str = "l7_flow_log";

/// Name of the flow table.
pub const L4_FLOW_LOG: &str = "l4_flow_log";

/// Metadata key holding a column's documentation.
pub const DOC_KEY: &str = "doc";

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn col(name: &str, dt: DataType, nullable: bool, doc: &str) -> Field {
    Field::new(name, dt, nullable).with_metadata([(DOC_KEY.to_string(), doc.to_string())].into())
}

/// Columns of `l7_flow_log`, in order. Suffix 0 = client side, 1 = server side.
static L7_FIELDS: LazyLock<Vec<Field>> = LazyLock::new(|| {
    use DataType::*;
    vec![
        col(
            "_id",
            Int64,
            false,
            "Span id: unix second << 32 | agent << 24 | counter; unique, derived, never random",
        ),
        col(
            "start_time",
            ts(),
            false,
            "Request time: send at syscall entry, receive at syscall exit (UTC, µs)",
        ),
        col(
            "end_time",
            ts(),
            false,
            "Response time, same convention (UTC, µs)",
        ),
        col(
            "response_duration",
            Int64,
            false,
            "end_time - start_time in µs",
        ),
        col(
            "signal_source",
            Utf8,
            false,
            "Where the span was seen: ebpf | packet | otel",
        ),
        col(
            "observation_point",
            Utf8,
            false,
            "c-p, s-p (process), c, s (pod NIC), c-nd, s-nd (node NIC), local, rest",
        ),
        col("agent_id", Int32, false, "Agent that captured the span"),
        col("host", Utf8, false, "Host name of the agent"),
        col(
            "capture_nic",
            Utf8,
            true,
            "Interface a packet span was captured on",
        ),
        col(
            "netns",
            Utf8,
            true,
            "Network namespace of the capture point",
        ),
        col("ip_0", Utf8, false, "Client address"),
        col("ip_1", Utf8, false, "Server address"),
        col("client_port", Int32, false, "Client TCP/UDP port"),
        col("server_port", Int32, false, "Server TCP/UDP port"),
        col("protocol", Utf8, false, "L4 protocol: tcp | udp"),
        col(
            "tunnel_type",
            Utf8,
            true,
            "Outer encapsulation seen at the capture point (vxlan, ipip, gre, geneve, vlan)",
        ),
        col(
            "tunnel_ip_0",
            Utf8,
            true,
            "Outer source address of a tunneled packet",
        ),
        col(
            "tunnel_ip_1",
            Utf8,
            true,
            "Outer destination address of a tunneled packet",
        ),
        col("tunnel_id", Int64, true, "VNI or GRE key"),
        col(
            "l7_protocol",
            Utf8,
            false,
            "Application protocol, e.g. http",
        ),
        col("version", Utf8, true, "Protocol version, e.g. 1.1"),
        col(
            "type",
            Utf8,
            false,
            "request | response | session (both halves seen)",
        ),
        col("request_type", Utf8, true, "Method, e.g. GET"),
        col("request_domain", Utf8, true, "Host header"),
        col("request_resource", Utf8, true, "Path and query"),
        col("endpoint", Utf8, true, "Path without query"),
        col(
            "request_id",
            Int64,
            true,
            "Stream or message id where the protocol has one",
        ),
        col("response_code", Int32, true, "Status code"),
        col(
            "response_status",
            Utf8,
            true,
            "ok | client_error | server_error | unknown",
        ),
        col(
            "response_exception",
            Utf8,
            true,
            "Reason phrase of an error response",
        ),
        col("request_length", Int64, true, "Request bytes (head + body)"),
        col(
            "response_length",
            Int64,
            true,
            "Response bytes (head + body)",
        ),
        col(
            "req_tcp_seq",
            UInt32,
            true,
            "TCP seq of the request's first byte (equal at every observation point)",
        ),
        col(
            "resp_tcp_seq",
            UInt32,
            true,
            "TCP seq of the response's first byte",
        ),
        col(
            "syscall_trace_id_request",
            Int64,
            true,
            "Thread syscall trace id when the request was sent/received",
        ),
        col(
            "syscall_trace_id_response",
            Int64,
            true,
            "Thread syscall trace id when the response was received/sent",
        ),
        col(
            "syscall_thread_0",
            Int64,
            true,
            "Thread that handled the request",
        ),
        col(
            "syscall_thread_1",
            Int64,
            true,
            "Thread that handled the response",
        ),
        col(
            "syscall_cap_seq_0",
            Int64,
            true,
            "Per-socket capture sequence of the request",
        ),
        col(
            "syscall_cap_seq_1",
            Int64,
            true,
            "Per-socket capture sequence of the response",
        ),
        col("process_id_0", Int64, true, "Client process id (c-p spans)"),
        col("process_id_1", Int64, true, "Server process id (s-p spans)"),
        col(
            "process_kname_0",
            Utf8,
            true,
            "Client process name (c-p spans)",
        ),
        col(
            "process_kname_1",
            Utf8,
            true,
            "Server process name (s-p spans)",
        ),
        col("x_request_id_0", Utf8, true, "X-Request-ID of the request"),
        col("x_request_id_1", Utf8, true, "X-Request-ID of the response"),
        col(
            "trace_id",
            Utf8,
            true,
            "Trace id from traceparent/b3/uber-trace-id headers",
        ),
        col("span_id", Utf8, true, "Span id from the same headers"),
        col(
            "parent_span_id",
            Utf8,
            true,
            "Parent span id from the same headers",
        ),
        col("flow_id", Int64, true, "Per-agent socket or flow id"),
        col(
            "captured_headers",
            Binary,
            true,
            "First packet's L2-L4 headers (packet spans), for decap() in SQL",
        ),
        col(
            "attributes",
            Utf8,
            true,
            "JSON object of what has no column",
        ),
    ]
});

/// Columns of `l4_flow_log`, in order: a row per flow per capture point per period (a flow
/// open longer than a minute writes one row a minute). Suffix 0 = client side, 1 = server side.
static L4_FIELDS: LazyLock<Vec<Field>> = LazyLock::new(|| {
    use DataType::*;
    let ts_opt = |name: &str, doc: &str| col(name, ts(), true, doc);
    vec![
        col(
            "_id",
            Int64,
            false,
            "Row id: unix second << 32 | agent << 24 | counter",
        ),
        col(
            "start_time",
            ts(),
            false,
            "First packet of the flow at this capture point (UTC, µs)",
        ),
        col("end_time", ts(), false, "Last packet (UTC, µs)"),
        col("duration", Int64, false, "end_time - start_time in µs"),
        col("agent_id", Int32, false, "Agent that captured the flow"),
        col("host", Utf8, false, "Host name of the agent"),
        col(
            "capture_nic",
            Utf8,
            false,
            "Interface the packets were captured on (or pcapng interface)",
        ),
        col(
            "netns",
            Utf8,
            false,
            "Network namespace of the interface (or the pcap file name)",
        ),
        col(
            "nic_role",
            Utf8,
            false,
            "What the interface is: pod, node, local or rest",
        ),
        col("protocol", Utf8, false, "tcp or udp"),
        col(
            "ip_0",
            Utf8,
            false,
            "Client address (SYN sender, else first sender)",
        ),
        col("ip_1", Utf8, false, "Server address"),
        col("client_port", Int32, false, "Client port"),
        col("server_port", Int32, false, "Server port"),
        col(
            "tunnel_type",
            Utf8,
            true,
            "Outermost tunnel: vxlan, geneve, gre, gre-teb, ipip, ip6in4",
        ),
        col(
            "tunnel_ip_0",
            Utf8,
            true,
            "Outer source address of the first packet",
        ),
        col(
            "tunnel_ip_1",
            Utf8,
            true,
            "Outer destination address of the first packet",
        ),
        col("tunnel_id", Int64, true, "VNI or GRE key"),
        col("bytes_0", Int64, false, "Payload bytes client → server"),
        col("bytes_1", Int64, false, "Payload bytes server → client"),
        col("packets_0", Int64, false, "Packets client → server"),
        col("packets_1", Int64, false, "Packets server → client"),
        col(
            "retransmissions_0",
            Int64,
            false,
            "Client segments repeating bytes already seen",
        ),
        col(
            "retransmissions_1",
            Int64,
            false,
            "Server segments repeating bytes already seen",
        ),
        ts_opt("syn_time", "SYN seen (UTC, µs)"),
        ts_opt("syn_ack_time", "SYN-ACK seen (UTC, µs)"),
        ts_opt("fin_time_0", "Client's FIN seen (UTC, µs)"),
        ts_opt("fin_time_1", "Server's FIN seen (UTC, µs)"),
        col(
            "handshake_rtt",
            Int64,
            true,
            "SYN → SYN-ACK at this capture point, µs",
        ),
        col(
            "close_type",
            Utf8,
            false,
            "fin, rst, timeout, or open: still open when its period (1 min) or the capture ended",
        ),
        col(
            "flow_id",
            Int64,
            false,
            "Per-capture-point flow id (l7_flow_log.flow_id of its spans)",
        ),
    ]
});

/// Arrow schema of `l4_flow_log`.
pub fn l4_flow_log_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| Arc::new(Schema::new(L4_FIELDS.clone())));
    Arc::clone(&SCHEMA)
}

/// Arrow schema of `l7_flow_log`.
pub fn l7_flow_log_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| Arc::new(Schema::new(L7_FIELDS.clone())));
    Arc::clone(&SCHEMA)
}

/// Every table: name, schema, and the timestamp column it is partitioned by.
pub fn tables() -> [(&'static str, SchemaRef, &'static str); 2] {
    [
        (L7_FLOW_LOG, l7_flow_log_schema(), "start_time"),
        (L4_FLOW_LOG, l4_flow_log_schema(), "start_time"),
    ]
}

/// Index of a column of `l7_flow_log` by name; panics on a name that is not in the schema,
/// which is a programming error caught by the tests.
pub fn l7_column(name: &str) -> usize {
    L7_FIELDS
        .iter()
        .position(|f| f.name() == name)
        .unwrap_or_else(|| panic!("no column {name} in {L7_FLOW_LOG}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_is_documented_and_unique() {
        for schema in [l7_flow_log_schema(), l4_flow_log_schema()] {
            let mut names = std::collections::HashSet::new();
            for f in schema.fields() {
                assert!(names.insert(f.name().clone()), "duplicate {}", f.name());
                let doc = f.metadata().get(DOC_KEY).expect("doc");
                assert!(!doc.is_empty());
            }
        }
        assert_eq!(l7_column("_id"), 0);
    }
}
