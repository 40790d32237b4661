//! Capture and SQL serving running together in this process: the eBPF agent and packet
//! captures feed the Parquet writers while the Postgres wire server answers queries.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use wiretrace_ingest::{
    Agent, AgentConfig, IngestError, TableBatch, capture::CaptureRule, loader::ProbeOptions,
};
use wiretrace_query::{
    Access, QueryError, SessionContext, SqlServer, StatsTable,
    session::{register_stats, session_with},
};
use wiretrace_storage::{Store, StoreOptions};

/// What to capture and how.
pub(crate) struct LiveConfig<'a> {
    /// Where spans are stored.
    pub(crate) data_dir: &'a Path,
    /// Address of the Postgres wire server.
    pub(crate) listen: &'a str,
    /// Who may connect to it.
    pub(crate) access: Access,
    /// Memory all running queries may use together (bytes).
    pub(crate) query_memory: usize,
    /// Write-ahead log and flush settings.
    pub(crate) store: StoreOptions,
    /// Payload bytes copied per socket syscall.
    pub(crate) payload_limit: u32,
    /// How often captured spans are written to Parquet (ms).
    pub(crate) flush_ms: u64,
    /// Interfaces to capture packets on (empty: none).
    pub(crate) rules: Vec<CaptureRule>,
    /// Bytes kept per captured frame.
    pub(crate) snaplen: u32,
    /// Capture ring per interface, MiB.
    pub(crate) ring_mib: usize,
}

/// One blocking step on the store.
type StoreJob = Box<dyn FnOnce(&Store) -> wiretrace_storage::Result<()> + Send>;

/// Appends captured batches to the store (logged, then queryable) and flushes it to Parquet by
/// size and age; flushes what is left when the channel closes.
async fn write_loop(store: Arc<Store>, mut rx: mpsc::Receiver<TableBatch>) {
    let blocking = |f: StoreJob| {
        let store = Arc::clone(&store);
        async move {
            match tokio::task::spawn_blocking(move || f(&store)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "storing spans failed"),
                Err(e) => tracing::error!(error = %e, "storage task failed"),
            }
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Some(TableBatch { table, batch }) => {
                    blocking(Box::new(move |s| s.append(table, batch))).await;
                }
                None => break,
            },
            _ = tick.tick() => {}
        }
        let due = store.tick().unwrap_or_else(|e| {
            tracing::error!(error = %e, "syncing the write-ahead log failed");
            false
        });
        if due {
            blocking(Box::new(|s| s.flush().map(|_| ()))).await;
        }
    }
    blocking(Box::new(|s| s.flush().map(|_| ()))).await;
}

/// The store's counters as `store_counters` rows.
fn store_counters(store: &Store) -> Vec<(&'static str, u64, &'static str)> {
    let s = store.stats();
    vec![
        (
            "buffered_rows",
            s.buffered_rows,
            "rows logged, queryable, not yet in Parquet",
        ),
        ("buffered_bytes", s.buffered_bytes, "memory those rows take"),
        (
            "wal_bytes",
            s.wal_bytes,
            "bytes of the write-ahead log on disk",
        ),
        ("flushes", s.flushes, "flushes to Parquet since start"),
        (
            "flushed_rows",
            s.flushed_rows,
            "rows written to Parquet since start",
        ),
        (
            "refused_rows",
            s.refused_rows,
            "rows dropped because the buffer was full",
        ),
        (
            "compactions",
            s.compactions,
            "compaction merges since start",
        ),
        (
            "compacted_files",
            s.compacted_files,
            "small files merged away since start",
        ),
        (
            "retired_files",
            s.retired_files,
            "replaced files kept until the queries reading them end",
        ),
    ]
}

/// A running capture + SQL server; [`Live::stop`] ends both and flushes what was captured.
pub(crate) struct Live {
    /// The SQL server's address.
    pub(crate) addr: SocketAddr,
    /// Interfaces with an open packet capture.
    pub(crate) nics: usize,
    /// The session the SQL server answers from (also for this process's own queries).
    pub(crate) ctx: Arc<SessionContext>,
    /// The store captured spans go to.
    pub(crate) store: Arc<Store>,
    stop_tx: watch::Sender<bool>,
    agent: JoinHandle<Result<(), IngestError>>,
    writer: JoinHandle<()>,
    server: JoinHandle<Result<(), QueryError>>,
}

impl Live {
    /// Loads the eBPF programs, opens the packet captures and starts serving SQL.
    pub(crate) async fn start(cfg: LiveConfig<'_>) -> Result<Self> {
        let agent = Agent::load(AgentConfig {
            probe: ProbeOptions {
                payload_limit: cfg.payload_limit,
            },
            flush_interval: Duration::from_millis(cfg.flush_ms.max(10)),
            capture_rules: cfg.rules,
            snaplen: cfg.snaplen,
            ring_mib: cfg.ring_mib,
            ..AgentConfig::default()
        })
        .context(
            "cannot start capture (use `wiretrace serve` to query existing data without it)",
        )?;
        let counters = agent.counters();
        let nics = agent.capture_points().len();
        let store = Arc::new(Store::open(cfg.data_dir, cfg.store)?);
        let ctx = session_with(cfg.data_dir, cfg.query_memory, Some(Arc::clone(&store))).await?;
        register_stats(
            &ctx,
            "ingest_counters",
            StatsTable::new(Arc::new(move || counters.snapshot())),
        )?;
        let counted = Arc::clone(&store);
        register_stats(
            &ctx,
            "store_counters",
            StatsTable::new(Arc::new(move || store_counters(&counted))),
        )?;
        let ctx = Arc::new(ctx);
        let server = SqlServer::bind(cfg.listen, Arc::clone(&ctx), cfg.access).await?;
        let addr = server.local_addr()?;

        let (tx, rx) = mpsc::channel::<TableBatch>(64);
        let writer = tokio::spawn(write_loop(Arc::clone(&store), rx));

        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let server = tokio::spawn(server.serve(stopped(stop_rx.clone())));
        let agent = tokio::spawn(agent.run(tx, stopped(stop_rx)));
        Ok(Self {
            addr,
            nics,
            ctx,
            store,
            stop_tx,
            agent,
            writer,
            server,
        })
    }

    /// Stops capturing and serving; returns once every captured span is written.
    pub(crate) async fn stop(self) -> Result<()> {
        let _ = self.stop_tx.send(true);
        self.agent.await.context("agent task")??;
        self.writer.await.context("writer task")?;
        self.server.await.context("server task")??;
        Ok(())
    }
}
