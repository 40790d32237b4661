//! Spans → Arrow record batches with the `l7_flow_log` schema from storage.

use std::sync::Arc;

use arrow::{
    array::{
        ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
        UInt32Array, new_null_array,
    },
    datatypes::Field,
};
use wiretrace_storage::schema::l7_flow_log_schema;

use crate::span::Span;

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
        let strs = |f: &dyn Fn(&Span) -> Option<String>| -> ArrayRef {
            Arc::new(s.iter().map(f).collect::<StringArray>())
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
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| -> ArrayRef {
                match field.name().as_str() {
                    "_id" => Arc::new(Int64Array::from(ids.clone())),
                    "start_time" => time(&|s| s.start_us),
                    "end_time" => time(&|s| s.end_us),
                    "response_duration" => i64s(&|s| Some(s.end_us - s.start_us)),
                    "signal_source" => strs(&|_| Some("ebpf".into())),
                    "observation_point" => strs(&|s| Some(s.observation_point.into())),
                    "agent_id" => Arc::new(Int32Array::from(vec![i32::from(self.agent_id); n])),
                    "host" => strs(&|_| Some(self.host.clone())),
                    "ip_0" => strs(&|s| Some(s.client.0.to_string())),
                    "ip_1" => strs(&|s| Some(s.server.0.to_string())),
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
                    "protocol" => strs(&|_| Some("tcp".into())),
                    "l7_protocol" => strs(&|_| Some("http".into())),
                    "version" => strs(&|s| Some(s.version.into())),
                    "type" => strs(&|_| Some("session".into())),
                    "request_type" => strs(&|s| Some(s.method.clone())),
                    "request_domain" => strs(&|s| s.host.clone()),
                    "request_resource" => strs(&|s| Some(s.path.clone())),
                    "endpoint" => {
                        strs(&|s| Some(s.path.split('?').next().unwrap_or_default().to_string()))
                    }
                    "response_code" => Arc::new(
                        s.iter()
                            .map(|s| Some(i32::from(s.status)))
                            .collect::<Int32Array>(),
                    ),
                    "response_status" => strs(&|s| Some(status_class(s.status).into())),
                    "response_exception" => strs(&|s| (s.status >= 400).then(|| s.reason.clone())),
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
                    "syscall_trace_id_request" => i64s(&|s| nonzero(s.syscall_trace_id_request)),
                    "syscall_trace_id_response" => i64s(&|s| nonzero(s.syscall_trace_id_response)),
                    "syscall_thread_0" => i64s(&|s| Some(i64::from(s.thread_0))),
                    "syscall_thread_1" => i64s(&|s| Some(i64::from(s.thread_1))),
                    "syscall_cap_seq_0" => i64s(&|s| Some(s.cap_seq_0 as i64)),
                    "syscall_cap_seq_1" => i64s(&|s| Some(s.cap_seq_1 as i64)),
                    "process_id_0" => i64s(&|s| client(s).then_some(i64::from(s.pid))),
                    "process_id_1" => i64s(&|s| (!client(s)).then_some(i64::from(s.pid))),
                    "process_kname_0" => strs(&|s| client(s).then(|| s.comm.clone())),
                    "process_kname_1" => strs(&|s| (!client(s)).then(|| s.comm.clone())),
                    "x_request_id_0" => strs(&|s| s.x_request_id.0.clone()),
                    "x_request_id_1" => strs(&|s| s.x_request_id.1.clone()),
                    "trace_id" => strs(&|s| s.trace_id.clone()),
                    "span_id" => strs(&|s| s.span_id.clone()),
                    "parent_span_id" => strs(&|s| s.parent_span_id.clone()),
                    "flow_id" => i64s(&|s| Some(s.socket_id as i64)),
                    _ => null_column(field, n),
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns)
    }
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
