//! Reading spans for assembly through the key index: a time window at once (`traces`), or the
//! iterative key expansion from seed spans (`trace`, `trace_by`), each round a probe.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use arrow::array::RecordBatch;
use datafusion::{
    common::ScalarValue,
    error::{DataFusionError, Result},
    execution::memory_pool::MemoryReservation,
    logical_expr::{Expr, col, lit},
};
use wiretrace_storage::{LOOKUP_KEY_COLUMNS, schema::l7_flow_log_schema};

use super::{
    assemble::{ASSEMBLY_BYTES_PER_SPAN, Assembly, Tolerance, assemble, assemble_until},
    index::{Key, KeyIndex, Loc, Probe, View},
    meta::{Point, SpanMeta, StringKeys},
};

/// Expansion rounds before a lookup stops growing the trace.
pub const MAX_ROUNDS: usize = 30;

/// Rounds spent walking sibling calls without the trace growing before giving up (a client
/// thread's calls chain by syscall id without any server span above them).
const SIBLING_STEPS: usize = 4;

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

/// Columns a lookup holds for every span it assembled, so it never reads them again.
pub const FROM_META: [&str; 3] = ["_id", "start_time", "end_time"];

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
    /// The rows, with the columns asked for (those in [`FROM_META`] excepted).
    pub rows: RecordBatch,
    /// Per row: `_id`.
    pub id: Vec<i64>,
    /// Per row: start, µs.
    pub start: Vec<i64>,
    /// Per row: end, µs.
    pub end: Vec<i64>,
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
    fn new(meta: &[&SpanMeta], a: &Assembly, picked: &[u32], rows: RecordBatch) -> Self {
        let at = |i: &u32| *i as usize;
        Self {
            rows,
            id: picked.iter().map(|i| meta[at(i)].id).collect(),
            start: picked.iter().map(|i| meta[at(i)].start).collect(),
            end: picked.iter().map(|i| meta[at(i)].end).collect(),
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

/// Bytes `traces()` holds per span of its window while it assembles, besides the columns
/// asked for: its assembly row in the decoded block, the window's pointer to it, where the row
/// is, and the assembly's own vectors.
const WINDOW_BYTES_PER_SPAN: usize = std::mem::size_of::<SpanMeta>()
    + std::mem::size_of::<&SpanMeta>()
    + std::mem::size_of::<Loc>()
    + ASSEMBLY_BYTES_PER_SPAN;

/// Bytes counted per span for each column asked for.
const OUTPUT_BYTES_PER_COLUMN: usize = 16;

/// Every span starting in `[from_us, to_us]`, assembled, read through `index` (the blocks of
/// the window decoded once, then the asked-for `columns` of the spans). What the window may
/// take is reserved from `memory` before anything is decoded: a window too large for the
/// query memory fails with a resources-exhausted error instead of growing the server. Once the
/// call is dropped (its query cancelled or timed out), the work stops before its next row group
/// or step.
pub async fn traces(
    index: &Arc<KeyIndex>,
    from_us: i64,
    to_us: i64,
    tol: &Tolerance,
    columns: &[String],
    memory: MemoryReservation,
) -> Result<Traced> {
    let view = Arc::new(index.view().await?);
    let per_span = WINDOW_BYTES_PER_SPAN + columns.len() * OUTPUT_BYTES_PER_COLUMN;
    let columns = columns.to_vec();
    let tol = *tol;
    // Dropped with this call's future (its query cancelled or timed out), which the blocking
    // work then sees before each row group it decodes or reads and before each assembly step.
    let (waited, _waiting) = tokio::sync::oneshot::channel::<()>();
    blocking(&view, move |v| {
        let admit = |spans: usize| {
            memory.try_grow(spans * per_span).map_err(|e| {
                DataFusionError::ResourcesExhausted(format!(
                    "traces() over this window may hold up to {spans} spans, about {} MiB \
                     to assemble, more than the query memory left ({e}); narrow the window \
                     or raise --query-memory-mib",
                    (spans * per_span) >> 20
                ))
            })
        };
        let go_on = || match waited.is_closed() {
            true => Err(DataFusionError::Execution(
                "traces() stopped: its query ended".into(),
            )),
            false => Ok(()),
        };
        v.window(from_us, to_us, admit, &go_on, |locs, meta| {
            let a = assemble_until(meta, &tol, &go_on)?;
            let picked: Vec<Loc> = a.sequence.iter().map(|&i| locs[i as usize]).collect();
            let rows = v.rows(&picked, &columns, &go_on)?;
            Ok(Traced::new(meta, &a, &a.sequence, rows))
        })
    })
    .await
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
    let seed_probes = vec![match &seed {
        // `_id` holds its span's start second: look in that second only.
        Seed::Id(id) => {
            let lo = (id >> 32) * 1_000_000;
            Probe::starting(Key::Id(*id), lo, lo + 999_999)
        }
        Seed::XRequestId(x) => Probe::starting(Key::X(x.clone()), i64::MIN, i64::MAX),
        Seed::TraceId(t) => Probe::starting(Key::TraceId(t.clone()), i64::MIN, i64::MAX),
    }];
    let view = Arc::new(index.view().await?);
    let mut lookups = filters(&seed_probes);
    let first = blocking(&view, move |v| v.find(&seed_probes)).await?;
    let seeds: Vec<i64> = first.iter().map(|f| f.meta.id).collect();
    let Some(from) = first.iter().map(|f| f.meta.start).min() else {
        let columns = columns.to_vec();
        let rows = blocking(&view, move |v| v.rows(&[], &columns, &|| Ok(()))).await?;
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
        assembly = assemble(&meta.iter().collect::<Vec<_>>(), tol);
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
        let probes = keys.probes((from, to), tol.widest());
        if probes.is_empty() {
            break;
        }
        lookups.extend(filters(&probes));
        let found = blocking(&view, move |v| v.find(&probes)).await?;
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
    let rows = blocking(&view, move |v| v.rows(&at, &columns, &|| Ok(()))).await?;
    let mut t = Traced::new(&meta.iter().collect::<Vec<_>>(), &assembly, &picked, rows);
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

/// Key values to look up, each with the least and greatest time of the spans it came from: the
/// start for a request's TCP seq, the end for a response's (two views of one hop are never
/// further apart); other keys are looked up in the whole window.
#[derive(Default)]
struct Keys(HashMap<Key, (i64, i64)>);

impl Keys {
    /// Adds `key`, from a span at `at` (0 for keys not bounded in time).
    fn put(&mut self, key: Key, at: i64) {
        let e = self.0.entry(key).or_insert((at, at));
        *e = (e.0.min(at), e.1.max(at));
    }

    fn add(&mut self, s: &StringKeys, m: &SpanMeta) {
        if m.req_seq != 0 {
            self.put(Key::ReqSeq(m.req_seq), m.start);
        }
        if m.resp_seq != 0 {
            self.put(Key::RespSeq(m.resp_seq), m.end);
        }
        for id in [m.sys_req, m.sys_resp] {
            if id != 0 {
                self.put(Key::Sys(id), 0);
            }
        }
        for x in &s.x {
            self.put(Key::X(x.clone()), 0);
        }
        if let Some(t) = &s.trace_id {
            self.put(Key::TraceId(t.clone()), 0);
        }
    }

    /// Drops keys whose times were looked up before; records the rest, each widened to cover
    /// what was looked up before.
    fn remove_used(&mut self, used: &mut Keys) {
        self.0.retain(|k, r| match used.0.get_mut(k) {
            Some(u) if u.0 <= r.0 && r.1 <= u.1 => false,
            Some(u) => {
                *u = (u.0.min(r.0), u.1.max(r.1));
                *r = *u;
                true
            }
            None => {
                used.0.insert(k.clone(), *r);
                true
            }
        });
    }

    /// The probes for the keys inside `[from, to]`, a TCP seq's within `skew` of its spans.
    fn probes(&self, (from, to): (i64, i64), skew: i64) -> Vec<Probe> {
        self.0
            .iter()
            .map(|(key, &(lo, hi))| match key {
                Key::ReqSeq(_) => {
                    Probe::starting(key.clone(), (lo - skew).max(from), (hi + skew).min(to))
                }
                Key::RespSeq(_) => Probe {
                    key: key.clone(),
                    start: (from, (hi + skew).min(to)),
                    end: (lo - skew, hi + skew),
                },
                _ => Probe::starting(key.clone(), from, to),
            })
            .collect()
    }
}

/// What a SQL engine without the index runs for the same round: per key column, `column IN
/// (…)` within the least and greatest times its probes allow.
fn filters(probes: &[Probe]) -> Vec<Expr> {
    std::iter::once(&"_id")
        .chain(LOOKUP_KEY_COLUMNS)
        .filter_map(|column| {
            let mine: Vec<&Probe> = probes
                .iter()
                .filter(|p| p.key.columns().contains(column))
                .collect();
            if mine.is_empty() {
                return None;
            }
            let values = mine.iter().map(|p| p.key.literal()).collect();
            let bound = |lo: fn(&Probe) -> i64, hi: fn(&Probe) -> i64| {
                let range = (
                    mine.iter().map(|p| lo(p)).min()?,
                    mine.iter().map(|p| hi(p)).max()?,
                );
                (range != (i64::MIN, i64::MAX)).then_some(range)
            };
            let mut filter = col(*column).in_list(values, false);
            if let Some((lo, hi)) = bound(|p| p.start.0, |p| p.start.1) {
                filter = filter.and(between(lo, hi));
            }
            if let Some((lo, hi)) = bound(|p| p.end.0, |p| p.end.1) {
                filter = filter.and(col("end_time").between(ts(lo), ts(hi)));
            }
            Some(filter)
        })
        .collect()
}

/// The names of `l7_flow_log`'s columns.
pub fn all_columns() -> Vec<String> {
    l7_flow_log_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}
