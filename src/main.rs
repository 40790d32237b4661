//! The `wiretrace` binary: parses the command line and wires the library crates together.

mod demo;
mod live;
mod upkeep;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use wiretrace_ingest::{
    DEFAULT_RING_MIB, DEFAULT_SNAPLEN, IngestCounters,
    batch::SpanBatchBuilder,
    capture::{CaptureRule, DEFAULT_RULES, NicRole},
    generate::{GenConfig, Generator},
    pcap::read_pcap,
};
use wiretrace_query::{Access, SqlServer, Users, output, session, session::session_with};

use crate::{
    live::{Live, LiveConfig},
    upkeep::RetentionArgs,
};
use wiretrace_storage::{FsyncPolicy, StorageError, Store, StoreOptions, TableWriters, schema};

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
        #[command(flatten)]
        server: ServerArgs,
        /// Payload bytes copied per socket syscall (1..=4095).
        #[arg(long, default_value_t = 1024)]
        payload_limit: u32,
        /// How often the agent hands captured spans to the store, where they are logged and
        /// queryable (ms).
        #[arg(long, default_value_t = 500)]
        flush_ms: u64,
        #[command(flatten)]
        wal: WalArgs,
        #[command(flatten)]
        keep: RetentionArgs,
        #[command(flatten)]
        packets: PacketArgs,
    },
    /// Read capture files into the data dir (no root needed).
    Ingest {
        #[command(subcommand)]
        what: IngestCommand,
    },
    /// Serve SQL over an existing data dir (no capture, no root needed).
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        keep: RetentionArgs,
    },
    /// Print a data dir's partitions and quarantined files (moving a leftover write-ahead log
    /// into Parquet first).
    Stats {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write synthetic traces (sidecars, a VXLAN underlay, clock skew) to try queries and
    /// benchmarks without capturing.
    Generate {
        #[command(flatten)]
        store: StoreArgs,
        /// How many traces.
        #[arg(long, default_value_t = 10_000)]
        traces: usize,
        /// Seconds the traces are spread over, ending now.
        #[arg(long, default_value_t = 60)]
        spread_s: u64,
        /// Random seed (the same seed writes the same spans).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Build a lab, capture it and show what wiretrace makes of it (root).
    Demo {
        #[command(subcommand)]
        which: DemoCommand,
    },
    /// Run one SQL statement over a data dir and print the result as a table.
    Query {
        #[command(flatten)]
        store: StoreArgs,
        /// The SQL statement.
        sql: String,
    },
}

#[derive(Debug, Subcommand)]
enum DemoCommand {
    /// Istio's Bookinfo in Python, Ruby, Java and Node.js behind nginx sidecars on two nodes
    /// joined by a VXLAN tunnel: one request becomes one 38-span trace.
    Bookinfo(demo::BookinfoArgs),
}

#[derive(Debug, Subcommand)]
enum IngestCommand {
    /// pcap or pcapng files → l7_flow_log (HTTP spans) and l4_flow_log (flows).
    Pcap {
        #[command(flatten)]
        store: StoreArgs,
        /// What the capture interface was: pod, node, local or rest (decides observation points).
        #[arg(long, default_value = "rest", value_parser = parse_role)]
        role: NicRole,
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn parse_role(s: &str) -> Result<NicRole, String> {
    NicRole::parse(s).ok_or_else(|| format!("{s:?}: expected pod, node, local or rest"))
}

#[derive(Debug, clap::Args)]
struct PacketArgs {
    /// Interfaces to capture packets on, as ROLE=NETNS/NIC with * wildcards (repeatable;
    /// NETNS is `host` or a name under /run/netns). Default: the host's eth*/ens*/enp*/eno*
    /// as node NICs and veth*/cali*/lxc* as pod NICs.
    #[arg(long = "capture", value_name = "RULE")]
    rules: Vec<CaptureRule>,
    /// Capture no packets (eBPF only).
    #[arg(long, conflicts_with = "rules")]
    no_packets: bool,
    /// Bytes kept per captured frame.
    #[arg(long, default_value_t = DEFAULT_SNAPLEN, value_parser = clap::value_parser!(u32).range(64..=65535))]
    snaplen: u32,
    /// Capture ring per interface, MiB (kernel memory; more absorbs longer bursts).
    #[arg(long, default_value_t = DEFAULT_RING_MIB as u64, value_parser = clap::value_parser!(u64).range(2..=1024))]
    ring_mib: u64,
}

impl PacketArgs {
    fn rules(&self) -> Result<Vec<CaptureRule>> {
        if self.no_packets {
            return Ok(Vec::new());
        }
        if !self.rules.is_empty() {
            return Ok(self.rules.clone());
        }
        DEFAULT_RULES
            .iter()
            .map(|r| r.parse().map_err(anyhow::Error::msg))
            .collect()
    }
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// Address of the Postgres wire server. Any address but loopback needs passwords.
    #[arg(long, default_value = "127.0.0.1:5433", env = "WIRETRACE_LISTEN")]
    listen: String,
    /// Users who log in with a password (SCRAM-SHA-256): a file of `name:password` lines.
    /// Without users (and without WIRETRACE_PASSWORD) only loopback is served, without
    /// passwords.
    #[arg(long, value_name = "FILE", env = "WIRETRACE_USERS_FILE")]
    users: Option<PathBuf>,
    /// With users configured, let loopback clients in without a password.
    #[arg(long)]
    trust_loopback: bool,
    /// Offer TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Memory all running queries may use together (MiB); a query that needs more fails with
    /// an error.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(16..))]
    query_memory_mib: u64,
}

impl ServerArgs {
    /// The query memory limit in bytes.
    fn query_memory(&self) -> usize {
        usize::try_from(self.query_memory_mib << 20).unwrap_or(usize::MAX)
    }

    /// The access rules these options (and WIRETRACE_USER / WIRETRACE_PASSWORD) describe.
    fn access(&self) -> Result<Access> {
        let mut users = match &self.users {
            Some(path) => Users::from_file(path)?,
            None => Users::default(),
        };
        if let Ok(password) = std::env::var("WIRETRACE_PASSWORD") {
            let name = std::env::var("WIRETRACE_USER").unwrap_or_else(|_| "wiretrace".into());
            users.insert(&name, &password);
        }
        let access = Access::new(users, self.trust_loopback);
        Ok(match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => access.with_tls(cert, key)?,
            _ => access,
        })
    }
}

#[derive(Debug, clap::Args)]
struct WalArgs {
    /// Sync the write-ahead log at most this often (ms); 0 syncs every batch before it is
    /// acknowledged.
    #[arg(long, default_value_t = 0)]
    wal_fsync_ms: u64,
    /// Write buffered spans to Parquet once this many are buffered.
    #[arg(long, default_value_t = 256 * 1024)]
    flush_rows: usize,
    /// Write buffered spans to Parquet once the oldest is this old (s).
    #[arg(long, default_value_t = 10)]
    flush_age_s: u64,
    /// Most memory buffered spans may take (MiB); past it batches are dropped and counted
    /// (`store_counters.refused_rows`) until a flush makes room.
    #[arg(long, default_value_t = 1024)]
    max_buffer_mib: u64,
}

impl WalArgs {
    fn options(&self) -> StoreOptions {
        StoreOptions {
            fsync: match self.wal_fsync_ms {
                0 => FsyncPolicy::EveryBatch,
                ms => FsyncPolicy::Interval(Duration::from_millis(ms)),
            },
            flush_rows: self.flush_rows.max(1),
            flush_age: Duration::from_secs(self.flush_age_s),
            max_buffer_bytes: self.max_buffer_mib << 20,
        }
    }
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
                server,
                payload_limit,
                flush_ms,
                wal,
                keep,
                packets,
            } => {
                up(
                    store,
                    &server,
                    payload_limit,
                    flush_ms,
                    &wal,
                    keep,
                    &packets,
                )
                .await
            }
            Command::Ingest {
                what: IngestCommand::Pcap { store, role, files },
            } => ingest_pcap(store, role, &files),
            Command::Serve {
                store,
                server,
                keep,
            } => serve(store, &server, keep).await,
            Command::Stats { store } => stats(store).await,
            Command::Generate {
                store,
                traces,
                spread_s,
                seed,
            } => generate(store, traces, spread_s, seed),
            Command::Query { store, sql } => query(store, &sql).await,
            Command::Demo {
                which: DemoCommand::Bookinfo(args),
            } => demo::bookinfo(args).await,
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

async fn up(
    store: StoreArgs,
    server: &ServerArgs,
    payload_limit: u32,
    flush_ms: u64,
    wal: &WalArgs,
    keep: RetentionArgs,
    packets: &PacketArgs,
) -> Result<()> {
    let keep = keep.retention()?;
    let live = Live::start(LiveConfig {
        store: wal.options(),
        data_dir: &store.data_dir,
        listen: &server.listen,
        access: server.access()?,
        query_memory: server.query_memory(),
        payload_limit,
        flush_ms,
        rules: packets.rules()?,
        snaplen: packets.snaplen,
        ring_mib: packets.ring_mib as usize,
    })
    .await?;
    eprintln!(
        "wiretrace up: capturing TCP traffic with eBPF{} into {}; SQL on {} (psql -h {} -p {} -c 'select * from l7_flow_log')",
        if live.nics == 0 {
            String::new()
        } else {
            format!(" and packets on {} interfaces", live.nics)
        },
        store.data_dir.display(),
        live.addr,
        live.addr.ip(),
        live.addr.port()
    );
    let upkeep = tokio::spawn(upkeep::run(
        store.data_dir.clone(),
        keep,
        Some(Arc::clone(&live.store)),
    ));
    shutdown_signal().await;
    eprintln!("wiretrace up: stopping");
    upkeep.abort();
    live.stop().await
}

/// Traces generated and written per chunk (bounds memory).
const GENERATE_CHUNK: usize = 20_000;

fn generate(store: StoreArgs, traces: usize, spread_s: u64, seed: u64) -> Result<()> {
    let writers = TableWriters::open(&store.data_dir)?;
    let spread_us = i64::try_from(spread_s.saturating_mul(1_000_000)).context("--spread-s")?;
    let now_us = unix_now_us();
    let mut generator = Generator::new(GenConfig {
        seed,
        start_us: now_us - spread_us,
        spread_us,
        ..GenConfig::default()
    });
    let bar = ProgressBar::new(traces as u64).with_style(
        ProgressStyle::with_template(
            "generating [{bar:30}] {pos}/{len} traces ({per_sec}, {eta})",
        )?
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let (mut spans, mut files) = (0usize, 0usize);
    let mut left = traces;
    while left > 0 {
        let n = left.min(GENERATE_CHUNK);
        let chunk = generator.traces(n, traces);
        let written = writers.write(schema::L7_FLOW_LOG, &chunk.batches)?;
        spans += written.rows;
        files += written.files.len();
        left -= n;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{traces} traces: {spans} spans in {files} files under {} ({:.0} spans/s)",
        store.data_dir.display(),
        spans as f64 / secs.max(1e-9)
    );
    Ok(())
}

fn unix_now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn ingest_pcap(store: StoreArgs, role: NicRole, files: &[PathBuf]) -> Result<()> {
    let writers = TableWriters::open(&store.data_dir)?;
    let counters = IngestCounters::default();
    let mut builder = SpanBatchBuilder::new(0, "pcap");
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )?
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let (mut frames, mut spans, mut flows, mut failed) = (0u64, 0usize, 0usize, 0usize);
    for file in files {
        bar.set_message(file.display().to_string());
        let read = Arc::new(AtomicU64::new(0));
        let done = bar.position();
        let summary = std::thread::scope(|s| {
            let reader = s.spawn(|| read_pcap(file, role, &counters, Arc::clone(&read)));
            while !reader.is_finished() {
                bar.set_position(done + read.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(100));
            }
            reader.join()
        });
        bar.set_position(done + read.load(Ordering::Relaxed));
        let summary = match summary {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                bar.suspend(|| eprintln!("skipped {e}"));
                failed += 1;
                continue;
            }
            Err(_) => anyhow::bail!("reading {} panicked", file.display()),
        };
        if let Some(why) = &summary.stopped_early {
            bar.suspend(|| {
                eprintln!(
                    "{}: read up to an error ({why}); kept what came before",
                    file.display()
                )
            });
        }
        if summary.skipped > 0 {
            bar.suspend(|| {
                eprintln!(
                    "{}: {} records skipped (unsupported link type or unreadable)",
                    file.display(),
                    summary.skipped
                )
            });
        }
        frames += summary.frames;
        spans += summary.spans.len();
        flows += summary.flows.len();
        if !summary.spans.is_empty() {
            writers.write(schema::L7_FLOW_LOG, &[builder.build(&summary.spans)?])?;
        }
        if !summary.flows.is_empty() {
            writers.write(schema::L4_FLOW_LOG, &[builder.build_flows(&summary.flows)?])?;
        }
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let undecodable = counters.undecodable_packets.load(Ordering::Relaxed);
    eprintln!(
        "{} files: {frames} frames ({:.0}/s), {undecodable} undecodable, {spans} spans, {flows} flows → {}",
        files.len() - failed,
        frames as f64 / secs.max(1e-9),
        store.data_dir.display()
    );
    if failed == files.len() {
        anyhow::bail!("no file could be read");
    }
    Ok(())
}

/// Moves rows a stopped `wiretrace up` left in the write-ahead log into Parquet (unless a
/// running one holds the log).
async fn recover(data_dir: &Path) -> Result<()> {
    let dir = data_dir.to_path_buf();
    tokio::task::spawn_blocking(move || recover_blocking(&dir))
        .await
        .context("recovery task")?
}

fn recover_blocking(data_dir: &Path) -> Result<()> {
    match Store::open(data_dir, StoreOptions::default()) {
        Ok(store) => {
            let rows = store.flush()?;
            if rows > 0 {
                eprintln!("recovered {rows} logged rows into Parquet");
            }
            Ok(())
        }
        Err(StorageError::Locked { .. }) => {
            tracing::info!(
                "a running wiretrace holds the write-ahead log; serving its Parquet files"
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn serve(store: StoreArgs, args: &ServerArgs, keep: RetentionArgs) -> Result<()> {
    let keep = keep.retention()?;
    recover(&store.data_dir).await?;
    let upkeep = tokio::spawn(upkeep::run(store.data_dir.clone(), keep, None));
    let ctx = session_with(&store.data_dir, args.query_memory(), None).await?;
    let server = SqlServer::bind(&args.listen, Arc::new(ctx), args.access()?).await?;
    eprintln!(
        "wiretrace serve: SQL over {} on {}",
        store.data_dir.display(),
        server.local_addr()?
    );
    server.serve(shutdown_signal()).await?;
    upkeep.abort();
    Ok(())
}

async fn stats(store: StoreArgs) -> Result<()> {
    recover(&store.data_dir).await?;
    let ctx = session(&store.data_dir).await?;
    for sql in [
        "select table_name, count(*) as partitions, sum(files) as files, sum(rows) as rows, \
         sum(bytes) as bytes, round(sum(bytes) / greatest(sum(rows), 1), 1) as bytes_per_row, \
         min(start) as oldest, max(start) as newest from storage_partitions group by table_name \
         order by table_name",
        "select * from storage_partitions order by start desc, table_name limit 24",
        "select * from storage_quarantine",
    ] {
        println!("{}", output::render(&output::run_sql(&ctx, sql).await?)?);
    }
    println!(
        "write-ahead log: {} bytes not yet in Parquet (live counters — drops, flushes, \
         compactions, cache hits — are the store_counters, ingest_counters and cache_counters \
         tables of a running `wiretrace up`)",
        wiretrace_storage::log_bytes(&store.data_dir)
    );
    Ok(())
}

async fn query(store: StoreArgs, sql: &str) -> Result<()> {
    recover(&store.data_dir).await?;
    let ctx = session(&store.data_dir).await?;
    let batches = output::run_sql(&ctx, sql).await?;
    println!("{}", output::render(&batches)?);
    Ok(())
}
