//! Intent files: the renames of one atomic change (a flush, a compaction), written and synced
//! before the first rename happens, so a crash part way leaves a record that [`apply`]
//! completes on the next open.

use std::{
    fs::{self, File},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use crate::error::{Result, io};

/// Records `renames` (from → to) at `path`, durably, before any of them is done.
pub(crate) fn write(path: &Path, renames: &[(PathBuf, PathBuf)]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io("creating", &tmp))?;
    for (from, to) in renames {
        writeln!(f, "{}\t{}", from.display(), to.display()).map_err(io("writing", &tmp))?;
    }
    f.sync_all().map_err(io("syncing", &tmp))?;
    fs::rename(&tmp, path).map_err(io("renaming", &tmp))
}

/// Does the renames recorded at `path` whose source is still there (so it can run again after
/// a crash), creating the target folders.
pub(crate) fn apply(path: &Path) -> Result<()> {
    let f = File::open(path).map_err(io("opening", path))?;
    for line in BufReader::new(f).lines() {
        let line = line.map_err(io("reading", path))?;
        let Some((from, to)) = line.split_once('\t') else {
            continue;
        };
        let (from, to) = (Path::new(from), Path::new(to));
        if !from.exists() {
            continue;
        }
        if let Some(dir) = to.parent() {
            fs::create_dir_all(dir).map_err(io("creating", dir))?;
        }
        fs::rename(from, to).map_err(io("renaming", from))?;
    }
    Ok(())
}
