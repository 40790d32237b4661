//! The `wiretrace` binary: parses the command line and wires the library crates together.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio::sync::{mpsc, watch};
use wiretrace_ingest::{Agent, AgentConfig, loader::ProbeOptions};
use wiretrace_query::{SqlServer, StatsTable, output, session, session::register_stats};
use wiretrace_storage::{PartitionedWriter, schema};

/// Zero-code distributed tracing as an embedded columnar trace database.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Capture with eBPF and serve SQL over the Postgres wire protocol, in one process (root).
    Up {
        #[command(flatten)]
        store: StoreArgs,
        /// Address of the Postgres wire server.
        #[arg(long, default_value = "127.0.0.1:5433", env = "WIRETRACE_LISTEN")]
        listen: String,
        /// Payload bytes copied per socket syscall (1..=4095).
        #[arg(long, default_value_t = 1024)]
        payload_limit: u32,
        /// How often captured spans are written to Parquet (ms).
        #[arg(long, default_value_t = 500)]
        flush_ms: u64,
    },
    /// Serve SQL over an existing data dir (no capture, no root needed).
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address of the Postgres wire server.
        #[arg(long, default_value = "127.0.0.1:5433", env = "WIRETRACE_LISTEN")]
        listen: String,
    },
    /// Run one SQL statement over a data dir and print the result as a table.
    Query {
        #[command(flatten)]
        store: StoreArgs,
        /// The SQL statement.
        sql: String,
    },
}

#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// Where spans are stored (Parquet, partitioned by hour).
    #[arg(long, default_value = "./wiretrace-data", env = "WIRETRACE_DATA_DIR")]
    data_dir: PathBuf,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WIRETRACE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Up {
                store,
                listen,
                payload_limit,
                flush_ms,
            } => up(store, &listen, payload_limit, flush_ms).await,
            Command::Serve { store, listen } => serve(store, &listen).await,
            Command::Query { store, sql } => query(store, &sql).await,
        }
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

async fn up(store: StoreArgs, listen: &str, payload_limit: u32, flush_ms: u64) -> Result<()> {
    let agent = Agent::load(AgentConfig {
        probe: ProbeOptions { payload_limit },
        flush_interval: Duration::from_millis(flush_ms.max(10)),
        ..AgentConfig::default()
    })
    .context("cannot start capture (use `wiretrace serve` to query existing data without it)")?;
    let counters = agent.counters();
    let ctx = session(&store.data_dir).await?;
    register_stats(
        &ctx,
        "ingest_counters",
        StatsTable::new(Arc::new(move || counters.snapshot())),
    )?;
    let server = SqlServer::bind(listen, Arc::new(ctx)).await?;
    let addr = server.local_addr()?;

    let writer = PartitionedWriter::new(
        &store.data_dir,
        schema::L7_FLOW_LOG,
        schema::l7_flow_log_schema(),
        "start_time",
    )?;
    let (tx, mut rx) = mpsc::channel(64);
    let write_task = tokio::spawn(async move {
        let writer = Arc::new(writer);
        while let Some(batch) = rx.recv().await {
            let w = Arc::clone(&writer);
            match tokio::task::spawn_blocking(move || w.write(&[batch])).await {
                Ok(Ok(stats)) => tracing::debug!(rows = stats.rows, "spans written"),
                Ok(Err(e)) => tracing::error!(error = %e, "writing spans failed"),
                Err(e) => tracing::error!(error = %e, "writer task failed"),
            }
        }
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server_task = tokio::spawn(server.serve(stopped(stop_rx.clone())));
    let agent_task = tokio::spawn(agent.run(tx, stopped(stop_rx)));
    eprintln!(
        "wiretrace up: capturing TCP traffic with eBPF into {}; SQL on {addr} (psql -h {} -p {} -c 'select * from l7_flow_log')",
        store.data_dir.display(),
        addr.ip(),
        addr.port()
    );
    shutdown_signal().await;
    eprintln!("wiretrace up: stopping");
    let _ = stop_tx.send(true);
    agent_task.await.context("agent task")??;
    write_task.await.context("writer task")?;
    server_task.await.context("server task")??;
    Ok(())
}

async fn serve(store: StoreArgs, listen: &str) -> Result<()> {
    let ctx = session(&store.data_dir).await?;
    let server = SqlServer::bind(listen, Arc::new(ctx)).await?;
    eprintln!(
        "wiretrace serve: SQL over {} on {}",
        store.data_dir.display(),
        server.local_addr()?
    );
    server.serve(shutdown_signal()).await?;
    Ok(())
}

async fn query(store: StoreArgs, sql: &str) -> Result<()> {
    let ctx = session(&store.data_dir).await?;
    let batches = output::run_sql(&ctx, sql).await?;
    println!("{}", output::render(&batches)?);
    Ok(())
}
