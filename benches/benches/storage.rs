//! The storage engine's write path and read pruning, on generated traces (the same rows
//! `wiretrace generate --traces 20000 --spread-s 600` writes, which `benches/storage_size.py`
//! stores in DuckDB and chDB):
//! - write throughput: WAL appends (Arrow IPC, fsync per batch), the Parquet flush, and both,
//!   in spans per second of wall time and per CPU-second (the write path is one thread), on
//!   spans in arrival (end-time) order, the flush also on spans in trace order, with the
//!   flush's sort alone and the parquet crate's bare encoder for scale;
//! - bytes per span in the Parquet files;
//! - a time-range query and a key lookup with pruning (statistics, bloom filters, page index,
//!   filter pushdown) and without, with the row groups each one touched.
//!
//! `cargo bench -p wiretrace-benches --bench storage [-- TRACES]` (default 20000)

use std::{path::Path, sync::Arc, time::Instant};

use datafusion::arrow::{
    self,
    array::{AsArray, RecordBatch, UInt32Array},
    compute::{concat_batches, sort_to_indices, take_record_batch},
    datatypes::Int64Type,
};
use datafusion::parquet::{
    arrow::ArrowWriter,
    basic::Compression,
    file::properties::{EnabledStatistics, WriterProperties},
};
use datafusion::{
    config::TableParquetOptions,
    datasource::{
        file_format::parquet::ParquetFormat,
        listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl},
    },
    prelude::SessionContext,
};
use wiretrace_benches::cpu_seconds;
use wiretrace_ingest::generate::{GenConfig, Generator};
use wiretrace_storage::{
    Store, StoreOptions, TableWriters,
    schema::{L7_FLOW_LOG, tables},
};

/// Rows per appended batch (an agent hands over a few thousand spans per flush interval).
const BATCH_ROWS: usize = 8192;
/// Timed repetitions (the median is reported).
const RUNS: usize = 5;

/// Median (wall, cpu) seconds of `RUNS` runs of `f` on a fresh data dir.
fn time(mut f: impl FnMut(&Path)) -> (f64, f64) {
    let mut runs: Vec<(f64, f64)> = (0..RUNS)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let (t, c) = (Instant::now(), cpu_seconds());
            f(dir.path());
            (t.elapsed().as_secs_f64(), cpu_seconds() - c)
        })
        .collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    runs[RUNS / 2]
}

/// `batch` cut into batches of `BATCH_ROWS`, each with arrays of its own (as the ingest
/// builds them: a slice of a bigger array would make the WAL's IPC writer rebase every string
/// offset of it, which no agent's batch needs).
fn in_batches(batch: &RecordBatch) -> Vec<RecordBatch> {
    (0..batch.num_rows() as u32)
        .step_by(BATCH_ROWS)
        .map(|o| {
            let end = (o + BATCH_ROWS as u32).min(batch.num_rows() as u32);
            take_record_batch(batch, &UInt32Array::from_iter_values(o..end)).unwrap()
        })
        .collect()
}

/// Write throughput of `batches` (spans in arrival order), and of the flush alone on
/// `trace_order` (the same spans trace after trace, as generated).
fn write_throughput(batches: &[RecordBatch], trace_order: &[RecordBatch], rows: usize) {
    let report = |what: &str, (wall, cpu): (f64, f64)| {
        println!(
            "| {what} | {:.2} M/s | {:.2} M/s |",
            rows as f64 / wall / 1e6,
            rows as f64 / cpu / 1e6
        );
    };
    println!("| write path ({rows} spans) | spans/s (wall) | spans/s per CPU-second |");
    println!("|---|---:|---:|");
    // A store of `dir` holding every batch (logged, not yet flushed).
    let appended = |dir: &Path| {
        let s = Store::open(dir, StoreOptions::default()).unwrap();
        for b in batches {
            s.append(L7_FLOW_LOG, b.clone()).unwrap();
        }
        s
    };
    report(
        "WAL append (Arrow IPC, fsync per batch)",
        time(|dir| {
            appended(dir);
        }),
    );
    report(
        "Parquet flush (sort, encode, zstd, bloom filters, fsync)",
        time(|dir| {
            TableWriters::open(dir)
                .unwrap()
                .write(L7_FLOW_LOG, batches)
                .unwrap();
        }),
    );
    report(
        "the same flush, spans in trace order (as generated)",
        time(|dir| {
            TableWriters::open(dir)
                .unwrap()
                .write(L7_FLOW_LOG, trace_order)
                .unwrap();
        }),
    );
    report(
        "both: append every batch, then flush",
        time(|dir| {
            appended(dir).flush().unwrap();
        }),
    );
    // What the flush is made of, for scale: its sort alone, and the parquet crate's encoder
    // with every feature off (no compression, statistics, dictionaries or bloom filters) on the
    // same rows already sorted: the ceiling of any writer built on it.
    let schema = batches[0].schema();
    let all = concat_batches(&schema, batches).unwrap();
    let time_column = all.column(schema.index_of("start_time").unwrap());
    let sort = || {
        let order = sort_to_indices(time_column, None, None).unwrap();
        take_record_batch(&all, &order).unwrap()
    };
    report(
        "its sort alone (sort_to_indices + take)",
        time(|_| drop(sort())),
    );
    let sorted = sort();
    let bare = WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(64 * 1024))
        .build();
    report(
        "parquet crate's encoder, every feature off, to memory",
        time(|_| {
            let mut w =
                ArrowWriter::try_new(Vec::new(), Arc::clone(&schema), Some(bare.clone())).unwrap();
            w.write(&sorted).unwrap();
            w.close().unwrap();
        }),
    );
}

/// Row-group and page metrics of the Parquet scan in `sql`'s EXPLAIN ANALYZE.
async fn touched(ctx: &SessionContext, sql: &str) -> String {
    let plan = ctx
        .sql(&format!("EXPLAIN ANALYZE {sql}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string();
    let wanted = [
        "row_groups_pruned_statistics",
        "row_groups_pruned_bloom_filter",
        "page_index_rows_pruned",
        "bytes_scanned",
    ];
    let scan = text.split("DataSourceExec").nth(1).unwrap_or_default();
    let metrics = scan.split("metrics=[").nth(1).unwrap_or_default();
    metrics
        .split(", ")
        .filter(|m| wanted.iter().any(|w| m.starts_with(w)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The same files as `l7_flow_log`, read with no pruning at all: no statistics, bloom filters
/// or page index (the table's own Parquet options decide those, not `SET`).
fn register_unpruned(ctx: &SessionContext, dir: &Path) {
    let mut options = TableParquetOptions::default();
    options.global.pruning = false;
    options.global.bloom_filter_on_read = false;
    options.global.enable_page_index = false;
    let format = ParquetFormat::default().with_options(options);
    let files = std::fs::canonicalize(dir.join(L7_FLOW_LOG)).unwrap();
    let url = ListingTableUrl::parse(format!("{}/", files.display())).unwrap();
    let schema = tables().into_iter().find(|t| t.0 == L7_FLOW_LOG).unwrap().1;
    let config = ListingTableConfig::new(url)
        .with_listing_options(ListingOptions::new(Arc::new(format)).with_file_extension(".parquet"))
        .with_schema(schema);
    ctx.register_table(
        "l7_unpruned",
        Arc::new(ListingTable::try_new(config).unwrap()),
    )
    .unwrap();
}

async fn pruning(dir: &Path, seq: i64, from_us: i64) {
    let queries = |table: &str| {
        [
            (
                "time range: 1 s of 600",
                format!(
                    "SELECT * FROM {table} WHERE start_time BETWEEN to_timestamp_micros({from_us}) AND to_timestamp_micros({})",
                    from_us + 1_000_000
                ),
            ),
            (
                "key lookup: req_tcp_seq = one value",
                format!("SELECT * FROM {table} WHERE req_tcp_seq = {seq}"),
            ),
        ]
    };
    let ctx = wiretrace_query::session(dir).await.unwrap();
    register_unpruned(&ctx, dir);
    println!("\n| query | pruning | median | p90 | scan metrics |");
    println!("|---|---|---:|---:|---|");
    for (on, table) in [(true, L7_FLOW_LOG), (false, "l7_unpruned")] {
        ctx.sql(&format!(
            "SET datafusion.execution.parquet.pushdown_filters = {on}"
        ))
        .await
        .unwrap();
        for (what, sql) in queries(table) {
            let mut ms: Vec<f64> = Vec::new();
            for _ in 0..21 {
                let t = Instant::now();
                ctx.sql(&sql).await.unwrap().collect().await.unwrap();
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            ms.sort_by(f64::total_cmp);
            println!(
                "| {what} | {} | {:.1} ms | {:.1} ms | {} |",
                if on {
                    "statistics, bloom filters, page index, filter pushdown"
                } else {
                    "none"
                },
                ms[10],
                ms[18],
                touched(&ctx, &sql).await
            );
        }
    }
}

fn main() {
    let traces: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let generated = Generator::new(GenConfig {
        spread_us: 600_000_000,
        ..GenConfig::default()
    })
    .traces(traces, traces);
    // The generator writes trace after trace; an agent hands spans over as their responses
    // are seen, so the store gets them in end-time order (per agent, close to it overall).
    let schema = generated.batches[0].schema();
    let generated = concat_batches(&schema, &generated.batches).unwrap();
    let end_time = generated.column(schema.index_of("end_time").unwrap());
    let arrival = sort_to_indices(end_time, None, None).unwrap();
    let batches = in_batches(&take_record_batch(&generated, &arrival).unwrap());
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    write_throughput(&batches, &in_batches(&generated), rows);

    let dir = tempfile::tempdir().unwrap();
    let written = TableWriters::open(dir.path())
        .unwrap()
        .write(L7_FLOW_LOG, &batches)
        .unwrap();
    let bytes: u64 = written
        .files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    println!(
        "\nParquet: {bytes} bytes for {rows} spans = {:.1} B/span",
        bytes as f64 / rows as f64
    );
    let first = &batches[batches.len() / 2];
    let seq = first
        .column_by_name("req_tcp_seq")
        .map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Int64).unwrap())
        .map(|c| c.as_primitive::<Int64Type>().value(0))
        .unwrap();
    let from_us = first
        .column_by_name("start_time")
        .map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Int64).unwrap())
        .map(|c| c.as_primitive::<Int64Type>().value(0))
        .unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(pruning(dir.path(), seq, from_us));
}
