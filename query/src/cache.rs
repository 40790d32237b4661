//! The Parquet metadata cache (footers, with page indexes once read): least recently used
//! entries go first (the `lru` crate) once the entries together pass a byte budget; hits and
//! misses are counted for the `cache_counters` table.

use std::{
    fmt,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use datafusion::{
    common::{HashMap, TableReference},
    error::Result,
    execution::cache::{Cache, CacheEntryInfo, CacheValue, cache_manager::CachedFileMetadataEntry},
    object_store::path::Path,
};
use lru::LruCache;

use crate::stats::CounterSource;

/// Bytes of Parquet metadata kept by default.
pub const METADATA_CACHE_BYTES: usize = 64 << 20;

/// An LRU whose entries together stay under a byte budget (each entry's size given on put).
pub(crate) struct ByteLru<K: std::hash::Hash + Eq, V> {
    lru: LruCache<K, (V, usize)>,
    bytes: usize,
    limit: usize,
}

impl<K: std::hash::Hash + Eq, V> ByteLru<K, V> {
    /// Empty, holding at most `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            lru: LruCache::unbounded(),
            bytes: 0,
            limit,
        }
    }

    /// The entry for `key`, now the most recently used.
    pub(crate) fn get(&mut self, key: &K) -> Option<&V> {
        self.lru.get(key).map(|(v, _)| v)
    }

    /// Whether `key` has an entry (without making it the most recently used).
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.lru.contains(key)
    }

    /// Adds an entry of `size` bytes (one over the whole budget is not kept), evicting the
    /// least recently used past the budget; returns the entry it replaced.
    pub(crate) fn put(&mut self, key: K, value: V, size: usize) -> Option<V> {
        if size > self.limit {
            return None;
        }
        self.bytes += size;
        let old = self.lru.put(key, (value, size)).map(|(v, n)| {
            self.bytes -= n;
            v
        });
        self.evict_to_limit();
        old
    }

    /// Removes `key`'s entry.
    pub(crate) fn pop(&mut self, key: &K) -> Option<V> {
        self.lru.pop(key).map(|(v, n)| {
            self.bytes -= n;
            v
        })
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.lru.len()
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The budget.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Changes the budget, evicting past it.
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
        self.evict_to_limit();
    }

    /// Drops every entry.
    pub(crate) fn clear(&mut self) {
        self.lru.clear();
        self.bytes = 0;
    }

    fn evict_to_limit(&mut self) {
        while self.bytes > self.limit {
            match self.lru.pop_lru() {
                Some((_, (_, n))) => self.bytes -= n,
                None => break,
            }
        }
    }
}

/// What a cache counts, as `cache_counters` rows.
pub(crate) struct CacheCounts {
    /// Lookups answered from the cache.
    pub(crate) hits: u64,
    /// Lookups that had to read.
    pub(crate) misses: u64,
    /// Entries held.
    pub(crate) entries: u64,
    /// Bytes held.
    pub(crate) bytes: u64,
    /// The byte budget.
    pub(crate) limit: u64,
}

impl CacheCounts {
    /// The counters as rows, named and described by `names` (hits, misses, entries, bytes,
    /// budget, in that order).
    pub(crate) fn rows(
        &self,
        names: [(&'static str, &'static str); 5],
    ) -> Vec<(&'static str, u64, &'static str)> {
        let values = [self.hits, self.misses, self.entries, self.bytes, self.limit];
        names
            .into_iter()
            .zip(values)
            .map(|((name, doc), v)| (name, v, doc))
            .collect()
    }
}

/// A byte-bounded LRU of Parquet file metadata, shared by every query of a session.
pub struct MetadataCache {
    entries: Mutex<ByteLru<Path, CachedFileMetadataEntry>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl fmt::Debug for MetadataCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataCache")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl MetadataCache {
    /// An empty cache holding at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            entries: Mutex::new(ByteLru::new(limit)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn entries(&self) -> MutexGuard<'_, ByteLru<Path, CachedFileMetadataEntry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Its counters, as a `cache_counters` table shows them.
    pub fn counters(self: &std::sync::Arc<Self>) -> CounterSource {
        let cache = std::sync::Arc::clone(self);
        std::sync::Arc::new(move || {
            let (len, bytes, limit) = {
                let e = cache.entries();
                (e.len() as u64, e.bytes() as u64, e.limit() as u64)
            };
            CacheCounts {
                hits: cache.hits.load(Ordering::Relaxed),
                misses: cache.misses.load(Ordering::Relaxed),
                entries: len,
                bytes,
                limit,
            }
            .rows([
                ("metadata_cache_hits", "Parquet footers found in the cache"),
                ("metadata_cache_misses", "Parquet footers read from disk"),
                ("metadata_cache_entries", "files whose metadata is cached"),
                ("metadata_cache_bytes", "bytes the cached metadata takes"),
                ("metadata_cache_limit_bytes", "the cache's byte budget"),
            ])
        })
    }
}

impl Cache<Path, CachedFileMetadataEntry> for MetadataCache {
    fn get(&self, key: &Path) -> Option<CachedFileMetadataEntry> {
        let found = self.entries().get(key).cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn put(&self, key: &Path, value: CachedFileMetadataEntry) -> Option<CachedFileMetadataEntry> {
        let size = value.size();
        self.entries().put(key.clone(), value, size)
    }

    fn remove(&self, key: &Path) -> Option<CachedFileMetadataEntry> {
        self.entries().pop(key)
    }

    fn contains_key(&self, key: &Path) -> bool {
        self.entries().contains(key)
    }

    fn len(&self) -> usize {
        self.entries().len()
    }

    fn clear(&self) {
        self.entries().clear();
    }

    fn name(&self) -> String {
        "wiretrace-metadata-lru".into()
    }

    fn cache_limit(&self) -> usize {
        self.entries().limit()
    }

    fn update_cache_limit(&self, limit: usize) {
        self.entries().set_limit(limit);
    }

    fn cache_ttl(&self) -> Option<Duration> {
        None
    }

    fn update_cache_ttl(&self, _ttl: Option<Duration>) {}

    /// Entries are keyed by file, not by table: nothing to drop per table.
    fn drop_table_entries(&self, _table_ref: &TableReference) -> Result<()> {
        Ok(())
    }

    fn list_entries(&self) -> HashMap<Path, CacheEntryInfo<CachedFileMetadataEntry>> {
        self.entries()
            .lru
            .iter()
            .map(|(k, (v, _))| {
                let info = CacheEntryInfo {
                    value: v.clone(),
                    size_bytes: v.size(),
                    hits: 0,
                    expires: None,
                };
                (k.clone(), info)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::{any::Any, sync::Arc};

    use datafusion::{execution::cache::cache_manager::FileMetadata, object_store::ObjectMeta};

    use super::*;

    /// Metadata of a made-up size.
    struct Sized(usize);

    impl FileMetadata for Sized {
        fn as_any(&self) -> &dyn Any {
            self
        }
        fn memory_size(&self) -> usize {
            self.0
        }
        fn extra_info(&self) -> HashMap<String, String> {
            HashMap::new()
        }
    }

    fn entry(path: &str, size: usize) -> (Path, CachedFileMetadataEntry) {
        let meta = ObjectMeta {
            location: Path::from(path),
            last_modified: Default::default(),
            size: 1,
            e_tag: None,
            version: None,
        };
        (
            Path::from(path),
            CachedFileMetadataEntry::new(meta, Arc::new(Sized(size))),
        )
    }

    #[test]
    fn evicts_the_least_recently_used_past_the_byte_budget_and_counts() {
        let cache = Arc::new(MetadataCache::new(100));
        for (name, size) in [("a", 40), ("b", 40)] {
            let (k, v) = entry(name, size);
            cache.put(&k, v);
        }
        assert!(
            cache.get(&Path::from("a")).is_some(),
            "a is now the most recent"
        );
        let (k, v) = entry("c", 40);
        cache.put(&k, v);
        assert!(
            !cache.contains_key(&Path::from("b")),
            "b was least recently used"
        );
        assert!(cache.contains_key(&Path::from("a")) && cache.contains_key(&Path::from("c")));
        assert!(cache.get(&Path::from("b")).is_none());
        let (k, v) = entry("huge", 500);
        cache.put(&k, v);
        assert_eq!(cache.len(), 2, "an entry over the whole budget is not kept");
        let counters: HashMap<_, _> = (cache.counters())()
            .into_iter()
            .map(|(name, value, _)| (name, value))
            .collect();
        assert_eq!(counters["metadata_cache_hits"], 1);
        assert_eq!(counters["metadata_cache_misses"], 1);
        assert_eq!(counters["metadata_cache_bytes"], 80);
    }
}
