//! Periodic care of a data dir while `up` or `serve` runs: unreadable Parquet files moved to
//! quarantine, partitions past the retention limits dropped.

use std::{collections::HashSet, path::PathBuf, time::Duration};

use anyhow::Result;
use wiretrace_storage::maintain;

/// How much data to keep.
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct RetentionArgs {
    /// Drop hour partitions that ended more than this many hours ago.
    #[arg(long, value_name = "HOURS")]
    retention_hours: Option<u64>,
    /// Drop the oldest hour partitions while all together exceed this many GiB.
    #[arg(long, value_name = "GIB")]
    retention_gib: Option<f64>,
}

/// How often upkeep runs.
const EVERY: Duration = Duration::from_secs(30);

/// One pass: quarantine what cannot be read (skipping files in `checked`), then retention.
pub(crate) fn pass(
    dir: &std::path::Path,
    keep: RetentionArgs,
    checked: &mut HashSet<PathBuf>,
) -> Result<()> {
    maintain::quarantine_unreadable(dir, checked)?;
    let dropped = maintain::retain(
        dir,
        keep.retention_hours.map(|h| Duration::from_secs(h * 3600)),
        keep.retention_gib.map(|g| (g * (1u64 << 30) as f64) as u64),
    )?;
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
pub(crate) async fn run(dir: PathBuf, keep: RetentionArgs) {
    let mut checked = HashSet::new();
    loop {
        let d = dir.clone();
        let mut c = std::mem::take(&mut checked);
        match tokio::task::spawn_blocking(move || pass(&d, keep, &mut c).map(|()| c)).await {
            Ok(Ok(c)) => checked = c,
            Ok(Err(e)) => tracing::error!(error = %e, "data dir upkeep failed"),
            Err(e) => tracing::error!(error = %e, "upkeep task failed"),
        }
        tokio::time::sleep(EVERY).await;
    }
}
