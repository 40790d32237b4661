//! Parquet column chunks encoded from the Arrow columns of the flushed batches, rows taken in a
//! given order (the flush's sort is a list of row numbers, never a copy of a batch): data pages of
//! [`PAGE_ROWS`] rows, a dictionary only where it stores the chunk smaller than plain values,
//! zstd only where it saves a tenth of the bytes, statistics per chunk and per page (the page
//! index), and a bloom filter when asked.

use std::{hash::Hash, sync::Arc};

use arrow::{
    array::{Array, AsArray, BooleanBufferBuilder},
    buffer::{BooleanBuffer, Buffer, NullBuffer},
    compute::concat,
    datatypes::{DataType, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, UInt32Type},
};
use parquet::{
    basic::{BoundaryOrder, Compression, Encoding, Type, ZstdLevel},
    bloom_filter::Sbbf,
    column::{
        page::{CompressedPage, Page, PageWriter},
        writer::ColumnCloseResult,
    },
    data_type::ByteArray,
    errors::{ParquetError, Result},
    file::{
        metadata::{ColumnChunkMetaData, ColumnIndexBuilder, OffsetIndexBuilder},
        page_index::column_index::ColumnIndexMetaData,
        statistics::Statistics,
        writer::{SerializedPageWriter, TrackedWrite},
    },
    schema::types::ColumnDescPtr,
};

use crate::encoding::{self, LeBytes};

/// Rows per data page at most: a lookup that finds a row in a row group decodes one page of
/// each column it reads, not the whole column.
pub const PAGE_ROWS: usize = 8 * 1024;

/// The least share of a chunk's bytes zstd must save to be used on it.
const ZSTD_MIN_SAVING: f64 = 0.1;

/// The least zstd must save per row of a chunk to be used on it: the Parquet reader sets up
/// zstd contexts for each compressed chunk it opens (≈ 20 µs in a VM, where zstd's CPU
/// feature check traps), which a lookup reading one page pays for a few saved bytes.
const ZSTD_MIN_SAVING_PER_ROW: f64 = 0.25;

/// Most PLAIN bytes a column's distinct values in a file may take for every chunk to carry
/// them all as its dictionary.
const SHARED_DICTIONARY_BYTES: usize = 2 * 1024;

/// Uncompressed bytes a chunk must have for its trial of zstd to decide for the rest of its
/// column in the file.
const ZSTD_TRIAL_BYTES: usize = 16 * 1024;

/// How one column is stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColumnSpec {
    /// Its encoding; `None` means a dictionary where it pays, plain values where not.
    pub(crate) encoding: Option<Encoding>,
    /// False-positive rate of its bloom filter, if it has one.
    pub(crate) bloom_fpp: Option<f64>,
    /// zstd level of its chunks where compression pays.
    pub(crate) zstd_level: ZstdLevel,
}

/// An encoded column chunk: its bytes (offsets in the metadata count from their start) and
/// what the file writer needs to place it.
#[derive(Debug)]
pub(crate) struct Encoded {
    /// Pages, dictionary first.
    pub(crate) bytes: bytes::Bytes,
    /// Metadata, statistics, page index and bloom filter.
    pub(crate) close: ColumnCloseResult,
}

/// Expands `$then!(typed, get)` for the stored Arrow type `$dt` (else `$other`): `typed` reads
/// a column's array as its typed values, `get` one row's value from those.
macro_rules! by_type {
    ($dt:expr, $then:ident, $other:expr) => {
        match $dt {
            DataType::Int32 => $then!(|a| a.as_primitive::<Int32Type>().values(), |v, i| v[i]),
            DataType::UInt32 => $then!(|a| a.as_primitive::<UInt32Type>().values(), |v, i| v[i]),
            DataType::Int64 => $then!(|a| a.as_primitive::<Int64Type>().values(), |v, i| v[i]),
            DataType::Timestamp(TimeUnit::Microsecond, _) => $then!(
                |a| a.as_primitive::<TimestampMicrosecondType>().values(),
                |v, i| v[i]
            ),
            DataType::Utf8 => $then!(|a| a.as_string::<i32>(), |a, i| a.value(i).as_bytes()),
            DataType::Binary => $then!(|a| a.as_binary::<i32>(), |a, i| a.value(i)),
            _ => $other,
        }
    };
}

/// Row `r`'s value read by `get` from `typed`.
fn of<A: Copy, V>(typed: A, get: impl Fn(A, usize) -> V) -> impl Fn(usize) -> V {
    move |r| get(typed, r)
}

/// Encodes column chunks, reusing one zstd context for every page.
pub(crate) struct ChunkEncoder {
    zstd: zstd::bulk::Compressor<'static>,
    /// The level `zstd` compresses at.
    level: ZstdLevel,
}

impl std::fmt::Debug for ChunkEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkEncoder")
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

impl ChunkEncoder {
    /// An encoder (compressing pages at each column's zstd level).
    pub(crate) fn new() -> Result<Self> {
        let level = ZstdLevel::default();
        let zstd = zstd::bulk::Compressor::new(level.compression_level()).map_err(external)?;
        Ok(Self { zstd, level })
    }

    /// Encodes `parts` (one array per flushed batch, their rows numbered end to end) as the
    /// column `descr` of each row group in `groups` (row numbers, in the order they are
    /// stored); `scan` holds the same rows in ascending order.
    pub(crate) fn encode(
        &mut self,
        descr: ColumnDescPtr,
        parts: &[&dyn Array],
        groups: &[&[u32]],
        scan: &[u32],
        spec: &ColumnSpec,
    ) -> Result<Vec<Encoded>> {
        if spec.zstd_level != self.level {
            self.zstd
                .set_compression_level(spec.zstd_level.compression_level())
                .map_err(external)?;
            self.level = spec.zstd_level;
        }
        // A column to intern whose file holds every row is interned part by part and its
        // chunks read only what was interned: the parts are never joined into one array.
        let mut spec = *spec;
        let rows: usize = parts.iter().map(|p| p.len()).sum();
        if spec.encoding.is_none() && parts.len() > 1 && scan.len() == rows {
            match self.interned_parts(Arc::clone(&descr), parts, groups, &spec)? {
                Some(encoded) => return Ok(encoded),
                // No values, or too many distinct ones for a dictionary: plain values, without
                // interning again.
                None => spec.encoding = Some(Encoding::PLAIN),
            }
        }
        let joined;
        let array = match parts {
            [one] => *one,
            _ => {
                joined = concat(parts)?;
                joined.as_ref()
            }
        };
        let spec = &spec;
        let nulls = array.logical_nulls().filter(|n| n.null_count() > 0);
        let nulls = nulls.as_ref();
        macro_rules! single {
            ($typed:expr, $get:expr) => {{
                // Through `map`, so the closure's argument type is known.
                let [typed] = [&array].map($typed);
                self.plain_or_interned(descr, groups, scan, nulls, of(typed, $get), spec)
            }};
        }
        by_type!(
            array.data_type(),
            single,
            Err(ParquetError::NYI(format!(
                "column {}: storing {} is not supported",
                descr.name(),
                array.data_type()
            )))
        )
    }

    /// The chunks of a column to intern given as `parts` of more than one batch, or `None`
    /// (nothing encoded) when it has no values or more than half its rows are distinct.
    fn interned_parts(
        &mut self,
        descr: ColumnDescPtr,
        parts: &[&dyn Array],
        groups: &[&[u32]],
        spec: &ColumnSpec,
    ) -> Result<Option<Vec<Encoded>>> {
        let part_nulls: Vec<_> = parts.iter().map(|p| p.logical_nulls()).collect();
        let nulls = joined_nulls(parts, &part_nulls);
        let nulls = nulls.as_ref();
        if nulls.is_some_and(|n| n.null_count() == n.len()) {
            return Ok(None);
        }
        macro_rules! interned {
            ($typed:expr, $get:expr) => {{
                let typed: Vec<_> = parts.iter().map($typed).collect();
                match Interned::from_parts(parts, &part_nulls, &typed, $get) {
                    Some(i) => self.column(descr, groups, nulls, Some(&i), |r| i.value(r), spec),
                    None => return Ok(None),
                }
            }};
        }
        let encoded = by_type!(parts[0].data_type(), interned, return Ok(None));
        encoded.map(Some)
    }

    /// The chunks of one column with `value` of each row: a column with no set encoding is
    /// interned once over the file, and each chunk cut from that gets a dictionary where one
    /// pays.
    fn plain_or_interned<V: Value>(
        &mut self,
        descr: ColumnDescPtr,
        groups: &[&[u32]],
        scan: &[u32],
        nulls: Option<&NullBuffer>,
        value: impl Fn(usize) -> V,
        spec: &ColumnSpec,
    ) -> Result<Vec<Encoded>> {
        let all_null = nulls.is_some_and(|n| n.null_count() == n.len());
        let interned = match spec.encoding {
            None if !all_null => Interned::build(scan, nulls, &value),
            _ => None,
        };
        self.column(descr, groups, nulls, interned.as_ref(), value, spec)
    }

    /// The chunks of one column: each cut from `interned` where a dictionary pays, else the
    /// plain `value` of each row (none for a column without values).
    fn column<V: Value>(
        &mut self,
        descr: ColumnDescPtr,
        groups: &[&[u32]],
        nulls: Option<&NullBuffer>,
        interned: Option<&Interned<V>>,
        value: impl Fn(usize) -> V,
        spec: &ColumnSpec,
    ) -> Result<Vec<Encoded>> {
        let all_null = nulls.is_some_and(|n| n.null_count() == n.len());
        let (mut local, mut zstd) = (Vec::new(), None);
        groups
            .iter()
            .map(|rows| {
                let dictionary = interned.and_then(|i| {
                    let (keys, valid) = non_null(rows, nulls, |r| i.key[r]);
                    Some((i.chunk(keys, &mut local)?, valid))
                });
                let (content, valid) = match dictionary {
                    Some((d, valid)) => (Content::Dictionary(d), valid),
                    None if all_null => (Content::Plain(Vec::new()), None),
                    None => {
                        let (values, valid) = non_null(rows, nulls, &value);
                        (Content::Plain(values), valid)
                    }
                };
                let descr = Arc::clone(&descr);
                self.chunk(descr, rows, valid.as_ref(), content, spec, &mut zstd)
            })
            .collect()
    }

    /// One chunk from its non-null values in order or from its dictionary; `valid` says which
    /// of `rows` hold a value (every one when `None`). `zstd` is whether compression paid on
    /// this column's first chunk in the file (`None` before that chunk is written).
    fn chunk<V: Value>(
        &mut self,
        descr: ColumnDescPtr,
        rows: &[u32],
        valid: Option<&BooleanBuffer>,
        content: Content<V>,
        spec: &ColumnSpec,
        zstd: &mut Option<bool>,
    ) -> Result<Encoded> {
        let (values, dictionary) = match &content {
            Content::Plain(values) => (values.as_slice(), None),
            Content::Dictionary(d) => (&[][..], Some(d)),
        };
        // The pages uncompressed first: whether zstd pays is known once they all are.
        let mut raw = Vec::new();
        if let Some(d) = &dictionary {
            let mut buf = Vec::new();
            V::plain(&d.values, &mut buf);
            raw.push((PageKind::Dictionary(d.values.len() as u32), buf));
        }
        let encoding = match (&dictionary, spec.encoding) {
            (Some(_), _) => Encoding::RLE_DICTIONARY,
            (None, e) => e.unwrap_or(Encoding::PLAIN),
        };
        let mut stats = PageStats::new(V::TYPE);
        let all_null = valid.is_none() && dictionary.is_none() && values.is_empty();
        let mut from = 0;
        for (page, page_rows) in rows.chunks(PAGE_ROWS).enumerate() {
            let mut buf = Vec::new();
            let first = page * PAGE_ROWS;
            let count = match valid {
                Some(v) => v.slice(first, page_rows.len()).count_set_bits(),
                None if all_null => 0,
                None => page_rows.len(),
            };
            if descr.max_def_level() > 0 {
                // Definition levels: 1 for a value, 0 for a null.
                buf.extend_from_slice(&[0; 4]);
                match valid {
                    Some(v) if count != page_rows.len() && count != 0 => {
                        encoding::rle_bits(&v.values()[first / 8..], page_rows.len(), &mut buf)
                    }
                    _ => encoding::rle_run(u32::from(count > 0), page_rows.len(), 1, &mut buf),
                }
                let len = (buf.len() - 4) as u32;
                buf[..4].copy_from_slice(&len.to_le_bytes());
            }
            match &dictionary {
                Some(d) => {
                    let keys = &d.keys[from..from + count];
                    let width = d.width();
                    buf.push(width);
                    encoding::rle_hybrid(keys, width, &mut buf);
                    let bounds =
                        bounds(keys).map(|(lo, hi)| (d.values[lo as usize], d.values[hi as usize]));
                    let nulls = page_rows.len() - count;
                    stats.page(bounds, nulls);
                }
                None => {
                    let page_values = &values[from..from + count];
                    V::encode(page_values, encoding, &mut buf)?;
                    stats.page(V::bounds(page_values), page_rows.len() - count);
                }
            }
            from += count;
            raw.push((PageKind::Data(page_rows.len() as u32), buf));
        }
        let (pages, compression) = self.compressed(raw, rows.len(), zstd)?;
        let mut sink = TrackedWrite::new(Vec::new());
        let mut writer = SerializedPageWriter::new(&mut sink);
        let mut offsets = OffsetIndexBuilder::new();
        let (mut data_page_offset, mut totals) = (None, (0i64, 0i64));
        for PageBytes { kind, buf, raw_len } in pages {
            let page = match kind {
                PageKind::Dictionary(num_values) => Page::DictionaryPage {
                    buf,
                    num_values,
                    encoding: Encoding::PLAIN,
                    is_sorted: false,
                },
                PageKind::Data(num_values) => Page::DataPage {
                    buf,
                    num_values,
                    encoding,
                    def_level_encoding: Encoding::RLE,
                    rep_level_encoding: Encoding::RLE,
                    statistics: None,
                },
            };
            let written = writer.write_page(CompressedPage::new(page, raw_len))?;
            totals.0 += written.compressed_size as i64;
            totals.1 += written.uncompressed_size as i64;
            if let PageKind::Data(num_values) = kind {
                data_page_offset.get_or_insert(written.offset as i64);
                offsets.append_offset_and_size(written.offset as i64, written.bytes_written as i32);
                offsets.append_row_count(i64::from(num_values));
            }
        }
        writer.close()?;
        let bloom_filter = match spec.bloom_fpp {
            Some(fpp) => {
                let fresh;
                let distinct = match dictionary {
                    Some(d) => &d.values,
                    None => {
                        fresh = unrepeated(values);
                        &fresh
                    }
                };
                let mut filter = Sbbf::new_with_ndv_fpp(distinct.len().max(1) as u64, fpp)?;
                for &v in distinct {
                    v.bloom(&mut filter);
                }
                filter.fold_to_target_fpp(fpp);
                Some(filter)
            }
            None => None,
        };
        let mut encodings = vec![encoding];
        if dictionary.is_some() {
            encodings.push(Encoding::PLAIN);
        }
        if descr.max_def_level() > 0 {
            encodings.push(Encoding::RLE);
        }
        let (column_index, statistics) = stats.finish()?;
        let metadata = ColumnChunkMetaData::builder(descr)
            .set_compression(compression)
            .set_encodings(encodings)
            .set_num_values(rows.len() as i64)
            .set_total_compressed_size(totals.0)
            .set_total_uncompressed_size(totals.1)
            .set_data_page_offset(data_page_offset.unwrap_or(0))
            .set_dictionary_page_offset(dictionary.map(|_| 0))
            .set_statistics(statistics)
            .build()?;
        Ok(Encoded {
            bytes: sink.into_inner()?.into(),
            close: ColumnCloseResult {
                bytes_written: totals.0 as u64,
                rows_written: rows.len() as u64,
                metadata,
                bloom_filter,
                column_index: Some(column_index),
                offset_index: Some(offsets.build()),
            },
        })
    }

    /// A chunk's pages compressed with zstd where that pays, with their uncompressed sizes, and
    /// the chunk's codec. zstd pays when it saves at least [`ZSTD_MIN_SAVING`] of the bytes
    /// and [`ZSTD_MIN_SAVING_PER_ROW`] bytes per row (of `rows`); where it does not (random
    /// numbers, few distinct values already in a dictionary, tiny chunks), pages stay
    /// uncompressed, so a reader spends nothing on them either. The first chunk of a column in
    /// a file with at least [`ZSTD_TRIAL_BYTES`] decides for the chunks after it (`zstd`),
    /// which then skip the trial when it did not pay; a chunk of fewer bytes than the saving
    /// asked of it is never tried.
    fn compressed(
        &mut self,
        raw: Vec<(PageKind, Vec<u8>)>,
        rows: usize,
        zstd: &mut Option<bool>,
    ) -> Result<(Vec<PageBytes>, Compression)> {
        let uncompressed = |raw: Vec<(PageKind, Vec<u8>)>| {
            let pages = raw.into_iter().map(|(kind, buf)| PageBytes {
                kind,
                raw_len: buf.len(),
                buf: buf.into(),
            });
            (pages.collect(), Compression::UNCOMPRESSED)
        };
        let before: usize = raw.iter().map(|(_, b)| b.len()).sum();
        // A chunk smaller than the least saving asked of it cannot pay: no trial.
        if *zstd == Some(false) || (before as f64) < rows as f64 * ZSTD_MIN_SAVING_PER_ROW {
            return Ok(uncompressed(raw));
        }
        let packed = raw
            .iter()
            .map(|(_, b)| self.compress(b))
            .collect::<Result<Vec<_>>>()?;
        let after: usize = packed.iter().map(|b| b.len()).sum();
        let saved = before.saturating_sub(after) as f64;
        let pays = saved >= before as f64 * ZSTD_MIN_SAVING
            && saved >= rows as f64 * ZSTD_MIN_SAVING_PER_ROW;
        if before >= ZSTD_TRIAL_BYTES {
            zstd.get_or_insert(pays);
        }
        if !pays {
            return Ok(uncompressed(raw));
        }
        let pages = raw
            .into_iter()
            .zip(packed)
            .map(|((kind, raw), buf)| PageBytes {
                kind,
                buf,
                raw_len: raw.len(),
            })
            .collect();
        Ok((pages, Compression::ZSTD(self.level)))
    }

    fn compress(&mut self, buf: &[u8]) -> Result<bytes::Bytes> {
        self.zstd.compress(buf).map(Into::into).map_err(external)
    }
}

/// A zstd error as a Parquet one.
fn external(e: std::io::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

/// A column's distinct values over all the rows of a file, interned in row order (the order
/// the batch is in memory, so the strings are read front to back once).
struct Interned<V> {
    values: Vec<V>,
    /// Each row's value's index (rows that are null or not in the file: unset).
    key: Vec<u32>,
    /// Each value's place in sorted order (each chunk's dictionary is put in this order).
    rank: Vec<u32>,
    /// Bytes each value takes PLAIN encoded.
    plain_len: Vec<u32>,
    /// The values in sorted order, the PLAIN bytes of them all and the fewest one value takes,
    /// when they are few and small enough for every chunk to carry all of them as its
    /// dictionary (no per-chunk dictionary to cut; a chunk's keys go through `rank`).
    shared: Option<(Vec<V>, usize, usize)>,
}

impl<V: Value> Interned<V> {
    /// The distinct values of `rows` (ascending), or `None` when more than half the rows are
    /// distinct (then no chunk's dictionary can pay).
    fn build(
        rows: &[u32],
        nulls: Option<&NullBuffer>,
        value: &impl Fn(usize) -> V,
    ) -> Option<Self> {
        let len = rows.last().map_or(0, |&r| r as usize + 1);
        let mut key = vec![u32::MAX; len];
        let mut interner = Interner::new(rows.len() / 2 + 1);
        // The usual file holds every row up to its last (`0..len`): its non-null rows are read
        // off the null bitmap a word at a time, not tested one by one.
        let within = match (rows.len() == len, nulls) {
            (true, Some(nulls)) => {
                let valid = nulls.slice(0, len);
                interner.add(valid.valid_indices(), value, &mut key)
            }
            (true, None) => interner.add(0..len, value, &mut key),
            (false, _) => {
                let valid = rows
                    .iter()
                    .map(|&r| r as usize)
                    .filter(|&r| nulls.is_none_or(|n| n.is_valid(r)));
                interner.add(valid, value, &mut key)
            }
        };
        within.then(|| Self::new(interner.values, key))
    }

    /// The distinct values of every row of `parts` (each of `typed` the same array, read by
    /// `get`; `nulls` theirs), interned part by part, or `None` as [`Interned::build`].
    fn from_parts<A: Copy>(
        parts: &[&dyn Array],
        nulls: &[Option<NullBuffer>],
        typed: &[A],
        get: impl Fn(A, usize) -> V,
    ) -> Option<Self> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut key = vec![u32::MAX; len];
        let mut interner = Interner::new(len / 2 + 1);
        let mut at = 0;
        for ((part, nulls), &a) in parts.iter().zip(nulls).zip(typed) {
            let key = &mut key[at..at + part.len()];
            let value = |i| get(a, i);
            let within = match nulls.as_ref().filter(|n| n.null_count() > 0) {
                Some(n) => interner.add(n.valid_indices(), &value, key),
                // A part of one value (a batch of spans of one protocol, agent, ...): that value
                // interned once.
                None if uniform(*part) => {
                    let within = interner.add(0..1, &value, key);
                    let k = key[0];
                    key.fill(k);
                    within
                }
                None => interner.add(0..part.len(), &value, key),
            };
            if !within {
                return None;
            }
            at += part.len();
        }
        Some(Self::new(interner.values, key))
    }

    /// The value of row `r` (the default for a row without one).
    fn value(&self, r: usize) -> V {
        self.values
            .get(self.key[r] as usize)
            .copied()
            .unwrap_or_default()
    }

    /// `values` as interned, with each row's `key`, ready to cut dictionaries from.
    fn new(values: Vec<V>, key: Vec<u32>) -> Self {
        let mut order: Vec<u32> = (0..values.len() as u32).collect();
        order.sort_unstable_by_key(|&k| values[k as usize]);
        let mut rank = vec![0; values.len()];
        for (r, &k) in order.iter().enumerate() {
            rank[k as usize] = r as u32;
        }
        let plain_len: Vec<u32> = values.iter().map(|v| v.plain_len() as u32).collect();
        let bytes = plain_len.iter().map(|&l| l as usize).sum::<usize>();
        let shared = (bytes <= SHARED_DICTIONARY_BYTES).then(|| {
            let sorted = order.iter().map(|&k| values[k as usize]).collect();
            let fewest = plain_len.iter().min().map_or(0, |&l| l as usize);
            (sorted, bytes, fewest)
        });
        Self {
            values,
            key,
            rank,
            plain_len,
            shared,
        }
    }

    /// The dictionary of one chunk whose values have the interned `keys`, values in ascending
    /// order (so a page's least and greatest index are its minimum and maximum), or `None`
    /// when plain values store the chunk smaller. `local` maps interned keys to the chunk's
    /// (all unset between calls).
    fn chunk(&self, keys: Vec<u32>, local: &mut Vec<u32>) -> Option<Dictionary<V>> {
        if let Some((sorted, bytes, fewest)) = &self.shared {
            let (bytes, fewest) = (*bytes, *fewest);
            let mut d = Dictionary {
                values: sorted.clone(),
                keys,
            };
            let bytes = bytes + d.keys.len() * usize::from(d.width()) / 8;
            // The plain values' bytes are summed only when their least possible size does not
            // already exceed the dictionary's.
            let pays = bytes < d.keys.len() * fewest
                || bytes
                    < d.keys
                        .iter()
                        .map(|&k| self.plain_len[k as usize] as usize)
                        .sum();
            if d.keys.is_empty() || !pays {
                return None;
            }
            // Relabelled to sorted order here, on the chunk's keys just gathered, rather than
            // over every row of the file.
            for k in &mut d.keys {
                *k = self.rank[*k as usize];
            }
            return Some(d);
        }
        local.resize(self.values.len(), u32::MAX);
        let (mut used, mut chunk_keys, mut plain) = (Vec::new(), keys, 0usize);
        for &k in &chunk_keys {
            if local[k as usize] == u32::MAX {
                local[k as usize] = 0;
                used.push(k);
            }
            plain += self.plain_len[k as usize] as usize;
        }
        let width = encoding::bit_width(used.len() as u64);
        let dictionary: usize = used
            .iter()
            .map(|&k| self.plain_len[k as usize] as usize)
            .sum::<usize>()
            + chunk_keys.len() * usize::from(width) / 8;
        if used.is_empty() || dictionary >= plain {
            for &k in &used {
                local[k as usize] = u32::MAX;
            }
            return None;
        }
        used.sort_unstable_by_key(|&k| self.rank[k as usize]);
        for (i, &k) in used.iter().enumerate() {
            local[k as usize] = i as u32;
        }
        for k in &mut chunk_keys {
            *k = local[*k as usize];
        }
        for &k in &used {
            local[k as usize] = u32::MAX;
        }
        Some(Dictionary {
            values: used.iter().map(|&k| self.values[k as usize]).collect(),
            keys: chunk_keys,
        })
    }
}

/// Slots of [`Interner`]'s table of recent packed values.
const RECENT_PACKED: usize = 256;

/// Distinct values in the order first seen, interned from one or more runs of rows.
struct Interner<V> {
    /// Values that pack into one number ([`Value::packed`]), by that number: hashed and
    /// compared as integers, without reading bytes twice.
    packed: foldhash::HashMap<u128, u32>,
    /// The other values (byte strings too long to pack).
    ids: foldhash::HashMap<V, u32>,
    values: Vec<V>,
    /// Packed values seen lately and their indexes, each in the slot its bits pick (most
    /// columns have few distinct values: most rows are found here, without a hash table).
    recent: Vec<(u128, u32)>,
    /// The last row's value and index, when it did not pack.
    last: Option<(V, u32)>,
    /// Most distinct values allowed.
    limit: usize,
}

impl<V: Value> Interner<V> {
    /// An empty interner that gives up past `limit` distinct values.
    fn new(limit: usize) -> Self {
        Self {
            packed: foldhash::HashMap::with_capacity_and_hasher(64, Default::default()),
            ids: foldhash::HashMap::default(),
            values: Vec::new(),
            recent: vec![(0, u32::MAX); RECENT_PACKED],
            last: None,
            limit,
        }
    }

    /// Interns the values of `rows`, setting each row's `key`; false (and stops) once more
    /// than the limit are distinct.
    fn add(
        &mut self,
        rows: impl Iterator<Item = usize>,
        value: &impl Fn(usize) -> V,
        key: &mut [u32],
    ) -> bool {
        let (packed, ids, values, limit) = (
            &mut self.packed,
            &mut self.ids,
            &mut self.values,
            self.limit,
        );
        let (recent, mut last) = (&mut self.recent[..RECENT_PACKED], self.last);
        for r in rows {
            let v = value(r);
            let fresh = || {
                values.push(v);
                values.len() as u32 - 1
            };
            let k = match v.packed() {
                Some(p) => {
                    let seen = &mut recent[slot(p as u64 ^ (p >> 64) as u64, RECENT_PACKED)];
                    match *seen {
                        (l, k) if l == p && k != u32::MAX => k,
                        _ => {
                            let k = *packed.entry(p).or_insert_with(fresh);
                            *seen = (p, k);
                            k
                        }
                    }
                }
                None => match last {
                    Some((l, k)) if V::same(l, v) => k,
                    _ => {
                        let k = *ids.entry(v).or_insert_with(fresh);
                        last = Some((v, k));
                        k
                    }
                },
            };
            if values.len() > limit {
                return false;
            }
            key[r] = k;
        }
        self.last = last;
        true
    }
}

/// Whether every row of `part` holds the same value, none null, read off its buffers at memory
/// speed: fixed-width values repeat with the period of one value; byte strings' offsets step
/// evenly and their bytes repeat with the period of one string.
fn uniform(part: &dyn Array) -> bool {
    let data = part.to_data();
    let len = data.len();
    if len == 0 || data.null_count() > 0 {
        return false;
    }
    let periodic = |bytes: &[u8], period: usize| {
        period == 0 || (period <= bytes.len() && bytes[period..] == bytes[..bytes.len() - period])
    };
    match data.data_type() {
        DataType::Utf8 | DataType::Binary => {
            let offsets = &data.buffer::<i32>(0)[..=len];
            let (first, step) = (offsets[0], offsets[1] - offsets[0]);
            // Every offset checked (no early exit), so the loop is vectorized.
            let even = offsets.iter().zip(0..).fold(true, |even, (&o, i)| {
                even & (o == first.wrapping_add(step.wrapping_mul(i)))
            });
            even && periodic(
                &data.buffers()[1][first as usize..offsets[len] as usize],
                step as usize,
            )
        }
        other => other.primitive_width().is_some_and(|w| {
            let at = data.offset() * w;
            periodic(&data.buffers()[0][at..at + len * w], w)
        }),
    }
}

/// The null bitmap of `parts` end to end (`nulls` theirs), if any row is null.
fn joined_nulls(parts: &[&dyn Array], nulls: &[Option<NullBuffer>]) -> Option<NullBuffer> {
    if nulls.iter().flatten().all(|n| n.null_count() == 0) {
        return None;
    }
    let mut bits = BooleanBufferBuilder::new(parts.iter().map(|p| p.len()).sum());
    for (part, nulls) in parts.iter().zip(nulls) {
        match nulls {
            Some(n) => bits.append_buffer(n.inner()),
            None => bits.append_n(part.len(), true),
        }
    }
    Some(NullBuffer::new(bits.finish()))
}

/// `f` of each non-null row of `rows`, in order, and (where `nulls` has any) which of `rows`
/// hold a value, as bits in their order: the definition levels, read off the null bitmap in
/// the same pass. Every row is read and the nulls are dropped by not advancing past them, not
/// by a branch per row (nulls come in no predictable pattern).
fn non_null<T: Copy + Default>(
    rows: &[u32],
    nulls: Option<&NullBuffer>,
    f: impl Fn(usize) -> T,
) -> (Vec<T>, Option<BooleanBuffer>) {
    let Some(nulls) = nulls else {
        return (rows.iter().map(|&r| f(r as usize)).collect(), None);
    };
    let mut out = vec![T::default(); rows.len()];
    let mut words = Vec::with_capacity(rows.len().div_ceil(64));
    let mut n = 0;
    for run in rows.chunks(64) {
        let mut word = 0u64;
        for (i, &r) in run.iter().enumerate() {
            out[n] = f(r as usize);
            let valid = nulls.is_valid(r as usize);
            word |= u64::from(valid) << i;
            n += usize::from(valid);
        }
        words.push(word);
    }
    out.truncate(n);
    let valid = BooleanBuffer::new(Buffer::from_vec(words), 0, rows.len());
    (out, Some(valid))
}

/// The slot of a table of `slots` (a power of two) that `bits` pick: their top bits after a
/// multiply by the golden ratio, so values alike in their low bits still spread.
fn slot(bits: u64, slots: usize) -> usize {
    (bits.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - slots.trailing_zeros())) as usize
}

/// Slots of [`unrepeated`]'s table of recent values.
const RECENT_SLOTS: usize = 4096;

/// `values` without those equal to one seen recently (a table of [`RECENT_SLOTS`] values,
/// each in the slot its bits pick): a key repeats within a few hundred rows of a file (one
/// hop seen at several points, side by side in the file's order; one X-Request-ID in every
/// span of a trace), and inserting it into a bloom filter again costs a random access into the
/// filter for nothing.
fn unrepeated<V: Value>(values: &[V]) -> Vec<V> {
    let mut recent: Vec<Option<V>> = vec![None; RECENT_SLOTS];
    let mut out = Vec::with_capacity(values.len());
    for &v in values {
        let at = slot(v.bits(), RECENT_SLOTS);
        if recent[at].is_none_or(|r| !V::same(r, v)) {
            recent[at] = Some(v);
            out.push(v);
        }
    }
    out
}

/// The least and the greatest of `values`, both in one pass (for integers one the compiler
/// vectorizes; `Iterator::min` and `max` over references are two passes it does not).
fn bounds<T: Copy + Ord>(values: &[T]) -> Option<(T, T)> {
    let (&first, rest) = values.split_first()?;
    Some(
        rest.iter()
            .fold((first, first), |(lo, hi), &v| (lo.min(v), hi.max(v))),
    )
}

/// A page as it is written: its kind, its bytes and their size uncompressed.
struct PageBytes {
    kind: PageKind,
    buf: bytes::Bytes,
    raw_len: usize,
}

/// A chunk's non-null values: plain, in row order, or as a dictionary.
enum Content<V> {
    Plain(Vec<V>),
    Dictionary(Dictionary<V>),
}

/// A page before compression: a dictionary page of so many values, or a data page of so many
/// rows.
#[derive(Debug, Clone, Copy)]
enum PageKind {
    Dictionary(u32),
    Data(u32),
}

/// One chunk's dictionary: its distinct values, ascending, and each value's index into them.
struct Dictionary<V> {
    values: Vec<V>,
    keys: Vec<u32>,
}

impl<V> Dictionary<V> {
    /// Bits per index.
    fn width(&self) -> u8 {
        encoding::bit_width(self.values.len() as u64 - 1)
    }
}

/// Minima, maxima and null counts page by page, and over the chunk.
struct PageStats<V> {
    index: ColumnIndexBuilder,
    min: Option<V>,
    max: Option<V>,
    nulls: u64,
    ascending: bool,
    descending: bool,
    last: Option<(V, V)>,
}

impl<V: Value> PageStats<V> {
    fn new(physical: Type) -> Self {
        Self {
            index: ColumnIndexBuilder::new(physical),
            min: None,
            max: None,
            nulls: 0,
            ascending: true,
            descending: true,
            last: None,
        }
    }

    fn page(&mut self, bounds: Option<(V, V)>, nulls: usize) {
        self.nulls += nulls as u64;
        match bounds {
            Some((min, max)) => {
                if let Some((lmin, lmax)) = self.last {
                    self.ascending &= lmin <= min && lmax <= max;
                    self.descending &= lmin >= min && lmax >= max;
                }
                self.last = Some((min, max));
                self.min = Some(self.min.map_or(min, |m| m.min(min)));
                self.max = Some(self.max.map_or(max, |m| m.max(max)));
                self.index
                    .append(false, min.stat_bytes(), max.stat_bytes(), nulls as i64);
            }
            None => self
                .index
                .append(true, Vec::new(), Vec::new(), nulls as i64),
        }
    }

    fn finish(mut self) -> Result<(ColumnIndexMetaData, Statistics)> {
        self.index
            .set_boundary_order(match (self.ascending, self.descending) {
                (true, _) => BoundaryOrder::ASCENDING,
                (false, true) => BoundaryOrder::DESCENDING,
                (false, false) => BoundaryOrder::UNORDERED,
            });
        Ok((
            self.index.build()?,
            V::statistics(self.min, self.max, self.nulls),
        ))
    }
}

/// A value of a Parquet physical type as the chunk encoder handles it.
trait Value: Copy + Ord + Hash + Default {
    /// Its physical type.
    const TYPE: Type;
    /// Bytes it takes PLAIN encoded.
    fn plain_len(self) -> usize;
    /// Appends `values` PLAIN encoded.
    fn plain(values: &[Self], out: &mut Vec<u8>);
    /// Appends `values` in `encoding` (any but a dictionary).
    fn encode(values: &[Self], encoding: Encoding, out: &mut Vec<u8>) -> Result<()>;
    /// Its bytes in statistics and the page index.
    fn stat_bytes(self) -> Vec<u8>;
    /// Adds it to a bloom filter.
    fn bloom(self, filter: &mut Sbbf);
    /// 64 of its bits, cheap to read (equal values give equal bits).
    fn bits(self) -> u64;
    /// The value as one number, equal for equal values and distinct for distinct ones, where
    /// it fits in 128 bits (every fixed-width value; byte strings of at most 15 bytes).
    fn packed(self) -> Option<u128>;
    /// Chunk statistics.
    fn statistics(min: Option<Self>, max: Option<Self>, nulls: u64) -> Statistics;
    /// The least and the greatest of `values`.
    fn bounds(values: &[Self]) -> Option<(Self, Self)> {
        bounds(values)
    }
    /// Whether two values are equal (for byte strings, without a `memcmp` call: glibc's
    /// AVX-512 `memcmp` costs ~100 ns when handed the dangling pointer of an empty slice).
    fn same(a: Self, b: Self) -> bool {
        a == b
    }
}

fn unsupported(encoding: Encoding, physical: Type) -> ParquetError {
    ParquetError::NYI(format!("{encoding} for {physical}"))
}

macro_rules! fixed_value {
    ($t:ty, $physical:expr, $stat:ident, $as:ty, $wide:ty) => {
        impl Value for $t {
            const TYPE: Type = $physical;
            fn plain_len(self) -> usize {
                <$t as LeBytes>::WIDTH
            }
            fn plain(values: &[Self], out: &mut Vec<u8>) {
                encoding::plain(values, out)
            }
            fn encode(values: &[Self], e: Encoding, out: &mut Vec<u8>) -> Result<()> {
                match e {
                    Encoding::PLAIN => encoding::plain(values, out),
                    Encoding::BYTE_STREAM_SPLIT => encoding::byte_stream_split(values, out),
                    Encoding::DELTA_BINARY_PACKED => {
                        let wide: Vec<i64> = values.iter().map(|&v| v as $wide as i64).collect();
                        encoding::delta_binary_packed(&wide, out)
                    }
                    _ => return Err(unsupported(e, Self::TYPE)),
                }
                Ok(())
            }
            fn stat_bytes(self) -> Vec<u8> {
                self.to_le_bytes().to_vec()
            }
            fn bloom(self, filter: &mut Sbbf) {
                filter.insert(&(self as $as));
            }
            fn bits(self) -> u64 {
                self as u64
            }
            fn packed(self) -> Option<u128> {
                Some(self as u128)
            }
            fn statistics(min: Option<Self>, max: Option<Self>, nulls: u64) -> Statistics {
                Statistics::$stat(
                    min.map(|v| v as $as),
                    max.map(|v| v as $as),
                    None,
                    Some(nulls),
                    false,
                )
            }
        }
    };
}
fixed_value!(i32, Type::INT32, int32, i32, i32);
fixed_value!(u32, Type::INT32, int32, i32, i32);
fixed_value!(i64, Type::INT64, int64, i64, i64);

impl Value for &[u8] {
    const TYPE: Type = Type::BYTE_ARRAY;
    fn same(a: Self, b: Self) -> bool {
        a.len() == b.len() && (a.is_empty() || a == b)
    }
    fn plain_len(self) -> usize {
        4 + self.len()
    }
    fn bounds(values: &[Self]) -> Option<(Self, Self)> {
        // Compared by their first 8 bytes as one big-endian number (one comparison of
        // integers, no `memcmp` call), by all their bytes only where those tie or a value is
        // shorter.
        let head = |v: &[u8]| {
            v.get(..8)
                .map(|h| u64::from_be_bytes(h.try_into().unwrap_or_default()))
        };
        type Headed<'a> = (&'a [u8], Option<u64>);
        let order = |(a, ha): Headed, (b, hb): Headed| match (ha, hb) {
            (Some(x), Some(y)) if x != y => x.cmp(&y),
            _ => a.cmp(b),
        };
        let (&first, rest) = values.split_first()?;
        let (mut least, mut greatest) = ((first, head(first)), (first, head(first)));
        for &v in rest {
            let this = (v, head(v));
            if order(this, least).is_lt() {
                least = this;
            }
            if order(this, greatest).is_gt() {
                greatest = this;
            }
        }
        Some((least.0, greatest.0))
    }
    fn packed(self) -> Option<u128> {
        // Read by whole words, never stored and reloaded (a store of a few bytes read back as
        // a word stalls the load for ~15 cycles): the first word and the last one, shifted
        // past the bytes it shares with the first, the length in the top byte.
        let len = self.len();
        let word = |at: usize| u64::from_le_bytes(self[at..at + 8].try_into().unwrap_or_default());
        let half = |at: usize| {
            u64::from(u32::from_le_bytes(
                self[at..at + 4].try_into().unwrap_or_default(),
            ))
        };
        let (low, high) = match len {
            0 => (0, 0),
            1..=3 => {
                let b = |i: usize| u64::from(self[i]);
                (b(0) | b(len / 2) << 8 | b(len - 1) << 16, 0)
            }
            4..=7 => (half(0) | (half(len - 4) >> (8 * (8 - len))) << 32, 0),
            8..=15 => (
                word(0),
                word(len - 8)
                    .checked_shr(8 * (16 - len) as u32)
                    .unwrap_or(0),
            ),
            _ => return None,
        };
        Some(u128::from(low) | u128::from(high | (len as u64) << 56) << 64)
    }
    fn plain(values: &[Self], out: &mut Vec<u8>) {
        encoding::plain_bytes(values.iter().copied(), out)
    }
    fn encode(values: &[Self], e: Encoding, out: &mut Vec<u8>) -> Result<()> {
        match e {
            Encoding::PLAIN => encoding::plain_bytes(values.iter().copied(), out),
            Encoding::DELTA_LENGTH_BYTE_ARRAY => encoding::delta_length_bytes(values, out),
            _ => return Err(unsupported(e, Self::TYPE)),
        }
        Ok(())
    }
    fn stat_bytes(self) -> Vec<u8> {
        self.to_vec()
    }
    fn bloom(self, filter: &mut Sbbf) {
        filter.insert(self);
    }
    fn bits(self) -> u64 {
        // The last 8 bytes (ids differ at their ends as much as anywhere), else the length.
        match self.len().checked_sub(8) {
            Some(at) => u64::from_le_bytes(self[at..].try_into().unwrap_or_default()),
            None => self.len() as u64,
        }
    }
    fn statistics(min: Option<Self>, max: Option<Self>, nulls: u64) -> Statistics {
        let bytes = |v: Option<&[u8]>| v.map(|v| ByteArray::from(v.to_vec()));
        Statistics::byte_array(bytes(min), bytes(max), None, Some(nulls), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every distinct value survives (so a bloom filter built from what is left holds them
    /// all), in order of first appearance, and a value just seen is not repeated.
    #[test]
    fn unrepeated_keeps_every_distinct_value_and_drops_recent_repeats() {
        // 10 000 distinct numbers, each seen 4 times within a few rows; many share a slot.
        let values: Vec<u32> = (0..40_000u32)
            .map(|i| (i / 4 + (i % 4) * 3).wrapping_mul(2_654_435_761))
            .collect();
        let kept = unrepeated(&values);
        let distinct: std::collections::BTreeSet<u32> = values.iter().copied().collect();
        assert_eq!(
            kept.iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>(),
            distinct
        );
        assert!(
            kept.len() < values.len() / 2,
            "{} of {} kept",
            kept.len(),
            values.len()
        );
        assert!(kept.windows(2).all(|w| w[0] != w[1]));

        // Byte strings: short ones share their length's slot ("a" and "b" push each other out),
        // long ones take their last 8 bytes'.
        let strings = [
            "",
            "a",
            "b",
            "a",
            "",
            "x-request-00000001",
            "x-request-00000001",
        ];
        let bytes: Vec<&[u8]> = strings.iter().map(|s| s.as_bytes()).collect();
        assert_eq!(
            unrepeated(&bytes),
            ["", "a", "b", "a", "x-request-00000001"].map(str::as_bytes)
        );
    }

    /// Packing is one to one: no two distinct short strings pack alike, and a string of 16
    /// bytes or more does not pack.
    #[test]
    fn packed_byte_strings_are_distinct_for_distinct_strings() {
        let mut seen = std::collections::HashMap::new();
        let mut strings: Vec<Vec<u8>> = Vec::new();
        // Every string of up to 6 bytes over a few bytes, and longer ones that differ in one
        // byte at every place (the places the packing's words overlap included).
        for len in 0..=6u32 {
            for n in 0..3usize.pow(len) {
                let s = (0..len)
                    .map(|i| [0, 1, 255][n / 3usize.pow(i) % 3])
                    .collect();
                strings.push(s);
            }
        }
        for len in 7..=15 {
            for at in 0..len {
                for b in [0, 1, 255] {
                    let mut s = vec![7u8; len];
                    s[at] = b;
                    strings.push(s);
                }
            }
        }
        for s in &strings {
            let p = s.as_slice().packed().expect("short strings pack");
            if let Some(other) = seen.insert(p, s.clone()) {
                assert_eq!(&other, s, "two strings packed alike");
            }
        }
        assert_eq!(
            seen.len(),
            strings
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len()
        );
        assert_eq!([0u8; 16].as_slice().packed(), None);
    }

    /// Byte strings' bounds by their first word, then their bytes, are those of plain
    /// lexicographic order, whatever the order the values come in.
    #[test]
    fn byte_string_bounds_are_the_least_and_greatest() {
        let words: [&[u8]; 9] = [
            b"abcdefghij",
            b"abcdefgh",
            b"abcdefg",
            b"abcdefghi",
            b"",
            b"zz",
            b"abcdefgz",
            b"\xffabcdefgh",
            b"abcdefghia",
        ];
        // Every rotation, so each value is met first, last and in between.
        for turn in 0..words.len() {
            let mut values = words.to_vec();
            values.rotate_left(turn);
            let expected = (*values.iter().min().unwrap(), *values.iter().max().unwrap());
            assert_eq!(<&[u8]>::bounds(&values), Some(expected));
            assert_eq!(<&[u8]>::bounds(&values[..1]), Some((values[0], values[0])));
        }
        assert_eq!(<&[u8]>::bounds(&[]), None);
    }

    /// A part is uniform only when every row holds the same value and none is null, for
    /// fixed-width values and byte strings alike, sliced or not.
    #[test]
    fn uniform_parts_are_one_value_without_nulls() {
        use arrow::array::{BinaryArray, Int32Array, Int64Array, StringArray};
        assert!(uniform(&Int32Array::from(vec![7; 100])));
        assert!(!uniform(&Int32Array::from(vec![7, 7, 7, 8])));
        assert!(!uniform(&Int32Array::from(vec![Some(7), None, Some(7)])));
        assert!(!uniform(&Int32Array::from(Vec::<i32>::new())));
        // Sliced: only the rows in the slice count.
        let mixed = Int64Array::from(vec![1, 2, 2, 2, 3]);
        assert!(uniform(&mixed.slice(1, 3)));
        assert!(!uniform(&mixed.slice(0, 3)));

        assert!(uniform(&StringArray::from(vec!["c-p"; 50])));
        assert!(uniform(&StringArray::from(vec![""; 50])));
        assert!(!uniform(&StringArray::from(vec!["c-p", "s-p", "c-p"])));
        // Same lengths, bytes repeating with another period than one string's.
        assert!(!uniform(&StringArray::from(vec!["abab", "abab", "baba"])));
        // Bytes repeating, lengths not even.
        assert!(!uniform(&StringArray::from(vec!["ab", "abab", "ab"])));
        assert!(!uniform(&StringArray::from(vec![
            Some("a"),
            None,
            Some("a")
        ])));
        let strings = StringArray::from(vec!["x", "tcp", "tcp", "tcp", "y"]);
        assert!(uniform(&strings.slice(1, 3)));
        assert!(!uniform(&strings.slice(0, 2)));
        assert!(uniform(&BinaryArray::from(vec![&b"\x00\x01"[..]; 9])));
    }
}
