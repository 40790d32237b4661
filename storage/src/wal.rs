//! The write-ahead log: every batch is appended (Arrow IPC stream, one segment file per table
//! per flush cycle) and synced before it counts as stored; a restart replays what no Parquet
//! file holds yet.
//!
//! Layout under `DATA/wal/`: `<table>/<seq>.arrow` segments, `flush-<seq>` markers. A flush
//! closes segment `seq`, writes the Parquet files of every segment up to it under temp names,
//! records them in `flush-<seq>`, renames them into place, then deletes the segments and the
//! marker. A marker found at startup is rolled forward (its renames finished), so each row
//! lands in Parquet exactly once.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use arrow::{
    array::RecordBatch,
    ipc::{reader::StreamReader, writer::StreamWriter},
};

use crate::{
    error::{Result, StorageError, io},
    intent,
    segment::Segment,
    writer::Staged,
};

/// When appended batches are synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before each append returns.
    EveryBatch,
    /// At most this long after an append ([`Wal::sync_if_due`] does it).
    Interval(Duration),
}

/// The log of one data dir (its `wal/` folder, locked against a second writer).
pub struct Wal {
    dir: PathBuf,
    seq: u64,
    open: BTreeMap<String, StreamWriter<Segment>>,
    policy: FsyncPolicy,
    unsynced_since: Option<Instant>,
    _lock: File,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("seq", &self.seq)
            .field("open", &self.open.keys().collect::<Vec<_>>())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A batch read back from the log.
#[derive(Debug)]
pub struct Replayed {
    /// Its table.
    pub table: String,
    /// The segment it was in.
    pub seq: u64,
    /// The rows.
    pub batch: RecordBatch,
}

impl Wal {
    /// Opens (creating) `data_dir/wal`, finishes any interrupted flush, and returns the log
    /// with every batch no Parquet file holds yet. Fails if another process has it open.
    pub fn open(data_dir: &Path, policy: FsyncPolicy) -> Result<(Self, Vec<Replayed>)> {
        let dir = data_dir.join("wal");
        fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        let lock_path = dir.join("LOCK");
        let lock = File::create(&lock_path).map_err(io("creating", &lock_path))?;
        lock.try_lock().map_err(|_| StorageError::Locked {
            path: lock_path.clone(),
        })?;
        for (seq, marker) in markers(&dir)? {
            roll_forward(&dir, seq, &marker)?;
        }
        let mut replayed = Vec::new();
        let mut last = 0;
        for (seq, table, path) in segments(&dir)? {
            last = last.max(seq);
            let file = File::open(&path).map_err(io("opening", &path))?;
            let reader = match StreamReader::try_new(file, None) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "empty or torn WAL segment skipped");
                    continue;
                }
            };
            for batch in reader {
                match batch {
                    Ok(batch) => replayed.push(Replayed {
                        table: table.clone(),
                        seq,
                        batch,
                    }),
                    Err(e) => {
                        // A torn last append: it was never acknowledged.
                        tracing::warn!(path = %path.display(), error = %e, "WAL segment ends in a torn batch");
                        break;
                    }
                }
            }
        }
        Ok((
            Self {
                dir,
                seq: last + 1,
                open: BTreeMap::new(),
                policy,
                unsynced_since: None,
                _lock: lock,
            },
            replayed,
        ))
    }

    /// The segment appends go to now.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Appends `batch` of `table` (synced now under [`FsyncPolicy::EveryBatch`]).
    pub fn append(&mut self, table: &str, batch: &RecordBatch) -> Result<()> {
        if !self.open.contains_key(table) {
            let tdir = self.dir.join(table);
            fs::create_dir_all(&tdir).map_err(io("creating", &tdir))?;
            let path = segment_path(&self.dir, table, self.seq);
            // An append synced before it returns goes past the page cache.
            let direct = self.policy == FsyncPolicy::EveryBatch;
            let file = Segment::create(&path, direct).map_err(io("creating", &path))?;
            let writer = StreamWriter::try_new(file, &batch.schema())?;
            self.open.insert(table.to_string(), writer);
        }
        let writer = self.open.get_mut(table).expect("opened above");
        writer.write(batch)?;
        writer.flush()?;
        match self.policy {
            FsyncPolicy::EveryBatch => self.sync()?,
            FsyncPolicy::Interval(_) => {
                self.unsynced_since.get_or_insert_with(Instant::now);
            }
        }
        Ok(())
    }

    /// Syncs appended batches when the interval policy says they are due.
    pub fn sync_if_due(&mut self) -> Result<()> {
        if let (FsyncPolicy::Interval(every), Some(since)) = (self.policy, self.unsynced_since)
            && since.elapsed() >= every
        {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        for (table, w) in &self.open {
            w.get_ref()
                .file()
                .sync_data()
                .map_err(io("syncing", &segment_path(&self.dir, table, self.seq)))?;
        }
        self.unsynced_since = None;
        Ok(())
    }

    /// Closes the current segment and starts the next; returns the closed one's number.
    pub fn rotate(&mut self) -> Result<u64> {
        self.sync()?;
        for (_, mut w) in std::mem::take(&mut self.open) {
            w.finish()?;
        }
        let closed = self.seq;
        self.seq += 1;
        Ok(closed)
    }

    /// Makes the Parquet files of every segment up to `seq` durable in place, then drops
    /// those segments.
    pub fn commit_flush(&self, seq: u64, staged: &[Staged]) -> Result<()> {
        let marker = self.dir.join(format!("flush-{seq:020}"));
        let renames: Vec<_> = staged
            .iter()
            .map(|s| (s.tmp.clone(), s.path.clone()))
            .collect();
        intent::write(&marker, &renames)?;
        roll_forward(&self.dir, seq, &marker)
    }

    /// Bytes in the log's segments.
    pub fn bytes(&self) -> u64 {
        segment_bytes(&self.dir)
    }
}

/// Bytes in the log segments of `data_dir` (readable while another process holds the log).
pub fn log_bytes(data_dir: &Path) -> u64 {
    segment_bytes(&data_dir.join("wal"))
}

fn segment_bytes(dir: &Path) -> u64 {
    segments(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|(_, _, p)| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn segment_path(dir: &Path, table: &str, seq: u64) -> PathBuf {
    dir.join(table).join(format!("{seq:020}.arrow"))
}

/// Every segment as (seq, table, path), oldest first.
fn segments(dir: &Path) -> Result<Vec<(u64, String, PathBuf)>> {
    let mut all = Vec::new();
    for table in fs::read_dir(dir).map_err(io("listing", dir))?.flatten() {
        if !table.path().is_dir() {
            continue;
        }
        let name = table.file_name().to_string_lossy().into_owned();
        for seg in fs::read_dir(table.path())
            .map_err(io("listing", dir))?
            .flatten()
        {
            let path = seg.path();
            let seq = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok());
            if let (Some(seq), Some("arrow")) = (seq, path.extension().and_then(|e| e.to_str())) {
                all.push((seq, name.clone(), path));
            }
        }
    }
    all.sort();
    Ok(all)
}

/// Flush markers as (seq, path).
fn markers(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut all: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .map_err(io("listing", dir))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let seq = name.strip_prefix("flush-")?.parse().ok()?;
            Some((seq, e.path()))
        })
        .collect();
    all.sort();
    Ok(all)
}

/// Finishes a recorded flush: renames its files into place (those not already there), drops
/// the segments it covered, then its marker.
fn roll_forward(dir: &Path, seq: u64, marker: &Path) -> Result<()> {
    intent::apply(marker)?;
    for (s, _, path) in segments(dir)? {
        if s <= seq {
            fs::remove_file(&path).map_err(io("removing", &path))?;
        }
    }
    fs::remove_file(marker).map_err(io("removing", marker))
}
