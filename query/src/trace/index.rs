//! The key index behind `trace()` and `trace_by()`: a Parquet row group a lookup reaches is
//! read in blocks of 8k rows (a data page of the writer's); each block has the columns of each
//! kind of key probed there decoded once into a sorted key set, and each block a key is found in
//! is decoded once into [`SpanMeta`] rows; both are kept in byte-bounded LRUs, so an expansion
//! round costs binary searches, not a query plan. Row groups are reached through their
//! partition's hour, their `start_time`/`end_time` statistics against each key's own time
//! bounds and the keys' bloom filters, then their blocks through the page index's times; rows
//! the store has not flushed yet are indexed once per lookup.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    io,
    ops::Range,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use arrow::{
    array::{RecordBatch, RecordBatchOptions, RecordBatchReader, UInt32Array, new_null_array},
    compute::{concat_batches, take_record_batch},
    datatypes::{DataType, Field, Schema, SchemaRef},
};
use datafusion::{
    error::{DataFusionError, Result},
    logical_expr::{Expr, lit},
};
use parquet::{
    arrow::{
        ProjectionMask,
        arrow_reader::{
            ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
        },
    },
    bloom_filter::Sbbf,
    file::{
        metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader},
        page_index::column_index::ColumnIndexMetaData,
        statistics::Statistics,
    },
};
use wiretrace_storage::{
    LOOKUP_KEY_COLUMNS, Pin, Store, maintain, paths,
    schema::{L7_FLOW_LOG, l7_flow_log_schema},
};

use super::meta::{
    DICTIONARY_COLUMNS, SpanMeta, StringKeyColumns, StringKeys, hash_str, key_values, meta_columns,
};
use crate::{
    cache::{ByteLru, CacheCounts},
    stats::CounterSource,
};

/// Bytes of decoded keys, rows and file metadata the index keeps by default.
pub const KEY_INDEX_BYTES: usize = 512 << 20;

/// Rows per block, the unit in which found rows are decoded (a data page of the writer's).
const BLOCK_ROWS: usize = wiretrace_storage::PAGE_ROWS;

/// The rows of block `b` of a row group (cut at the row group's end where read).
fn block_rows(b: usize) -> Range<usize> {
    b * BLOCK_ROWS..(b + 1) * BLOCK_ROWS
}

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

/// A key as a key set holds it: its kind (a tag naming its columns, [`KIND_COLUMNS`]) and its
/// value (strings hashed as [`SpanMeta`] holds them).
type Slot = (u8, u64);

/// Per kind of key (by tag): the columns it is looked up in.
const KIND_COLUMNS: [&[&str]; 6] = [
    &["_id"],
    &["req_tcp_seq"],
    &["resp_tcp_seq"],
    &["syscall_trace_id_request", "syscall_trace_id_response"],
    &["x_request_id_0", "x_request_id_1"],
    &["trace_id"],
];

impl Key {
    /// Its kind, an index into [`KIND_COLUMNS`].
    fn tag(&self) -> u8 {
        match self {
            Self::Id(_) => 0,
            Self::ReqSeq(_) => 1,
            Self::RespSeq(_) => 2,
            Self::Sys(_) => 3,
            Self::X(_) => 4,
            Self::TraceId(_) => 5,
        }
    }

    fn slot(&self) -> Slot {
        let value = match self {
            Self::Id(v) | Self::Sys(v) => *v as u64,
            Self::ReqSeq(v) | Self::RespSeq(v) => u64::from(*v),
            Self::X(s) | Self::TraceId(s) => hash_str(s),
        };
        (self.tag(), value)
    }

    /// The columns it is looked up in.
    pub fn columns(&self) -> &'static [&'static str] {
        KIND_COLUMNS[self.tag() as usize]
    }

    /// Its value as a SQL literal.
    pub fn literal(&self) -> Expr {
        match self {
            Self::Id(v) | Self::Sys(v) => lit(*v),
            Self::ReqSeq(v) | Self::RespSeq(v) => lit(*v),
            Self::X(v) | Self::TraceId(v) => lit(v.clone()),
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
        self.columns().iter().any(|c| {
            bloom(c).is_none_or(|b| match self {
                Self::Id(_) => true,
                Self::ReqSeq(v) | Self::RespSeq(v) => b.check(&(*v as i32)),
                Self::Sys(v) => b.check(v),
                Self::X(v) | Self::TraceId(v) => b.check(v.as_str()),
            })
        })
    }
}

/// A key to find, and the times a span holding it may have (bounds inclusive, µs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The key.
    pub key: Key,
    /// Least and greatest start.
    pub start: (i64, i64),
    /// Least and greatest end.
    pub end: (i64, i64),
}

impl Probe {
    /// `key` for spans starting within `[from, to]`.
    pub fn starting(key: Key, from: i64, to: i64) -> Self {
        Self {
            key,
            start: (from, to),
            end: (i64::MIN, i64::MAX),
        }
    }

    fn admits(&self, start: i64, end: i64) -> bool {
        (self.start.0..=self.start.1).contains(&start) && (self.end.0..=self.end.1).contains(&end)
    }

    /// Whether a row group with `times` may hold a span the probe admits.
    fn overlaps(&self, times: &Option<Times>) -> bool {
        let meets = |(lo, hi): (i64, i64), (a, b): (i64, i64)| hi >= a && lo <= b;
        times.is_none_or(|t| meets(t.start, self.start) && meets(t.end, self.end))
    }
}

/// Sorts `v`, whose top bits are uniformly spread (they are hashes): one pass spreads the
/// values into buckets by their top 11 bits, then each bucket, small enough for the L1 cache,
/// is sorted alone. Several times faster than sorting the few hundred thousand keys of a row
/// group at once.
fn sort_hashed(v: &mut Vec<u64>) {
    const BITS: u32 = 11;
    let bucket = |x: u64| (x >> (u64::BITS - BITS)) as usize;
    // starts[b]..starts[b + 1] will hold bucket b.
    let mut starts = vec![0usize; (1 << BITS) + 1];
    for &x in v.iter() {
        starts[bucket(x) + 1] += 1;
    }
    for b in 1..starts.len() {
        starts[b] += starts[b - 1];
    }
    let mut next = starts.clone();
    let mut out = vec![0u64; v.len()];
    for &x in v.iter() {
        let b = bucket(x);
        out[next[b]] = x;
        next[b] += 1;
    }
    for b in starts.windows(2) {
        out[b[0]..b[1]].sort_unstable();
    }
    *v = out;
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

/// The keys of one kind in a block of rows (or in the store's buffer), sorted.
struct KeySet {
    /// Per key: its mixed slot with the low `row_bits` bits replaced by the row, sorted (a
    /// match on the remaining bits is verified against the decoded row).
    keys: Vec<u64>,
    row_bits: u32,
}

impl KeySet {
    /// The keys of kind `tag` in `batch`'s rows (which must hold the kind's columns).
    fn new(batch: &RecordBatch, tag: u8) -> Result<Self> {
        let columns = KIND_COLUMNS[tag as usize]
            .iter()
            .map(|c| key_values(batch, c))
            .collect::<Result<Vec<_>>>()?;
        let n = batch.num_rows();
        let row_bits = u64::BITS - (n as u64).leading_zeros();
        let rows = (1u64 << row_bits) - 1;
        let mut keys = Vec::with_capacity(n * columns.len());
        for row in 0..n {
            for (c, column) in columns.iter().enumerate() {
                let v = column[row];
                // A value both columns hold is kept once.
                if v != 0 && (c == 0 || columns[c - 1][row] != v) {
                    keys.push(mixed((tag, v)) & !rows | row as u64);
                }
            }
        }
        sort_hashed(&mut keys);
        Ok(Self { keys, row_bits })
    }

    /// Rows that may hold `key` (of the set's kind).
    fn rows(&self, key: &Key) -> Vec<u32> {
        let rows = (1u64 << self.row_bits) - 1;
        let k = mixed(key.slot()) & !rows;
        let first = self.keys.partition_point(|e| *e < k);
        self.keys[first..]
            .iter()
            .take_while(|e| *e & !rows == k)
            .map(|e| (e & rows) as u32)
            .collect()
    }
}

/// Decoded rows of a row group (a block of it) or of the store's buffer.
struct Block {
    spans: Vec<SpanMeta>,
    /// The rows' X-Request-IDs and trace ids.
    strings: StringKeyColumns,
}

impl Block {
    fn new(batch: &RecordBatch) -> Result<Self> {
        Ok(Self {
            spans: SpanMeta::from_batch(batch)?,
            strings: StringKeyColumns::of(batch),
        })
    }
}

/// What a cache entry holds, roughly, in bytes.
trait Held {
    fn bytes(&self) -> usize;
}

impl Held for KeySet {
    fn bytes(&self) -> usize {
        self.keys.capacity() * size_of::<u64>()
    }
}

impl Held for Block {
    fn bytes(&self) -> usize {
        self.spans.capacity() * size_of::<SpanMeta>() + self.strings.bytes()
    }
}

/// The least and greatest start and end of a row group's spans, µs.
#[derive(Debug, Clone, Copy)]
struct Times {
    start: (i64, i64),
    end: (i64, i64),
}

/// A Parquet file's metadata and the bloom filters of its row groups, read the first time a
/// lookup reaches them.
struct FileInfo {
    /// The footer: enough to choose row groups (statistics, bloom filters).
    meta: ArrowReaderMetadata,
    /// The footer with the page index, for choosing blocks and reading rows of a row group;
    /// read the first time a lookup chooses blocks or reads rows in the file.
    paged: OnceLock<ArrowReaderMetadata>,
    /// The same with [`DICTIONARY_COLUMNS`] typed as Arrow dictionaries, built the first time.
    dictionaries: OnceLock<ArrowReaderMetadata>,
    /// Positions of `start_time` and `end_time` among the file's columns.
    time_columns: [Option<usize>; 2],
    /// Per row group: its times, if the statistics say.
    times: Vec<Option<Times>>,
    /// Per row group: the times of each of its blocks, read the first time.
    block_times: Vec<OnceLock<Vec<Option<Times>>>>,
    /// Per row group: its bloom filters in [`LOOKUP_KEY_COLUMNS`] order.
    blooms: Vec<OnceLock<Vec<Option<Sbbf>>>>,
}

impl FileInfo {
    fn load(file: &File) -> parquet::errors::Result<Self> {
        let meta = ArrowReaderMetadata::load(file, ArrowReaderOptions::new())?;
        let md = meta.metadata();
        let columns = md.file_metadata().schema_descr().columns();
        let time_columns =
            ["start_time", "end_time"].map(|n| columns.iter().position(|c| c.name() == n));
        let [start, end] = time_columns;
        let range = |rg: &parquet::file::metadata::RowGroupMetaData, column: Option<usize>| match rg
            .column(column?)
            .statistics()?
        {
            Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
            _ => None,
        };
        let times = md
            .row_groups()
            .iter()
            .map(|rg| {
                Some(Times {
                    start: range(rg, start)?,
                    end: range(rg, end).unwrap_or((i64::MIN, i64::MAX)),
                })
            })
            .collect();
        let groups = md.num_row_groups();
        Ok(Self {
            meta,
            paged: OnceLock::new(),
            dictionaries: OnceLock::new(),
            time_columns,
            times,
            block_times: (0..groups).map(|_| OnceLock::new()).collect(),
            blooms: (0..groups).map(|_| OnceLock::new()).collect(),
        })
    }

    /// The metadata with the page index, read from `file` the first time: the offset index of
    /// every column (to read some rows of a row group), the column index of the time columns
    /// only (for [`FileInfo::block_times`]; the others would cost their parse for nothing).
    fn paged(&self, file: &File) -> parquet::errors::Result<&ArrowReaderMetadata> {
        if let Some(m) = self.paged.get() {
            return Ok(m);
        }
        let mut md = ParquetMetaData::clone(self.meta.metadata()).into_builder();
        let groups = md
            .take_row_groups()
            .into_iter()
            .map(|rg| {
                let mut rg = rg.into_builder();
                let columns = rg
                    .take_columns()
                    .into_iter()
                    .enumerate()
                    .map(|(c, chunk)| match self.time_columns.contains(&Some(c)) {
                        true => Ok(chunk),
                        false => chunk
                            .into_builder()
                            .set_column_index_offset(None)
                            .set_column_index_length(None)
                            .build(),
                    })
                    .collect::<parquet::errors::Result<Vec<_>>>()?;
                rg.set_column_metadata(columns).build()
            })
            .collect::<parquet::errors::Result<Vec<_>>>()?;
        let mut reader =
            ParquetMetaDataReader::new_with_metadata(md.set_row_groups(groups).build())
                .with_page_index_policy(PageIndexPolicy::Optional);
        reader.read_page_indexes(file)?;
        let m =
            ArrowReaderMetadata::try_new(Arc::new(reader.finish()?), ArrowReaderOptions::new())?;
        Ok(self.paged.get_or_init(|| m))
    }

    /// [`FileInfo::paged`] with the repeating string columns ([`DICTIONARY_COLUMNS`]) read as
    /// Arrow dictionaries: their values decoded once per page instead of once per row.
    fn paged_dictionaries(&self, file: &File) -> parquet::errors::Result<&ArrowReaderMetadata> {
        if let Some(m) = self.dictionaries.get() {
            return Ok(m);
        }
        let paged = self.paged(file)?;
        let fields: Vec<Field> = paged
            .schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 if DICTIONARY_COLUMNS.contains(&f.name().as_str()) => {
                    f.as_ref().clone().with_data_type(DataType::Dictionary(
                        Box::new(DataType::Int32),
                        Box::new(DataType::Utf8),
                    ))
                }
                _ => f.as_ref().clone(),
            })
            .collect();
        let options = ArrowReaderOptions::new().with_schema(Arc::new(Schema::new(fields)));
        let m = ArrowReaderMetadata::try_new(Arc::clone(paged.metadata()), options)?;
        Ok(self.dictionaries.get_or_init(|| m))
    }

    /// The times of each block of row group `rg` (rows `b * BLOCK_ROWS..`), from the page
    /// index of `start_time` and `end_time`: the union of the pages a block overlaps (the row
    /// group's own times where the file has no page index).
    fn block_times(&self, rg: usize, file: &File) -> parquet::errors::Result<&[Option<Times>]> {
        if let Some(t) = self.block_times[rg].get() {
            return Ok(t);
        }
        let md = self.paged(file)?.metadata();
        let rows = md.row_group(rg).num_rows().max(0) as usize;
        // Per page of a time column: its first row and its least and greatest value.
        let pages = |column: Option<usize>| -> Option<Vec<(usize, (i64, i64))>> {
            let c = column?;
            let ColumnIndexMetaData::INT64(index) = md.column_index()?.get(rg)?.get(c)? else {
                return None;
            };
            let locations = md.offset_index()?.get(rg)?.get(c)?.page_locations();
            locations
                .iter()
                .enumerate()
                .map(|(p, l)| {
                    let first = usize::try_from(l.first_row_index).ok()?;
                    Some((first, (*index.min_value(p)?, *index.max_value(p)?)))
                })
                .collect()
        };
        let [start, end] = self.time_columns.map(pages);
        let within = |pages: &Option<Vec<(usize, (i64, i64))>>, b: usize| {
            let (lo, hi) = (b * BLOCK_ROWS, (b + 1) * BLOCK_ROWS);
            let pages = pages.as_ref()?;
            (0..pages.len())
                .filter(|&p| pages[p].0 < hi && pages.get(p + 1).is_none_or(|next| next.0 > lo))
                .map(|p| pages[p].1)
                .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
        };
        let whole = self.times[rg];
        let times = (0..rows.div_ceil(BLOCK_ROWS))
            .map(|b| match within(&start, b) {
                Some(start) => Some(Times {
                    start,
                    end: within(&end, b)
                        .or(whole.map(|t| t.end))
                        .unwrap_or((i64::MIN, i64::MAX)),
                }),
                None => whole,
            })
            .collect();
        Ok(self.block_times[rg].get_or_init(|| times))
    }

    /// Memory held, counting every bloom filter and the page index as loaded (the footer, and
    /// the copy with the page index, measured at about twice the footer's size).
    fn bytes(&self) -> usize {
        let md = self.meta.metadata();
        let blooms: usize = md
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns())
            .filter_map(|c| c.bloom_filter_length())
            .map(|n| n.max(0) as usize)
            .sum();
        3 * md.memory_size() + blooms
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
}

/// Where a row group is: a file and its position in the file.
type RowGroup = (PathBuf, usize);

/// The key index of one data dir: file metadata, row groups' key sets and decoded blocks of
/// rows, shared by the session's lookups.
pub struct KeyIndex {
    data_dir: PathBuf,
    store: Option<Arc<Store>>,
    files: Mutex<ByteLru<PathBuf, Arc<FileInfo>>>,
    /// Per file: its least and greatest `start_time` (kept when its metadata is evicted, so a
    /// lookup reads the footers of the files its window overlaps only).
    spans: Mutex<HashMap<PathBuf, Option<(i64, i64)>>>,
    keys: Mutex<ByteLru<(RowGroup, usize, u8), Arc<KeySet>>>,
    blocks: Mutex<ByteLru<(RowGroup, usize), Arc<Block>>>,
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

/// `f` over every item, on every core when there are several, in order.
fn on_threads<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if items.len() < 2 || threads < 2 {
        return items.iter().map(f).collect();
    }
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(items.len().div_ceil(threads))
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

impl KeyIndex {
    /// An index over the canonical `data_dir`'s `l7_flow_log` (and `store`'s unflushed rows)
    /// keeping at most `bytes` of decoded keys, rows and metadata.
    pub fn new(data_dir: &Path, store: Option<Arc<Store>>, bytes: usize) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            store,
            files: Mutex::new(ByteLru::new(bytes / 8)),
            spans: Mutex::new(HashMap::new()),
            keys: Mutex::new(ByteLru::new(bytes / 8 * 3)),
            blocks: Mutex::new(ByteLru::new(bytes / 2)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Its counters, as the `cache_counters` table shows them.
    pub fn counters(self: &Arc<Self>) -> CounterSource {
        let index = Arc::clone(self);
        Arc::new(move || {
            let (files, keys, blocks) =
                (lock(&index.files), lock(&index.keys), lock(&index.blocks));
            CacheCounts {
                hits: index.hits.load(Ordering::Relaxed),
                misses: index.misses.load(Ordering::Relaxed),
                entries: (keys.len() + blocks.len()) as u64,
                bytes: (files.bytes() + keys.bytes() + blocks.bytes()) as u64,
                limit: (files.limit() + keys.limit() + blocks.limit()) as u64,
            }
            .rows([
                (
                    "key_index_hits",
                    "row-group key sets and row blocks a trace lookup found decoded",
                ),
                (
                    "key_index_misses",
                    "row-group key sets and row blocks a trace lookup decoded",
                ),
                ("key_index_entries", "key sets and row blocks held"),
                (
                    "key_index_bytes",
                    "bytes of key sets, row blocks and file metadata held",
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
        {
            let listed: HashSet<&Path> = files.iter().map(|f| f.path.as_path()).collect();
            lock(&self.spans).retain(|p, _| listed.contains(p.as_path()));
        }
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

    /// The least and greatest `start_time` in `path`, if its name or its statistics say (the
    /// name spares reading the footer of each file a probe's hours hold).
    fn span(&self, path: &Path) -> Result<Option<(i64, i64)>> {
        if let Some(span) = paths::part_file_times(path) {
            return Ok(Some(span));
        }
        if let Some(span) = lock(&self.spans).get(path) {
            return Ok(*span);
        }
        let times = self.file(path)?.times.clone();
        let span = times.iter().try_fold(None, |acc: Option<(i64, i64)>, t| {
            let t = t.as_ref()?.start;
            Some(Some(acc.map_or(t, |(lo, hi)| (lo.min(t.0), hi.max(t.1)))))
        });
        let span = span.flatten();
        lock(&self.spans).insert(path.to_path_buf(), span);
        Ok(span)
    }

    /// The entries of `cache` for `wanted` (each key once), those missing built on every core
    /// by `build`, which is handed the missing keys of one `group` at a time (ascending) and
    /// returns their values in that order: a row group's blocks are decoded by one reader, as
    /// each reader sets up a decompression context per compressed column.
    fn cached<K, G, V>(
        &self,
        cache: &Mutex<ByteLru<K, Arc<V>>>,
        wanted: Vec<K>,
        group: impl Fn(&K) -> G,
        build: impl Fn(&[&K]) -> Result<Vec<V>> + Sync,
    ) -> Result<Vec<Arc<V>>>
    where
        K: std::hash::Hash + Ord + Clone + Sync,
        G: Ord + Sync,
        V: Held + Send + Sync,
    {
        let mut out: Vec<Option<Arc<V>>> = {
            let mut cache = lock(cache);
            wanted
                .iter()
                .map(|k| cache.get(k).map(Arc::clone))
                .collect()
        };
        let mut missing: Vec<(G, usize)> = (0..wanted.len())
            .filter(|&i| out[i].is_none())
            .map(|i| (group(&wanted[i]), i))
            .collect();
        self.hits
            .fetch_add((wanted.len() - missing.len()) as u64, Ordering::Relaxed);
        self.misses
            .fetch_add(missing.len() as u64, Ordering::Relaxed);
        missing.sort_by(|a, b| (&a.0, &wanted[a.1]).cmp(&(&b.0, &wanted[b.1])));
        let groups: Vec<&[(G, usize)]> = missing.chunk_by(|a, b| a.0 == b.0).collect();
        let built = on_threads(&groups, |g| {
            build(&g.iter().map(|&(_, i)| &wanted[i]).collect::<Vec<_>>())
        });
        for (g, values) in groups.into_iter().zip(built) {
            for (&(_, i), v) in g.iter().zip(values?) {
                let v = Arc::new(v);
                lock(cache).put(wanted[i].clone(), Arc::clone(&v), v.bytes());
                out[i] = Some(v);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// The `units` (row group, block), decoded: from the cache, else a row group's missing
    /// blocks together, each row group once `go_on` lets it.
    fn decoded(
        &self,
        units: Vec<(RowGroup, usize)>,
        go_on: &(dyn Fn() -> Result<()> + Sync),
    ) -> Result<Vec<Arc<Block>>> {
        self.cached(
            &self.blocks,
            units,
            |(g, _)| g.clone(),
            |units| {
                go_on()?;
                let bs: Vec<usize> = units.iter().map(|u| u.1).collect();
                self.decode_blocks(&units[0].0, &bs, &meta_columns(), true, Block::new)
            },
        )
    }

    /// Blocks `bs` (ascending) of row group `g` with `columns`, read by one reader and built
    /// one by one by `make`.
    fn decode_blocks<V>(
        &self,
        g: &RowGroup,
        bs: &[usize],
        columns: &[String],
        dictionaries: bool,
        make: impl Fn(&RecordBatch) -> Result<V>,
    ) -> Result<Vec<V>> {
        let ranges: Vec<Range<usize>> = bs.iter().map(|&b| block_rows(b)).collect();
        self.decode(g, &ranges, columns, dictionaries, |batch| {
            // Every block is whole but a row group's last, which comes last.
            let rows = batch.num_rows();
            if bs.len() > 1 && rows <= (bs.len() - 1) * BLOCK_ROWS {
                return Err(DataFusionError::Internal(format!(
                    "{}: {rows} rows read for blocks {bs:?} of row group {}",
                    g.0.display(),
                    g.1
                )));
            }
            (0..bs.len())
                .map(|k| {
                    let at = k * BLOCK_ROWS;
                    let len = if k + 1 < bs.len() {
                        BLOCK_ROWS
                    } else {
                        rows - at
                    };
                    make(&batch.slice(at, len))
                })
                .collect()
        })
    }

    /// Reads the rows in `ranges` of a row group with `columns` (those of
    /// [`DICTIONARY_COLUMNS`] as Arrow dictionaries if `dictionaries`), as `make` builds them.
    fn decode<V>(
        &self,
        (path, rg): &RowGroup,
        ranges: &[Range<usize>],
        columns: &[String],
        dictionaries: bool,
        make: impl FnOnce(&RecordBatch) -> Result<V>,
    ) -> Result<V> {
        let info = self.file(path)?;
        let batch = read_rows(
            &self.open(path)?,
            &info,
            *rg,
            ranges,
            columns.iter().map(String::as_str),
            dictionaries,
        )
        .map_err(|e| io_err("reading", path, e))?;
        make(&batch)
    }
}

/// The rows in `ranges` (ascending, cut at the row group's end) of row group `rg` of `file`
/// with the named columns, those of [`DICTIONARY_COLUMNS`] as Arrow dictionaries if
/// `dictionaries`.
fn read_rows<'a>(
    file: &File,
    info: &FileInfo,
    rg: usize,
    ranges: &[Range<usize>],
    columns: impl IntoIterator<Item = &'a str>,
    dictionaries: bool,
) -> parquet::errors::Result<RecordBatch> {
    let meta = match dictionaries {
        true => info.paged_dictionaries(file)?,
        false => info.paged(file)?,
    };
    let md = meta.metadata();
    let mask = ProjectionMask::columns(md.file_metadata().schema_descr(), columns);
    let total = md.row_group(rg).num_rows() as usize;
    let ranges = ranges.iter().map(|r| r.start.min(total)..r.end.min(total));
    let reader =
        ParquetRecordBatchReaderBuilder::new_with_metadata(file.try_clone()?, meta.clone())
            .with_row_groups(vec![rg])
            .with_projection(mask)
            .with_batch_size(total.max(1))
            .with_row_selection(RowSelection::from_consecutive_ranges(ranges, total))
            .build()?;
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

/// The Parquet files under a table's `dt=…/hr=…` partitions.
fn list(table_dir: &Path) -> wiretrace_storage::Result<Vec<Listed>> {
    let mut out = Vec::new();
    for hour in maintain::hours(table_dir)? {
        let hour_us = hour.start.timestamp_micros();
        for path in maintain::parquet_files(&hour.dir)? {
            out.push(Listed { path, hour_us });
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
    buffer: OnceLock<Result<Buffer>>,
}

/// The store's buffered rows as one batch, indexed.
struct Buffer {
    batch: RecordBatch,
    /// Per kind of key, its key set.
    keys: Vec<KeySet>,
    block: Block,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("files", &self.files.len())
            .field("buffered", &self.buffered.len())
            .finish_non_exhaustive()
    }
}

/// A block a lookup reaches: its file in the view, its row group, its position in the row
/// group and the probes it may answer.
struct Reached {
    file: u32,
    rg: u32,
    block: usize,
    answers: Vec<usize>,
}

impl Reached {
    /// Where row `row` of the block is.
    fn loc(&self, row: u32) -> Loc {
        Loc::File {
            file: self.file,
            rg: self.rg,
            row: (self.block * BLOCK_ROWS) as u32 + row,
        }
    }
}

/// A row a key set says may hold a probe's key: which reached block, which row of the block,
/// which probe.
struct Candidate {
    reached: usize,
    row: u32,
    probe: usize,
}

impl View {
    /// The buffered rows, indexed the first time.
    fn buffer(&self) -> Result<Option<&Buffer>> {
        if self.buffered.is_empty() {
            return Ok(None);
        }
        let built = self.buffer.get_or_init(|| {
            let batch = concat_batches(&l7_flow_log_schema(), &self.buffered)?;
            Ok(Buffer {
                keys: (0..KIND_COLUMNS.len() as u8)
                    .map(|tag| KeySet::new(&batch, tag))
                    .collect::<Result<_>>()?,
                block: Block::new(&batch)?,
                batch,
            })
        });
        match built {
            Ok(b) => Ok(Some(b)),
            Err(e) => Err(DataFusionError::Execution(e.to_string())),
        }
    }

    /// The blocks that may hold a span `probes` admit, each with the probes it may answer:
    /// row groups by their partition's hour, their times and their bloom filters, then their
    /// blocks by the page index's times.
    fn reach(&self, probes: &[Probe]) -> Result<Vec<Reached>> {
        let from = probes.iter().map(|p| p.start.0).min().unwrap_or(i64::MAX);
        let to = probes.iter().map(|p| p.start.1).max().unwrap_or(i64::MIN);
        let mut reached = Vec::new();
        for (f, listed) in self.files.iter().enumerate() {
            if listed.hour_us > to || listed.hour_us + HOUR_US <= from {
                continue;
            }
            if let Some((lo, hi)) = self.index.span(&listed.path)?
                && (hi < from || lo > to)
            {
                continue;
            }
            let info = self.index.file(&listed.path)?;
            let mut file = None;
            for (rg, times) in info.times.iter().enumerate() {
                let mut answers: Vec<usize> = (0..probes.len())
                    .filter(|&p| probes[p].overlaps(times))
                    .collect();
                if answers.is_empty() {
                    continue;
                }
                let file = match &file {
                    Some(file) => file,
                    None => file.insert(self.index.open(&listed.path)?),
                };
                let read_err = |e| io_err("reading the indexes of", &listed.path, e);
                let blooms = info.blooms(rg, file).map_err(read_err)?;
                answers.retain(|&p| probes[p].key.may_be_in(blooms));
                if answers.is_empty() {
                    continue;
                }
                for (block, times) in info
                    .block_times(rg, file)
                    .map_err(read_err)?
                    .iter()
                    .enumerate()
                {
                    let answers: Vec<usize> = answers
                        .iter()
                        .copied()
                        .filter(|&p| probes[p].overlaps(times))
                        .collect();
                    if !answers.is_empty() {
                        reached.push(Reached {
                            file: f as u32,
                            rg: rg as u32,
                            block,
                            answers,
                        });
                    }
                }
            }
        }
        Ok(reached)
    }

    /// A reached block as the caches key it: its row group and its position there.
    fn unit(&self, r: &Reached) -> (RowGroup, usize) {
        let path = self.files[r.file as usize].path.clone();
        ((path, r.rg as usize), r.block)
    }

    /// Every span starting in `[from, to]`, handed to `f`: where its row is and its assembly
    /// row (read in place in the decoded blocks, not copied), file by file in row order, then
    /// the buffered ones. `admit` is told how many spans the window may hold at most before
    /// any is decoded, and may refuse; `go_on` is asked before each row group is decoded, and
    /// may stop the call.
    pub fn window<R>(
        &self,
        from: i64,
        to: i64,
        admit: impl FnOnce(usize) -> Result<()>,
        go_on: &(dyn Fn() -> Result<()> + Sync),
        f: impl FnOnce(&[Loc], &[&SpanMeta]) -> Result<R>,
    ) -> Result<R> {
        // No bloom filter prunes `_id`: a probe of it reaches every block its times overlap.
        let reached = self.reach(&[Probe::starting(Key::Id(0), from, to)])?;
        let most =
            reached.len() * BLOCK_ROWS + self.buffered.iter().map(|b| b.num_rows()).sum::<usize>();
        admit(most)?;
        let blocks = self
            .index
            .decoded(reached.iter().map(|r| self.unit(r)).collect(), go_on)?;
        let buffer = self.buffer()?;
        let sources = reached
            .iter()
            .zip(&blocks)
            .map(|(r, block)| (&block.spans, Some(r)))
            .chain(buffer.map(|b| (&b.block.spans, None)));
        let (mut locs, mut meta) = (Vec::with_capacity(most), Vec::with_capacity(most));
        for (spans, reached) in sources {
            for (i, m) in spans.iter().enumerate() {
                if (from..=to).contains(&m.start) {
                    let row = i as u32;
                    locs.push(reached.map_or(Loc::Buffer { row }, |r| r.loc(row)));
                    meta.push(m);
                }
            }
        }
        f(&locs, &meta)
    }

    /// Spans holding a probe's key within its time bounds, each once.
    pub fn find(&self, probes: &[Probe]) -> Result<Vec<Found>> {
        let reached = self.reach(probes)?;
        // The key sets of the blocks reached (of the kinds probed there), then the rows they
        // point at.
        let mut sets: Vec<(usize, u8)> = reached
            .iter()
            .enumerate()
            .flat_map(|(at, r)| r.answers.iter().map(move |&p| (at, probes[p].key.tag())))
            .collect();
        sets.sort_unstable();
        sets.dedup();
        let built = self.index.cached(
            &self.index.keys,
            sets.iter()
                .map(|&(at, tag)| {
                    let (g, b) = self.unit(&reached[at]);
                    (g, b, tag)
                })
                .collect(),
            |(g, _, tag)| (g.clone(), *tag),
            |sets| {
                let (g, _, tag) = sets[0];
                let columns: Vec<String> = KIND_COLUMNS[*tag as usize]
                    .iter()
                    .map(|c| c.to_string())
                    .collect();
                let bs: Vec<usize> = sets.iter().map(|s| s.1).collect();
                self.index
                    .decode_blocks(g, &bs, &columns, false, |batch| KeySet::new(batch, *tag))
            },
        )?;
        let mut candidates = Vec::new();
        for (at, r) in reached.iter().enumerate() {
            for &probe in &r.answers {
                let key = &probes[probe].key;
                let set = &built[sets.binary_search(&(at, key.tag())).expect("built")];
                candidates.extend(set.rows(key).into_iter().map(|row| Candidate {
                    reached: at,
                    row,
                    probe,
                }));
            }
        }
        // The rows of the blocks holding candidates, decoded where not cached yet.
        let mut wanted: Vec<usize> = candidates.iter().map(|c| c.reached).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let blocks = self.index.decoded(
            wanted.iter().map(|&r| self.unit(&reached[r])).collect(),
            &|| Ok(()),
        )?;
        tracing::debug!(
            probes = probes.len(),
            blocks_reached = reached.len(),
            candidates = candidates.len(),
            blocks_read = wanted.len(),
            "key index probe"
        );
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut keep = |block: &Block, i: usize, probe: &Probe, loc: Loc| {
            let m = &block.spans[i];
            if holds(m, probe.key.slot()) && probe.admits(m.start, m.end) && seen.insert(loc) {
                out.push(Found {
                    loc,
                    meta: m.clone(),
                    strings: block.strings.row(i),
                });
            }
        };
        for c in &candidates {
            let block = &blocks[wanted.binary_search(&c.reached).expect("wanted")];
            let loc = reached[c.reached].loc(c.row);
            keep(block, c.row as usize, &probes[c.probe], loc);
        }
        if let Some(buffer) = self.buffer()? {
            for probe in probes {
                for row in buffer.keys[probe.key.tag() as usize].rows(&probe.key) {
                    keep(&buffer.block, row as usize, probe, Loc::Buffer { row });
                }
            }
        }
        Ok(out)
    }

    /// The rows at `locs` with `columns` (of `l7_flow_log`), in the order of `locs`; `go_on` is
    /// asked before each row group is read, and may stop the call.
    pub fn rows(
        &self,
        locs: &[Loc],
        columns: &[String],
        go_on: &(dyn Fn() -> Result<()> + Sync),
    ) -> Result<RecordBatch> {
        if columns.is_empty() {
            return Ok(RecordBatch::try_new_with_options(
                Arc::new(Schema::empty()),
                Vec::new(),
                &RecordBatchOptions::new().with_row_count(Some(locs.len())),
            )?);
        }
        let full = l7_flow_log_schema();
        let schema: SchemaRef = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| full.field_with_name(c).cloned())
                .collect::<std::result::Result<Vec<_>, _>>()?,
        ));
        let mut sorted: Vec<(usize, Loc)> = locs.iter().copied().enumerate().collect();
        sorted.sort_by_key(|(_, l)| *l);
        let group = |l: &Loc| match l {
            Loc::File { file, rg, .. } => Some((*file, *rg)),
            Loc::Buffer { .. } => None,
        };
        // The sorted locations cut into runs of one row group (or of the buffer) each.
        let runs: Vec<&[(usize, Loc)]> =
            sorted.chunk_by(|a, b| group(&a.1) == group(&b.1)).collect();
        // Row groups are read on every core: most of a lookup's time goes to their columns.
        let pieces = on_threads(&runs, |run| -> Result<RecordBatch> {
            go_on()?;
            let rows: Vec<u32> = run
                .iter()
                .map(|(_, l)| match l {
                    Loc::File { row, .. } | Loc::Buffer { row } => *row,
                })
                .collect();
            let batch = match group(&run[0].1) {
                Some((file, rg)) => {
                    let group = (self.files[file as usize].path.clone(), rg as usize);
                    // Consecutive rows read as one range.
                    let mut ranges: Vec<Range<usize>> = Vec::new();
                    for &r in &rows {
                        match ranges.last_mut() {
                            Some(last) if last.end == r as usize => last.end += 1,
                            _ => ranges.push(r as usize..r as usize + 1),
                        }
                    }
                    self.index
                        .decode(&group, &ranges, columns, false, |b| Ok(b.clone()))?
                }
                None => {
                    let buffer = self
                        .buffer()?
                        .ok_or_else(|| DataFusionError::Internal("no buffered rows".into()))?;
                    take_record_batch(&buffer.batch, &UInt32Array::from(rows))?
                }
            };
            conform(&batch, &schema)
        })
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
        let order: Vec<usize> = sorted.iter().map(|(i, _)| *i).collect();
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

#[cfg(test)]
mod tests {
    use super::sort_hashed;

    #[test]
    fn sort_hashed_orders_like_a_comparison_sort() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut v: Vec<u64> = (0..100_000)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Crowded buckets and duplicates as well as spread values.
                if i % 3 == 0 { x & 0xffff_ffff } else { x }
            })
            .collect();
        v.extend_from_within(..1000);
        let mut want = v.clone();
        want.sort_unstable();
        sort_hashed(&mut v);
        assert_eq!(v, want);
    }
}
