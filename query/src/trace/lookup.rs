//! Reading spans for assembly: a time window at once (`traces`), or the iterative key
//! expansion from seed spans (`trace`, `trace_by`), each round one pruned lookup over
//! `l7_flow_log` (bloom filters on the key columns, row-group statistics on time).

use std::collections::HashSet;

use arrow::{
    array::{RecordBatch, UInt32Array},
    compute::{concat_batches, take_record_batch},
};
use datafusion::{
    common::ScalarValue,
    error::Result,
    execution::SessionState,
    logical_expr::{Expr, col, lit},
    prelude::{DataFrame, SessionContext},
};
use wiretrace_storage::schema::{L7_FLOW_LOG, l7_flow_log_schema};

use super::{
    assemble::{Assembly, Tolerance, assemble},
    meta::{Point, SpanMeta},
};

/// Expansion rounds before a lookup stops growing the trace.
pub const MAX_ROUNDS: usize = 30;

/// Rounds spent walking sibling calls without the trace growing before giving up (a client
/// thread's calls chain by syscall id without any server span above them).
const SIBLING_STEPS: usize = 4;

/// Spans read for assembly: their rows and their decoded keys, in the same order.
#[derive(Debug)]
pub struct Spans {
    /// The rows (all of `l7_flow_log`'s columns that were asked for, plus the key columns).
    pub rows: RecordBatch,
    /// Keys and times per row.
    pub meta: Vec<SpanMeta>,
}

fn ts(us: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(us),
        Some("UTC".into()),
    ))
}

fn between(from_us: i64, to_us: i64) -> Expr {
    col("start_time")
        .gt_eq(ts(from_us))
        .and(col("start_time").lt_eq(ts(to_us)))
}

/// A context for lookups: the caller's session with filter pushdown into the Parquet reader.
pub fn lookup_context(state: &SessionState) -> SessionContext {
    let mut state = state.clone();
    let parquet = &mut state.config_mut().options_mut().execution.parquet;
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    SessionContext::new_with_state(state)
}

async fn read(ctx: &SessionContext, filter: Expr, columns: &[String]) -> Result<RecordBatch> {
    let df: DataFrame = ctx
        .table(L7_FLOW_LOG)
        .await?
        .filter(filter)?
        .select_columns(&columns.iter().map(String::as_str).collect::<Vec<_>>())?;
    let schema = df.schema().as_arrow().clone();
    let batches = df.collect().await?;
    Ok(concat_batches(&schema.into(), &batches)?)
}

/// Every span starting in `[from_us, to_us]`.
pub async fn window(
    ctx: &SessionContext,
    from_us: i64,
    to_us: i64,
    columns: &[String],
) -> Result<Spans> {
    let rows = read(ctx, between(from_us, to_us), columns).await?;
    let meta = SpanMeta::from_batch(&rows)?;
    Ok(Spans { rows, meta })
}

/// What a lookup starts from.
#[derive(Debug, Clone)]
pub enum Seed {
    /// One span by `_id`.
    Id(i64),
    /// Spans whose X-Request-ID (either side) is this.
    XRequestId(String),
    /// Spans with this trace id.
    TraceId(String),
}

/// The traces holding the seed spans, found by expanding keys round by round inside
/// `window_us` either side of the seeds. Returns the rows read and their assembly restricted
/// to those traces (as row indexes in output order).
pub async fn expand(
    ctx: &SessionContext,
    seed: Seed,
    window_us: i64,
    tol: &Tolerance,
    columns: &[String],
) -> Result<(Spans, Assembly, Vec<u32>)> {
    let seed_filter = match &seed {
        // `_id` holds its span's start second: prune by time first.
        Seed::Id(id) => {
            let sec = id >> 32;
            col("_id")
                .eq(lit(*id))
                .and(between(sec * 1_000_000, sec * 1_000_000 + 999_999))
        }
        Seed::XRequestId(x) => col("x_request_id_0")
            .eq(lit(x.clone()))
            .or(col("x_request_id_1").eq(lit(x.clone()))),
        Seed::TraceId(t) => col("trace_id").eq(lit(t.clone())),
    };
    let mut rows = vec![read(ctx, seed_filter, columns).await?];
    let mut meta = SpanMeta::from_batch(&rows[0])?;
    let mut strings = StringKeys::all(&rows[0]);
    let seeds: Vec<i64> = meta.iter().map(|m| m.id).collect();
    let Some(from) = meta.iter().map(|m| m.start).min() else {
        return Ok((empty(&rows[0]), Assembly::default(), Vec::new()));
    };
    let to = meta.iter().map(|m| m.end).max().unwrap_or(from);
    let (from, to) = (from - window_us, to + window_us);
    let mut seen: HashSet<i64> = seeds.iter().copied().collect();
    let mut expanded: HashSet<i64> = HashSet::new();
    let mut used = Keys::default();
    let mut picked = Vec::new();
    let mut assembly = Assembly::default();
    let (mut idle, mut last_picked) = (0, 0);
    for round in 0..=MAX_ROUNDS {
        assembly = assemble(&meta, tol);
        let seed_traces: HashSet<i64> = meta
            .iter()
            .enumerate()
            .filter(|(_, m)| seeds.contains(&m.id))
            .map(|(i, _)| assembly.trace_uid[i])
            .collect();
        picked = assembly
            .sequence
            .iter()
            .copied()
            .filter(|&i| seed_traces.contains(&assembly.trace_uid[i as usize]))
            .collect();
        if round == MAX_ROUNDS {
            tracing::warn!(rounds = MAX_ROUNDS, "trace lookup stopped expanding");
            break;
        }
        idle = if picked.len() > last_picked {
            0
        } else {
            idle + 1
        };
        last_picked = picked.len();
        let mut keys = Keys::default();
        for &i in &picked {
            let m = &meta[i as usize];
            if expanded.insert(m.id) {
                keys.add(&strings[i as usize], m);
            }
        }
        if idle <= SIBLING_STEPS {
            for i in siblings(&meta, &assembly, &picked) {
                let m = &meta[i as usize];
                if expanded.insert(m.id) {
                    keys.add(&StringKeys::default(), m);
                }
            }
        }
        keys.remove_used(&mut used);
        let Some(filter) = keys.filter() else { break };
        let batch = read(ctx, filter.and(between(from, to)), columns).await?;
        let new_meta = SpanMeta::from_batch(&batch)?;
        let fresh: Vec<u32> = (0..new_meta.len() as u32)
            .filter(|&i| seen.insert(new_meta[i as usize].id))
            .collect();
        if fresh.is_empty() {
            break;
        }
        let batch = take_record_batch(&batch, &UInt32Array::from(fresh.clone()))?;
        strings.extend(StringKeys::all(&batch));
        meta.extend(fresh.iter().map(|&i| new_meta[i as usize].clone()));
        rows.push(batch);
    }
    let schema = rows[0].schema();
    let rows = concat_batches(&schema, &rows)?;
    Ok((Spans { rows, meta }, assembly, picked))
}

/// Client calls not (yet) in the trace that a parentless call of it chains to by syscall ids
/// (same agent and process): walking these siblings reaches the server span that made them,
/// whose ids equal the first call's request id or the last call's response id.
fn siblings(meta: &[SpanMeta], assembly: &Assembly, picked: &[u32]) -> Vec<u32> {
    let call = |i: usize| meta[i].point == Point::ClientProcess;
    let in_trace: HashSet<u32> = picked.iter().copied().collect();
    let mut frontier: Vec<usize> = picked
        .iter()
        .map(|&i| i as usize)
        .filter(|&i| call(i) && assembly.parent[i].is_none())
        .collect();
    let mut found: HashSet<u32> = HashSet::new();
    while let Some(a) = frontier.pop() {
        let x = &meta[a];
        for (b, y) in meta.iter().enumerate() {
            let chained = (x.sys_resp != 0 && x.sys_resp == y.sys_req)
                || (x.sys_req != 0 && x.sys_req == y.sys_resp);
            if chained
                && call(b)
                && (y.agent, y.pid) == (x.agent, x.pid)
                && !in_trace.contains(&(b as u32))
                && found.insert(b as u32)
            {
                frontier.push(b);
            }
        }
    }
    found.into_iter().collect()
}

fn empty(batch: &RecordBatch) -> Spans {
    Spans {
        rows: batch.slice(0, 0),
        meta: Vec::new(),
    }
}

/// String-valued keys of one row.
#[derive(Default)]
struct StringKeys {
    x: Vec<String>,
    trace_id: Option<String>,
}

impl StringKeys {
    /// The string keys of every row of `b`.
    fn all(b: &RecordBatch) -> Vec<Self> {
        use arrow::array::{Array, AsArray};
        let get = |name: &str, i: usize| {
            b.column_by_name(name).and_then(|c| {
                let s = c.as_string_opt::<i32>()?;
                (s.is_valid(i) && !s.value(i).is_empty()).then(|| s.value(i).to_string())
            })
        };
        (0..b.num_rows())
            .map(|i| Self {
                x: [get("x_request_id_0", i), get("x_request_id_1", i)]
                    .into_iter()
                    .flatten()
                    .collect(),
                trace_id: get("trace_id", i),
            })
            .collect()
    }
}

/// Key values to look up in the next round.
#[derive(Default)]
struct Keys {
    req_seq: HashSet<u32>,
    resp_seq: HashSet<u32>,
    sys: HashSet<i64>,
    x: HashSet<String>,
    trace_id: HashSet<String>,
}

impl Keys {
    fn add(&mut self, s: &StringKeys, m: &SpanMeta) {
        if m.req_seq != 0 {
            self.req_seq.insert(m.req_seq);
        }
        if m.resp_seq != 0 {
            self.resp_seq.insert(m.resp_seq);
        }
        for id in [m.sys_req, m.sys_resp] {
            if id != 0 {
                self.sys.insert(id);
            }
        }
        self.x.extend(s.x.iter().cloned());
        self.trace_id.extend(s.trace_id.iter().cloned());
    }

    /// Drops keys looked up before and records the rest as used.
    fn remove_used(&mut self, used: &mut Keys) {
        fn split<T: std::hash::Hash + Eq + Clone>(new: &mut HashSet<T>, used: &mut HashSet<T>) {
            new.retain(|k| used.insert(k.clone()));
        }
        split(&mut self.req_seq, &mut used.req_seq);
        split(&mut self.resp_seq, &mut used.resp_seq);
        split(&mut self.sys, &mut used.sys);
        split(&mut self.x, &mut used.x);
        split(&mut self.trace_id, &mut used.trace_id);
    }

    /// `req_tcp_seq IN (…) OR resp_tcp_seq IN (…) OR …`, or None when there is nothing new.
    fn filter(&self) -> Option<Expr> {
        fn within<T: Clone>(
            column: &str,
            values: &HashSet<T>,
            lit_of: fn(T) -> Expr,
        ) -> Option<Expr> {
            (!values.is_empty()).then(|| {
                let mut v: Vec<Expr> = values.iter().cloned().map(lit_of).collect();
                if v.len() == 1 {
                    col(column).eq(v.pop().expect("one value"))
                } else {
                    col(column).in_list(v, false)
                }
            })
        }
        let u32_lit = |v: u32| lit(v);
        let i64_lit = |v: i64| lit(v);
        let str_lit = |v: String| lit(v);
        [
            within("req_tcp_seq", &self.req_seq, u32_lit),
            within("resp_tcp_seq", &self.resp_seq, u32_lit),
            within("syscall_trace_id_request", &self.sys, i64_lit),
            within("syscall_trace_id_response", &self.sys, i64_lit),
            within("x_request_id_0", &self.x, str_lit),
            within("x_request_id_1", &self.x, str_lit),
            within("trace_id", &self.trace_id, str_lit),
        ]
        .into_iter()
        .flatten()
        .reduce(Expr::or)
    }
}

/// The names of `l7_flow_log`'s columns.
pub fn all_columns() -> Vec<String> {
    l7_flow_log_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}
