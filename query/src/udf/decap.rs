//! `decap(bytes)` and `inner_tcp_seq(bytes)`: the agent's own decapsulation (wiretrace-packet)
//! on stored `captured_headers` or any raw frame bytes.

use std::sync::Arc;

use arrow::{
    array::{
        Array, ArrayRef, BinaryArray, Int32Array, Int64Array, StringArray, StructArray, UInt32Array,
    },
    compute::cast,
    datatypes::{DataType, Field, Fields},
};
use datafusion::{
    common::exec_err,
    error::Result,
    logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility},
};
use wiretrace_packet::{Decapsulated, L4, TcpInfo, Tunnel, decap};

fn binary_signature() -> Signature {
    Signature::uniform(
        1,
        vec![
            DataType::Binary,
            DataType::LargeBinary,
            DataType::BinaryView,
        ],
        Volatility::Immutable,
    )
}

/// The argument as a plain BinaryArray, whatever binary flavour it arrived in.
fn frames(args: &ScalarFunctionArgs, name: &str) -> Result<BinaryArray> {
    let [arg] = args.args.as_slice() else {
        return exec_err!("{name} takes one binary argument");
    };
    let array = arg.to_array(args.number_rows)?;
    let array = cast(&array, &DataType::Binary)?;
    match array.as_any().downcast_ref::<BinaryArray>() {
        Some(a) => Ok(a.clone()),
        None => exec_err!("{name}: argument is not binary"),
    }
}

/// One input row's outcome: NULL input, a decapsulated frame, or why it failed.
type Row = Option<Result<Decapsulated, String>>;

fn ok(r: &Row) -> Option<&Decapsulated> {
    r.as_ref().and_then(|r| r.as_ref().ok())
}

fn outer(r: &Row) -> Option<&Tunnel> {
    ok(r).and_then(|d| d.tunnels.first())
}

fn tcp(r: &Row) -> Option<TcpInfo> {
    match ok(r).map(|d| d.inner.l4) {
        Some(L4::Tcp(t)) => Some(t),
        _ => None,
    }
}

/// `decap(frame bytes) -> struct`: tunnel and inner addressing of an Ethernet frame.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DecapUdf {
    signature: Signature,
}

impl DecapUdf {
    /// The SQL name.
    pub const NAME: &'static str = "decap";

    /// A new instance.
    pub fn new() -> Self {
        Self {
            signature: binary_signature(),
        }
    }

    fn fields() -> Fields {
        use DataType::*;
        Fields::from(vec![
            Field::new("tunnel_type", Utf8, true),
            Field::new("tunnel_id", Int64, true),
            Field::new("tunnel_tiers", Int32, true),
            Field::new("outer_src", Utf8, true),
            Field::new("outer_dst", Utf8, true),
            Field::new("inner_src", Utf8, true),
            Field::new("inner_dst", Utf8, true),
            Field::new("src_port", Int32, true),
            Field::new("dst_port", Int32, true),
            Field::new("l4_protocol", Utf8, true),
            Field::new("tcp_seq", UInt32, true),
            Field::new("tcp_ack", UInt32, true),
            Field::new("tcp_flags", Int32, true),
            Field::new("payload_offset", Int32, true),
            Field::new("error", Utf8, true),
        ])
    }
}

impl Default for DecapUdf {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for DecapUdf {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(Self::fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let input = frames(&args, Self::NAME)?;
        let rows: Vec<Row> = input
            .iter()
            .map(|b| b.map(|b| decap(b).map_err(|e| e.to_string())))
            .collect();
        let s = |f: &dyn Fn(&Row) -> Option<String>| -> ArrayRef {
            Arc::new(rows.iter().map(f).collect::<StringArray>())
        };
        let columns: Vec<ArrayRef> = vec![
            s(&|r| outer(r).map(|t| t.kind.name().to_string())),
            Arc::new(
                rows.iter()
                    .map(|r| outer(r).and_then(|t| t.id).map(i64::from))
                    .collect::<Int64Array>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|r| ok(r).map(|d| d.tunnels.len() as i32))
                    .collect::<Int32Array>(),
            ),
            s(&|r| outer(r).map(|t| t.outer_src.to_string())),
            s(&|r| outer(r).map(|t| t.outer_dst.to_string())),
            s(&|r| ok(r).map(|d| d.inner.src.to_string())),
            s(&|r| ok(r).map(|d| d.inner.dst.to_string())),
            Arc::new(
                rows.iter()
                    .map(|r| ok(r).map(|d| i32::from(d.inner.src_port)))
                    .collect::<Int32Array>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|r| ok(r).map(|d| i32::from(d.inner.dst_port)))
                    .collect::<Int32Array>(),
            ),
            s(&|r| {
                ok(r).map(|d| match d.inner.l4 {
                    L4::Tcp(_) => "tcp".to_string(),
                    L4::Udp => "udp".to_string(),
                    L4::Other(p) => p.to_string(),
                })
            }),
            Arc::new(
                rows.iter()
                    .map(|r| tcp(r).map(|t| t.seq))
                    .collect::<UInt32Array>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|r| tcp(r).map(|t| t.ack))
                    .collect::<UInt32Array>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|r| tcp(r).map(|t| i32::from(t.flags)))
                    .collect::<Int32Array>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|r| ok(r).map(|d| d.payload_offset as i32))
                    .collect::<Int32Array>(),
            ),
            s(&|r| r.as_ref().and_then(|r| r.as_ref().err().cloned())),
        ];
        let array = StructArray::try_new(Self::fields(), columns, input.nulls().cloned())?;
        Ok(ColumnarValue::Array(Arc::new(array)))
    }
}

/// `inner_tcp_seq(frame bytes) -> uint32`: the inner TCP sequence number, NULL when the frame
/// does not decode to TCP.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct InnerTcpSeqUdf {
    signature: Signature,
}

impl InnerTcpSeqUdf {
    /// The SQL name.
    pub const NAME: &'static str = "inner_tcp_seq";

    /// A new instance.
    pub fn new() -> Self {
        Self {
            signature: binary_signature(),
        }
    }
}

impl Default for InnerTcpSeqUdf {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for InnerTcpSeqUdf {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::UInt32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let input = frames(&args, Self::NAME)?;
        let seqs: UInt32Array = input
            .iter()
            .map(|b| match b.map(decap) {
                Some(Ok(d)) => match d.inner.l4 {
                    L4::Tcp(t) => Some(t.seq),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(seqs)))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use datafusion::prelude::SessionContext;

    /// Ethernet / IPv4 192.168.50.1→.2 / UDP 4789 / VXLAN 1042 / Ethernet / IPv4 10.0.0.1→.2 /
    /// TCP 40000→80 seq 0x12345678 / "GET / HTTP/1.1".
    const VXLAN_FRAME: &str = "02000000000102000000000208004500006c000100004011952cc0a83201c0a83202\
        c73812b500580000080000000004120002000000000102000000000208004500003a00010000400666bb0a00\
        00010a0000029c400050123456789abcdef05018040000000000474554202f20485454502f312e310d0a0d0a";

    #[tokio::test]
    async fn decap_and_inner_tcp_seq_in_sql() {
        let ctx = SessionContext::new();
        crate::udf::register_all(&ctx);
        let sql = format!(
            "select decap(X'{VXLAN_FRAME}')['tunnel_type'] as t, decap(X'{VXLAN_FRAME}')['tunnel_id'] as vni, \
             decap(X'{VXLAN_FRAME}')['inner_dst'] as dst, inner_tcp_seq(X'{VXLAN_FRAME}') as seq, \
             inner_tcp_seq(X'0011') as bad, decap(X'0011')['error'] as err"
        );
        let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        let b = &batches[0];
        let text = |i: usize| b.column(i).as_string::<i32>().value(0).to_string();
        assert_eq!(text(0), "vxlan");
        assert_eq!(
            b.column(1)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            1042
        );
        assert_eq!(text(2), "10.0.0.2");
        assert_eq!(
            b.column(3)
                .as_primitive::<arrow::datatypes::UInt32Type>()
                .value(0),
            0x1234_5678
        );
        assert!(b.column(4).is_null(0));
        assert_eq!(text(5), "truncated ethernet header");
    }
}
