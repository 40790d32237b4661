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

/// A new Parquet file name, ordered by creation and carrying the least and greatest start time
/// of its rows (µs), so a reader can pass the file by without opening it:
/// `part-<unix micros>-<seq>-t<least>_<greatest>.parquet`.
pub fn part_file_name(created: DateTime<Utc>, seq: u64, times: (i64, i64)) -> String {
    let created = created.timestamp_micros();
    format!(
        "part-{created:016}-{seq:06}-t{}_{}.parquet",
        times.0, times.1
    )
}

/// The least and greatest start time `path`'s name carries, if [`part_file_name`] made it
/// (older files' names carry none).
pub fn part_file_times(path: &Path) -> Option<(i64, i64)> {
    let name = path.file_name()?.to_str()?.strip_suffix(".parquet")?;
    let (_, times) = name.strip_prefix("part-")?.rsplit_once("-t")?;
    let (least, greatest) = times.split_once('_')?;
    Some((least.parse().ok()?, greatest.parse().ok()?))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A name carries its file's times back; a name without them, or not a part file's, none.
    #[test]
    fn part_file_names_carry_their_times() {
        let created = DateTime::from_timestamp_micros(1_765_000_000_000_000).unwrap();
        for times in [
            (1_765_000_000_000_000, 1_765_000_003_599_999),
            (-5, 7),
            (3, 3),
        ] {
            let name = part_file_name(created, 42, times);
            assert_eq!(
                part_file_times(&Path::new("/d/hr=01").join(&name)),
                Some(times)
            );
        }
        let old = "part-1765000000000000-000042.parquet";
        assert_eq!(part_file_times(Path::new(old)), None);
        assert_eq!(
            part_file_times(Path::new("part-1-2-t3_4.parquet.tmp")),
            None
        );
        assert_eq!(part_file_times(Path::new("x-t3_4.parquet")), None);
    }
}
