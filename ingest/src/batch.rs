//! Spans → `l7_flow_log` and flow rows → `l4_flow_log` Arrow record batches, with the schemas
//! from storage.

use std::{net::IpAddr, sync::Arc};

use arrow::{
    array::{
        ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
        TimestampMicrosecondArray, UInt32Array, new_null_array,
    },
    datatypes::SchemaRef,
};
use wiretrace_storage::schema::{l4_flow_log_schema, l7_flow_log_schema};

use wiretrace_packet::Tunnel;

use crate::{
    flows::FlowRecord,
    span::{PacketSeen, ProcessSeen, Seen, Span},
};

/// Builds `l7_flow_log` batches for one agent, deriving each row's `_id`.
#[derive(Debug)]
pub struct SpanBatchBuilder {
    agent_id: u8,
    host: String,
    counter: u32,
}

impl SpanBatchBuilder {
    /// A builder for spans captured by `agent_id` on `host`.
    pub fn new(agent_id: u8, host: impl Into<String>) -> Self {
        Self {
            agent_id,
            host: host.into(),
            counter: 0,
        }
    }

    /// `_id` = unix second << 32 | agent << 24 | 24-bit counter: unique per agent for up to
    /// 16 M spans per second, and ordered by time so it compresses.
    fn next_id(&mut self, start_us: i64) -> i64 {
        self.counter = (self.counter + 1) & 0x00ff_ffff;
        ((start_us.div_euclid(1_000_000)) << 32)
            | (i64::from(self.agent_id) << 24)
            | i64::from(self.counter)
    }

    /// One batch holding `spans`.
    pub fn build(&mut self, spans: &[Span]) -> Result<RecordBatch, arrow::error::ArrowError> {
        let ids: Vec<i64> = spans.iter().map(|s| self.next_id(s.start_us)).collect();
        let r = Rows(spans);
        let client = |s: &Span| s.observation_point == "c-p";
        let proc_i64 = |f: fn(&ProcessSeen) -> Option<i64>| r.i64s(|s| s.process().and_then(f));
        let pkt_str =
            |f: for<'a> fn(&'a PacketSeen) -> Option<&'a str>| r.strs(|s| s.packet().and_then(f));
        fn tunnel(s: &Span) -> Option<&Tunnel> {
            s.packet()?.tunnel.as_ref()
        }
        batch(l7_flow_log_schema(), spans.len(), |column| {
            Some(match column {
                "_id" => Arc::new(Int64Array::from(ids.clone())),
                "start_time" => r.times(|s| Some(s.start_us)),
                "end_time" => r.times(|s| Some(s.end_us)),
                "response_duration" => r.i64s(|s| Some(s.end_us - s.start_us)),
                "signal_source" => r.strs(|s| {
                    Some(match s.seen {
                        Seen::Process(_) => "ebpf",
                        Seen::Packet(_) => "packet",
                    })
                }),
                "observation_point" => r.strs(|s| Some(s.observation_point)),
                "agent_id" => r.i32s(|_| Some(i32::from(self.agent_id))),
                "host" => r.constant(&self.host),
                "capture_nic" => pkt_str(|p| Some(&p.point.nic)),
                "netns" => pkt_str(|p| Some(&p.point.netns)),
                "ip_0" => r.strs(|s| Some(&s.client.0)),
                "ip_1" => r.strs(|s| Some(&s.server.0)),
                "client_port" => r.i32s(|s| Some(i32::from(s.client.1))),
                "server_port" => r.i32s(|s| Some(i32::from(s.server.1))),
                "protocol" => r.constant("tcp"),
                "tunnel_type" => pkt_str(|p| p.tunnel.map(|t| t.kind.name())),
                "tunnel_ip_0" => r.tunnel_ips(tunnel, |t| t.outer_src),
                "tunnel_ip_1" => r.tunnel_ips(tunnel, |t| t.outer_dst),
                "tunnel_id" => r.i64s(|s| tunnel(s)?.id.map(i64::from)),
                "l7_protocol" => r.constant("http"),
                "version" => r.strs(|s| Some(s.version)),
                "type" => r.constant("session"),
                "request_type" => r.strs(|s| Some(&s.method)),
                "request_domain" => r.strs(|s| s.host.as_deref()),
                "request_resource" => r.strs(|s| Some(&s.path)),
                "endpoint" => r.strs(|s| s.path.split('?').next()),
                "response_code" => r.i32s(|s| Some(i32::from(s.status))),
                "response_status" => r.strs(|s| Some(status_class(s.status))),
                "response_exception" => r.strs(|s| (s.status >= 400).then_some(s.reason.as_str())),
                "request_length" => r.i64s(|s| Some(s.request_len as i64)),
                "response_length" => r.i64s(|s| Some(s.response_len as i64)),
                "req_tcp_seq" => r.u32s(|s| s.req_tcp_seq),
                "resp_tcp_seq" => r.u32s(|s| s.resp_tcp_seq),
                "syscall_trace_id_request" => proc_i64(|p| nonzero(p.syscall_trace_id_request)),
                "syscall_trace_id_response" => proc_i64(|p| nonzero(p.syscall_trace_id_response)),
                "syscall_thread_0" => proc_i64(|p| Some(i64::from(p.thread_0))),
                "syscall_thread_1" => proc_i64(|p| Some(i64::from(p.thread_1))),
                "syscall_cap_seq_0" => proc_i64(|p| Some(p.cap_seq_0 as i64)),
                "syscall_cap_seq_1" => proc_i64(|p| Some(p.cap_seq_1 as i64)),
                "process_id_0" => {
                    r.i64s(|s| s.process().filter(|_| client(s)).map(|p| i64::from(p.pid)))
                }
                "process_id_1" => {
                    r.i64s(|s| s.process().filter(|_| !client(s)).map(|p| i64::from(p.pid)))
                }
                "process_kname_0" => {
                    r.strs(|s| s.process().filter(|_| client(s)).map(|p| &*p.comm))
                }
                "process_kname_1" => {
                    r.strs(|s| s.process().filter(|_| !client(s)).map(|p| &*p.comm))
                }
                "x_request_id_0" => r.strs(|s| s.x_request_id.0.as_deref()),
                "x_request_id_1" => r.strs(|s| s.x_request_id.1.as_deref()),
                "trace_id" => r.strs(|s| s.trace_id.as_deref()),
                "span_id" => r.strs(|s| s.span_id.as_deref()),
                "parent_span_id" => r.strs(|s| s.parent_span_id.as_deref()),
                "flow_id" => r.i64s(|s| Some(s.flow_id as i64)),
                "captured_headers" => Arc::new(
                    spans
                        .iter()
                        .map(|s| s.packet().map(|p| p.headers.as_slice()))
                        .collect::<BinaryArray>(),
                ),
                _ => return None,
            })
        })
    }

    /// One `l4_flow_log` batch holding `flows`.
    pub fn build_flows(
        &mut self,
        flows: &[FlowRecord],
    ) -> Result<RecordBatch, arrow::error::ArrowError> {
        let ids: Vec<i64> = flows.iter().map(|f| self.next_id(f.start_us)).collect();
        let r = Rows(flows);
        fn tunnel(f: &FlowRecord) -> Option<&Tunnel> {
            f.tunnel.as_ref()
        }
        batch(l4_flow_log_schema(), flows.len(), |column| {
            Some(match column {
                "_id" => Arc::new(Int64Array::from(ids.clone())),
                "start_time" => r.times(|f| Some(f.start_us)),
                "end_time" => r.times(|f| Some(f.end_us)),
                "duration" => r.i64s(|f| Some(f.end_us - f.start_us)),
                "agent_id" => r.i32s(|_| Some(i32::from(self.agent_id))),
                "host" => r.constant(&self.host),
                "capture_nic" => r.strs(|f| Some(&f.point.nic)),
                "netns" => r.strs(|f| Some(&f.point.netns)),
                "nic_role" => r.strs(|f| Some(f.point.role.name())),
                "protocol" => r.strs(|f| Some(f.protocol)),
                "ip_0" => r.strs(|f| Some(&f.ends[0].0)),
                "ip_1" => r.strs(|f| Some(&f.ends[1].0)),
                "client_port" => r.i32s(|f| Some(i32::from(f.ends[0].1))),
                "server_port" => r.i32s(|f| Some(i32::from(f.ends[1].1))),
                "tunnel_type" => r.strs(|f| f.tunnel.map(|t| t.kind.name())),
                "tunnel_ip_0" => r.tunnel_ips(tunnel, |t| t.outer_src),
                "tunnel_ip_1" => r.tunnel_ips(tunnel, |t| t.outer_dst),
                "tunnel_id" => r.i64s(|f| f.tunnel?.id.map(i64::from)),
                "bytes_0" => r.i64s(|f| Some(f.bytes[0] as i64)),
                "bytes_1" => r.i64s(|f| Some(f.bytes[1] as i64)),
                "packets_0" => r.i64s(|f| Some(f.packets[0] as i64)),
                "packets_1" => r.i64s(|f| Some(f.packets[1] as i64)),
                "retransmissions_0" => r.i64s(|f| Some(f.retransmissions[0] as i64)),
                "retransmissions_1" => r.i64s(|f| Some(f.retransmissions[1] as i64)),
                "syn_time" => r.times(|f| f.syn_us),
                "syn_ack_time" => r.times(|f| f.syn_ack_us),
                "fin_time_0" => r.times(|f| f.fin_us[0]),
                "fin_time_1" => r.times(|f| f.fin_us[1]),
                "handshake_rtt" => r.i64s(FlowRecord::handshake_rtt_us),
                "close_type" => r.strs(|f| Some(f.close)),
                "flow_id" => r.i64s(|f| Some(f.flow_id as i64)),
                _ => return None,
            })
        })
    }
}

/// A batch of `schema` with `n` rows: each column from `column(name)`, null when it gives none.
fn batch(
    schema: SchemaRef,
    n: usize,
    column: impl Fn(&str) -> Option<ArrayRef>,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| column(f.name()).unwrap_or_else(|| new_null_array(f.data_type(), n)))
        .collect();
    RecordBatch::try_new(schema, columns)
}

/// Arrow columns computed row by row from a slice of rows of either table.
#[derive(Debug, Clone, Copy)]
struct Rows<'r, T>(&'r [T]);

impl<'r, T> Rows<'r, T> {
    fn strs(&self, f: impl for<'a> Fn(&'a T) -> Option<&'a str>) -> ArrayRef {
        Arc::new(self.0.iter().map(f).collect::<StringArray>())
    }

    fn constant(&self, v: &str) -> ArrayRef {
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            v,
            self.0.len(),
        )))
    }

    fn i64s(&self, f: impl Fn(&T) -> Option<i64>) -> ArrayRef {
        Arc::new(self.0.iter().map(f).collect::<Int64Array>())
    }

    fn i32s(&self, f: impl Fn(&T) -> Option<i32>) -> ArrayRef {
        Arc::new(self.0.iter().map(f).collect::<Int32Array>())
    }

    fn u32s(&self, f: impl Fn(&T) -> u32) -> ArrayRef {
        Arc::new(UInt32Array::from_iter_values(self.0.iter().map(f)))
    }

    fn times(&self, f: impl Fn(&T) -> Option<i64>) -> ArrayRef {
        Arc::new(
            self.0
                .iter()
                .map(f)
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        )
    }

    /// One outer address per row (`outer_src` or `outer_dst` of its tunnel), null without one.
    fn tunnel_ips(
        &self,
        tunnel: for<'a> fn(&'a T) -> Option<&'a Tunnel>,
        outer: fn(&Tunnel) -> IpAddr,
    ) -> ArrayRef {
        Arc::new(
            self.0
                .iter()
                .map(|r| tunnel(r).map(|t| outer(t).to_string()))
                .collect::<StringArray>(),
        )
    }
}

fn nonzero(v: u64) -> Option<i64> {
    (v != 0).then_some(v as i64)
}

fn status_class(code: u16) -> &'static str {
    match code {
        100..=399 => "ok",
        400..=499 => "client_error",
        500..=599 => "server_error",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        counters::IngestCounters,
        event::{EventView, KernelClock},
        sockets::SpanAssembler,
        synth::{SyntheticSocket, request, response},
    };
    use wiretrace_ebpf_common::Direction;

    #[test]
    fn batch_has_the_storage_schema_and_derived_ids() {
        let c = IngestCounters::default();
        let mut a = SpanAssembler::new(KernelClock::with_offset_ns(1_700_000_000_000_000_000));
        let mut s = SyntheticSocket::new(1, 9, "curl", 40000, true);
        for _ in 0..3 {
            for (dir, bytes) in [
                (Direction::Egress, request("/x")),
                (Direction::Ingress, response(2)),
            ] {
                a.push(
                    &EventView::parse(&s.event(dir, &bytes, 1024, 0)).unwrap(),
                    &c,
                );
            }
        }
        let batch = SpanBatchBuilder::new(3, "h")
            .build(&a.take_spans())
            .unwrap();
        assert_eq!(batch.schema(), l7_flow_log_schema());
        assert_eq!(batch.num_rows(), 3);
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(ids.value(0) >> 32, 1_700_000_000);
        assert_eq!((ids.value(0) >> 24) & 0xff, 3);
        assert!(ids.value(0) < ids.value(1) && ids.value(1) < ids.value(2));
    }
}
