//! Arrow batches → Parquet files, one per hour partition per flush, written to a temp name and
//! renamed into place so a reader sees a whole file or none.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use arrow::{
    array::{Array, BooleanArray, RecordBatch, TimestampMicrosecondArray},
    compute::{concat_batches, filter_record_batch, sort_to_indices, take_record_batch},
    datatypes::SchemaRef,
};
use chrono::{DateTime, Utc};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, Encoding, ZstdLevel},
    file::properties::{EnabledStatistics, WriterProperties},
    schema::types::ColumnPath,
};

use crate::{
    error::{Result, StorageError},
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
/// Every other column is dictionary encoded.
const UNDICTIONARIED: &[(&str, Encoding)] = &[
    ("_id", Encoding::DELTA_BINARY_PACKED),
    ("start_time", Encoding::DELTA_BINARY_PACKED),
    ("end_time", Encoding::PLAIN),
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

/// Rows per Parquet row group: the unit a key lookup reads or skips.
pub(crate) const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Rows per data page at most: a lookup that finds a row in a row group decodes one page of
/// each column it reads, not the whole column.
const PAGE_ROWS: usize = 8 * 1024;

/// Writes batches of one table as hour-partitioned Parquet files under a data dir.
#[derive(Debug)]
pub struct PartitionedWriter {
    data_dir: PathBuf,
    table: String,
    schema: SchemaRef,
    time_column: usize,
    props: WriterProperties,
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
        fs::rename(&self.tmp, &self.path).map_err(|source| StorageError::Io {
            op: "renaming",
            path: self.tmp.clone(),
            source,
        })
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
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(|e| {
                StorageError::Parquet {
                    path: data_dir.to_path_buf(),
                    source: e,
                }
            })?))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_data_page_row_count_limit(PAGE_ROWS);
        for (column, encoding) in UNDICTIONARIED {
            if schema.index_of(column).is_ok() {
                let path = ColumnPath::from(*column);
                props = props
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_encoding(path, *encoding);
            }
        }
        for key in LOOKUP_KEY_COLUMNS {
            if schema.index_of(key).is_ok() {
                // Sized by the parquet crate for a row group's distinct values. A lookup probes
                // syscall ids and string keys across its whole window, many at once, so their
                // filters are made ~50× more selective (≈ +1 B/span); TCP seqs are probed near
                // their spans' times only, where the default serves.
                let path = ColumnPath::from(*key);
                props = props.set_column_bloom_filter_enabled(path.clone(), true);
                if !key.ends_with("tcp_seq") {
                    props = props.set_column_bloom_filter_fpp(path, 0.001);
                }
            }
        }
        let dir = paths::table_dir(data_dir, table);
        fs::create_dir_all(&dir).map_err(|source| StorageError::Io {
            op: "creating",
            path: dir,
            source,
        })?;
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            table: table.to_string(),
            schema,
            time_column,
            props: props.build(),
            seq: AtomicU64::new(0),
        })
    }

    /// Writes `batches` as one file per hour partition they touch, rows sorted by time.
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
        let all = concat_batches(&self.schema, batches)?;
        if all.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let order = sort_to_indices(all.column(self.time_column), None, None)?;
        let all = take_record_batch(&all, &order)?;
        let times = all
            .column(self.time_column)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| StorageError::Schema {
                table: self.table.clone(),
                detail: "time column is not Timestamp(µs)".into(),
            })?;
        let hour = |i: usize| times.value(i).div_euclid(3_600_000_000);
        let mut hours = BTreeMap::new();
        for i in 0..times.len() {
            hours.entry(hour(i)).or_insert(i);
        }
        let mut staged = Vec::new();
        for (&h, &first) in &hours {
            let part = if hours.len() == 1 {
                all.clone()
            } else {
                let mask: BooleanArray = (0..times.len()).map(|i| Some(hour(i) == h)).collect();
                filter_record_batch(&all, &mask)?
            };
            let time =
                DateTime::<Utc>::from_timestamp_micros(times.value(first)).unwrap_or_default();
            staged.push(self.write_file(&part, time)?);
        }
        Ok(staged)
    }

    fn write_file(&self, batch: &RecordBatch, time: DateTime<Utc>) -> Result<Staged> {
        let dir = paths::partition_dir(&self.data_dir, &self.table, time);
        fs::create_dir_all(&dir).map_err(|source| StorageError::Io {
            op: "creating",
            path: dir.clone(),
            source,
        })?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(paths::part_file_name(Utc::now(), seq));
        let tmp = paths::temp_path(&path);
        let file = File::create(&tmp).map_err(|source| StorageError::Io {
            op: "creating",
            path: tmp.clone(),
            source,
        })?;
        let parquet_err = |source| StorageError::Parquet {
            path: path.clone(),
            source,
        };
        let mut writer =
            ArrowWriter::try_new(file, Arc::clone(&self.schema), Some(self.props.clone()))
                .map_err(parquet_err)?;
        writer.write(batch).map_err(parquet_err)?;
        let file = writer.into_inner().map_err(parquet_err)?;
        file.sync_all().map_err(|source| StorageError::Io {
            op: "syncing",
            path: tmp.clone(),
            source,
        })?;
        Ok(Staged {
            tmp,
            path,
            rows: batch.num_rows(),
        })
    }
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
        array::{Int64Array, TimestampMicrosecondArray},
        datatypes::{DataType, Field, Schema, TimeUnit},
    };
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    #[test]
    fn splits_by_hour_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("v", DataType::Int64, false),
        ]));
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
