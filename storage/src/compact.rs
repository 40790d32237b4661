//! Compaction: the small files of an hour partition merged into one file, sorted again, and
//! swapped in atomically — an intent file makes the swap survive a crash, the store's flush
//! barrier makes it atomic for queries, and the replaced files retire (kept readable until no
//! query that listed them runs; see `readers.rs`).

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
};

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::{
    error::{Result, StorageError, io},
    maintain,
};

/// Which files a compaction merges.
#[derive(Debug, Clone, Copy)]
pub struct CompactOptions {
    /// Files smaller than this many bytes are merged.
    pub small_bytes: u64,
    /// A partition is compacted once it has this many small files.
    pub min_files: usize,
    /// Most bytes (on disk) read into one merge; it is held in memory while sorted.
    pub max_input_bytes: u64,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            small_bytes: 32 << 20,
            min_files: 4,
            max_input_bytes: 64 << 20,
        }
    }
}

/// What a compaction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Merges done (one per partition compacted).
    pub merges: usize,
    /// Files merged away.
    pub files_in: usize,
    /// Files written.
    pub files_out: usize,
    /// Rows rewritten.
    pub rows: usize,
    /// Bytes of the merged files.
    pub bytes_in: u64,
    /// Bytes of the files written.
    pub bytes_out: u64,
}

/// The files of partition `dir` to merge, oldest first: small ones, as many as fit the input
/// limit; empty when fewer than `min_files`.
pub(crate) fn pick(dir: &Path, options: &CompactOptions) -> Result<Vec<(PathBuf, u64)>> {
    let mut files: Vec<(PathBuf, u64)> = maintain::parquet_files(dir)?
        .into_iter()
        .filter_map(|p| Some((fs::metadata(&p).ok()?.len(), p)))
        .filter(|(len, _)| *len < options.small_bytes)
        .map(|(len, p)| (p, len))
        .collect();
    files.sort();
    let mut total = 0;
    files.retain(|(_, len)| {
        total += len;
        total <= options.max_input_bytes
    });
    if files.len() < options.min_files.max(2) {
        files.clear();
    }
    Ok(files)
}

/// Every row of `files`.
pub(crate) fn read(files: &[(PathBuf, u64)]) -> Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    for (path, _) in files {
        let parquet_err = |source| StorageError::Parquet {
            path: path.clone(),
            source,
        };
        let file = File::open(path).map_err(io("opening", path))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(parquet_err)?
            .with_batch_size(64 * 1024)
            .build()
            .map_err(parquet_err)?;
        for batch in reader {
            batches.push(batch?);
        }
    }
    Ok(batches)
}
