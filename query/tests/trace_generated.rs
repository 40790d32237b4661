//! Trace assembly against generated data whose true trees are known: ≥ 10,000 concurrent
//! traces through sidecars and a tunnel, assembled in memory, through `traces()` over Parquet,
//! and from single spans with `trace()`.

use std::{collections::HashMap, fs::File, sync::Arc};

use arrow::{
    array::{AsArray, RecordBatch},
    compute::concat_batches,
    datatypes::Int64Type,
    util::pretty::pretty_format_batches,
};
use datafusion::{error::DataFusionError, prelude::SessionContext};
use parquet::{
    arrow::{
        ArrowWriter,
        arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder},
    },
    file::{
        metadata::PageIndexPolicy,
        page_index::column_index::ColumnIndexMetaData,
        properties::{EnabledStatistics, WriterProperties},
    },
};
use wiretrace_ingest::generate::{GenConfig, Generated, Generator, Truth};
use wiretrace_query::trace::{SpanMeta, Tolerance, assemble, assemble_until, index::KeyIndex};
use wiretrace_storage::{TableWriters, schema::L7_FLOW_LOG};

const TRACES: usize = 10_000;

fn generate(cfg: GenConfig) -> Generated {
    Generator::new(cfg).traces(TRACES, TRACES)
}

/// Concurrent: 10,000 traces starting within 0.3 s, each lasting milliseconds.
fn concurrent() -> GenConfig {
    GenConfig {
        spread_us: 300_000,
        ..GenConfig::default()
    }
}

/// What assembly found for one span: (trace uid, parent id).
type Found = HashMap<i64, (i64, Option<i64>)>;

fn assemble_in_memory(g: &Generated) -> Found {
    let all = concat_batches(&g.batches[0].schema(), &g.batches).unwrap();
    let meta = SpanMeta::from_batch(&all).unwrap();
    let a = assemble(&meta.iter().collect::<Vec<_>>(), &Tolerance::default());
    meta.iter()
        .enumerate()
        .map(|(i, m)| {
            (
                m.id,
                (a.trace_uid[i], a.parent[i].map(|p| meta[p as usize].id)),
            )
        })
        .collect()
}

/// Every kept span in the right trace with the right parent.
fn assert_exact(truth: &[Truth], found: &Found) {
    let mut wrong = Vec::new();
    for t in truth.iter().filter(|t| t.kept) {
        let got = found.get(&t.id).copied();
        if got != Some((t.trace, t.parent)) {
            wrong.push((t, got));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} spans wrong, e.g. {:?}",
        wrong.len(),
        truth.len(),
        &wrong[..wrong.len().min(5)]
    );
}

/// With spans lost: every parent found is a true ancestor, and no found trace mixes true ones.
/// Returns how many parents are the nearest kept ancestor.
fn assert_never_wrong(truth: &[Truth], found: &Found) -> (usize, usize) {
    let by_id: HashMap<i64, &Truth> = truth.iter().map(|t| (t.id, t)).collect();
    let mut trace_of_uid: HashMap<i64, i64> = HashMap::new();
    let (mut nearest, mut linked) = (0, 0);
    for t in truth.iter().filter(|t| t.kept) {
        let (uid, parent) = found[&t.id];
        let first = *trace_of_uid.entry(uid).or_insert(t.trace);
        assert_eq!(first, t.trace, "found trace {uid} mixes true traces");
        let Some(p) = parent else { continue };
        linked += 1;
        let mut up = t.parent;
        let mut near = true;
        loop {
            let Some(a) = up else {
                panic!("span {} got parent {p}, which is not an ancestor", t.id)
            };
            if a == p {
                break;
            }
            near &= !by_id[&a].kept;
            up = by_id[&a].parent;
        }
        nearest += usize::from(near);
    }
    (nearest, linked)
}

#[test]
fn in_memory_assembly_recovers_true_trees() {
    let g = generate(concurrent());
    assert!(g.truth.len() > TRACES * 5, "only {} spans", g.truth.len());
    assert_exact(&g.truth, &assemble_in_memory(&g));
}

#[test]
fn colliding_sequence_numbers_and_lost_spans_never_give_a_wrong_tree() {
    let g = generate(GenConfig {
        seed: 7,
        lost_share: 0.05,
        collide_share: 0.3,
        ..concurrent()
    });
    let (nearest, linked) = assert_never_wrong(&g.truth, &assemble_in_memory(&g));
    // A parent may skip a lost span's kept ancestors only where a further ancestor matches as
    // well (a proxy whose outbound server span was lost adopts the call under its inbound one).
    assert!(
        linked > 0 && nearest * 100 >= linked * 99,
        "{nearest} of {linked} parents nearest"
    );
    eprintln!("{nearest} of {linked} parents are the nearest kept ancestor");
}

#[test]
fn sequence_collisions_alone_change_nothing() {
    let g = generate(GenConfig {
        seed: 3,
        collide_share: 0.5,
        ..concurrent()
    });
    assert_exact(&g.truth, &assemble_in_memory(&g));
}

fn found_from_rows(batches: &[RecordBatch]) -> Found {
    let mut found = Found::new();
    for b in batches {
        let id = b.column_by_name("_id").unwrap().as_primitive::<Int64Type>();
        let uid = b
            .column_by_name("trace_uid")
            .unwrap()
            .as_primitive::<Int64Type>();
        let parent = b
            .column_by_name("parent_id")
            .unwrap()
            .as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let p = (!arrow::array::Array::is_null(parent, i)).then(|| parent.value(i));
            found.insert(id.value(i), (uid.value(i), p));
        }
    }
    found
}

/// Spans of each true trace, by trace uid.
fn members(g: &Generated) -> HashMap<i64, Vec<&Truth>> {
    let mut members: HashMap<i64, Vec<&Truth>> = HashMap::new();
    for t in &g.truth {
        members.entry(t.trace).or_default().push(t);
    }
    members
}

/// `g`'s spans written to a fresh data dir.
fn stored(g: &Generated) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    TableWriters::open(dir.path())
        .unwrap()
        .write(L7_FLOW_LOG, &g.batches)
        .unwrap();
    dir
}

/// A window around every span `cfg` generates, µs.
fn bounds(cfg: &GenConfig) -> (i64, i64) {
    (
        cfg.start_us - 1_000_000,
        cfg.start_us + cfg.spread_us + 1_000_000,
    )
}

/// `traces()` over every span `cfg` generates, with the tree columns the checks read.
fn whole_window(cfg: &GenConfig) -> String {
    let (from, to) = bounds(cfg);
    format!(
        "SELECT _id, trace_uid, parent_id FROM traces(to_timestamp_micros({from}), \
         to_timestamp_micros({to}))"
    )
}

/// `traces()` over the whole window and `trace()` from spans spread over the data each give
/// the true trees exactly.
async fn assert_sql_recovers(ctx: &SessionContext, g: &Generated, cfg: &GenConfig) {
    // traces(): the whole window at once.
    let t = std::time::Instant::now();
    let rows = ctx
        .sql(&whole_window(cfg))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    eprintln!("traces(): {:?}", t.elapsed());
    let found = found_from_rows(&rows);
    assert_eq!(found.len(), g.truth.len());
    assert_exact(&g.truth, &found);

    // trace(): from single spans spread over the data, each the whole true trace.
    let members = members(g);
    for seed in g.truth.iter().step_by(g.truth.len() / 8) {
        let sql = format!("SELECT _id, trace_uid, parent_id FROM trace({})", seed.id);
        let t = std::time::Instant::now();
        let rows = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        eprintln!("trace({}): {:?}", seed.id, t.elapsed());
        let found = found_from_rows(&rows);
        let want = &members[&seed.trace];
        assert_eq!(found.len(), want.len(), "trace of span {}", seed.id);
        assert_exact(
            want.iter().copied().cloned().collect::<Vec<_>>().as_slice(),
            &found,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_trace_functions_recover_true_trees_from_parquet() {
    let cfg = concurrent();
    let g = generate(cfg.clone());
    let dir = stored(&g);
    let ctx = wiretrace_query::session(dir.path()).await.unwrap();
    assert_sql_recovers(&ctx, &g, &cfg).await;
    let members = members(&g);

    // The lookups went through the key index: row groups decoded once, then found decoded.
    let rows = ctx
        .sql("SELECT name, value FROM cache_counters WHERE name LIKE 'key_index_%'")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut counters = HashMap::new();
    for b in &rows {
        let (names, values) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_primitive::<arrow::datatypes::UInt64Type>(),
        );
        for i in 0..b.num_rows() {
            counters.insert(names.value(i).to_string(), values.value(i));
        }
    }
    eprintln!("key index: {counters:?}");
    assert!(counters["key_index_misses"] > 0, "{counters:?}");
    assert!(counters["key_index_hits"] > 0, "{counters:?}");
    assert!(counters["key_index_bytes"] <= counters["key_index_limit_bytes"]);

    // trace_grafana(): the same tree in Grafana's columns (hex ids).
    let seed = &g.truth[g.truth.len() / 2];
    let sql = format!(
        "SELECT \"spanID\", \"parentSpanID\" FROM trace_grafana({})",
        seed.id
    );
    let rows = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let hex = |v: i64| format!("{v:016x}");
    let want: HashMap<String, Option<String>> = members[&seed.trace]
        .iter()
        .map(|t| (hex(t.id), t.parent.map(hex)))
        .collect();
    let mut got = HashMap::new();
    for b in &rows {
        let (span, parent) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            let p = (!arrow::array::Array::is_null(parent, i)).then(|| parent.value(i).to_string());
            got.insert(span.value(i).to_string(), p);
        }
    }
    assert_eq!(got, want);

    // trace_by(): every span carrying an X-Request-ID, within whole, right traces.
    let x = ctx
        .sql("SELECT x_request_id_0 FROM l7_flow_log WHERE x_request_id_0 IS NOT NULL LIMIT 1")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let x = x[0].column(0).as_string::<i32>().value(0).to_string();
    let sql = format!(
        "SELECT _id, trace_uid, parent_id, x_request_id_0 FROM trace_by('x_request_id', '{x}')"
    );
    let rows = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let found = found_from_rows(&rows);
    let traces: std::collections::HashSet<i64> = found.values().map(|f| f.0).collect();
    let want: Vec<Truth> = traces
        .iter()
        .flat_map(|t| members[t].iter().map(|m| **m))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(found.len(), want.len());
    assert_exact(&want, &found);
}

/// Parquet files not written by wiretrace (no page index, no dictionaries, no bloom filters)
/// are read by the same lookups, only with less pruning: the same true trees come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_without_page_index_or_dictionaries_give_the_same_trees() {
    let cfg = concurrent();
    let g = generate(cfg.clone());
    let dir = tempfile::tempdir().unwrap();
    let written = TableWriters::open(dir.path())
        .unwrap()
        .write(L7_FLOW_LOG, &g.batches)
        .unwrap();
    let plain = WriterProperties::builder()
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(16 * 1024))
        .build();
    for path in &written.files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        let mut w = ArrowWriter::try_new(
            File::create(path).unwrap(),
            batches[0].schema(),
            Some(plain.clone()),
        )
        .unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
        // No page statistics: the key index must choose blocks by row group statistics.
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let read = ParquetRecordBatchReaderBuilder::try_new_with_options(
            File::open(path).unwrap(),
            options,
        )
        .unwrap();
        let index = read.metadata().column_index().into_iter().flatten();
        assert!(
            index
                .flatten()
                .all(|c| matches!(c, ColumnIndexMetaData::NONE)),
            "{path:?} has page statistics"
        );
    }
    let ctx = wiretrace_query::session(dir.path()).await.unwrap();
    assert_sql_recovers(&ctx, &g, &cfg).await;
}

/// `traces()` over a window larger than the query memory fails with a clear error before it
/// decodes anything, and the session goes on; with enough memory the same window assembles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_over_a_window_too_large_for_the_query_memory_fail_cleanly() {
    let cfg = concurrent();
    let g = Generator::new(cfg.clone()).traces(300, 300);
    let spans = g.truth.len();
    let dir = stored(&g);
    let sql = whole_window(&cfg);
    let small = wiretrace_query::session::session_with(dir.path(), 1 << 20, None)
        .await
        .unwrap();
    // Planning reads nothing: EXPLAIN of the same query succeeds and names the node.
    let explained = small
        .sql(&format!("EXPLAIN {sql}"))
        .await
        .unwrap()
        .collect();
    let plan = pretty_format_batches(&explained.await.unwrap())
        .unwrap()
        .to_string();
    assert!(plan.contains("TraceExec: traces"), "{plan}");
    let err = small.sql(&sql).await.unwrap().collect().await.unwrap_err();
    assert!(
        matches!(
            err.find_root(),
            datafusion::error::DataFusionError::ResourcesExhausted(m) if m.contains("narrow the window")
        ),
        "{err}"
    );
    let count = small
        .sql("SELECT count(*) FROM l7_flow_log")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let n = count[0].column(0).as_primitive::<Int64Type>().value(0);
    assert_eq!(n as usize, spans, "the session goes on after the refusal");

    let enough = wiretrace_query::session(dir.path()).await.unwrap();
    let rows = enough.sql(&sql).await.unwrap().collect().await.unwrap();
    assert_eq!(found_from_rows(&rows).len(), spans);
}

/// A window stopped before its row groups are decoded (what `traces()` does once its query is
/// cancelled or times out) returns the stop and leaves nothing decoded in the key index; let go
/// on, the same window holds every span. Assembling them and reading their rows stop the same
/// way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_window_decodes_nothing() {
    let cfg = concurrent();
    let g = Generator::new(cfg.clone()).traces(300, 300);
    let dir = stored(&g);
    let index = Arc::new(KeyIndex::new(dir.path(), None, 64 << 20));
    let view = index.view().await.unwrap();
    let (from, to) = bounds(&cfg);
    let stop = || Err(DataFusionError::Execution("stopped".into()));
    let err = view
        .window(from, to, |_| Ok(()), &stop, |_, _| Ok(()))
        .unwrap_err();
    assert!(err.to_string().contains("stopped"), "{err}");
    let entries = || {
        (index.counters())()
            .into_iter()
            .find(|c| c.0 == "key_index_entries")
            .map(|c| c.1)
    };
    assert_eq!(entries(), Some(0));
    let tol = Tolerance::default();
    let (locs, assembled) = view
        .window(
            from,
            to,
            |_| Ok(()),
            &|| Ok(()),
            |locs, meta| Ok((locs.to_vec(), assemble_until(meta, &tol, &stop))),
        )
        .unwrap();
    assert_eq!(locs.len(), g.truth.len());
    assert!(entries().is_some_and(|n| n > 0));
    let err = assembled.map(|a| a.sequence.len()).unwrap_err();
    assert!(err.to_string().contains("stopped"), "{err}");
    let columns = ["_id".to_string()];
    let err = view.rows(&locs, &columns, &stop).unwrap_err();
    assert!(err.to_string().contains("stopped"), "{err}");
    let rows = view.rows(&locs, &columns, &|| Ok(())).unwrap();
    assert_eq!(rows.num_rows(), g.truth.len());
}
