//! Spans → Arrow record batches with the `l7_flow_log` schema from storage.

use std::{net::IpAddr, sync::Arc};

use arrow::{
    array::{
        ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
        TimestampMicrosecondArray, UInt32Array, new_null_array,
    },
    datatypes::Field,
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
        let schema = l7_flow_log_schema();
        let n = spans.len();
        let ids: Vec<i64> = spans.iter().map(|s| self.next_id(s.start_us)).collect();
        let s = spans;
        let strs = |f: &dyn for<'a> Fn(&'a Span) -> Option<&'a str>| -> ArrayRef {
            Arc::new(s.iter().map(f).collect::<StringArray>())
        };
        let constant = |v: &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(v, n)))
        };
        let i64s = |f: &dyn Fn(&Span) -> Option<i64>| -> ArrayRef {
            Arc::new(s.iter().map(f).collect::<Int64Array>())
        };
        let time = |f: &dyn Fn(&Span) -> i64| -> ArrayRef {
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(s.iter().map(f)).with_timezone("UTC"),
            )
        };
        let client = |s: &Span| s.observation_point == "c-p";
        let proc_i64 = |f: &dyn Fn(&ProcessSeen) -> Option<i64>| -> ArrayRef {
            i64s(&|s| s.process().and_then(f))
        };
        let proc_str = |f: &dyn for<'a> Fn(&'a Span, &'a ProcessSeen) -> Option<&'a str>| {
            strs(&|s| s.process().and_then(|p| f(s, p)))
        };
        let pkt_str = |f: &dyn for<'a> Fn(&'a PacketSeen) -> Option<&'a str>| {
            strs(&|s| s.packet().and_then(f))
        };
        let tunnel_ip = |outer: fn(&Tunnel) -> IpAddr| {
            tunnel_ips(
                s.iter().map(|s| s.packet().and_then(|p| p.tunnel.as_ref())),
                outer,
            )
        };
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| -> ArrayRef {
                match field.name().as_str() {
                    "_id" => Arc::new(Int64Array::from(ids.clone())),
                    "start_time" => time(&|s| s.start_us),
                    "end_time" => time(&|s| s.end_us),
                    "response_duration" => i64s(&|s| Some(s.end_us - s.start_us)),
                    "signal_source" => strs(&|s| {
                        Some(match s.seen {
                            Seen::Process(_) => "ebpf",
                            Seen::Packet(_) => "packet",
                        })
                    }),
                    "observation_point" => strs(&|s| Some(s.observation_point)),
                    "agent_id" => Arc::new(Int32Array::from(vec![i32::from(self.agent_id); n])),
                    "host" => constant(&self.host),
                    "capture_nic" => pkt_str(&|p| Some(&p.point.nic)),
                    "netns" => pkt_str(&|p| Some(&p.point.netns)),
                    "ip_0" => strs(&|s| Some(&s.client.0)),
                    "ip_1" => strs(&|s| Some(&s.server.0)),
                    "client_port" => Arc::new(
                        s.iter()
                            .map(|s| i32::from(s.client.1))
                            .collect::<Int32Array>(),
                    ),
                    "server_port" => Arc::new(
                        s.iter()
                            .map(|s| i32::from(s.server.1))
                            .collect::<Int32Array>(),
                    ),
                    "protocol" => constant("tcp"),
                    "tunnel_type" => pkt_str(&|p| p.tunnel.map(|t| t.kind.name())),
                    "tunnel_ip_0" => tunnel_ip(|t| t.outer_src),
                    "tunnel_ip_1" => tunnel_ip(|t| t.outer_dst),
                    "tunnel_id" => i64s(&|s| s.packet()?.tunnel?.id.map(i64::from)),
                    "l7_protocol" => constant("http"),
                    "version" => strs(&|s| Some(s.version)),
                    "type" => constant("session"),
                    "request_type" => strs(&|s| Some(&s.method)),
                    "request_domain" => strs(&|s| s.host.as_deref()),
                    "request_resource" => strs(&|s| Some(&s.path)),
                    "endpoint" => strs(&|s| s.path.split('?').next()),
                    "response_code" => Arc::new(
                        s.iter()
                            .map(|s| Some(i32::from(s.status)))
                            .collect::<Int32Array>(),
                    ),
                    "response_status" => strs(&|s| Some(status_class(s.status))),
                    "response_exception" => {
                        strs(&|s| (s.status >= 400).then_some(s.reason.as_str()))
                    }
                    "request_length" => i64s(&|s| Some(s.request_len as i64)),
                    "response_length" => i64s(&|s| Some(s.response_len as i64)),
                    "req_tcp_seq" => Arc::new(
                        s.iter()
                            .map(|s| Some(s.req_tcp_seq))
                            .collect::<UInt32Array>(),
                    ),
                    "resp_tcp_seq" => Arc::new(
                        s.iter()
                            .map(|s| Some(s.resp_tcp_seq))
                            .collect::<UInt32Array>(),
                    ),
                    "syscall_trace_id_request" => {
                        proc_i64(&|p| nonzero(p.syscall_trace_id_request))
                    }
                    "syscall_trace_id_response" => {
                        proc_i64(&|p| nonzero(p.syscall_trace_id_response))
                    }
                    "syscall_thread_0" => proc_i64(&|p| Some(i64::from(p.thread_0))),
                    "syscall_thread_1" => proc_i64(&|p| Some(i64::from(p.thread_1))),
                    "syscall_cap_seq_0" => proc_i64(&|p| Some(p.cap_seq_0 as i64)),
                    "syscall_cap_seq_1" => proc_i64(&|p| Some(p.cap_seq_1 as i64)),
                    "process_id_0" => {
                        i64s(&|s| s.process().filter(|_| client(s)).map(|p| i64::from(p.pid)))
                    }
                    "process_id_1" => {
                        i64s(&|s| s.process().filter(|_| !client(s)).map(|p| i64::from(p.pid)))
                    }
                    "process_kname_0" => proc_str(&|s, p| client(s).then_some(&*p.comm)),
                    "process_kname_1" => proc_str(&|s, p| (!client(s)).then_some(&*p.comm)),
                    "x_request_id_0" => strs(&|s| s.x_request_id.0.as_deref()),
                    "x_request_id_1" => strs(&|s| s.x_request_id.1.as_deref()),
                    "trace_id" => strs(&|s| s.trace_id.as_deref()),
                    "span_id" => strs(&|s| s.span_id.as_deref()),
                    "parent_span_id" => strs(&|s| s.parent_span_id.as_deref()),
                    "flow_id" => i64s(&|s| Some(s.flow_id as i64)),
                    "captured_headers" => Arc::new(
                        s.iter()
                            .map(|s| s.packet().map(|p| p.headers.as_slice()))
                            .collect::<BinaryArray>(),
                    ),
                    _ => null_column(field, n),
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns)
    }
}

impl SpanBatchBuilder {
    /// One `l4_flow_log` batch holding `flows`.
    pub fn build_flows(
        &mut self,
        flows: &[FlowRecord],
    ) -> Result<RecordBatch, arrow::error::ArrowError> {
        let schema = l4_flow_log_schema();
        let n = flows.len();
        let ids: Vec<i64> = flows.iter().map(|f| self.next_id(f.start_us)).collect();
        let f = flows;
        let strs = |g: &dyn for<'a> Fn(&'a FlowRecord) -> Option<&'a str>| -> ArrayRef {
            Arc::new(f.iter().map(g).collect::<StringArray>())
        };
        let i64s = |g: &dyn Fn(&FlowRecord) -> Option<i64>| -> ArrayRef {
            Arc::new(f.iter().map(g).collect::<Int64Array>())
        };
        let i32s = |g: &dyn Fn(&FlowRecord) -> i32| -> ArrayRef {
            Arc::new(f.iter().map(g).collect::<Int32Array>())
        };
        let time = |g: &dyn Fn(&FlowRecord) -> Option<i64>| -> ArrayRef {
            Arc::new(
                f.iter()
                    .map(g)
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone("UTC"),
            )
        };
        let tunnel_ip =
            |outer: fn(&Tunnel) -> IpAddr| tunnel_ips(f.iter().map(|r| r.tunnel.as_ref()), outer);
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| -> ArrayRef {
                match field.name().as_str() {
                    "_id" => Arc::new(Int64Array::from(ids.clone())),
                    "start_time" => time(&|r| Some(r.start_us)),
                    "end_time" => time(&|r| Some(r.end_us)),
                    "duration" => i64s(&|r| Some(r.end_us - r.start_us)),
                    "agent_id" => i32s(&|_| i32::from(self.agent_id)),
                    "host" => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                        self.host.as_str(),
                        n,
                    ))),
                    "capture_nic" => strs(&|r| Some(&r.point.nic)),
                    "netns" => strs(&|r| Some(&r.point.netns)),
                    "nic_role" => strs(&|r| Some(r.point.role.name())),
                    "protocol" => strs(&|r| Some(r.protocol)),
                    "ip_0" => strs(&|r| Some(&r.ends[0].0)),
                    "ip_1" => strs(&|r| Some(&r.ends[1].0)),
                    "client_port" => i32s(&|r| i32::from(r.ends[0].1)),
                    "server_port" => i32s(&|r| i32::from(r.ends[1].1)),
                    "tunnel_type" => strs(&|r| r.tunnel.map(|t| t.kind.name())),
                    "tunnel_ip_0" => tunnel_ip(|t| t.outer_src),
                    "tunnel_ip_1" => tunnel_ip(|t| t.outer_dst),
                    "tunnel_id" => i64s(&|r| r.tunnel?.id.map(i64::from)),
                    "bytes_0" => i64s(&|r| Some(r.bytes[0] as i64)),
                    "bytes_1" => i64s(&|r| Some(r.bytes[1] as i64)),
                    "packets_0" => i64s(&|r| Some(r.packets[0] as i64)),
                    "packets_1" => i64s(&|r| Some(r.packets[1] as i64)),
                    "retransmissions_0" => i64s(&|r| Some(r.retransmissions[0] as i64)),
                    "retransmissions_1" => i64s(&|r| Some(r.retransmissions[1] as i64)),
                    "syn_time" => time(&|r| r.syn_us),
                    "syn_ack_time" => time(&|r| r.syn_ack_us),
                    "fin_time_0" => time(&|r| r.fin_us[0]),
                    "fin_time_1" => time(&|r| r.fin_us[1]),
                    "handshake_rtt" => i64s(&|r| r.handshake_rtt_us()),
                    "close_type" => strs(&|r| Some(r.close)),
                    "flow_id" => i64s(&|r| Some(r.flow_id as i64)),
                    _ => null_column(field, n),
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns)
    }
}

/// One outer address per row (`outer_src` or `outer_dst` of its tunnel), null without one.
fn tunnel_ips<'a>(
    tunnels: impl Iterator<Item = Option<&'a Tunnel>>,
    outer: fn(&Tunnel) -> IpAddr,
) -> ArrayRef {
    Arc::new(
        tunnels
            .map(|t| t.map(|t| outer(t).to_string()))
            .collect::<StringArray>(),
    )
}

fn null_column(field: &Field, n: usize) -> ArrayRef {
    new_null_array(field.data_type(), n)
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
