//! Trace assembly at scale: `trace()` latency (p50/p99) from random spans of a generated store,
//! `traces()` throughput over a window, and the assembly rules alone on one core. Writes each
//! `trace()`'s lookups as SQL to `DATA_DIR/lookups.tsv`, so `benches/trace_duckdb.py` can run
//! the same key expansion in DuckDB over the same Parquet.
//!
//! `cargo bench -p wiretrace-benches --bench trace_lookup -- [SPANS] [DATA_DIR]`
//! (default 1000000 spans in /tmp/wiretrace-bench-SPANS; the store is generated once).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use datafusion::{
    execution::memory_pool::{MemoryConsumer, MemoryPool, UnboundedMemoryPool},
    prelude::SessionContext,
    sql::unparser::expr_to_sql,
};
use wiretrace_benches::cpu_seconds;
use wiretrace_ingest::generate::{GenConfig, Generator};
use wiretrace_query::trace::{
    KeyIndex, Tolerance, assemble,
    index::KEY_INDEX_BYTES,
    lookup::{self, Seed},
};
use wiretrace_storage::{TableWriters, schema::L7_FLOW_LOG};

/// Generated spans per second of store time (sets how many spans one time window holds).
const SPANS_PER_SECOND: usize = 20_000;
/// Traces per generated chunk.
const CHUNK: usize = 20_000;
/// Seeds timed.
const SEEDS: usize = 200;
/// Seeds timed with a fresh key index each (nothing decoded yet).
const COLD_SEEDS: usize = 10;

fn generate(dir: &Path, spans: usize) -> Vec<i64> {
    let writers = TableWriters::open(dir).expect("data dir");
    let spread_us = (spans / SPANS_PER_SECOND).max(1) as i64 * 1_000_000;
    // ~54 spans per trace with the default topology: about `spans` in all.
    let traces = spans / 54 + 1;
    let mut g = Generator::new(GenConfig {
        spread_us,
        ..GenConfig::default()
    });
    let (mut written, mut done, mut seeds) = (0, 0, Vec::new());
    let started = Instant::now();
    while done < traces {
        let n = CHUNK.min(traces - done);
        let chunk = g.traces(n, traces);
        done += n;
        let step = (chunk.truth.len() / (SEEDS * CHUNK / traces.max(1)).max(1)).max(1);
        seeds.extend(
            chunk
                .truth
                .iter()
                .filter(|t| t.kept)
                .step_by(step)
                .map(|t| t.id),
        );
        written += writers
            .write(L7_FLOW_LOG, &chunk.batches)
            .expect("write")
            .rows;
        eprint!("\rgenerated {written} spans");
    }
    eprintln!(" in {:.1} s", started.elapsed().as_secs_f64());
    let step = (seeds.len() / SEEDS).max(1);
    seeds.into_iter().step_by(step).take(SEEDS).collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(dir: &Path, seeds: &[i64]) {
    let ctx: SessionContext = wiretrace_query::session(dir).await.expect("session");
    let columns = lookup::all_columns();
    let tol = Tolerance::default();
    let index = Arc::new(KeyIndex::new(dir, None, KEY_INDEX_BYTES));
    // trace()'s lookup with a fresh key index each time: nothing of the store decoded yet (the
    // OS page cache is warm, as on a running server).
    let mut cold = Vec::new();
    for &id in seeds.iter().rev().take(COLD_SEEDS) {
        let fresh = Arc::new(KeyIndex::new(dir, None, KEY_INDEX_BYTES));
        let t = Instant::now();
        lookup::expand(&fresh, Seed::Id(id), 60_000_000, &tol, &columns)
            .await
            .unwrap();
        cold.push(t.elapsed().as_secs_f64() * 1e3);
    }
    cold.sort_by(f64::total_cmp);
    println!(
        "trace() with a cold key index: {} seeds, p50 {:.1} ms, p99 {:.1} ms",
        cold.len(),
        percentile(&cold, 0.5),
        percentile(&cold, 0.99)
    );
    // Warm the OS page cache and metadata caches the way a running server would be.
    for id in seeds.iter().take(10) {
        let _ = ctx
            .sql(&format!("SELECT * FROM trace({id})"))
            .await
            .unwrap()
            .collect()
            .await;
    }
    let (mut ms, mut spans, mut rounds) = (Vec::new(), 0usize, 0usize);
    let mut tsv = String::new();
    for &id in seeds {
        let t = Instant::now();
        let rows = ctx
            .sql(&format!("SELECT * FROM trace({id})"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        spans += rows.iter().map(|b| b.num_rows()).sum::<usize>();
        let e = lookup::expand(&index, Seed::Id(id), 60_000_000, &tol, &columns)
            .await
            .unwrap();
        rounds += e.lookups.len();
        for f in &e.lookups {
            let sql = expr_to_sql(f).unwrap().to_string();
            writeln!(tsv, "{id}\t{sql}").unwrap();
        }
    }
    std::fs::write(dir.join("lookups.tsv"), tsv).unwrap();
    ms.sort_by(f64::total_cmp);
    println!(
        "trace(): {} seeds, p50 {:.1} ms, p99 {:.1} ms, mean {:.1} spans and {:.1} lookups per trace",
        seeds.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        spans as f64 / seeds.len() as f64,
        rounds as f64 / seeds.len() as f64
    );

    // traces(): the first ten seconds of the store (≈ 200k spans). First on a fresh key index,
    // every block of the window decoded (a first call's cost), then end to end through SQL.
    let first: i64 = seeds.iter().min().copied().unwrap_or(0) >> 32;
    let (from, to) = (first * 1_000_000, (first + 10) * 1_000_000);
    let report = |pass: &str, n: usize, secs: f64, cpu: f64| {
        println!(
            "traces(), {pass}: {n} spans in {secs:.3} s = {:.2} M spans/s end to end, {:.2} M per CPU-second",
            n as f64 / secs / 1e6,
            n as f64 / cpu / 1e6
        )
    };
    let fresh = Arc::new(KeyIndex::new(dir, None, KEY_INDEX_BYTES));
    let pool: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
    let (t, cpu) = (Instant::now(), cpu_seconds());
    let traced = lookup::traces(
        &fresh,
        from,
        to,
        &tol,
        &[],
        MemoryConsumer::new("bench").register(&pool),
    )
    .await
    .unwrap();
    report(
        "fresh key index",
        traced.id.len(),
        t.elapsed().as_secs_f64(),
        cpu_seconds() - cpu,
    );
    // Twice: first with the window's blocks to decode, then with them in the key index.
    for pass in ["blocks decoded", "blocks cached"] {
        let (t, cpu) = (Instant::now(), cpu_seconds());
        let rows = ctx
            .sql(&format!(
                "SELECT trace_uid, parent_id FROM traces(to_timestamp_micros({from}), to_timestamp_micros({to}))"
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let n: usize = rows.iter().map(|b| b.num_rows()).sum();
        report(pass, n, t.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    }

    // The rules alone, one core, on spans already decoded: the best of five runs.
    let view = index.view().await.unwrap();
    let (a, secs) = view
        .window(
            from,
            to,
            |_| Ok(()),
            &|| Ok(()),
            |_, meta| {
                let mut a = Default::default();
                let mut secs = f64::MAX;
                for _ in 0..5 {
                    let t = Instant::now();
                    a = assemble(meta, &tol);
                    secs = secs.min(t.elapsed().as_secs_f64());
                }
                Ok((a, secs))
            },
        )
        .unwrap();
    let traces = a.parent.iter().filter(|p| p.is_none()).count();
    println!(
        "assemble(): {} spans ({traces} roots) in {:.3} s (best of 5) = {:.2} M spans/s on one core",
        a.parent.len(),
        secs,
        a.parent.len() as f64 / secs / 1e6
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let spans: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = args
        .get(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/wiretrace-bench-{spans}")));
    let seeds_file = dir.join("seeds.txt");
    let seeds: Vec<i64> = match std::fs::read_to_string(&seeds_file) {
        Ok(s) => s.lines().filter_map(|l| l.parse().ok()).collect(),
        Err(_) => {
            let seeds = generate(&dir, spans);
            let text: String = seeds.iter().map(|s| format!("{s}\n")).collect();
            std::fs::write(&seeds_file, text).unwrap();
            seeds
        }
    };
    let size: u64 = walk(&dir.join(L7_FLOW_LOG));
    println!(
        "store: {} ({:.1} MiB of Parquet)",
        dir.display(),
        size as f64 / (1 << 20) as f64
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(&dir, &seeds));
}

fn walk(p: &Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |rd| {
        rd.flatten()
            .map(|e| {
                let m = e
                    .metadata()
                    .map(|m| (m.is_dir(), m.len()))
                    .unwrap_or((false, 0));
                if m.0 { walk(&e.path()) } else { m.1 }
            })
            .sum()
    })
}
