//! The key index behind `trace()` and `trace_by()`: each Parquet row group a lookup reaches is
//! decoded once into [`SpanMeta`] rows with a sorted index over their lookup keys and kept in a
//! byte-bounded LRU, so an expansion round costs binary searches, not a query plan. Row groups are
//! reached through their partition's hour, their `start_time` statistics and the keys' bloom
//! filters; rows the store has not flushed yet are indexed once per lookup.

use std::{
    collections::HashSet,
    fs::File,
    io,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use arrow::{
    array::{RecordBatch, RecordBatchOptions, RecordBatchReader, UInt32Array, new_null_array},
    compute::{concat_batches, take_record_batch},
    datatypes::{Schema, SchemaRef},
};
use chrono::{NaiveDate, NaiveTime};
use datafusion::error::{DataFusionError, Result};
use parquet::{
    arrow::{
        ProjectionMask,
        arrow_reader::{
            ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
        },
    },
    bloom_filter::Sbbf,
    file::{metadata::PageIndexPolicy, statistics::Statistics},
};
use wiretrace_storage::{
    LOOKUP_KEY_COLUMNS, Pin, Store, paths,
    schema::{L7_FLOW_LOG, l7_flow_log_schema},
};

use super::meta::{SpanMeta, StringKeyColumns, StringKeys, hash_str, meta_columns};
use crate::{
    cache::{ByteLru, CacheCounts},
    stats::CounterSource,
};

/// Bytes of decoded row groups and file metadata the index keeps by default.
pub const KEY_INDEX_BYTES: usize = 512 << 20;

/// A value to find, and the columns it is looked up in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// `_id`.
    Id(i64),
    /// `req_tcp_seq`.
    ReqSeq(u32),
    /// `resp_tcp_seq`.
    RespSeq(u32),
    /// Either syscall trace id column.
    Sys(i64),
    /// Either X-Request-ID column.
    X(String),
    /// `trace_id`.
    TraceId(String),
}

/// A key as a row group's index holds it: a tag for the columns and the value (strings hashed
/// as [`SpanMeta`] holds them).
type Slot = (u8, u64);

impl Key {
    fn slot(&self) -> Slot {
        match self {
            Self::Id(v) => (0, *v as u64),
            Self::ReqSeq(v) => (1, u64::from(*v)),
            Self::RespSeq(v) => (2, u64::from(*v)),
            Self::Sys(v) => (3, *v as u64),
            Self::X(s) => (4, hash_str(s)),
            Self::TraceId(s) => (5, hash_str(s)),
        }
    }

    /// Whether a row group whose bloom filters (by [`LOOKUP_KEY_COLUMNS`] position) are
    /// `blooms` may hold the key; a column without a filter may hold anything.
    fn may_be_in(&self, blooms: &[Option<Sbbf>]) -> bool {
        let bloom = |column: &str| {
            LOOKUP_KEY_COLUMNS
                .iter()
                .position(|c| *c == column)
                .and_then(|i| blooms.get(i))
                .and_then(Option::as_ref)
        };
        let check = |columns: &[&str], found: &dyn Fn(&Sbbf) -> bool| {
            columns.iter().any(|c| bloom(c).is_none_or(found))
        };
        match self {
            Self::Id(_) => true,
            Self::ReqSeq(v) => check(&["req_tcp_seq"], &|b| b.check(&(*v as i32))),
            Self::RespSeq(v) => check(&["resp_tcp_seq"], &|b| b.check(&(*v as i32))),
            Self::Sys(v) => check(
                &["syscall_trace_id_request", "syscall_trace_id_response"],
                &|b| b.check(v),
            ),
            Self::X(s) => check(&["x_request_id_0", "x_request_id_1"], &|b| {
                b.check(s.as_str())
            }),
            Self::TraceId(s) => check(&["trace_id"], &|b| b.check(s.as_str())),
        }
    }
}

/// The slots a span can be found by.
fn slots(m: &SpanMeta) -> impl Iterator<Item = Slot> {
    let sys_resp = (m.sys_resp != m.sys_req).then_some(m.sys_resp);
    let x1 = (m.x1 != m.x0).then_some(m.x1);
    [
        Some((0, m.id as u64)),
        Some((1, u64::from(m.req_seq))),
        Some((2, u64::from(m.resp_seq))),
        Some((3, m.sys_req as u64)),
        sys_resp.map(|v| (3, v as u64)),
        Some((4, m.x0)),
        x1.map(|v| (4, v)),
        Some((5, m.trace_id)),
    ]
    .into_iter()
    .flatten()
    .filter(|&(tag, v)| tag == 0 || v != 0)
}

/// A slot as one 64-bit number, the tag in the top bits (the low bits give way to the row;
/// a match is verified against the span).
fn mixed(slot: Slot) -> u64 {
    slot.1.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(7) ^ (u64::from(slot.0) << 60)
}

/// Whether span `m` holds `slot`.
fn holds(m: &SpanMeta, (tag, v): Slot) -> bool {
    match tag {
        0 => m.id as u64 == v,
        1 => u64::from(m.req_seq) == v,
        2 => u64::from(m.resp_seq) == v,
        3 => m.sys_req as u64 == v || m.sys_resp as u64 == v,
        4 => m.x0 == v || m.x1 == v,
        _ => m.trace_id == v,
    }
}

/// The spans of one row group (or of the store's buffer) with a sorted index over their keys.
struct Chunk {
    spans: Vec<SpanMeta>,
    /// The rows' X-Request-IDs and trace ids.
    strings: StringKeyColumns,
    /// Per key: its mixed slot with the low `row_bits` bits replaced by the row, sorted (a
    /// match on the remaining bits is verified against the span).
    keys: Vec<u64>,
    row_bits: u32,
}

impl Chunk {
    fn new(batch: &RecordBatch) -> Result<Self> {
        let spans = SpanMeta::from_batch(batch)?;
        let strings = StringKeyColumns::of(batch);
        let row_bits = u64::BITS - (spans.len() as u64).leading_zeros();
        let rows = (1u64 << row_bits) - 1;
        let mut keys: Vec<u64> = spans
            .iter()
            .enumerate()
            .flat_map(|(row, m)| slots(m).map(move |s| mixed(s) & !rows | row as u64))
            .collect();
        keys.sort_unstable();
        Ok(Self {
            spans,
            strings,
            keys,
            row_bits,
        })
    }

    /// Rows holding `slot`.
    fn rows(&self, slot: Slot) -> impl Iterator<Item = u32> + '_ {
        let rows = (1u64 << self.row_bits) - 1;
        let k = mixed(slot) & !rows;
        let first = self.keys.partition_point(|e| *e < k);
        self.keys[first..]
            .iter()
            .take_while(move |e| *e & !rows == k)
            .map(move |e| (e & rows) as u32)
            .filter(move |&row| holds(&self.spans[row as usize], slot))
    }

    /// Memory held, roughly.
    fn bytes(&self) -> usize {
        self.spans.capacity() * size_of::<SpanMeta>()
            + self.keys.capacity() * size_of::<u64>()
            + self.strings.bytes()
    }
}

/// A Parquet file's metadata (with its offset index, for reading single rows) and the bloom
/// filters of its row groups, read the first time a lookup reaches them.
struct FileInfo {
    meta: ArrowReaderMetadata,
    /// Per row group: least and greatest `start_time`, if the statistics say.
    times: Vec<Option<(i64, i64)>>,
    /// Per row group: its bloom filters in [`LOOKUP_KEY_COLUMNS`] order.
    blooms: Vec<OnceLock<Vec<Option<Sbbf>>>>,
}

impl FileInfo {
    fn load(file: &File) -> parquet::errors::Result<Self> {
        let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
        let meta = ArrowReaderMetadata::load(file, options)?;
        let md = meta.metadata();
        let start = md
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| c.name() == "start_time");
        let times = md
            .row_groups()
            .iter()
            .map(|rg| match rg.column(start?).statistics()? {
                Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
                _ => None,
            })
            .collect();
        let blooms = md.row_groups().iter().map(|_| OnceLock::new()).collect();
        Ok(Self {
            meta,
            times,
            blooms,
        })
    }

    /// Memory held, counting every bloom filter as loaded.
    fn bytes(&self) -> usize {
        let md = self.meta.metadata();
        let blooms: usize = md
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns())
            .filter_map(|c| c.bloom_filter_length())
            .map(|n| n.max(0) as usize)
            .sum();
        md.memory_size() + blooms
    }

    /// Row group `rg`'s bloom filters, read from `file` the first time.
    fn blooms(&self, rg: usize, file: &File) -> parquet::errors::Result<&[Option<Sbbf>]> {
        if let Some(b) = self.blooms[rg].get() {
            return Ok(b);
        }
        let md = self.meta.metadata().row_group(rg);
        let read = LOOKUP_KEY_COLUMNS
            .iter()
            .map(|name| {
                match md
                    .columns()
                    .iter()
                    .find(|c| c.column_descr().name() == *name)
                {
                    Some(c) => Sbbf::read_from_column_chunk(c, file),
                    None => Ok(None),
                }
            })
            .collect::<parquet::errors::Result<Vec<_>>>()?;
        Ok(self.blooms[rg].get_or_init(|| read))
    }

    fn overlaps(&self, rg: usize, from: i64, to: i64) -> bool {
        self.times[rg].is_none_or(|(lo, hi)| hi >= from && lo <= to)
    }
}

/// The key index of one data dir: decoded row groups and file metadata, shared by the
/// session's lookups.
pub struct KeyIndex {
    data_dir: PathBuf,
    store: Option<Arc<Store>>,
    files: Mutex<ByteLru<PathBuf, Arc<FileInfo>>>,
    chunks: Mutex<ByteLru<(PathBuf, usize), Arc<Chunk>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyIndex")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn io_err(op: &str, path: &Path, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("{op} {}: {e}", path.display()))
}

impl KeyIndex {
    /// An index over the canonical `data_dir`'s `l7_flow_log` (and `store`'s unflushed rows)
    /// keeping at most `bytes` of decoded row groups and metadata.
    pub fn new(data_dir: &Path, store: Option<Arc<Store>>, bytes: usize) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            store,
            files: Mutex::new(ByteLru::new(bytes / 8)),
            chunks: Mutex::new(ByteLru::new(bytes - bytes / 8)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Its counters, as the `cache_counters` table shows them.
    pub fn counters(self: &Arc<Self>) -> CounterSource {
        let index = Arc::clone(self);
        Arc::new(move || {
            let (files, chunks) = (lock(&index.files), lock(&index.chunks));
            CacheCounts {
                hits: index.hits.load(Ordering::Relaxed),
                misses: index.misses.load(Ordering::Relaxed),
                entries: chunks.len() as u64,
                bytes: (chunks.bytes() + files.bytes()) as u64,
                limit: (chunks.limit() + files.limit()) as u64,
            }
            .rows([
                ("key_index_hits", "row groups a trace lookup found decoded"),
                ("key_index_misses", "row groups a trace lookup decoded"),
                ("key_index_row_groups", "decoded row groups held"),
                (
                    "key_index_bytes",
                    "bytes of decoded row groups and file metadata held",
                ),
                ("key_index_limit_bytes", "the index's byte budget"),
            ])
        })
    }

    /// A consistent view for one lookup: the files listed now (kept readable by a store pin
    /// until the view is dropped) and the rows buffered now.
    pub async fn view(self: &Arc<Self>) -> Result<View> {
        let table = paths::table_dir(&self.data_dir, L7_FLOW_LOG);
        let listed = || list(&table).map_err(|e| io_err("listing", &table, e));
        // With a store, the files and the buffer are taken under its flush barrier, so a row
        // is in one or the other.
        let (pin, files, buffered) = match &self.store {
            Some(store) => {
                let _no_swap = store.barrier().read().await;
                let pin = store.pin();
                (Some(pin), listed()?, store.buffered(L7_FLOW_LOG))
            }
            None => (None, listed()?, Vec::new()),
        };
        Ok(View {
            index: Arc::clone(self),
            _pin: pin,
            files,
            buffered,
            buffer: OnceLock::new(),
        })
    }

    /// Opens `path`, or where a compaction retired it to.
    fn open(&self, path: &Path) -> Result<File> {
        File::open(path)
            .or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => File::open(paths::retired_path(&self.data_dir, path)),
                _ => Err(e),
            })
            .map_err(|e| io_err("opening", path, e))
    }

    fn file(&self, path: &Path) -> Result<Arc<FileInfo>> {
        if let Some(f) = lock(&self.files).get(&path.to_path_buf()) {
            return Ok(Arc::clone(f));
        }
        let info =
            Arc::new(FileInfo::load(&self.open(path)?).map_err(|e| io_err("reading", path, e))?);
        let size = info.bytes();
        lock(&self.files).put(path.to_path_buf(), Arc::clone(&info), size);
        Ok(info)
    }

    /// Whether row group `rg` of `path` is decoded already.
    fn cached(&self, path: &Path, rg: usize) -> bool {
        lock(&self.chunks).contains(&(path.to_path_buf(), rg))
    }

    fn chunk(&self, path: &Path, info: &FileInfo, rg: usize) -> Result<Arc<Chunk>> {
        let key = (path.to_path_buf(), rg);
        if let Some(c) = lock(&self.chunks).get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Arc::clone(c));
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let names = meta_columns();
        let batch = read_rows(
            &self.open(path)?,
            info,
            rg,
            None,
            names.iter().map(String::as_str),
        )
        .map_err(|e| io_err("reading", path, e))?;
        let chunk = Arc::new(Chunk::new(&batch)?);
        let size = chunk.bytes();
        lock(&self.chunks).put(key, Arc::clone(&chunk), size);
        Ok(chunk)
    }
}

/// Row group `rg` of `file` (only `rows`, ascending, if given) with the named columns.
fn read_rows<'a>(
    file: &File,
    info: &FileInfo,
    rg: usize,
    rows: Option<&[u32]>,
    columns: impl IntoIterator<Item = &'a str>,
) -> parquet::errors::Result<RecordBatch> {
    let md = info.meta.metadata();
    let mask = ProjectionMask::columns(md.file_metadata().schema_descr(), columns);
    let total = md.row_group(rg).num_rows() as usize;
    let mut builder =
        ParquetRecordBatchReaderBuilder::new_with_metadata(file.try_clone()?, info.meta.clone())
            .with_row_groups(vec![rg])
            .with_projection(mask)
            .with_batch_size(total.max(1));
    if let Some(rows) = rows {
        let ranges = rows.iter().map(|&r| r as usize..r as usize + 1);
        builder = builder.with_row_selection(RowSelection::from_consecutive_ranges(ranges, total));
    }
    let reader = builder.build()?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(concat_batches(&schema, &batches)?)
}

/// A Parquet file of the table and the first µs of its partition's hour.
struct Listed {
    path: PathBuf,
    hour_us: i64,
}

const HOUR_US: i64 = 3_600_000_000;

/// The entries of `dir`; none if it is gone (retention may remove a partition meanwhile).
fn entries(dir: &Path) -> io::Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(d) => Ok(d.flatten().collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The Parquet files under a table's `dt=…/hr=…` partitions.
fn list(table_dir: &Path) -> io::Result<Vec<Listed>> {
    let mut out = Vec::new();
    for day in entries(table_dir)? {
        let name = day.file_name();
        let Some(date) = name
            .to_str()
            .and_then(|d| d.strip_prefix("dt="))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            continue;
        };
        for hour in entries(&day.path())? {
            let name = hour.file_name();
            let Some(time) = name
                .to_str()
                .and_then(|h| h.strip_prefix("hr="))
                .and_then(|h| h.parse::<u32>().ok())
                .and_then(|h| NaiveTime::from_hms_opt(h, 0, 0))
            else {
                continue;
            };
            let hour_us = date.and_time(time).and_utc().timestamp_micros();
            for f in entries(&hour.path())? {
                let path = f.path();
                if path.extension().is_some_and(|x| x == "parquet") {
                    out.push(Listed { path, hour_us });
                }
            }
        }
    }
    Ok(out)
}

/// Where a found span is: a row group of a listed file, or the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Loc {
    /// Row `row` of row group `rg` of the view's file `file`.
    File {
        /// The file's position in the view.
        file: u32,
        /// Its row group.
        rg: u32,
        /// The row in the row group.
        row: u32,
    },
    /// Row `row` of the store's buffered rows.
    Buffer {
        /// The row.
        row: u32,
    },
}

/// A span a lookup found.
#[derive(Debug, Clone)]
pub struct Found {
    /// Where its row is.
    pub loc: Loc,
    /// Its keys and times.
    pub meta: SpanMeta,
    /// Its string keys.
    pub strings: StringKeys,
}

/// The table as one lookup sees it (see [`KeyIndex::view`]).
pub struct View {
    index: Arc<KeyIndex>,
    _pin: Option<Pin>,
    files: Vec<Listed>,
    buffered: Vec<RecordBatch>,
    buffer: OnceLock<Result<(RecordBatch, Chunk)>>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("files", &self.files.len())
            .field("buffered", &self.buffered.len())
            .finish_non_exhaustive()
    }
}

impl View {
    /// The buffered rows as one batch and their index, built the first time.
    fn buffer(&self) -> Result<Option<&(RecordBatch, Chunk)>> {
        if self.buffered.is_empty() {
            return Ok(None);
        }
        let built = self.buffer.get_or_init(|| {
            let batch = concat_batches(&l7_flow_log_schema(), &self.buffered)?;
            let chunk = Chunk::new(&batch)?;
            Ok((batch, chunk))
        });
        match built {
            Ok(b) => Ok(Some(b)),
            Err(e) => Err(DataFusionError::Execution(e.to_string())),
        }
    }

    /// Spans holding any of `keys` that start within `[from, to]`, each once.
    pub fn find(&self, keys: &[Key], from: i64, to: i64) -> Result<Vec<Found>> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut collect = |chunk: &Chunk, keys: &[&Key], loc: &dyn Fn(u32) -> Loc| {
            for key in keys {
                for row in chunk.rows(key.slot()) {
                    let m = &chunk.spans[row as usize];
                    if (from..=to).contains(&m.start) && seen.insert(loc(row)) {
                        out.push(Found {
                            loc: loc(row),
                            meta: m.clone(),
                            strings: chunk.strings.row(row as usize),
                        });
                    }
                }
            }
        };
        // The row groups that may hold a key, with the keys they may hold.
        let mut reached = Vec::new();
        for (f, listed) in self.files.iter().enumerate() {
            if listed.hour_us > to || listed.hour_us + HOUR_US <= from {
                continue;
            }
            let info = self.index.file(&listed.path)?;
            let mut file = None;
            for rg in 0..info.times.len() {
                if !info.overlaps(rg, from, to) {
                    continue;
                }
                let file = match &file {
                    Some(file) => file,
                    None => file.insert(self.index.open(&listed.path)?),
                };
                let blooms = info
                    .blooms(rg, file)
                    .map_err(|e| io_err("reading bloom filters of", &listed.path, e))?;
                let candidates: Vec<&Key> = keys.iter().filter(|k| k.may_be_in(blooms)).collect();
                if !candidates.is_empty() {
                    reached.push((f, Arc::clone(&info), rg, candidates));
                }
            }
        }
        // Decode the ones not cached yet on every core (most of a cold lookup's time).
        let mut built: Vec<Option<Result<Arc<Chunk>>>> = reached.iter().map(|_| None).collect();
        let missing: Vec<usize> = (0..reached.len())
            .filter(|&i| {
                !self
                    .index
                    .cached(&self.files[reached[i].0].path, reached[i].2)
            })
            .collect();
        if missing.len() > 1 {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let per_thread = missing.len().div_ceil(threads);
            let decoded: Vec<(usize, Result<Arc<Chunk>>)> = std::thread::scope(|scope| {
                let workers: Vec<_> = missing
                    .chunks(per_thread)
                    .map(|part| {
                        let reached = &reached;
                        scope.spawn(move || {
                            part.iter()
                                .map(|&i| {
                                    let (f, info, rg, _) = &reached[i];
                                    (i, self.index.chunk(&self.files[*f].path, info, *rg))
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            });
            for (i, chunk) in decoded {
                built[i] = Some(chunk);
            }
        }
        for ((f, info, rg, candidates), chunk) in reached.iter().zip(built) {
            let chunk = match chunk {
                Some(c) => c?,
                None => self.index.chunk(&self.files[*f].path, info, *rg)?,
            };
            collect(&chunk, candidates, &|row| Loc::File {
                file: *f as u32,
                rg: *rg as u32,
                row,
            });
        }
        if let Some((_, chunk)) = self.buffer()? {
            let all: Vec<&Key> = keys.iter().collect();
            collect(chunk, &all, &|row| Loc::Buffer { row });
        }
        Ok(out)
    }

    /// The rows at `locs` with `columns` (of `l7_flow_log`), in the order of `locs`.
    pub fn rows(&self, locs: &[Loc], columns: &[String]) -> Result<RecordBatch> {
        let full = l7_flow_log_schema();
        let schema: SchemaRef = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| full.field_with_name(c).cloned())
                .collect::<std::result::Result<Vec<_>, _>>()?,
        ));
        let mut sorted: Vec<(usize, Loc)> = locs.iter().copied().enumerate().collect();
        sorted.sort_by_key(|(_, l)| *l);
        let mut pieces = Vec::new();
        let mut order = Vec::with_capacity(locs.len());
        let mut start = 0;
        while start < sorted.len() {
            let group = |l: &Loc| match l {
                Loc::File { file, rg, .. } => Some((*file, *rg)),
                Loc::Buffer { .. } => None,
            };
            let g = group(&sorted[start].1);
            let end = start
                + sorted[start..]
                    .iter()
                    .take_while(|(_, l)| group(l) == g)
                    .count();
            let rows: Vec<u32> = sorted[start..end]
                .iter()
                .map(|(_, l)| match l {
                    Loc::File { row, .. } | Loc::Buffer { row } => *row,
                })
                .collect();
            let batch = match g {
                Some((file, rg)) => {
                    let path = &self.files[file as usize].path;
                    let info = self.index.file(path)?;
                    let names = columns.iter().map(String::as_str);
                    read_rows(
                        &self.index.open(path)?,
                        &info,
                        rg as usize,
                        Some(&rows),
                        names,
                    )
                    .map_err(|e| io_err("reading", path, e))?
                }
                None => {
                    let (batch, _) = self
                        .buffer()?
                        .ok_or_else(|| DataFusionError::Internal("no buffered rows".into()))?;
                    take_record_batch(batch, &UInt32Array::from(rows))?
                }
            };
            pieces.push(conform(&batch, &schema)?);
            order.extend(sorted[start..end].iter().map(|(i, _)| *i));
            start = end;
        }
        let all = concat_batches(&schema, &pieces)?;
        // Row k of `all` is `locs[order[k]]`: invert to put them back in `locs` order.
        let mut at = vec![0u32; locs.len()];
        for (k, &i) in order.iter().enumerate() {
            at[i] = k as u32;
        }
        Ok(take_record_batch(&all, &UInt32Array::from(at))?)
    }
}

/// `batch`'s columns as `schema` names them (a column a file lacks is all nulls).
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => Arc::clone(c),
            None => new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}
