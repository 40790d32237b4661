//! A WAL segment file that, where the file system allows, is written past the page cache
//! (`O_DIRECT`): an append synced before it returns pays for the disk write anyway, and copying
//! it into the page cache first (then writing the dirty pages back) took most of the log's CPU.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

/// What direct writes are aligned to: their file offset, length and memory address.
const BLOCK: usize = 4096;

/// A log segment being appended to. Bytes written are kept until [`Write::flush`], which
/// writes them out in one positional write: direct writes cover whole blocks, so the last,
/// partial block is kept and written again (with what follows it) by the next flush; the
/// file ends in zeros until then, which a stream reader takes for its end.
pub(crate) struct Segment {
    file: File,
    path: PathBuf,
    direct: bool,
    /// `buf[start..]` is what goes at file offset `at`; `start` puts it on a block boundary
    /// in memory.
    buf: Vec<u8>,
    start: usize,
    at: u64,
}

impl Segment {
    /// Creates (truncating) the segment at `path`, for direct writes when `direct` and the
    /// file system takes them.
    pub(crate) fn create(path: &Path, direct: bool) -> io::Result<Self> {
        let open = |flags| {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(flags)
                .open(path)
        };
        let (file, direct) = match direct {
            true => match open(libc::O_DIRECT) {
                Ok(file) => (file, true),
                // File systems without direct I/O (tmpfs before Linux 6.6, many FUSE ones).
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(0)?, false),
                Err(e) => return Err(e),
            },
            false => (open(0)?, false),
        };
        let mut segment = Self {
            file,
            path: path.to_path_buf(),
            direct,
            buf: Vec::new(),
            start: 0,
            at: 0,
        };
        segment.grow(BLOCK);
        Ok(segment)
    }

    /// The open file (to sync it).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Makes room for `more` bytes past those held, keeping them on a block boundary (the
    /// buffer never reallocates behind the segment's back).
    fn grow(&mut self, more: usize) {
        let held = self.buf.len() - self.start;
        let need = (held + more).next_multiple_of(BLOCK);
        if self.buf.capacity() - self.start >= need {
            return;
        }
        let mut buf: Vec<u8> = Vec::with_capacity(need.max(2 * self.buf.capacity()) + BLOCK);
        let start = buf.as_ptr().align_offset(BLOCK);
        buf.resize(start, 0);
        buf.extend_from_slice(&self.buf[self.start..]);
        (self.buf, self.start) = (buf, start);
    }

    /// Writes the held bytes at their offset (whole blocks when direct, the last one padded).
    fn write_out(&mut self) -> io::Result<()> {
        let held = self.buf.len() - self.start;
        if held == 0 || !self.direct {
            self.file.write_all_at(&self.buf[self.start..], self.at)?;
            self.at += held as u64;
            self.buf.truncate(self.start);
            return Ok(());
        }
        let padded = held.next_multiple_of(BLOCK);
        self.buf.resize(self.start + padded, 0);
        match self.file.write_all_at(&self.buf[self.start..], self.at) {
            Ok(()) => {}
            // A file system that took the flag but not these writes: buffered from now on
            // (the padding written is overwritten by the next write, as it would have been).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(path = %self.path.display(), "direct writes refused; buffered");
                self.file = OpenOptions::new().write(true).open(&self.path)?;
                self.direct = false;
                self.buf.truncate(self.start + held);
                return self.write_out();
            }
            Err(e) => return Err(e),
        }
        // The last partial block stays held, at the start, for the next write.
        let whole = held / BLOCK * BLOCK;
        self.buf
            .copy_within(self.start + whole..self.start + held, self.start);
        self.buf.truncate(self.start + held - whole);
        self.at += whole as u64;
        Ok(())
    }
}

impl Write for Segment {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.grow(bytes.len());
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_out()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends of uneven sizes to a segment created at `path`, flushed one by one, leave the
    /// file holding exactly the bytes written then zeros; returns whether writes were direct.
    fn appends_read_back(path: &Path, direct: bool) -> bool {
        let mut segment = Segment::create(path, direct).unwrap();
        let mut expected = Vec::new();
        for (i, len) in [1usize, 4095, 4096, 10_000, 3, 70_001, 0, 8192]
            .iter()
            .enumerate()
        {
            let bytes: Vec<u8> = (0..*len).map(|j| (i * 31 + j) as u8 | 1).collect();
            segment.write_all(&bytes).unwrap();
            segment.flush().unwrap();
            expected.extend_from_slice(&bytes);
            let file = std::fs::read(path).unwrap();
            assert_eq!(
                &file[..expected.len()],
                &expected[..],
                "direct {direct}, append {i}"
            );
            assert!(file[expected.len()..].iter().all(|&b| b == 0));
            if !segment.direct {
                assert_eq!(file.len(), expected.len());
            }
        }
        segment.direct
    }

    /// Direct writes asked for or not: the same bytes either way, and buffered when not asked.
    #[test]
    fn flushed_appends_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for direct in [true, false] {
            let taken = appends_read_back(&dir.path().join(format!("seg-{direct}")), direct);
            assert!(!taken || direct);
        }
    }

    /// A ramfs mount, unmounted when dropped.
    struct Ramfs(tempfile::TempDir);

    impl Drop for Ramfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(self.0.path())
                .status();
        }
    }

    /// On a file system without direct I/O (ramfs refuses `O_DIRECT` at open), the segment is
    /// written buffered and holds the same bytes. Needs root to mount; skips loudly without it
    /// outside CI.
    #[test]
    fn a_file_system_refusing_direct_io_gets_buffered_writes() {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "ramfs", "ramfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            crate::skip_test("mounting a ramfs failed (it needs root)");
            return;
        }
        let ramfs = Ramfs(dir);
        let path = ramfs.0.path().join("seg");
        let refused = OpenOptions::new()
            .write(true)
            .create(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path);
        assert_eq!(
            refused.err().and_then(|e| e.raw_os_error()),
            Some(libc::EINVAL),
            "ramfs took O_DIRECT: this test no longer covers the fallback"
        );
        assert!(!appends_read_back(&path, true), "writes should be buffered");
    }
}
