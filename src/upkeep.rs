//! Periodic care of a data dir while `up` or `serve` runs: unreadable Parquet files moved to
//! quarantine, small files compacted (by the process that writes), partitions past the
//! retention limits dropped.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Result, bail};
use wiretrace_storage::{
    CompactOptions, Store,
    maintain::{self, Retention},
    schema::tables,
};

/// How much data to keep.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RetentionArgs {
    /// Drop hour partitions that ended more than this many hours ago.
    #[arg(long, value_name = "HOURS")]
    retention_hours: Option<u64>,
    /// Per table, replaces --retention-hours for it: TABLE=HOURS (repeat for more tables).
    #[arg(long, value_name = "TABLE=HOURS")]
    table_retention: Vec<String>,
    /// Drop the oldest hour partitions while all together exceed this many GiB.
    #[arg(long, value_name = "GIB")]
    retention_gib: Option<f64>,
}

impl RetentionArgs {
    /// The limits, checked: every table named exists, every age is a number of hours.
    pub(crate) fn retention(&self) -> Result<Retention> {
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let known: Vec<&str> = tables().iter().map(|t| t.0).collect();
        let mut keep = Retention {
            max_age: self.retention_hours.map(hours),
            max_bytes: self.retention_gib.map(|g| (g * (1u64 << 30) as f64) as u64),
            ..Retention::default()
        };
        for rule in &self.table_retention {
            let Some((table, h)) = rule.split_once('=') else {
                bail!("--table-retention {rule:?}: expected TABLE=HOURS");
            };
            if !known.contains(&table) {
                bail!("--table-retention {rule:?}: no table {table:?} (tables: {known:?})");
            }
            let Ok(h) = h.parse() else {
                bail!("--table-retention {rule:?}: {h:?} is not a whole number of hours");
            };
            keep.table_age.insert(table.to_string(), hours(h));
        }
        Ok(keep)
    }
}

/// How often upkeep runs.
const EVERY: Duration = Duration::from_secs(30);

/// One pass: quarantine what cannot be read (skipping files in `checked`), compact with
/// `store` (the writing process's), then retention.
pub(crate) fn pass(
    dir: &Path,
    keep: &Retention,
    store: Option<&Store>,
    checked: &mut HashSet<PathBuf>,
) -> Result<()> {
    maintain::quarantine_unreadable(dir, checked)?;
    if let Some(store) = store {
        let done = store.compact(&CompactOptions::default())?;
        if done.merges > 0 {
            tracing::info!(
                merges = done.merges,
                files_in = done.files_in,
                bytes_in = done.bytes_in,
                bytes_out = done.bytes_out,
                "compacted small files"
            );
        }
    }
    let dropped = match store {
        Some(store) => maintain::retain(dir, keep, |p| store.drop_partition(p))?,
        None => maintain::retain(dir, keep, maintain::remove_partition)?,
    };
    checked.retain(|f| f.exists());
    if !dropped.is_empty() {
        tracing::info!(
            partitions = dropped.len(),
            "retention dropped old partitions"
        );
    }
    Ok(())
}

/// Runs [`pass`] now and every 30 s (until the task is aborted).
pub(crate) async fn run(dir: PathBuf, keep: Retention, store: Option<Arc<Store>>) {
    let mut checked = HashSet::new();
    loop {
        let (d, k, s) = (dir.clone(), keep.clone(), store.clone());
        let mut c = std::mem::take(&mut checked);
        let job = move || pass(&d, &k, s.as_deref(), &mut c).map(|()| c);
        match tokio::task::spawn_blocking(job).await {
            Ok(Ok(c)) => checked = c,
            Ok(Err(e)) => tracing::error!(error = %e, "data dir upkeep failed"),
            Err(e) => tracing::error!(error = %e, "upkeep task failed"),
        }
        tokio::time::sleep(EVERY).await;
    }
}
