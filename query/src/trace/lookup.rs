//! Reading spans for assembly: a time window at once (`traces`, one pruned scan of
//! `l7_flow_log`), or the iterative key expansion from seed spans (`trace`, `trace_by`), each
//! round a probe of the key index.

use std::{collections::HashSet, sync::Arc};

use arrow::{
    array::{RecordBatch, UInt32Array},
    compute::{concat_batches, take_record_batch},
};
use datafusion::{
    common::ScalarValue,
    error::{DataFusionError, Result},
    execution::SessionState,
    logical_expr::{Expr, col, lit},
    prelude::SessionContext,
};
use wiretrace_storage::schema::{L7_FLOW_LOG, l7_flow_log_schema};

use super::{
    assemble::{Assembly, Tolerance, assemble},
    index::{Key, KeyIndex, Loc, View},
    meta::{Point, SpanMeta, StringKeys, meta_columns},
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

/// The rows matching `filter`.
async fn read(ctx: &SessionContext, filter: Expr, columns: &[String]) -> Result<RecordBatch> {
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    let df = ctx
        .table(L7_FLOW_LOG)
        .await?
        .filter(filter)?
        .select_columns(&names)?;
    let schema = df.schema().as_arrow().clone();
    let batches = df.collect().await?;
    Ok(concat_batches(&schema.into(), &batches)?)
}

/// Every span starting in `[from_us, to_us]` (`columns` must include [`meta_columns`]).
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

/// Spans of whole traces in output order (trace by trace, depth first), with each span's place
/// in its tree.
#[derive(Debug)]
pub struct Traced {
    /// The rows, with the columns asked for.
    pub rows: RecordBatch,
    /// Keys and times per row.
    pub meta: Vec<SpanMeta>,
    /// Per row: `_id` of its trace's first root.
    pub trace_uid: Vec<i64>,
    /// Per row: `_id` of its parent.
    pub parent_id: Vec<Option<i64>>,
    /// Per row: distance from its root.
    pub depth: Vec<u32>,
    /// Per row: position in its trace.
    pub order: Vec<u32>,
    /// The filters of the lookups made, in order (the seed's first); empty for a window.
    pub lookups: Vec<Expr>,
}

impl Traced {
    /// The `picked` spans of `spans` (indexes in output order) with their assembly; `rows`
    /// holds the picked spans' full rows in the same order.
    fn new(meta: &[SpanMeta], a: &Assembly, picked: &[u32], rows: RecordBatch) -> Self {
        let at = |i: &u32| *i as usize;
        Self {
            rows,
            meta: picked.iter().map(|i| meta[at(i)].clone()).collect(),
            trace_uid: picked.iter().map(|i| a.trace_uid[at(i)]).collect(),
            parent_id: picked
                .iter()
                .map(|i| a.parent[at(i)].map(|p| meta[p as usize].id))
                .collect(),
            depth: picked.iter().map(|i| a.depth[at(i)]).collect(),
            order: picked.iter().map(|i| a.order[at(i)]).collect(),
            lookups: Vec::new(),
        }
    }
}

/// Every span starting in `[from_us, to_us]`, assembled.
pub async fn traces(
    ctx: &SessionContext,
    from_us: i64,
    to_us: i64,
    tol: &Tolerance,
    columns: &[String],
) -> Result<Traced> {
    let mut all = meta_columns();
    all.extend(
        columns
            .iter()
            .filter(|c| !all.contains(c))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let spans = window(ctx, from_us, to_us, &all).await?;
    let a = assemble(&spans.meta, tol);
    let rows = take_record_batch(&spans.rows, &UInt32Array::from(a.sequence.clone()))?;
    Ok(Traced::new(&spans.meta, &a, &a.sequence, rows))
}

/// Runs `f` on `view` off the async threads (it reads files and decodes row groups).
async fn blocking<T: Send + 'static>(
    view: &Arc<View>,
    f: impl FnOnce(&View) -> Result<T> + Send + 'static,
) -> Result<T> {
    let view = Arc::clone(view);
    tokio::task::spawn_blocking(move || f(&view))
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
}

/// The traces holding the seed spans, found by expanding keys round by round inside
/// `window_us` either side of the seeds, each round a probe of `index`.
pub async fn expand(
    index: &Arc<KeyIndex>,
    seed: Seed,
    window_us: i64,
    tol: &Tolerance,
    columns: &[String],
) -> Result<Traced> {
    let (seed_keys, seed_filters, seed_from, seed_to) = match &seed {
        // `_id` holds its span's start second: look in that second only.
        Seed::Id(id) => {
            let lo = (id >> 32) * 1_000_000;
            let hi = lo + 999_999;
            let filter = col("_id").eq(lit(*id)).and(between(lo, hi));
            (vec![Key::Id(*id)], vec![filter], lo, hi)
        }
        Seed::XRequestId(x) => (
            vec![Key::X(x.clone())],
            vec![
                col("x_request_id_0").eq(lit(x.clone())),
                col("x_request_id_1").eq(lit(x.clone())),
            ],
            i64::MIN,
            i64::MAX,
        ),
        Seed::TraceId(t) => (
            vec![Key::TraceId(t.clone())],
            vec![col("trace_id").eq(lit(t.clone()))],
            i64::MIN,
            i64::MAX,
        ),
    };
    let view = Arc::new(index.view().await?);
    let mut lookups = seed_filters;
    let first = blocking(&view, move |v| v.find(&seed_keys, seed_from, seed_to)).await?;
    let seeds: Vec<i64> = first.iter().map(|f| f.meta.id).collect();
    let Some(from) = first.iter().map(|f| f.meta.start).min() else {
        let columns = columns.to_vec();
        let rows = blocking(&view, move |v| v.rows(&[], &columns)).await?;
        let mut t = Traced::new(&[], &Assembly::default(), &[], rows);
        t.lookups = lookups;
        return Ok(t);
    };
    let to = first.iter().map(|f| f.meta.end).max().unwrap_or(from);
    let (from, to) = (from - window_us, to + window_us);
    let mut meta: Vec<SpanMeta> = Vec::new();
    let mut strings: Vec<StringKeys> = Vec::new();
    let mut locs: Vec<Loc> = Vec::new();
    for f in first {
        meta.push(f.meta);
        strings.push(f.strings);
        locs.push(f.loc);
    }
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
        let probes = keys.probes();
        if probes.is_empty() {
            break;
        }
        lookups.extend(keys.filters().into_iter().map(|f| f.and(between(from, to))));
        let found = blocking(&view, move |v| v.find(&probes, from, to)).await?;
        tracing::debug!(round, spans = found.len(), "trace lookup round");
        let before = meta.len();
        for f in found {
            if seen.insert(f.meta.id) {
                meta.push(f.meta);
                strings.push(f.strings);
                locs.push(f.loc);
            }
        }
        if meta.len() == before {
            break;
        }
    }
    // The whole rows of the trace, read by position (the filter is what a SQL engine would run).
    let ids: Vec<Expr> = picked.iter().map(|&i| lit(meta[i as usize].id)).collect();
    let starts = picked.iter().map(|&i| meta[i as usize].start);
    let (lo, hi) = (starts.clone().min().unwrap_or(0), starts.max().unwrap_or(0));
    lookups.push(col("_id").in_list(ids, false).and(between(lo, hi)));
    let at: Vec<Loc> = picked.iter().map(|&i| locs[i as usize]).collect();
    let columns = columns.to_vec();
    let rows = blocking(&view, move |v| v.rows(&at, &columns)).await?;
    let mut t = Traced::new(&meta, &assembly, &picked, rows);
    t.lookups = lookups;
    Ok(t)
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

    /// The keys to probe the index with.
    fn probes(&self) -> Vec<Key> {
        let req = self.req_seq.iter().map(|&v| Key::ReqSeq(v));
        let resp = self.resp_seq.iter().map(|&v| Key::RespSeq(v));
        let sys = self.sys.iter().map(|&v| Key::Sys(v));
        let x = self.x.iter().map(|v| Key::X(v.clone()));
        let trace = self.trace_id.iter().map(|v| Key::TraceId(v.clone()));
        req.chain(resp).chain(sys).chain(x).chain(trace).collect()
    }

    /// `req_tcp_seq IN (…)`, `resp_tcp_seq IN (…)`, …: one filter per key column with values
    /// (what a SQL engine without the index runs for the same round).
    fn filters(&self) -> Vec<Expr> {
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
        .collect()
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
