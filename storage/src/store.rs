//! The span store as ingest and queries see it: appends go to the write-ahead log and an
//! in-memory buffer (queryable at once), and flushes move the buffer to Parquet by size and
//! age. Queries take [`Store::barrier`] for reading while they list files and snapshot the
//! buffer; a flush takes it for writing while it renames its files into place and drops the
//! same rows from the buffer, so every query sees each row exactly once. Compaction and
//! retention swap files under the same barrier, and the files they replace stay readable
//! until every query pinned before the swap has ended ([`Store::pin`]).

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use arrow::array::RecordBatch;

use crate::{
    compact::{self, CompactOptions, Compacted},
    error::{Result, StorageError, io},
    intent, maintain, paths,
    readers::{Pin, Readers},
    wal::{FsyncPolicy, Wal},
    writer::TableWriters,
};

/// When the buffer is flushed to Parquet, and how appends are synced.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// How the write-ahead log syncs.
    pub fsync: FsyncPolicy,
    /// Flush once this many rows are buffered.
    pub flush_rows: usize,
    /// Flush once the oldest buffered row is this old.
    pub flush_age: Duration,
    /// Most memory the buffer may hold: appends past it are refused (and counted) until a
    /// flush makes room — when flushes fail, e.g. on a full disk.
    pub max_buffer_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            fsync: FsyncPolicy::EveryBatch,
            flush_rows: 256 * 1024,
            flush_age: Duration::from_secs(10),
            max_buffer_bytes: 1 << 30,
        }
    }
}

/// What a store holds in memory and in its log right now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Rows appended but not yet in Parquet.
    pub buffered_rows: u64,
    /// Bytes of those rows in memory.
    pub buffered_bytes: u64,
    /// Bytes of the write-ahead log on disk.
    pub wal_bytes: u64,
    /// Flushes to Parquet since start.
    pub flushes: u64,
    /// Rows written to Parquet since start.
    pub flushed_rows: u64,
    /// Rows refused because the buffer was full.
    pub refused_rows: u64,
    /// Compaction merges since start.
    pub compactions: u64,
    /// Files merged away by compaction since start.
    pub compacted_files: u64,
    /// Replaced files still kept for running queries.
    pub retired_files: u64,
}

#[derive(Debug)]
struct Inner {
    wal: Wal,
    /// Per table, (WAL segment, batch) in append order.
    buffers: BTreeMap<String, Vec<(u64, RecordBatch)>>,
    oldest: Option<Instant>,
    stats: StoreStats,
}

/// The write side of a data dir: log, buffer, Parquet files.
#[derive(Debug)]
pub struct Store {
    data_dir: PathBuf,
    writers: TableWriters,
    options: StoreOptions,
    inner: Mutex<Inner>,
    flushing: Mutex<()>,
    /// One file swap (compaction or retention) at a time.
    swapping: Mutex<()>,
    barrier: tokio::sync::RwLock<()>,
    readers: Readers,
}

impl Store {
    /// Opens the store of `data_dir`: finishes an interrupted flush or compaction, removes
    /// what a crash left half written, and replays the log into the buffer.
    pub fn open(data_dir: &Path, options: StoreOptions) -> Result<Self> {
        let writers = TableWriters::open(data_dir)?;
        let (wal, replayed) = Wal::open(data_dir, options.fsync)?;
        finish_swap(data_dir)?;
        maintain::remove_temp_files(data_dir)?;
        let mut buffers: BTreeMap<String, Vec<(u64, RecordBatch)>> = BTreeMap::new();
        let mut stats = StoreStats::default();
        for r in replayed {
            stats.buffered_rows += r.batch.num_rows() as u64;
            stats.buffered_bytes += batch_bytes(&r.batch);
            buffers.entry(r.table).or_default().push((r.seq, r.batch));
        }
        if stats.buffered_rows > 0 {
            tracing::info!(rows = stats.buffered_rows, "replayed the write-ahead log");
        }
        let oldest = (stats.buffered_rows > 0).then(Instant::now);
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            writers,
            options,
            inner: Mutex::new(Inner {
                wal,
                buffers,
                oldest,
                stats,
            }),
            flushing: Mutex::new(()),
            swapping: Mutex::new(()),
            barrier: tokio::sync::RwLock::new(()),
            readers: Readers::default(),
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `batch` in `table`: logged (and synced, by policy), then visible to queries.
    pub fn append(&self, table: &str, batch: RecordBatch) -> Result<()> {
        self.writers.get(table)?;
        let mut inner = self.inner();
        if inner.stats.buffered_bytes >= self.options.max_buffer_bytes {
            inner.stats.refused_rows += batch.num_rows() as u64;
            return Err(StorageError::Full {
                bytes: inner.stats.buffered_bytes,
            });
        }
        inner.wal.append(table, &batch)?;
        let seq = inner.wal.seq();
        inner.stats.buffered_rows += batch.num_rows() as u64;
        inner.stats.buffered_bytes += batch_bytes(&batch);
        inner.oldest.get_or_insert_with(Instant::now);
        inner
            .buffers
            .entry(table.to_string())
            .or_default()
            .push((seq, batch));
        Ok(())
    }

    /// Syncs the log if the interval policy says so; true when the buffer should be flushed.
    pub fn tick(&self) -> Result<bool> {
        let mut inner = self.inner();
        inner.wal.sync_if_due()?;
        Ok(
            inner.stats.buffered_rows as usize >= self.options.flush_rows
                || inner
                    .oldest
                    .is_some_and(|t| t.elapsed() >= self.options.flush_age),
        )
    }

    /// The rows of `table` not yet in Parquet. Hold [`Store::barrier`] for reading while
    /// pairing this with a listing of the Parquet files.
    pub fn buffered(&self, table: &str) -> Vec<RecordBatch> {
        self.inner()
            .buffers
            .get(table)
            .map(|b| b.iter().map(|(_, batch)| batch.clone()).collect())
            .unwrap_or_default()
    }

    /// The lock that makes a flush or a compaction atomic for queries (see the module doc).
    pub fn barrier(&self) -> &tokio::sync::RwLock<()> {
        &self.barrier
    }

    /// Keeps the files a query is about to list readable until the pin is dropped; take it
    /// under [`Store::barrier`], before listing.
    pub fn pin(&self) -> Pin {
        self.readers.pin()
    }

    /// Drops the partition in `dir` (retention): its files leave the table in one swap, to
    /// the retired folder, where they stay until no query that listed them runs.
    pub fn drop_partition(&self, dir: &Path) -> Result<()> {
        let _one = self.swapping.lock().unwrap_or_else(|e| e.into_inner());
        let renames: Vec<(PathBuf, PathBuf)> = fs::read_dir(dir)
            .map_err(io("listing", dir))?
            .flatten()
            .map(|e| (e.path(), paths::retired_path(&self.data_dir, &e.path())))
            .collect();
        let retired = renames.iter().map(|(_, to)| to.clone()).collect();
        self.swap(&renames, retired)?;
        maintain::remove_partition(dir)
    }

    /// Does `renames` as one change queries see whole: recorded in the intent file first (a
    /// crash part way is finished on open), then done under the flush barrier; `retired` (the
    /// targets under the retired folder) are deleted once no query that listed them runs.
    /// The caller holds `swapping`.
    fn swap(&self, renames: &[(PathBuf, PathBuf)], retired: Vec<PathBuf>) -> Result<()> {
        let marker = paths::swap_intent(&self.data_dir);
        intent::write(&marker, renames)?;
        {
            let _queries = self.barrier.blocking_write();
            intent::apply(&marker)?;
        }
        fs::remove_file(&marker).map_err(io("removing", &marker))?;
        self.readers.retire(retired);
        Ok(())
    }

    /// Merges the small files of every partition that has enough of them (blocking; call off
    /// the async runtime), then deletes replaced files no running query can still read.
    pub fn compact(&self, options: &CompactOptions) -> Result<Compacted> {
        let _one = self.swapping.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = Compacted::default();
        for p in maintain::partitions(&self.data_dir)? {
            let files = compact::pick(&p.dir, options)?;
            if files.is_empty() {
                continue;
            }
            let batches = match compact::read(&files) {
                Ok(b) => b,
                Err(e) => {
                    // Quarantine deals with an unreadable file; the partition waits for it.
                    tracing::warn!(partition = %p.dir.display(), error = %e, "compaction skipped a partition");
                    continue;
                }
            };
            let staged = self.writers.get(p.table)?.stage(&batches)?;
            let retired: Vec<PathBuf> = files
                .iter()
                .map(|(f, _)| paths::retired_path(&self.data_dir, f))
                .collect();
            let renames: Vec<(PathBuf, PathBuf)> = staged
                .iter()
                .map(|s| (s.tmp.clone(), s.path.clone()))
                .chain(files.iter().map(|(f, _)| f.clone()).zip(retired.clone()))
                .collect();
            self.swap(&renames, retired)?;
            done.merges += 1;
            done.files_in += files.len();
            done.files_out += staged.len();
            done.rows += staged.iter().map(|s| s.rows).sum::<usize>();
            done.bytes_in += files.iter().map(|(_, len)| len).sum::<u64>();
            done.bytes_out += staged
                .iter()
                .filter_map(|s| fs::metadata(&s.path).ok())
                .map(|m| m.len())
                .sum::<u64>();
            tracing::debug!(partition = %p.dir.display(), files = files.len(), "compacted");
        }
        self.readers.sweep();
        let mut inner = self.inner();
        inner.stats.compactions += done.merges as u64;
        inner.stats.compacted_files += done.files_in as u64;
        Ok(done)
    }

    /// Writes every buffered row to Parquet (blocking; call off the async runtime).
    pub fn flush(&self) -> Result<usize> {
        let _one = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
        let (closed, batches) = {
            let mut inner = self.inner();
            if inner.stats.buffered_rows == 0 {
                return Ok(0);
            }
            let closed = inner.wal.rotate()?;
            inner.oldest = None;
            let batches: Vec<(String, Vec<RecordBatch>)> = inner
                .buffers
                .iter()
                .map(|(t, b)| (t.clone(), b.iter().map(|(_, x)| x.clone()).collect()))
                .collect();
            (closed, batches)
        };
        let mut staged = Vec::new();
        for (table, batches) in &batches {
            staged.extend(self.writers.get(table)?.stage(batches)?);
        }
        let rows: usize = staged.iter().map(|s| s.rows).sum();
        {
            let _queries = self.barrier.blocking_write();
            let inner = self.inner();
            inner.wal.commit_flush(closed, &staged)?;
            let mut inner = inner;
            let mut left = 0u64;
            let mut left_bytes = 0u64;
            for b in inner.buffers.values_mut() {
                b.retain(|(seq, _)| *seq > closed);
                left += b.iter().map(|(_, x)| x.num_rows() as u64).sum::<u64>();
                left_bytes += b.iter().map(|(_, x)| batch_bytes(x)).sum::<u64>();
            }
            if left > 0 {
                inner.oldest = Some(Instant::now());
            }
            inner.stats.buffered_rows = left;
            inner.stats.buffered_bytes = left_bytes;
            inner.stats.flushes += 1;
            inner.stats.flushed_rows += rows as u64;
        }
        Ok(rows)
    }

    /// Current counts.
    pub fn stats(&self) -> StoreStats {
        let inner = self.inner();
        StoreStats {
            wal_bytes: inner.wal.bytes(),
            retired_files: self.readers.waiting() as u64,
            ..inner.stats
        }
    }
}

/// Memory the rows of `batch` take: for a slice, its share of the buffers, not all of them.
fn batch_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size()) as u64
        })
        .sum()
}

/// Completes the file swap a crash interrupted (its intent is durable, its new files synced),
/// then empties the retired folder: no query of this process can be reading it.
fn finish_swap(data_dir: &Path) -> Result<()> {
    let marker = paths::swap_intent(data_dir);
    if marker.exists() {
        intent::apply(&marker)?;
        fs::remove_file(&marker).map_err(io("removing", &marker))?;
    }
    let retired = data_dir.join(paths::RETIRED_DIR);
    if retired.exists() {
        fs::remove_dir_all(&retired).map_err(io("removing", &retired))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::{
        array::{ArrayRef, Int64Array, new_null_array},
        compute::cast,
        datatypes::DataType,
    };

    use super::*;
    use crate::schema::{L7_FLOW_LOG, tables};

    /// Spans `ids` (every column filled: ids in `_id`, times in the same hour).
    fn spans(ids: std::ops::Range<i64>) -> RecordBatch {
        let schema = tables().into_iter().find(|t| t.0 == L7_FLOW_LOG).unwrap().1;
        let n = ids.clone().count();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "_id" => Arc::new(Int64Array::from_iter_values(ids.clone())) as ArrayRef,
                _ if f.is_nullable() => new_null_array(f.data_type(), n),
                _ => {
                    let zeros: ArrayRef = match f.data_type() {
                        DataType::Utf8 => Arc::new(arrow::array::StringArray::from(vec![""; n])),
                        DataType::Timestamp(..) => {
                            Arc::new(Int64Array::from(vec![1_700_000_000_000_000; n]))
                        }
                        _ => Arc::new(Int64Array::from(vec![1; n])),
                    };
                    cast(&zeros, f.data_type()).unwrap()
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns).unwrap()
    }

    /// Every `_id` in the table's Parquet files.
    fn parquet_ids(dir: &Path) -> Vec<i64> {
        let mut ids = Vec::new();
        let mut stack = vec![dir.join(L7_FLOW_LOG)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "parquet") {
                    let f = std::fs::File::open(p).unwrap();
                    let r =
                        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                            .unwrap()
                            .build()
                            .unwrap();
                    for b in r {
                        let b = b.unwrap();
                        let c = b.column_by_name("_id").unwrap();
                        let c = c.as_any().downcast_ref::<Int64Array>().unwrap();
                        ids.extend(c.values().iter().copied());
                    }
                }
            }
        }
        ids.sort_unstable();
        ids
    }

    fn buffered_ids(store: &Store) -> Vec<i64> {
        let mut ids: Vec<i64> = store
            .buffered(L7_FLOW_LOG)
            .iter()
            .flat_map(|b| {
                let c = b.column_by_name("_id").unwrap();
                c.as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn appends_survive_a_crash_and_land_in_parquet_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            store.append(L7_FLOW_LOG, spans(0..10)).unwrap();
            assert_eq!(store.flush().unwrap(), 10);
            // Two appends: the second rewrites the log's last partial block.
            store.append(L7_FLOW_LOG, spans(10..15)).unwrap();
            store.append(L7_FLOW_LOG, spans(15..40)).unwrap();
            assert_eq!(buffered_ids(&store), (10..40).collect::<Vec<_>>());
            assert!(
                Store::open(dir.path(), StoreOptions::default()).is_err(),
                "a second writer is refused"
            );
            // Dropped without a flush: as after kill -9.
        }
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(buffered_ids(&store), (10..40).collect::<Vec<_>>());
        assert_eq!(parquet_ids(dir.path()), (0..10).collect::<Vec<_>>());
        store.flush().unwrap();
        assert_eq!(parquet_ids(dir.path()), (0..40).collect::<Vec<_>>());
        assert!(buffered_ids(&store).is_empty());
        assert_eq!(store.stats().wal_bytes, 0);
    }

    #[test]
    fn a_full_buffer_refuses_and_counts_until_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            max_buffer_bytes: 1,
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), options).unwrap();
        store.append(L7_FLOW_LOG, spans(0..3)).unwrap();
        assert!(matches!(
            store.append(L7_FLOW_LOG, spans(3..5)),
            Err(StorageError::Full { .. })
        ));
        assert_eq!(store.stats().refused_rows, 2);
        store.flush().unwrap();
        store.append(L7_FLOW_LOG, spans(5..6)).unwrap();
        assert_eq!(buffered_ids(&store), vec![5]);
    }

    fn file_count(dir: &Path) -> usize {
        maintain::partitions(dir)
            .unwrap()
            .iter()
            .map(|p| p.files as usize)
            .sum()
    }

    #[test]
    fn compaction_merges_small_files_once_and_keeps_pinned_ones_readable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        for i in 0..5 {
            store
                .append(L7_FLOW_LOG, spans(i * 10..i * 10 + 10))
                .unwrap();
            store.flush().unwrap();
        }
        assert_eq!(file_count(dir.path()), 5);
        let pin = store.pin();
        let done = store.compact(&CompactOptions::default()).unwrap();
        assert_eq!(
            (done.merges, done.files_in, done.files_out, done.rows),
            (1, 5, 1, 50)
        );
        assert_eq!(file_count(dir.path()), 1);
        assert_eq!(parquet_ids(dir.path()), (0..50).collect::<Vec<_>>());
        let retired = dir.path().join(paths::RETIRED_DIR);
        assert_eq!(
            store.stats().retired_files,
            5,
            "a query pinned before still runs"
        );
        assert!(retired.join(L7_FLOW_LOG).exists());
        drop(pin);
        store.compact(&CompactOptions::default()).unwrap();
        assert_eq!(store.stats().retired_files, 0);
        assert_eq!(store.stats().compacted_files, 5);

        // Retention through the store: the partition leaves at once, its file when unpinned.
        let pin = store.pin();
        let part = maintain::partitions(dir.path()).unwrap().remove(0);
        store.drop_partition(&part.dir).unwrap();
        assert_eq!(file_count(dir.path()), 0);
        assert_eq!(store.stats().retired_files, 1);
        drop(pin);
        store.compact(&CompactOptions::default()).unwrap();
        assert_eq!(store.stats().retired_files, 0);
        assert!(
            !retired.join(L7_FLOW_LOG).exists(),
            "emptied folders go with their last file"
        );
    }

    #[test]
    fn a_compaction_interrupted_after_its_intent_is_finished_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            for i in 0..4 {
                store.append(L7_FLOW_LOG, spans(i * 5..i * 5 + 5)).unwrap();
                store.flush().unwrap();
            }
            let part = &maintain::partitions(dir.path()).unwrap()[0];
            let files = compact::pick(&part.dir, &CompactOptions::default()).unwrap();
            let staged = store
                .writers
                .get(L7_FLOW_LOG)
                .unwrap()
                .stage(&compact::read(&files).unwrap())
                .unwrap();
            let mut renames: Vec<_> = staged
                .iter()
                .map(|s| (s.tmp.clone(), s.path.clone()))
                .collect();
            for (f, _) in &files {
                renames.push((f.clone(), paths::retired_path(dir.path(), f)));
            }
            intent::write(&paths::swap_intent(dir.path()), &renames).unwrap();
            // Also a half-written file from a flush that never got its marker.
            fs::write(part.dir.join("part-x.parquet.tmp"), b"half").unwrap();
            // The process dies before any rename.
        }
        let _store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(file_count(dir.path()), 1);
        assert_eq!(parquet_ids(dir.path()), (0..20).collect::<Vec<_>>());
        assert!(!dir.path().join(paths::RETIRED_DIR).exists());
        let part = &maintain::partitions(dir.path()).unwrap()[0];
        assert!(!part.dir.join("part-x.parquet.tmp").exists());
    }

    #[test]
    fn a_flush_interrupted_after_its_marker_is_finished_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            store.append(L7_FLOW_LOG, spans(0..7)).unwrap();
            let mut inner = store.inner();
            let closed = inner.wal.rotate().unwrap();
            let staged = store
                .writers
                .get(L7_FLOW_LOG)
                .unwrap()
                .stage(&[spans(0..7)])
                .unwrap();
            // The marker is written, no file renamed yet: the process dies here.
            let marker = dir.path().join(format!("wal/flush-{closed:020}"));
            let lines: Vec<String> = staged
                .iter()
                .map(|s| format!("{}\t{}\n", s.tmp.display(), s.path.display()))
                .collect();
            std::fs::write(&marker, lines.concat()).unwrap();
            drop(inner);
        }
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(parquet_ids(dir.path()), (0..7).collect::<Vec<_>>());
        assert!(
            buffered_ids(&store).is_empty(),
            "not replayed a second time"
        );
    }
}
