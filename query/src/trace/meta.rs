//! The few columns of a span that trace assembly reads, decoded once from Arrow into a compact
//! row: keys as integers, strings as 64-bit hashes (0 = absent).

use std::hash::{BuildHasher, Hash, Hasher};

use arrow::{
    array::{Array, AsArray, MutableArrayData, RecordBatch, StringArray},
    datatypes::{
        ArrowPrimitiveType, DataType, Int32Type, Int64Type, TimestampMicrosecondType, UInt32Type,
    },
};
use datafusion::error::{DataFusionError, Result};
use wiretrace_storage::LOOKUP_KEY_COLUMNS;

/// Columns [`SpanMeta::from_batch`] reads besides the lookup keys and conflict fields.
const OWN_COLUMNS: &[&str] = &[
    "_id",
    "start_time",
    "end_time",
    "observation_point",
    "type",
    "agent_id",
    "process_id_0",
    "process_id_1",
    "span_id",
    "parent_span_id",
];

/// Columns in which two views of one hop must agree where both are set (with the two
/// X-Request-IDs, which are lookup keys as well).
const CONFLICT_COLUMNS: [&str; 11] = [
    "client_port",
    "protocol",
    "l7_protocol",
    "version",
    "request_type",
    "request_domain",
    "request_resource",
    "endpoint",
    "request_id",
    "response_code",
    "response_exception",
];

/// String columns assembly reads whose values repeat (the writer dictionary-encodes them): a
/// block reads them as Arrow dictionaries, each distinct value parsed or hashed once.
pub const DICTIONARY_COLUMNS: &[&str] = &[
    "observation_point",
    "type",
    "protocol",
    "l7_protocol",
    "version",
    "request_type",
    "request_domain",
    "endpoint",
    "response_exception",
];

/// Every column [`SpanMeta::from_batch`] reads: its own and the trace lookup keys.
pub fn meta_columns() -> Vec<String> {
    OWN_COLUMNS
        .iter()
        .chain(&CONFLICT_COLUMNS)
        .chain(LOOKUP_KEY_COLUMNS)
        .map(|c| c.to_string())
        .collect()
}

/// Where a span was seen, in path order from the client process to the server process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Point {
    /// Client process socket (eBPF).
    ClientProcess,
    /// Client pod NIC.
    ClientNic,
    /// Client node NIC.
    ClientNode,
    /// Loopback, or a NIC whose side is unknown.
    Between,
    /// Server node NIC.
    ServerNode,
    /// Server pod NIC.
    ServerNic,
    /// Server process socket (eBPF).
    ServerProcess,
}

impl Point {
    /// Parses an `observation_point` value; anything unknown sits between the two sides.
    pub fn parse(s: &str) -> Self {
        match s {
            "c-p" => Self::ClientProcess,
            "c" => Self::ClientNic,
            "c-nd" => Self::ClientNode,
            "s-nd" => Self::ServerNode,
            "s" => Self::ServerNic,
            "s-p" => Self::ServerProcess,
            _ => Self::Between,
        }
    }

    /// Whether the span comes from a process's syscalls.
    pub fn is_process(self) -> bool {
        matches!(self, Self::ClientProcess | Self::ServerProcess)
    }

    /// Whether the point is on the client's side of the path.
    pub fn is_client_side(self) -> bool {
        self < Self::Between
    }
}

/// Which halves of the exchange a span holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request only.
    Request,
    /// The response only.
    Response,
    /// Both.
    Session,
}

impl Kind {
    fn parse(s: &str) -> Self {
        match s {
            "request" => Self::Request,
            "response" => Self::Response,
            _ => Self::Session,
        }
    }

    /// Whether the span carries the request half.
    pub fn has_request(self) -> bool {
        self != Self::Response
    }

    /// Whether the span carries the response half.
    pub fn has_response(self) -> bool {
        self != Self::Request
    }
}

/// Fields compared for conflicts: two spans of one hop never differ where both are set.
pub const CONFLICT_FIELDS: usize = CONFLICT_COLUMNS.len() + 2;

/// What a span can be looked up by, and when it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanKeys {
    /// `_id`.
    pub id: i64,
    /// Start, µs.
    pub start: i64,
    /// End, µs.
    pub end: i64,
    /// TCP seq of the request (0 = unknown).
    pub req_seq: u32,
    /// TCP seq of the response (0 = unknown).
    pub resp_seq: u32,
    /// Syscall trace id of the request (0 = none).
    pub sys_req: i64,
    /// Syscall trace id of the response (0 = none).
    pub sys_resp: i64,
    /// X-Request-ID of the request, hashed.
    pub x0: u64,
    /// X-Request-ID of the response, hashed.
    pub x1: u64,
    /// Trace id, hashed.
    pub trace_id: u64,
}

impl SpanKeys {
    /// Decodes every row of `batch` (which must hold [`key_columns`]).
    pub fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>> {
        let c = Columns { batch };
        let ids = c.values::<Int64Type>("_id")?;
        let starts = c.values::<TimestampMicrosecondType>("start_time")?;
        let ends = c.values::<TimestampMicrosecondType>("end_time")?;
        let req_seq = c.values::<UInt32Type>("req_tcp_seq")?;
        let resp_seq = c.values::<UInt32Type>("resp_tcp_seq")?;
        let sys_req = c.values::<Int64Type>("syscall_trace_id_request")?;
        let sys_resp = c.values::<Int64Type>("syscall_trace_id_response")?;
        let x0 = c.hashes("x_request_id_0")?;
        let x1 = c.hashes("x_request_id_1")?;
        let trace_id = c.hashes("trace_id")?;
        Ok((0..batch.num_rows())
            .map(|i| Self {
                id: ids[i],
                start: starts[i],
                end: ends[i],
                req_seq: req_seq[i],
                resp_seq: resp_seq[i],
                sys_req: sys_req[i],
                sys_resp: sys_resp[i],
                x0: x0[i],
                x1: x1[i],
                trace_id: trace_id[i],
            })
            .collect())
    }
}

/// One span as trace assembly sees it: its keys and times (read as its own fields, through
/// `Deref`) and what the rules compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanMeta {
    /// `_id`, times and lookup keys.
    pub keys: SpanKeys,
    /// Observation point.
    pub point: Point,
    /// Request, response or both.
    pub kind: Kind,
    /// Capturing agent.
    pub agent: i32,
    /// The observing process (eBPF spans), else 0.
    pub pid: i64,
    /// Span id, hashed.
    pub span_id: u64,
    /// Parent span id, hashed.
    pub parent_span_id: u64,
    /// Hashes of the fields in which two spans of one hop must agree.
    pub fields: [u64; CONFLICT_FIELDS],
}

impl std::ops::Deref for SpanMeta {
    type Target = SpanKeys;

    fn deref(&self) -> &SpanKeys {
        &self.keys
    }
}

impl SpanMeta {
    /// Duration, µs.
    pub fn duration(&self) -> i64 {
        self.end - self.start
    }

    /// Whether two spans of one hop disagree on a field both carry.
    pub fn conflicts(&self, other: &Self) -> bool {
        self.fields
            .iter()
            .zip(&other.fields)
            .any(|(a, b)| *a != 0 && *b != 0 && a != b)
    }

    /// Decodes every row of `batch` (which must hold [`meta_columns`]).
    pub fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>> {
        let keys = SpanKeys::from_batch(batch)?;
        let c = Columns { batch };
        let agents = c.values::<Int32Type>("agent_id")?;
        let pid0 = c.values::<Int64Type>("process_id_0")?;
        let pid1 = c.values::<Int64Type>("process_id_1")?;
        let points = c.parsed("observation_point", Point::parse)?;
        let kinds = c.parsed("type", Kind::parse)?;
        let span_id = c.hashes("span_id")?;
        let parent_span_id = c.hashes("parent_span_id")?;
        let fields = CONFLICT_COLUMNS
            .iter()
            .map(|n| c.hashes(n))
            .collect::<Result<Vec<_>>>()?;
        Ok(keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let point = points[i];
                let pid = match point {
                    Point::ClientProcess => pid0[i],
                    Point::ServerProcess => pid1[i],
                    _ => 0,
                };
                let mut all = [k.x0; CONFLICT_FIELDS];
                all[CONFLICT_FIELDS - 1] = k.x1;
                for (f, column) in fields.iter().enumerate() {
                    all[f] = column[i];
                }
                Self {
                    keys: *k,
                    point,
                    kind: kinds[i],
                    agent: agents[i],
                    pid,
                    span_id: span_id[i],
                    parent_span_id: parent_span_id[i],
                    fields: all,
                }
            })
            .collect())
    }
}

/// Column `name` of `batch` as lookup-key values: integers as they are, strings hashed as
/// [`SpanKeys`] holds them, nulls (and empty strings) 0.
pub fn key_values(batch: &RecordBatch, name: &str) -> Result<Vec<u64>> {
    let c = Columns { batch };
    let a = c.column(name)?;
    Ok(match a.data_type() {
        DataType::UInt32 => c
            .values::<UInt32Type>(name)?
            .into_iter()
            .map(u64::from)
            .collect(),
        DataType::Int64 => c
            .values::<Int64Type>(name)?
            .into_iter()
            .map(|v| v as u64)
            .collect(),
        DataType::Utf8 => c.hashes(name)?,
        dt => return Err(Columns::mismatch(name, dt)),
    })
}

/// String-valued keys of one row.
#[derive(Debug, Clone, Default)]
pub struct StringKeys {
    /// X-Request-IDs (request, response), those set.
    pub x: Vec<String>,
    /// Trace id, if set.
    pub trace_id: Option<String>,
}

impl StringKeys {
    /// The string keys of every row of `b`.
    pub fn all(b: &RecordBatch) -> Vec<Self> {
        let columns = StringKeyColumns::of(b);
        (0..b.num_rows()).map(|i| columns.row(i)).collect()
    }
}

/// The string key columns of a batch.
#[derive(Debug, Clone)]
pub struct StringKeyColumns {
    x0: Option<StringArray>,
    x1: Option<StringArray>,
    trace_id: Option<StringArray>,
}

impl StringKeyColumns {
    /// Those of `b` (a column it lacks has no values), in buffers of their own where `b` is a
    /// slice of a larger batch, which they would otherwise keep whole.
    pub fn of(b: &RecordBatch) -> Self {
        let [x0, x1, trace_id] = ["x_request_id_0", "x_request_id_1", "trace_id"].map(|name| {
            b.column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .map(owned)
        });
        Self { x0, x1, trace_id }
    }

    /// Row `i`'s keys.
    pub fn row(&self, i: usize) -> StringKeys {
        let at = |s: &Option<StringArray>| {
            s.as_ref()
                .filter(|s| s.is_valid(i) && !s.value(i).is_empty())
                .map(|s| s.value(i).to_string())
        };
        StringKeys {
            x: [at(&self.x0), at(&self.x1)].into_iter().flatten().collect(),
            trace_id: at(&self.trace_id),
        }
    }

    /// Memory held by the arrays.
    pub fn bytes(&self) -> usize {
        [&self.x0, &self.x1, &self.trace_id]
            .into_iter()
            .flatten()
            .map(|a| a.get_array_memory_size())
            .sum()
    }
}

/// `a`, copied if its text buffer holds rows outside it.
fn owned(a: &StringArray) -> StringArray {
    let offsets = a.value_offsets();
    if offsets.first() == Some(&0) && offsets.last() == Some(&(a.values().len() as i32)) {
        return a.clone();
    }
    let data = a.to_data();
    let mut copy = MutableArrayData::new(vec![&data], false, a.len());
    match copy.try_extend(0, 0, a.len()) {
        Ok(()) => StringArray::from(copy.freeze()),
        Err(_) => a.clone(),
    }
}

/// Reads named columns of a batch as plain vectors, nulls as 0.
struct Columns<'a> {
    batch: &'a RecordBatch,
}

impl Columns<'_> {
    fn column(&self, name: &str) -> Result<&dyn Array> {
        self.batch
            .column_by_name(name)
            .map(|c| c.as_ref())
            .ok_or_else(|| DataFusionError::Internal(format!("trace assembly needs column {name}")))
    }

    fn mismatch(name: &str, dt: &DataType) -> DataFusionError {
        DataFusionError::Internal(format!("column {name} has unexpected type {dt}"))
    }

    /// A primitive column (any timestamp unit check is the caller's type choice).
    fn values<T: ArrowPrimitiveType>(&self, name: &str) -> Result<Vec<T::Native>> {
        let a = self.column(name)?;
        let a = a
            .as_primitive_opt::<T>()
            .ok_or_else(|| Self::mismatch(name, a.data_type()))?;
        Ok(zero_nulls(a))
    }

    /// A string column with `f` applied to each value: once per dictionary value for an
    /// Int32-keyed dictionary, once per row for a plain column; nulls as the empty string.
    fn parsed<T: Copy>(&self, name: &str, f: impl Fn(&str) -> T) -> Result<Vec<T>> {
        let a = self.column(name)?;
        fn text(s: &StringArray, i: usize) -> &str {
            if s.is_valid(i) { s.value(i) } else { "" }
        }
        if let Some(d) = a.as_dictionary_opt::<Int32Type>() {
            let values = d
                .values()
                .as_string_opt::<i32>()
                .ok_or_else(|| Self::mismatch(name, a.data_type()))?;
            let each: Vec<T> = (0..values.len()).map(|i| f(text(values, i))).collect();
            let empty = f("");
            return Ok(d
                .keys()
                .iter()
                .map(|k| k.map_or(empty, |k| each[k as usize]))
                .collect());
        }
        let s = a
            .as_string_opt::<i32>()
            .ok_or_else(|| Self::mismatch(name, a.data_type()))?;
        Ok((0..s.len()).map(|i| f(text(s, i))).collect())
    }

    /// Any column as 64-bit value hashes; null and empty strings hash to 0.
    fn hashes(&self, name: &str) -> Result<Vec<u64>> {
        let a = self.column(name)?;
        let n = a.len();
        let out = match a.data_type() {
            DataType::Utf8 | DataType::Dictionary(..) => self.parsed(name, hash_str)?,
            DataType::Int64 => {
                let v = a.as_primitive::<Int64Type>();
                (0..n)
                    .map(|i| hash_opt(v.is_valid(i).then(|| v.value(i))))
                    .collect()
            }
            DataType::Int32 => {
                let v = a.as_primitive::<Int32Type>();
                (0..n)
                    .map(|i| hash_opt(v.is_valid(i).then(|| v.value(i))))
                    .collect()
            }
            dt => return Err(Self::mismatch(name, dt)),
        };
        Ok(out)
    }
}

fn zero_nulls<T: ArrowPrimitiveType>(a: &arrow::array::PrimitiveArray<T>) -> Vec<T::Native> {
    if a.null_count() == 0 {
        a.values().to_vec()
    } else {
        (0..a.len())
            .map(|i| {
                if a.is_valid(i) {
                    a.value(i)
                } else {
                    T::Native::default()
                }
            })
            .collect()
    }
}

fn hasher() -> impl Hasher {
    foldhash::quality::FixedState::with_seed(0x7769_7265_7472_6163).build_hasher()
}

/// A string's hash as [`SpanMeta`] holds it (0 for the empty string).
pub fn hash_str(s: &str) -> u64 {
    hash_opt((!s.is_empty()).then_some(s))
}

/// A value's hash, never 0; 0 for no value.
fn hash_opt<T: Hash>(v: Option<T>) -> u64 {
    v.map_or(0, |v| {
        let mut h = hasher();
        v.hash(&mut h);
        h.finish().max(1)
    })
}
