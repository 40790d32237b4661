//! Arrow batches → Parquet files, one per hour partition per flush, written to a temp name and
//! renamed into place so a reader sees a whole file or none.

use std::{
    fs::{self, File},
    io::BufWriter,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use arrow::{
    array::{Array, ArrayRef, AsArray, RecordBatch, TimestampMicrosecondArray, UInt32Array},
    compute::concat,
    datatypes::{DataType, SchemaRef},
};
use chrono::{DateTime, Utc};
use parquet::{
    arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata},
    basic::{Encoding, ZstdLevel},
    file::{properties::WriterProperties, writer::SerializedFileWriter},
    schema::types::SchemaDescriptor,
};

use crate::{
    chunk::{ChunkEncoder, ColumnSpec},
    error::{Result, StorageError, io},
    paths,
};

/// Columns trace assembly looks up by value: bloom filters make those lookups skip row groups.
pub const LOOKUP_KEY_COLUMNS: &[&str] = &[
    "req_tcp_seq",
    "resp_tcp_seq",
    "syscall_trace_id_request",
    "syscall_trace_id_response",
    "x_request_id_0",
    "x_request_id_1",
    "trace_id",
];

/// Columns whose values are nearly all distinct, so a dictionary never pays, each with the
/// encoding that stored generated traces smallest under zstd (benches/storage_size.py): deltas
/// for sorted or clustered integers, byte-stream split for noisy ones, plain for random ones.
/// (`end_time` is the exception: its deltas take 3 % more bytes than zstd of its plain values,
/// but need no zstd to write or read.)
/// Every other column gets a dictionary where one stores its chunk smaller.
const UNDICTIONARIED: &[(&str, Encoding)] = &[
    ("_id", Encoding::DELTA_BINARY_PACKED),
    ("start_time", Encoding::DELTA_BINARY_PACKED),
    ("end_time", Encoding::DELTA_BINARY_PACKED),
    ("response_duration", Encoding::BYTE_STREAM_SPLIT),
    ("req_tcp_seq", Encoding::PLAIN),
    ("resp_tcp_seq", Encoding::PLAIN),
    ("syscall_trace_id_request", Encoding::DELTA_BINARY_PACKED),
    ("syscall_trace_id_response", Encoding::DELTA_BINARY_PACKED),
    ("flow_id", Encoding::PLAIN),
    ("client_port", Encoding::BYTE_STREAM_SPLIT),
    ("x_request_id_0", Encoding::DELTA_LENGTH_BYTE_ARRAY),
    ("x_request_id_1", Encoding::DELTA_LENGTH_BYTE_ARRAY),
];

/// Column ordering a file's rows within each slice of [`CLUSTER_US`] of time, where the table
/// has it (as `UInt32`): every view of one request (the eBPF spans at both ends, the packet
/// spans between) carries the same request seq, so they lie side by side and their seqs, ids,
/// ports and X-Request-IDs are stored as near repeats.
const CLUSTER_COLUMN: &str = "req_tcp_seq";

/// Width of the time slices a file's rows are ordered in, µs: rows sort by slice, then by
/// [`CLUSTER_COLUMN`], then by time. A page's times still span little more than its rows do,
/// so pruning by time reaches the pages it reached in plain time order.
const CLUSTER_US: i64 = 100_000;

/// Bytes a file's writes are gathered into before each goes to the kernel (the Parquet writer
/// hands over 8 KiB at a time: a system call each, which a VM makes dear).
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Rows per Parquet row group: the unit a key lookup reads or skips.
pub(crate) const ROW_GROUP_ROWS: usize = 64 * 1024;

/// zstd level of the pages that are compressed (those of chunks where it pays). On generated
/// traces, level 1 against 3 per column: X-Request-IDs and TCP seqs smaller and 20–35 %
/// faster, the other compressed columns ≤ 9 % bigger and 15–40 % faster.
const ZSTD_LEVEL: i32 = 1;

/// Columns whose values repeat far apart, with the zstd level that finds those repeats: flow
/// ids take half the bytes at level 3 that they take at level 1, in half the time.
const ZSTD_DEEPER: &[(&str, i32)] = &[("flow_id", 3)];

/// False-positive rate of the bloom filters on TCP seqs: a lookup probes them near their
/// spans' times only.
const SEQ_BLOOM_FPP: f64 = 0.05;

/// False-positive rate of the other key columns' bloom filters: a lookup probes syscall ids and
/// string keys across its whole window, many at once.
const KEY_BLOOM_FPP: f64 = 0.001;

/// Writes batches of one table as hour-partitioned Parquet files under a data dir.
#[derive(Debug)]
pub struct PartitionedWriter {
    data_dir: PathBuf,
    table: String,
    schema: SchemaRef,
    time_column: usize,
    /// Where [`CLUSTER_COLUMN`] is, if the table has it.
    cluster_column: Option<usize>,
    parquet_schema: SchemaDescriptor,
    columns: Vec<ColumnSpec>,
    props: Arc<WriterProperties>,
    seq: AtomicU64,
}

/// A Parquet file written under its temp name, waiting to be renamed into place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// Where it was written.
    pub tmp: PathBuf,
    /// Where it goes.
    pub path: PathBuf,
    /// Its rows.
    pub rows: usize,
}

impl Staged {
    /// Renames the file into place (readers see all of it or none).
    pub fn commit(&self) -> Result<()> {
        fs::rename(&self.tmp, &self.path).map_err(io("renaming", &self.tmp))
    }
}

/// What one [`PartitionedWriter::write`] produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteStats {
    /// Rows written.
    pub rows: usize,
    /// Files created.
    pub files: Vec<PathBuf>,
}

impl PartitionedWriter {
    /// A writer for `table` (with `schema`, partitioned by the timestamp column `time_column`).
    pub fn new(data_dir: &Path, table: &str, schema: SchemaRef, time_column: &str) -> Result<Self> {
        let time_column = schema.index_of(time_column)?;
        let cluster_column = schema
            .column_with_name(CLUSTER_COLUMN)
            .filter(|(_, f)| f.data_type() == &DataType::UInt32)
            .map(|(i, _)| i);
        let parquet_err = |source| StorageError::Parquet {
            path: data_dir.to_path_buf(),
            source,
        };
        let parquet_schema = ArrowSchemaConverter::new()
            .convert(&schema)
            .map_err(parquet_err)?;
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                let name = f.name().as_str();
                let zstd_level = setting(ZSTD_DEEPER, name).unwrap_or(ZSTD_LEVEL);
                Ok(ColumnSpec {
                    encoding: setting(UNDICTIONARIED, name),
                    bloom_fpp: LOOKUP_KEY_COLUMNS.contains(&name).then_some(
                        if name.ends_with("tcp_seq") {
                            SEQ_BLOOM_FPP
                        } else {
                            KEY_BLOOM_FPP
                        },
                    ),
                    zstd_level: ZstdLevel::try_new(zstd_level).map_err(parquet_err)?,
                })
            })
            .collect::<Result<_>>()?;
        // The file's own settings: each column chunk is encoded by `ChunkEncoder`; the footer
        // carries the Arrow schema so readers get the Arrow types back.
        let mut props = WriterProperties::builder().build();
        add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        let dir = paths::table_dir(data_dir, table);
        fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            table: table.to_string(),
            schema,
            time_column,
            cluster_column,
            parquet_schema,
            columns,
            props: Arc::new(props),
            seq: AtomicU64::new(0),
        })
    }

    /// Writes `batches` as one file per hour partition they touch, rows by slice of
    /// [`CLUSTER_US`] of time, then by [`CLUSTER_COLUMN`] where the table has it, then by time.
    pub fn write(&self, batches: &[RecordBatch]) -> Result<WriteStats> {
        let mut stats = WriteStats::default();
        for staged in self.stage(batches)? {
            staged.commit()?;
            stats.rows += staged.rows;
            stats.files.push(staged.path);
        }
        Ok(stats)
    }

    /// Writes `batches` like [`PartitionedWriter::write`], leaving the files under their temp
    /// names for the caller to commit.
    pub fn stage(&self, batches: &[RecordBatch]) -> Result<Vec<Staged>> {
        for b in batches {
            if b.schema().fields() != self.schema.fields() {
                return Err(StorageError::Schema {
                    table: self.table.clone(),
                    detail: format!("got {:?}", b.schema()),
                });
            }
        }
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(Vec::new());
        }
        let time_column = column(batches, self.time_column)?;
        let times = time_column
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| StorageError::Schema {
                table: self.table.clone(),
                detail: "time column is not Timestamp(µs)".into(),
            })?;
        // Rows in file order, as row numbers into the batches end to end: the encoder reads
        // them in this order, so no batch is copied to sort it.
        let order = match self.cluster_column {
            Some(c) => clustered_order(times.values(), column(batches, c)?.as_primitive()),
            None if times.values().is_sorted() => (0..times.len() as u32).collect(),
            None => time_order(times.values()),
        };
        let hour = |row: u32| times.value(row as usize).div_euclid(3_600_000_000);
        order
            .chunk_by(|&a, &b| hour(a) == hour(b))
            .map(|rows| {
                let span = rows
                    .iter()
                    .map(|&r| times.value(r as usize))
                    .fold((i64::MAX, i64::MIN), |(least, greatest), t| {
                        (least.min(t), greatest.max(t))
                    });
                self.write_file(batches, &time_column, rows, span)
            })
            .collect()
    }

    /// Writes `rows` of `batches` (numbered end to end), in that order, as one Parquet file of
    /// the partition of their times, which span `span` (least, greatest); `time_column` is the
    /// batches' time column, already joined.
    fn write_file(
        &self,
        batches: &[RecordBatch],
        time_column: &ArrayRef,
        rows: &[u32],
        span: (i64, i64),
    ) -> Result<Staged> {
        let time = DateTime::<Utc>::from_timestamp_micros(span.0).unwrap_or_default();
        let dir = paths::partition_dir(&self.data_dir, &self.table, time);
        fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(paths::part_file_name(Utc::now(), seq, span));
        let tmp = paths::temp_path(&path);
        let file = File::create(&tmp).map_err(io("creating", &tmp))?;
        let parquet_err = |source| StorageError::Parquet {
            path: path.clone(),
            source,
        };
        let mut encoder = ChunkEncoder::new().map_err(parquet_err)?;
        let mut writer = SerializedFileWriter::new(
            BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            self.parquet_schema.root_schema_ptr(),
            Arc::clone(&self.props),
        )
        .map_err(parquet_err)?;
        // Column by column (each one's dictionary is built once for the file), then row group
        // by row group into the file.
        let groups: Vec<&[u32]> = rows.chunks(ROW_GROUP_ROWS).collect();
        let scan = ascending(rows);
        let mut chunks: Vec<Vec<_>> = groups.iter().map(|_| Vec::new()).collect();
        for (i, spec) in self.columns.iter().enumerate() {
            // One column of all batches at a time (joined into one array only where the encoder
            // needs to: what is copied is at most one column, never the batch).
            let parts: Vec<&dyn Array> = match i == self.time_column {
                true => vec![time_column.as_ref()],
                false => batches.iter().map(|b| b.column(i).as_ref()).collect(),
            };
            let encoded = encoder
                .encode(self.parquet_schema.column(i), &parts, &groups, &scan, spec)
                .map_err(parquet_err)?;
            for (group, chunk) in chunks.iter_mut().zip(encoded) {
                group.push(chunk);
            }
        }
        for group in chunks {
            let mut row_group = writer.next_row_group().map_err(parquet_err)?;
            for chunk in group {
                row_group
                    .append_column(&chunk.bytes, chunk.close)
                    .map_err(parquet_err)?;
            }
            row_group.close().map_err(parquet_err)?;
        }
        let file = writer
            .into_inner()
            .map_err(parquet_err)?
            .into_inner()
            .map_err(|e| io("writing", &tmp)(e.into_error()))?;
        file.sync_all().map_err(io("syncing", &tmp))?;
        Ok(Staged {
            tmp,
            path,
            rows: rows.len(),
        })
    }
}

/// The setting `table` gives column `name`, if it names it.
fn setting<T: Copy>(table: &[(&str, T)], name: &str) -> Option<T> {
    table.iter().find(|(c, _)| *c == name).map(|(_, v)| *v)
}

/// Row numbers of `times` in ascending time order, equal times in row order.
fn time_order(times: &[i64]) -> Vec<u32> {
    let (Some(&min), Some(&max)) = (times.iter().min(), times.iter().max()) else {
        return Vec::new();
    };
    let range = max.wrapping_sub(min) as u64;
    let row_bits = 64 - (times.len() as u64).leading_zeros();
    if range.leading_zeros() >= row_bits {
        // Time offset and row number packed in one integer: one sort of plain numbers.
        let mut packed: Vec<u64> = times
            .iter()
            .enumerate()
            .map(|(r, &t)| (t.wrapping_sub(min) as u64) << row_bits | r as u64)
            .collect();
        packed.sort_unstable();
        let mask = (1u64 << row_bits) - 1;
        packed.into_iter().map(|p| (p & mask) as u32).collect()
    } else {
        let mut order: Vec<u32> = (0..times.len() as u32).collect();
        order.sort_by_key(|&r| times[r as usize]);
        order
    }
}

/// Bits of a row's place within its slice in [`clustered_order`]'s sort keys (a slice of more
/// rows takes a comparison sort).
const SLICE_ROW_BITS: u32 = 15;

// A time within its slice fits the sort key's bits between the seq and the place in the slice.
const _: () = assert!(CLUSTER_US <= 1 << (32 - SLICE_ROW_BITS));

/// Row numbers of `times` by slice of [`CLUSTER_US`], then by `seqs` (a null as 0), then by
/// time, then by row. Rows are first dealt into their slices (a count, then one pass placing
/// each), so only each slice's few rows are sorted, each by one plain number: seq above time
/// within the slice above place in the slice.
fn clustered_order(times: &[i64], seqs: &UInt32Array) -> Vec<u32> {
    let slice = |t: i64| t.div_euclid(CLUSTER_US);
    let seq = |r: usize| match seqs.is_null(r) {
        true => 0,
        false => seqs.value(r),
    };
    let (Some(&min), Some(&max)) = (times.iter().min(), times.iter().max()) else {
        return Vec::new();
    };
    let (first, slices) = (slice(min), slice(max) - slice(min) + 1);
    if slices > times.len() as i64 + 1024 {
        // Times too spread out to count slices (a span with a far-off clock).
        let mut order: Vec<u32> = (0..times.len() as u32).collect();
        order.sort_unstable_by_key(|&r| {
            (
                slice(times[r as usize]),
                seq(r as usize),
                times[r as usize],
                r,
            )
        });
        return order;
    }
    let place = |t: i64| (slice(t) - first) as usize;
    let mut starts = vec![0; slices as usize + 1];
    for &t in times {
        starts[place(t) + 1] += 1;
    }
    for s in 1..starts.len() {
        starts[s] += starts[s - 1];
    }
    let mut order = vec![0u32; times.len()];
    let mut next = starts.clone();
    for (r, &t) in times.iter().enumerate() {
        let at = &mut next[place(t)];
        order[*at] = r as u32;
        *at += 1;
    }
    let (mut keys, mut run_rows) = (Vec::new(), Vec::new());
    for bounds in starts.windows(2) {
        let run = &mut order[bounds[0]..bounds[1]];
        if run.len() > 1 << SLICE_ROW_BITS {
            run.sort_unstable_by_key(|&r| (seq(r as usize), times[r as usize], r));
            continue;
        }
        keys.clear();
        keys.extend(run.iter().enumerate().map(|(k, &r)| {
            let within = times[r as usize].rem_euclid(CLUSTER_US) as u64;
            u64::from(seq(r as usize)) << 32 | within << SLICE_ROW_BITS | k as u64
        }));
        keys.sort_unstable();
        run_rows.clear();
        run_rows.extend_from_slice(run);
        for (slot, key) in run.iter_mut().zip(&keys) {
            *slot = run_rows[(key & ((1 << SLICE_ROW_BITS) - 1)) as usize];
        }
    }
    order
}

/// `rows` (distinct row numbers) in ascending order.
fn ascending(rows: &[u32]) -> Vec<u32> {
    let Some(&end) = rows.iter().max() else {
        return Vec::new();
    };
    let mut seen = vec![false; end as usize + 1];
    for &r in rows {
        seen[r as usize] = true;
    }
    (0..=end).filter(|&r| seen[r as usize]).collect()
}

/// Column `i` of `batches` end to end, as one array (the batch's own when there is one).
fn column(batches: &[RecordBatch], i: usize) -> Result<ArrayRef> {
    Ok(match batches {
        [one] => Arc::clone(one.column(i)),
        _ => concat(
            &batches
                .iter()
                .map(|b| b.column(i).as_ref())
                .collect::<Vec<_>>(),
        )?,
    })
}

/// One writer per table of the schema, picked by table name.
#[derive(Debug)]
pub struct TableWriters {
    writers: Vec<(&'static str, PartitionedWriter)>,
}

impl TableWriters {
    /// Writers for every table under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let writers = crate::schema::tables()
            .into_iter()
            .map(|(name, schema, time)| {
                Ok((name, PartitionedWriter::new(data_dir, name, schema, time)?))
            })
            .collect::<Result<_>>()?;
        Ok(Self { writers })
    }

    /// Writes `batches` to `table`.
    pub fn write(&self, table: &str, batches: &[RecordBatch]) -> Result<WriteStats> {
        self.get(table)?.write(batches)
    }

    /// The writer of `table`.
    pub fn get(&self, table: &str) -> Result<&PartitionedWriter> {
        self.writers
            .iter()
            .find(|(name, _)| *name == table)
            .map(|(_, w)| w)
            .ok_or_else(|| StorageError::Schema {
                table: table.to_string(),
                detail: "no such table".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use arrow::{
        array::{
            BinaryArray, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
            UInt32Array,
        },
        compute::concat_batches,
        datatypes::{DataType, Field, Schema, TimeUnit},
    };
    use parquet::{
        arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder},
        basic::Compression,
        bloom_filter::Sbbf,
        file::{
            metadata::PageIndexPolicy,
            page_index::column_index::ColumnIndexMetaData,
            properties::ReaderProperties,
            reader::FileReader,
            serialized_reader::{ReadOptionsBuilder, SerializedFileReader},
            statistics::Statistics,
        },
    };

    use super::*;

    /// The rows of `file` as pyarrow (Arrow C++, an independent Parquet reader) reads them, or
    /// `None` (said loudly) where the repo's Python with pyarrow is missing outside CI.
    fn read_by_pyarrow(file: &Path) -> Option<RecordBatch> {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python3");
        let ipc = tempfile::NamedTempFile::new().unwrap();
        let script = "import sys, pyarrow as pa, pyarrow.parquet as pq\n\
            t = pq.read_table(sys.argv[1])\n\
            with pa.ipc.new_file(sys.argv[2], t.schema) as w: w.write_table(t)\n";
        let out = std::process::Command::new(&venv)
            .args(["-c", script])
            .arg(file)
            .arg(ipc.path())
            .output();
        match out {
            Ok(out) if out.status.success() => {}
            Ok(out) if !String::from_utf8_lossy(&out.stderr).contains("No module named") => {
                panic!("pyarrow: {}", String::from_utf8_lossy(&out.stderr))
            }
            _ => {
                crate::skip_test(&format!(
                    "no pyarrow at {} (scripts/setup.sh makes it)",
                    venv.display()
                ));
                return None;
            }
        }
        let reader =
            arrow::ipc::reader::FileReader::try_new(File::open(ipc.path()).unwrap(), None).unwrap();
        let schema = reader.schema();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        Some(concat_batches(&schema, &batches).unwrap())
    }

    /// A deterministic pseudo-random sequence (xorshift), for test data.
    fn noise(seed: u64) -> impl Iterator<Item = u64> {
        std::iter::successors(Some(seed | 1), |x| {
            let x = x ^ (x << 13);
            let x = x ^ (x >> 7);
            Some(x ^ (x << 17))
        })
    }

    /// Every physical type and encoding the writer uses, with nulls, over several pages and
    /// row groups, in shuffled time order: read back by the parquet crate's own reader they
    /// are the same rows in the file's order (by slice of time, then request seq, then time),
    /// and the statistics, page index and bloom filters hold what the rows hold.
    #[test]
    fn every_encoding_reads_back_sorted_with_statistics_and_filters() {
        let n = ROW_GROUP_ROWS + 3 * crate::chunk::PAGE_ROWS + 77;
        let r: Vec<u64> = noise(7).take(n).collect();
        let ts = |dt| Field::new("start_time", dt, false);
        let schema = Arc::new(Schema::new(vec![
            ts(DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("UTC".into()),
            )),
            Field::new("_id", DataType::Int64, false),
            Field::new("response_duration", DataType::Int64, false),
            Field::new("client_port", DataType::Int32, false),
            Field::new("agent_id", DataType::Int32, false),
            Field::new("req_tcp_seq", DataType::UInt32, true),
            Field::new("endpoint", DataType::Utf8, true),
            Field::new("request_resource", DataType::Utf8, true),
            Field::new("x_request_id_0", DataType::Utf8, true),
            Field::new("trace_id", DataType::Utf8, true),
            Field::new("tunnel_id", DataType::Int64, true),
            Field::new("captured_headers", DataType::Binary, true),
            Field::new("request_id", DataType::Utf8, true),
        ]));
        // Times within one hour, shuffled; every other column derived from the row's time so
        // the sorted read-back can be checked row by row.
        let hour = 3_600_000_000i64 * 500_000;
        let t: Vec<i64> = r
            .iter()
            .map(|x| hour + (x % 3_000_000_000) as i64)
            .collect();
        let f = |t: i64| (t - hour) as u64;
        let seq = |t: i64| (f(t) % 7 != 0).then_some((f(t) as u32).wrapping_mul(2654435761));
        let endpoint = |t: i64| (f(t) % 5 != 0).then(|| format!("/api/v{}", f(t) % 3));
        let resource = |t: i64| Some(format!("/api/item/{}", f(t) % 1000));
        let xrid = |t: i64| {
            (f(t) % 2 == 0).then(|| format!("{:032x}", f(t).wrapping_mul(0x9e3779b97f4a7c15)))
        };
        let trace = |t: i64| (f(t) % 11 == 0).then(|| format!("trace-{}", f(t) % 9));
        let headers =
            |t: i64| (f(t) % 3 == 0).then(|| vec![(f(t) % 256) as u8; (f(t) % 9) as usize]);
        let request_id = |t: i64| (f(t) % 13 != 0).then(|| format!("req-{}", f(t)));
        let columns = |t: &[i64]| -> Vec<ArrayRef> {
            vec![
                Arc::new(TimestampMicrosecondArray::from(t.to_vec()).with_timezone("UTC")),
                Arc::new(Int64Array::from_iter_values(t.iter().map(|&t| t << 8 | 3))),
                Arc::new(Int64Array::from_iter_values(
                    t.iter().map(|&t| f(t) as i64 % 90_000),
                )),
                Arc::new(Int32Array::from_iter_values(
                    t.iter().map(|&t| (f(t) % 60_000) as i32),
                )),
                Arc::new(Int32Array::from_iter_values(
                    t.iter().map(|&t| (f(t) % 4) as i32),
                )),
                Arc::new(t.iter().map(|&t| seq(t)).collect::<UInt32Array>()),
                Arc::new(t.iter().map(|&t| endpoint(t)).collect::<StringArray>()),
                Arc::new(t.iter().map(|&t| resource(t)).collect::<StringArray>()),
                Arc::new(t.iter().map(|&t| xrid(t)).collect::<StringArray>()),
                Arc::new(t.iter().map(|&t| trace(t)).collect::<StringArray>()),
                Arc::new(Int64Array::from(vec![None; t.len()])),
                Arc::new(t.iter().map(|&t| headers(t)).collect::<BinaryArray>()),
                Arc::new(t.iter().map(|&t| request_id(t)).collect::<StringArray>()),
            ]
        };
        let input = RecordBatch::try_new(Arc::clone(&schema), columns(&t)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let w = PartitionedWriter::new(dir.path(), "x", Arc::clone(&schema), "start_time").unwrap();
        // Two input batches: the flush reads across both (columns to intern batch by batch,
        // the others joined).
        let half = n / 2;
        let stats = w
            .write(&[input.slice(0, half), input.slice(half, n - half)])
            .unwrap();
        assert_eq!((stats.rows, stats.files.len()), (n, 1));

        let mut sorted = t.clone();
        sorted.sort_by_key(|&t| (t.div_euclid(CLUSTER_US), seq(t).unwrap_or(0), t));
        let expected = RecordBatch::try_new(Arc::clone(&schema), columns(&sorted)).unwrap();
        let file = File::open(&stats.files[0]).unwrap();
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).unwrap();
        assert_eq!(
            reader.schema().as_ref(),
            schema.as_ref(),
            "Arrow types restored"
        );
        let meta = Arc::clone(reader.metadata());
        let got: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
        let got = concat_batches(&schema, &got).unwrap();
        assert_eq!(got, expected);
        if let Some(by_pyarrow) = read_by_pyarrow(&stats.files[0]) {
            assert_eq!(by_pyarrow, expected);
        }

        // Row groups, pages, and what each column chunk was stored as.
        assert_eq!(meta.num_row_groups(), 2);
        let rg = meta.row_group(0);
        assert_eq!(rg.num_rows(), ROW_GROUP_ROWS as i64);
        let encodings = |c: usize| rg.column(c).encodings().collect::<Vec<_>>();
        assert!(encodings(1).contains(&Encoding::DELTA_BINARY_PACKED));
        assert!(encodings(2).contains(&Encoding::BYTE_STREAM_SPLIT));
        assert!(encodings(4).contains(&Encoding::RLE_DICTIONARY), "4 agents");
        // Few small values: every chunk carries the file's whole dictionary; 1 000 resources
        // (over 2 KiB): each chunk's dictionary is cut to the values it holds.
        assert!(
            encodings(6).contains(&Encoding::RLE_DICTIONARY),
            "3 endpoints"
        );
        assert!(
            encodings(7).contains(&Encoding::RLE_DICTIONARY),
            "1000 resources"
        );
        assert!(
            !encodings(5).contains(&Encoding::RLE_DICTIONARY),
            "seqs are plain"
        );
        assert!(encodings(8).contains(&Encoding::DELTA_LENGTH_BYTE_ARRAY));
        assert!(
            !encodings(12).contains(&Encoding::RLE_DICTIONARY),
            "distinct request ids are plain"
        );
        // zstd only where it pays: random seqs stay uncompressed in both row groups (the
        // first chunk's trial decides for the second), and so do dictionary keys of three
        // values (too few bytes a row to save); hex ids are compressed.
        for g in 0..2 {
            let codec = |c: usize| meta.row_group(g).column(c).compression();
            assert_eq!(codec(5), Compression::UNCOMPRESSED, "random seqs");
            assert_eq!(codec(6), Compression::UNCOMPRESSED, "3 endpoints");
            assert!(matches!(codec(8), Compression::ZSTD(_)), "hex ids");
        }
        let offsets = meta.offset_index().unwrap();
        assert_eq!(offsets[0][0].page_locations.len(), 8);
        assert_eq!(offsets[1][0].page_locations.len(), 4);

        // Chunk statistics: unsigned order for the UInt32 column, nulls counted.
        let first_rows = expected.slice(0, ROW_GROUP_ROWS);
        let seqs: Vec<u32> = first_rows
            .column(5)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        match rg.column(5).statistics().unwrap() {
            Statistics::Int32(s) => {
                assert_eq!(*s.min_opt().unwrap() as u32, *seqs.iter().min().unwrap());
                assert_eq!(*s.max_opt().unwrap() as u32, *seqs.iter().max().unwrap());
                assert_eq!(
                    s.null_count_opt(),
                    Some((ROW_GROUP_ROWS - seqs.len()) as u64)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            rg.column(10).statistics().unwrap().null_count_opt(),
            Some(ROW_GROUP_ROWS as u64)
        );
        // The page index of the time column: ascending (each page spans many slices), each
        // page's bounds its rows'.
        let time_index = &meta.column_index().unwrap()[0][0];
        assert_eq!(
            time_index.get_boundary_order(),
            Some(parquet::basic::BoundaryOrder::ASCENDING)
        );
        match time_index {
            ColumnIndexMetaData::INT64(index) => {
                for p in 0..8 {
                    let page =
                        &sorted[p * crate::chunk::PAGE_ROWS..(p + 1) * crate::chunk::PAGE_ROWS];
                    assert_eq!(index.min_value(p), page.iter().min());
                    assert_eq!(index.max_value(p), page.iter().max());
                }
            }
            other => panic!("{other:?}"),
        }
        match &meta.column_index().unwrap()[0][6] {
            ColumnIndexMetaData::BYTE_ARRAY(index) => {
                assert_eq!(index.min_value(0), Some(&b"/api/v0"[..]));
                assert_eq!(index.max_value(0), Some(&b"/api/v2"[..]));
            }
            other => panic!("{other:?}"),
        }

        // Bloom filters on the key columns hold every value of their row group.
        let options = ReadOptionsBuilder::new()
            .with_reader_properties(
                ReaderProperties::builder()
                    .set_read_bloom_filter(true)
                    .build(),
            )
            .build();
        let reader =
            SerializedFileReader::new_with_options(File::open(&stats.files[0]).unwrap(), options)
                .unwrap();
        let rg_reader = reader.get_row_group(0).unwrap();
        let filter = |c: usize| -> Sbbf { rg_reader.get_column_bloom_filter(c).cloned().unwrap() };
        for s in &seqs {
            assert!(filter(5).check(&(*s as i32)));
        }
        let ids = first_rows
            .column(8)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        for id in ids.iter().flatten() {
            assert!(filter(8).check(id));
        }
        let misses = (0..10_000u32)
            .filter(|i| filter(8).check(&format!("absent-{i}")[..]))
            .count();
        assert!(
            misses < 100,
            "{misses} false positives in 10 000 at fpp 0.001"
        );
    }

    /// A schema of a time column `t` (µs, UTC) and `field`.
    fn timed(field: Field) -> SchemaRef {
        let t = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        Arc::new(Schema::new(vec![Field::new("t", t, false), field]))
    }

    /// Rows already in time order across an hour: the first file holds a prefix of the rows
    /// (its dictionary is interned off the null bitmap, which runs on past its rows).
    #[test]
    fn a_sorted_flush_over_an_hour_boundary_splits_into_whole_files() {
        let hour = 3_600_000_000i64;
        let n = 3000usize;
        let schema = timed(Field::new("host", DataType::Utf8, true));
        let times: Vec<i64> = (0..n as i64).map(|i| hour - 1000 + i).collect();
        let hosts: StringArray = (0..n)
            .map(|i| (i % 3 != 0).then(|| format!("node-{}", i % 5)))
            .collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
                Arc::new(hosts.clone()),
            ],
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let w = PartitionedWriter::new(dir.path(), "x", Arc::clone(&schema), "t").unwrap();
        let stats = w.write(&[batch]).unwrap();
        assert_eq!(stats.files.len(), 2);
        let mut read = Vec::new();
        for f in &stats.files {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(f).unwrap())
                .unwrap()
                .build()
                .unwrap();
            for b in reader {
                let b = b.unwrap();
                let h = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
                read.extend(h.iter().map(|v| v.map(str::to_string)));
            }
        }
        let written: Vec<Option<String>> = hosts.iter().map(|v| v.map(str::to_string)).collect();
        assert_eq!(read, written);
    }

    /// Within a slice of time, rows go by seq (a null as 0) and equal seqs by time; the slices
    /// stay in time order.
    #[test]
    fn rows_cluster_by_seq_within_each_time_slice() {
        let s = CLUSTER_US;
        let times = [0, 1, 2, 3, s, s + 1, s + 2];
        let seqs = UInt32Array::from(vec![
            Some(9),
            Some(5),
            None,
            Some(5),
            Some(1),
            Some(7),
            Some(1),
        ]);
        assert_eq!(clustered_order(&times, &seqs), [2, 1, 3, 0, 4, 6, 5]);
    }

    /// The order is the sort by (slice, seq, time, row) however the rows fall: spread over
    /// many slices (negative times too), crowded into one slice past the keys' room for a place
    /// in it, or spread too far apart to count slices.
    #[test]
    fn clustered_order_sorts_by_slice_seq_time_and_row() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let cases: [(usize, i64, i64); 3] = [
            (5_000, -3 * CLUSTER_US, 40 * CLUSTER_US),
            (40_000, 7 * CLUSTER_US, CLUSTER_US),
            (1_000, 0, i64::MAX / 4),
        ];
        for (rows, from, spread) in cases {
            let times: Vec<i64> = (0..rows)
                .map(|_| from + (next() % spread as u64) as i64)
                .collect();
            let seqs: UInt32Array = (0..rows)
                .map(|_| Some(next() as u32 % 64).filter(|&s| s != 0))
                .collect();
            let seq = |r: usize| if seqs.is_valid(r) { seqs.value(r) } else { 0 };
            let mut expected: Vec<u32> = (0..rows as u32).collect();
            expected.sort_by_key(|&r| {
                let t = times[r as usize];
                (t.div_euclid(CLUSTER_US), seq(r as usize), t, r)
            });
            assert_eq!(clustered_order(&times, &seqs), expected, "{rows} rows");
        }
    }

    #[test]
    fn time_order_is_stable_for_narrow_and_wide_ranges() {
        let narrow = [5, -3, 5, 0, -3, 7];
        assert_eq!(time_order(&narrow), [1, 4, 3, 0, 2, 5]);
        // A range too wide to pack with the row number takes the comparison sort.
        let wide = [i64::MAX, 0, i64::MIN, 0];
        assert_eq!(time_order(&wide), [2, 1, 3, 0]);
        assert_eq!(time_order(&[]), Vec::<u32>::new());
        assert_eq!(ascending(&[4, 1, 3]), [1, 3, 4]);
    }

    #[test]
    fn splits_by_hour_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let schema = timed(Field::new("v", DataType::Int64, false));
        let hour = 3_600_000_000i64;
        let t = TimestampMicrosecondArray::from(vec![hour + 5, 5, hour + 1]).with_timezone("UTC");
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(t), Arc::new(Int64Array::from(vec![3, 1, 2]))],
        )
        .unwrap();
        let w = PartitionedWriter::new(dir.path(), "x", schema, "t").unwrap();
        let stats = w.write(&[batch]).unwrap();
        assert_eq!(stats.rows, 3);
        assert_eq!(stats.files.len(), 2);
        let f = File::open(&stats.files[1]).unwrap();
        let rows: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        let v = rows[0]
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(v.values(), &[2, 3], "sorted by time within the file");
        assert!(
            stats.files[1]
                .to_string_lossy()
                .contains("dt=1970-01-01/hr=01")
        );
    }
}
