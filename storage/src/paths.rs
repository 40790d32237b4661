//! Every path under the data dir is built here.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

/// The root of one table's files.
pub fn table_dir(data_dir: &Path, table: &str) -> PathBuf {
    data_dir.join(table)
}

/// The hour partition a row at `time` belongs to: `table/dt=YYYY-MM-DD/hr=HH`.
pub fn partition_dir(data_dir: &Path, table: &str, time: DateTime<Utc>) -> PathBuf {
    table_dir(data_dir, table)
        .join(format!("dt={}", time.format("%Y-%m-%d")))
        .join(format!("hr={}", time.format("%H")))
}

/// A new Parquet file name, ordered by creation: `part-<unix micros>-<seq>.parquet`.
pub fn part_file_name(created: DateTime<Utc>, seq: u64) -> String {
    format!("part-{:016}-{seq:06}.parquet", created.timestamp_micros())
}

/// Where a file is written before it is renamed into place, so readers never see half a file.
pub fn temp_path(final_path: &Path) -> PathBuf {
    let mut name = final_path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    final_path.with_file_name(name)
}

/// Folder (under the data dir) of files a compaction replaced, kept readable at the same
/// relative path until no query that listed them is still running.
pub const RETIRED_DIR: &str = "retired";

/// Where `file` (under `data_dir`) goes when a compaction replaces it.
pub fn retired_path(data_dir: &Path, file: &Path) -> PathBuf {
    let rel = file.strip_prefix(data_dir).unwrap_or(file);
    data_dir.join(RETIRED_DIR).join(rel)
}

/// The intent file of the file swap (compaction or retention) in progress, if any.
pub fn swap_intent(data_dir: &Path) -> PathBuf {
    data_dir.join("swap.intent")
}
