//! Keeping a data dir healthy: unreadable Parquet files moved aside (quarantine) so queries
//! go on over the rest, old partitions dropped (retention by age and by total size), and the
//! per-partition counts `wiretrace stats` and the `storage_partitions` table show.

use std::{
    collections::{BTreeMap, HashSet},
    fs,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use parquet::file::metadata::ParquetMetaDataReader;

use crate::{
    error::{Result, io},
    paths,
    schema::tables,
};

/// Where unreadable files go: `DATA/quarantine/<table>/<partition path with _>_<file>`.
pub const QUARANTINE_DIR: &str = "quarantine";

/// One hour partition of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The table.
    pub table: &'static str,
    /// `dt=YYYY-MM-DD/hr=HH`.
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
    /// The hour it starts.
    pub start: DateTime<Utc>,
    /// Parquet files in it.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// A file moved to quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Where it was.
    pub from: PathBuf,
    /// Where it is now.
    pub to: PathBuf,
    /// Why it could not be read.
    pub reason: String,
}

/// An hour partition folder of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hour {
    /// `dt=YYYY-MM-DD/hr=HH`.
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
    /// The hour it starts.
    pub start: DateTime<Utc>,
}

/// The entries of `dir`; none if it is gone (retention may remove a partition meanwhile).
fn entries(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(d) => Ok(d.flatten().collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io("listing", dir)(e)),
    }
}

/// The `dt=…/hr=…` partitions under a table's folder, in no order (folders named otherwise are
/// not partitions).
pub fn hours(table_dir: &Path) -> Result<Vec<Hour>> {
    let mut out = Vec::new();
    for day in entries(table_dir)? {
        let dname = day.file_name().to_string_lossy().into_owned();
        let Some(date) = dname
            .strip_prefix("dt=")
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            continue;
        };
        for hour in entries(&day.path())? {
            let hname = hour.file_name().to_string_lossy().into_owned();
            let Some(time) = hname
                .strip_prefix("hr=")
                .and_then(|h| h.parse::<u32>().ok())
                .and_then(|h| NaiveTime::from_hms_opt(h, 0, 0))
            else {
                continue;
            };
            out.push(Hour {
                name: format!("{dname}/{hname}"),
                dir: hour.path(),
                start: date.and_time(time).and_utc(),
            });
        }
    }
    Ok(out)
}

/// Every hour partition of every table, oldest first.
pub fn partitions(data_dir: &Path) -> Result<Vec<Partition>> {
    let mut all = Vec::new();
    for (table, _, _) in tables() {
        for hour in hours(&paths::table_dir(data_dir, table))? {
            let (mut files, mut bytes) = (0, 0);
            for f in parquet_files(&hour.dir)? {
                files += 1;
                bytes += fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
            }
            all.push(Partition {
                table,
                name: hour.name,
                dir: hour.dir,
                start: hour.start,
                files,
                bytes,
            });
        }
    }
    all.sort_by(|a, b| (a.start, a.table).cmp(&(b.start, b.table)));
    Ok(all)
}

impl Partition {
    /// Rows in its files, by their footers (an unreadable file counts none). Reads every
    /// footer, so only the views that show rows ask.
    pub fn rows(&self) -> u64 {
        let footer_rows = |file: &Path| -> Option<u64> {
            let f = fs::File::open(file).ok()?;
            let meta = ParquetMetaDataReader::new().parse_and_finish(&f).ok()?;
            u64::try_from(meta.file_metadata().num_rows()).ok()
        };
        parquet_files(&self.dir)
            .unwrap_or_default()
            .iter()
            .filter_map(|f| footer_rows(f))
            .sum()
    }
}

/// The Parquet files directly in `dir` (none if it is gone).
pub fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(entries(dir)?
        .into_iter()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect())
}

/// Moves every Parquet file whose footer cannot be read to quarantine (files in `checked`
/// are skipped; files found readable are added to it).
pub fn quarantine_unreadable(
    data_dir: &Path,
    checked: &mut HashSet<PathBuf>,
) -> Result<Vec<Quarantined>> {
    let mut moved = Vec::new();
    for p in partitions(data_dir)? {
        for file in parquet_files(&p.dir)? {
            if checked.contains(&file) {
                continue;
            }
            let read = fs::File::open(&file)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    ParquetMetaDataReader::new()
                        .parse_and_finish(&f)
                        .map_err(|e| e.to_string())
                });
            match read {
                Ok(_) => {
                    checked.insert(file);
                }
                Err(reason) => {
                    let qdir = data_dir.join(QUARANTINE_DIR).join(p.table);
                    fs::create_dir_all(&qdir).map_err(io("creating", &qdir))?;
                    let name = format!(
                        "{}_{}",
                        p.name.replace('/', "_"),
                        file.file_name().unwrap_or_default().to_string_lossy()
                    );
                    let to = qdir.join(name);
                    fs::rename(&file, &to).map_err(io("quarantining", &file))?;
                    tracing::warn!(from = %file.display(), to = %to.display(), %reason, "unreadable Parquet file quarantined");
                    moved.push(Quarantined {
                        from: file,
                        to,
                        reason,
                    });
                }
            }
        }
    }
    Ok(moved)
}

/// Files in quarantine, with their bytes.
pub fn quarantined(data_dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for (table, _, _) in tables() {
        let dir = data_dir.join(QUARANTINE_DIR).join(table);
        for f in fs::read_dir(dir).into_iter().flatten().flatten() {
            out.push((f.path(), f.metadata().map(|m| m.len()).unwrap_or(0)));
        }
    }
    out.sort();
    out
}

/// How much data to keep.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retention {
    /// Drop partitions whose hour ended longer ago than this.
    pub max_age: Option<Duration>,
    /// Per table, an age limit that replaces `max_age` for it.
    pub table_age: BTreeMap<String, Duration>,
    /// Then drop the oldest partitions (any table) while all together take more bytes.
    pub max_bytes: Option<u64>,
}

impl Retention {
    fn max_age(&self, table: &str) -> Option<Duration> {
        self.table_age.get(table).copied().or(self.max_age)
    }
}

/// Deletes a partition's folder (and its day folder with its last hour).
pub fn remove_partition(dir: &Path) -> Result<()> {
    fs::remove_dir_all(dir).map_err(io("removing", dir))?;
    if let Some(day) = dir.parent() {
        let _ = fs::remove_dir(day);
    }
    Ok(())
}

/// Drops whole partitions with `drop` (e.g. [`remove_partition`]): those whose hour ended
/// longer ago than their table's age limit, then the oldest until all partitions together take
/// at most the size limit. Returns the dropped ones.
pub fn retain(
    data_dir: &Path,
    keep: &Retention,
    mut drop: impl FnMut(&Path) -> Result<()>,
) -> Result<Vec<Partition>> {
    let now: DateTime<Utc> = SystemTime::now().into();
    let mut all = partitions(data_dir)?;
    let mut total: u64 = all.iter().map(|p| p.bytes).sum();
    let mut dropped = Vec::new();
    all.reverse(); // newest first; pop() gives the oldest
    while let Some(p) = all.pop() {
        let end = p.start + chrono::Duration::hours(1);
        let too_old = keep
            .max_age(p.table)
            .is_some_and(|age| chrono::Duration::from_std(age).is_ok_and(|age| now - end > age));
        let too_big = keep.max_bytes.is_some_and(|max| total > max);
        if !(too_old || too_big) {
            continue;
        }
        drop(&p.dir)?;
        tracing::info!(table = p.table, partition = %p.name, bytes = p.bytes, "partition dropped by retention");
        total -= p.bytes;
        dropped.push(p);
    }
    Ok(dropped)
}

/// Deletes `*.tmp` files in partitions: Parquet files a crash left half written (finished
/// flushes and compactions have renamed theirs already).
pub fn remove_temp_files(data_dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for p in partitions(data_dir)? {
        for e in fs::read_dir(&p.dir)
            .map_err(io("listing", &p.dir))?
            .flatten()
        {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "tmp") {
                fs::remove_file(&path).map_err(io("removing", &path))?;
                tracing::info!(file = %path.display(), "half-written file from a crash removed");
                removed += 1;
            }
        }
    }
    Ok(removed)
}
