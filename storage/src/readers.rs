//! Which retired files queries may still read. A query pins the current epoch before it lists
//! files and holds the pin until it ends; a compaction retires the files it replaced under the
//! epoch it ran in and starts the next. A retired file is deleted once every pin is newer.

use std::{
    collections::BTreeMap,
    fs,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
};

#[derive(Debug, Default)]
struct State {
    epoch: u64,
    pinned: BTreeMap<u64, usize>,
    retired: Vec<(u64, PathBuf)>,
}

/// Pins and retired files of one store.
#[derive(Debug, Default, Clone)]
pub(crate) struct Readers(Arc<Mutex<State>>);

/// Held by a query from before it lists files until it ends: files it may have listed are not
/// deleted meanwhile.
#[derive(Debug)]
pub struct Pin {
    readers: Readers,
    epoch: u64,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut s = self.readers.state();
        if let Some(n) = s.pinned.get_mut(&self.epoch) {
            *n -= 1;
            if *n == 0 {
                s.pinned.remove(&self.epoch);
            }
        }
    }
}

impl Readers {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pins the current epoch.
    pub(crate) fn pin(&self) -> Pin {
        let mut s = self.state();
        let epoch = s.epoch;
        *s.pinned.entry(epoch).or_default() += 1;
        Pin {
            readers: self.clone(),
            epoch,
        }
    }

    /// Records `files` as retired now and starts a new epoch.
    pub(crate) fn retire(&self, files: Vec<PathBuf>) {
        let mut s = self.state();
        let epoch = s.epoch;
        s.retired.extend(files.into_iter().map(|f| (epoch, f)));
        s.epoch += 1;
    }

    /// Deletes the retired files no running query can have listed; returns how many.
    pub(crate) fn sweep(&self) -> usize {
        let gone: Vec<PathBuf> = {
            let mut s = self.state();
            let oldest_pin = s.pinned.keys().next().copied().unwrap_or(u64::MAX);
            let (gone, kept) = std::mem::take(&mut s.retired)
                .into_iter()
                .partition(|(epoch, _)| *epoch < oldest_pin);
            s.retired = kept;
            gone.into_iter().map(|(_, f)| f).collect()
        };
        for f in &gone {
            if let Err(e) = fs::remove_file(f) {
                tracing::warn!(file = %f.display(), error = %e, "could not delete a retired file");
            }
            // Its partition, day and table folders go with their last file.
            let mut dir = f.parent();
            for _ in 0..3 {
                match dir {
                    Some(d) if fs::remove_dir(d).is_ok() => dir = d.parent(),
                    _ => break,
                }
            }
        }
        gone.len()
    }

    /// Retired files not yet deleted.
    pub(crate) fn waiting(&self) -> usize {
        self.state().retired.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retired_file_outlives_every_older_pin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("old.parquet");
        fs::write(&file, b"x").unwrap();
        let readers = Readers::default();
        let before = readers.pin();
        readers.retire(vec![file.clone()]);
        let after = readers.pin();
        assert_eq!(
            readers.sweep(),
            0,
            "a query that may have listed it still runs"
        );
        assert!(file.exists());
        drop(before);
        assert_eq!(readers.sweep(), 1, "the newer pin never saw it");
        assert!(!file.exists());
        drop(after);
        assert_eq!(readers.waiting(), 0);
    }
}
