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
    session::{register_stats, session_with_memory},
};
use wiretrace_storage::TableWriters;

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

/// A running capture + SQL server; [`Live::stop`] ends both and flushes what was captured.
pub(crate) struct Live {
    /// The SQL server's address.
    pub(crate) addr: SocketAddr,
    /// Interfaces with an open packet capture.
    pub(crate) nics: usize,
    /// The session the SQL server answers from (also for this process's own queries).
    pub(crate) ctx: Arc<SessionContext>,
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
        let ctx = session_with_memory(cfg.data_dir, cfg.query_memory).await?;
        register_stats(
            &ctx,
            "ingest_counters",
            StatsTable::new(Arc::new(move || counters.snapshot())),
        )?;
        let ctx = Arc::new(ctx);
        let server = SqlServer::bind(cfg.listen, Arc::clone(&ctx), cfg.access).await?;
        let addr = server.local_addr()?;

        let writers = Arc::new(TableWriters::open(cfg.data_dir)?);
        let (tx, mut rx) = mpsc::channel::<TableBatch>(64);
        let writer = tokio::spawn(async move {
            while let Some(TableBatch { table, batch }) = rx.recv().await {
                let w = Arc::clone(&writers);
                match tokio::task::spawn_blocking(move || w.write(table, &[batch])).await {
                    Ok(Ok(stats)) => tracing::debug!(table, rows = stats.rows, "rows written"),
                    Ok(Err(e)) => tracing::error!(table, error = %e, "writing rows failed"),
                    Err(e) => tracing::error!(error = %e, "writer task failed"),
                }
            }
        });

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
