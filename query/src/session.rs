//! The DataFusion session: wiretrace's tables, the Postgres catalog, and the functions
//! Postgres clients expect.

use std::{path::Path, sync::Arc};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::{
    datasource::{
        file_format::parquet::ParquetFormat,
        listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl},
    },
    error::DataFusionError,
    execution::{
        cache::cache_manager::CacheManagerConfig, object_store::ObjectStoreUrl,
        runtime_env::RuntimeEnvBuilder,
    },
    prelude::{SessionConfig, SessionContext},
};
use datafusion_postgres::{
    datafusion_pg_catalog::pg_catalog::{context::EmptyContextProvider, setup_pg_catalog},
    datafusion_pg_functions,
};
use wiretrace_storage::{Store, paths, schema::tables};

use crate::{
    buffered::BufferedTable,
    cache::{METADATA_CACHE_BYTES, MetadataCache},
    error::QueryError,
    files::DataDirFiles,
    stats::{CounterSource, StatsTable},
    trace::{KeyIndex, index::KEY_INDEX_BYTES},
};

/// Memory all running queries may use together, by default, before one fails with a
/// resources error.
pub const QUERY_MEMORY_LIMIT: usize = 4 << 30;

/// Catalog name clients see as the database.
pub const CATALOG: &str = "wiretrace";

/// A session over the data dir: `l7_flow_log`, `l4_flow_log`, pg_catalog and information_schema.
pub async fn session(data_dir: &Path) -> Result<SessionContext, QueryError> {
    session_with(data_dir, QUERY_MEMORY_LIMIT, None).await
}

/// [`session`] whose queries together may use at most `memory_limit` bytes (past it, the query
/// asking for more fails with a resources-exhausted error instead of growing), and whose tables
/// include the rows `store` has not flushed yet.
pub async fn session_with(
    data_dir: &Path,
    memory_limit: usize,
    store: Option<Arc<Store>>,
) -> Result<SessionContext, QueryError> {
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, "public")
        .with_information_schema(true);
    let metadata = Arc::new(MetadataCache::new(METADATA_CACHE_BYTES));
    // New Parquet files appear every flush: never cache directory listings.
    let caches = CacheManagerConfig::default()
        .with_list_files_cache_limit(0)
        .with_file_metadata_cache(Some(Arc::clone(&metadata) as _))
        .with_metadata_cache_limit(METADATA_CACHE_BYTES);
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(caches)
        .with_memory_limit(memory_limit, 1.0)
        .build_arc()?;
    std::fs::create_dir_all(data_dir).map_err(|source| QueryError::Io {
        op: format!("creating {}", data_dir.display()),
        source,
    })?;
    let canonical = std::fs::canonicalize(data_dir).map_err(|source| QueryError::Io {
        op: format!("resolving {}", data_dir.display()),
        source,
    })?;
    let files = DataDirFiles::new(&canonical).map_err(DataFusionError::from)?;
    runtime.register_object_store(ObjectStoreUrl::local_filesystem().as_ref(), Arc::new(files));
    let mut ctx = SessionContext::new_with_config_rt(config, runtime);
    for (name, schema, _) in tables() {
        register_table(&ctx, &canonical, name, schema, store.as_ref())?;
    }
    let index = Arc::new(KeyIndex::new(&canonical, store, KEY_INDEX_BYTES));
    let dir = data_dir.to_path_buf();
    register_stats(
        &ctx,
        "storage_partitions",
        StatsTable::partitions(dir.clone()),
    )?;
    register_stats(&ctx, "storage_quarantine", StatsTable::quarantine(dir))?;
    let (footers, keys) = (metadata.counters(), index.counters());
    let counters: CounterSource = Arc::new(move || {
        let mut all = footers();
        all.extend(keys());
        all
    });
    register_stats(&ctx, "cache_counters", StatsTable::new(counters))?;
    setup_pg_catalog(&ctx, CATALOG, EmptyContextProvider)
        .map_err(|e| QueryError::Catalog(e.to_string()))?;
    datafusion_pg_functions::register_all(&mut ctx);
    crate::udf::register_all(&ctx);
    crate::trace::register_all(&ctx, &index);
    Ok(ctx)
}

/// Registers table `name` over its Parquet files under the canonical `data_dir` (all
/// partitions) and, with a store, its buffered rows.
fn register_table(
    ctx: &SessionContext,
    data_dir: &Path,
    name: &str,
    schema: SchemaRef,
    store: Option<&Arc<Store>>,
) -> Result<(), QueryError> {
    let dir = paths::table_dir(data_dir, name);
    std::fs::create_dir_all(&dir).map_err(|source| QueryError::Io {
        op: format!("creating {}", dir.display()),
        source,
    })?;
    let url = ListingTableUrl::parse(format!("{}/", dir.display()))?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    let files = Arc::new(ListingTable::try_new(config)?);
    match store {
        Some(store) => ctx.register_table(
            name,
            Arc::new(BufferedTable::new(files, Arc::clone(store), name)),
        )?,
        None => ctx.register_table(name, files)?,
    };
    Ok(())
}

/// Registers a live counters table (e.g. the agent's) under `name`.
pub fn register_stats(
    ctx: &SessionContext,
    name: &str,
    table: StatsTable,
) -> Result<(), QueryError> {
    ctx.register_table(name, Arc::new(table))?;
    Ok(())
}
