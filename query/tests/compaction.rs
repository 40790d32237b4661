//! Compaction under concurrent queries: while batches are appended, flushed to small files and
//! those merged again and again, every query sees each row exactly once — none missing, none
//! doubled — including a query planned before a compaction and run after it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use arrow::{array::AsArray, datatypes::Int64Type};
use wiretrace_ingest::generate::{GenConfig, Generator};
use wiretrace_query::{SessionContext, session::session_with};
use wiretrace_storage::{CompactOptions, Store, StoreOptions, schema::L7_FLOW_LOG};

const COUNT: &str = "SELECT count(*), count(DISTINCT _id) FROM l7_flow_log";

/// (rows, distinct ids) a query sees.
async fn count(ctx: &SessionContext) -> (i64, i64) {
    let batches = ctx.sql(COUNT).await.unwrap().collect().await.unwrap();
    let b = &batches[0];
    (
        b.column(0).as_primitive::<Int64Type>().value(0),
        b.column(1).as_primitive::<Int64Type>().value(0),
    )
}

/// Merge as soon as two small files exist.
fn eager() -> CompactOptions {
    CompactOptions {
        min_files: 2,
        ..CompactOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_see_each_row_once_while_files_are_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
    let ctx = session_with(dir.path(), 1 << 30, Some(Arc::clone(&store)))
        .await
        .unwrap();
    let generated = Generator::new(GenConfig::default()).traces(2_000, 2_000);
    let batches: Vec<_> = generated
        .batches
        .iter()
        .flat_map(|b| {
            (0..b.num_rows())
                .step_by(500)
                .map(|o| b.slice(o, 500.min(b.num_rows() - o)))
        })
        .collect();
    let mut prefix = vec![0i64];
    for b in &batches {
        prefix.push(prefix.last().unwrap() + b.num_rows() as i64);
    }
    let total = *prefix.last().unwrap();

    // A query planned over small files, run after they were merged away.
    tokio::task::block_in_place(|| {
        for b in &batches[..4] {
            store.append(L7_FLOW_LOG, b.clone()).unwrap();
            store.flush().unwrap();
        }
    });
    let planned = ctx
        .sql(COUNT)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let s = Arc::clone(&store);
    let merged = tokio::task::spawn_blocking(move || s.compact(&eager()).unwrap())
        .await
        .unwrap();
    assert_eq!(merged.files_in, 4);
    assert_eq!(
        store.stats().retired_files,
        4,
        "the planned query still holds them"
    );
    let out = datafusion::physical_plan::collect(planned, ctx.task_ctx())
        .await
        .unwrap();
    let seen = out[0].column(0).as_primitive::<Int64Type>().value(0);
    assert_eq!(seen, prefix[4], "the planned query read the retired files");

    // Appends, flushes and compactions in the background; queries meanwhile.
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        let rest = batches[4..].to_vec();
        std::thread::spawn(move || {
            for (i, b) in rest.into_iter().enumerate() {
                store.append(L7_FLOW_LOG, b).unwrap();
                if i % 2 == 0 {
                    store.flush().unwrap();
                }
            }
            store.flush().unwrap();
            done.store(true, Ordering::SeqCst);
        })
    };
    let compactor = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut merges = 0;
            while !done.load(Ordering::SeqCst) {
                merges += store.compact(&eager()).unwrap().merges;
                std::thread::sleep(Duration::from_millis(5));
            }
            merges + store.compact(&eager()).unwrap().merges
        })
    };
    let mut queries = 0;
    while !done.load(Ordering::SeqCst) || queries < 20 {
        let (rows, distinct) = count(&ctx).await;
        assert_eq!(rows, distinct, "a row seen twice");
        assert!(
            prefix.contains(&rows),
            "{rows} rows is not a whole prefix of the appended batches: a row missing"
        );
        queries += 1;
    }
    writer.join().unwrap();
    let merges = compactor.join().unwrap();
    assert_eq!(count(&ctx).await, (total, total));
    assert!(
        merges >= 5,
        "only {merges} compactions ran during {queries} queries"
    );
    eprintln!("{queries} queries, {merges} compactions, {total} rows: each row seen once");
}

/// Runs a store call that takes the flush barrier off the async threads.
async fn off_runtime<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> T + Send + 'static,
) -> T {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .unwrap()
}

/// The `_id`s `trace(seed)` returns, sorted.
async fn trace_ids(ctx: &SessionContext, seed: i64) -> Vec<i64> {
    let sql = format!("SELECT _id FROM trace({seed})");
    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let mut ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    ids.sort_unstable();
    ids
}

/// `trace()` finds the same whole trace whether its rows are still buffered, flushed into
/// small files, or merged into one; a lookup that listed files before a compaction reads them
/// from the retired folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_lookups_see_buffered_flushed_and_compacted_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
    let ctx = session_with(dir.path(), 1 << 30, Some(Arc::clone(&store)))
        .await
        .unwrap();
    let mut generator = Generator::new(GenConfig::default());
    let generated = generator.traces(300, 350);
    for b in &generated.batches {
        store.append(L7_FLOW_LOG, b.clone()).unwrap();
    }
    let seeds: Vec<i64> = generated
        .truth
        .iter()
        .filter(|t| t.kept)
        .step_by(generated.truth.len() / 6)
        .map(|t| t.id)
        .collect();
    let mut buffered = Vec::new();
    for &seed in &seeds {
        let ids = trace_ids(&ctx, seed).await;
        assert!(ids.contains(&seed) && ids.len() > 1, "{seed}: {ids:?}");
        buffered.push(ids);
    }
    off_runtime(&store, |s| s.flush()).await.unwrap();
    for (seed, want) in seeds.iter().zip(&buffered) {
        assert_eq!(&trace_ids(&ctx, *seed).await, want, "flushed, seed {seed}");
    }
    // More small files in the same hours, then a view listed before they are merged.
    let more = generator.traces(50, 350);
    for b in &more.batches {
        store.append(L7_FLOW_LOG, b.clone()).unwrap();
        off_runtime(&store, |s| s.flush()).await.unwrap();
    }
    let index = Arc::new(wiretrace_query::trace::KeyIndex::new(
        &std::fs::canonicalize(dir.path()).unwrap(),
        Some(Arc::clone(&store)),
        64 << 20,
    ));
    let early = index.view().await.unwrap();
    let merged = off_runtime(&store, |s| s.compact(&eager())).await.unwrap();
    assert!(merged.files_in > 1, "nothing compacted: {merged:?}");
    use wiretrace_query::trace::index::{Key, Probe};
    let probe = Probe::starting(Key::Id(seeds[0]), i64::MIN, i64::MAX);
    let found = early.find(&[probe]).unwrap();
    assert_eq!(found.len(), 1, "the seed through a view of retired files");
    let rows = early
        .rows(&[found[0].loc], &["_id".to_string()], &|| Ok(()))
        .unwrap();
    assert_eq!(
        rows.column(0).as_primitive::<Int64Type>().value(0),
        seeds[0]
    );
    drop(early);
    for (seed, want) in seeds.iter().zip(&buffered) {
        assert_eq!(
            &trace_ids(&ctx, *seed).await,
            want,
            "compacted, seed {seed}"
        );
    }
}
