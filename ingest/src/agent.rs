//! The capture loop: drain the ring buffer, assemble spans, hand batches to storage.

use std::{
    future::Future,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use arrow::array::RecordBatch;
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
};

use wiretrace_storage::schema::{L4_FLOW_LOG, L7_FLOW_LOG};

use crate::{
    batch::SpanBatchBuilder,
    capture::CaptureRule,
    counters::IngestCounters,
    error::IngestError,
    event::{EventView, KernelClock, unix_now_micros},
    flows::FlowRecord,
    loader::{self, ProbeOptions},
    nics::{NicCaptures, NicOptions, PacketOutput},
    sockets::SpanAssembler,
    span::Span,
};

/// How the agent identifies itself and batches its output.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Agent id folded into span ids (one byte).
    pub agent_id: u8,
    /// Host name recorded on every span.
    pub host: String,
    /// Kernel-side options.
    pub probe: ProbeOptions,
    /// How often completed spans are sent to storage.
    pub flush_interval: Duration,
    /// Packet capture rules (none: eBPF only).
    pub capture_rules: Vec<CaptureRule>,
    /// Bytes kept per captured frame.
    pub snaplen: u32,
    /// Capture ring per interface, MiB.
    pub ring_mib: usize,
}

/// Capture ring per interface by default: 16 MiB (kernel memory, per captured interface).
pub const DEFAULT_RING_MIB: usize = 16;

/// Bytes kept per captured frame by default: headers through two tunnel tiers plus the start
/// of an HTTP head.
pub const DEFAULT_SNAPLEN: u32 = 512;

/// A batch for one table.
#[derive(Debug)]
pub struct TableBatch {
    /// `l7_flow_log` or `l4_flow_log`.
    pub table: &'static str,
    /// The rows.
    pub batch: RecordBatch,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            agent_id: 1,
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            probe: ProbeOptions::default(),
            flush_interval: Duration::from_millis(500),
            capture_rules: Vec::new(),
            snaplen: DEFAULT_SNAPLEN,
            ring_mib: DEFAULT_RING_MIB,
        }
    }
}

/// A loaded agent, ready to run: eBPF programs attached, packet captures open.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    probes: loader::LoadedProbes,
    counters: Arc<IngestCounters>,
    nics: Option<NicCaptures>,
    packets: mpsc::Receiver<PacketOutput>,
}

impl Agent {
    /// Loads and attaches the kernel programs and opens packet captures on the interfaces the
    /// rules select (frames wait in their rings until [`Agent::run`]).
    pub fn load(config: AgentConfig) -> Result<Self, IngestError> {
        // Wall-clock time in 100 ns units: differs per agent run, so ids of two runs do not meet.
        let seed = (unix_now_micros() as u64).wrapping_mul(10);
        let probes = loader::load(config.probe, seed)?;
        let counters = Arc::<IngestCounters>::default();
        let (packets_tx, packets) = mpsc::channel(256);
        let nics = (!config.capture_rules.is_empty()).then(|| {
            NicCaptures::start(
                NicOptions {
                    rules: config.capture_rules.clone(),
                    snaplen: config.snaplen,
                    ring_mib: config.ring_mib,
                    flush_interval: config.flush_interval,
                },
                packets_tx,
                Arc::clone(&counters),
            )
        });
        Ok(Self {
            config,
            probes,
            counters,
            nics,
            packets,
        })
    }

    /// Interfaces with an open packet capture, as (netns, nic).
    pub fn capture_points(&self) -> Vec<(String, String)> {
        self.nics
            .as_ref()
            .map(NicCaptures::points)
            .unwrap_or_default()
    }

    /// The agent's counters (live).
    pub fn counters(&self) -> Arc<IngestCounters> {
        Arc::clone(&self.counters)
    }

    /// Captures until `shutdown` resolves, sending span and flow batches to `sink`.
    pub async fn run(
        self,
        sink: mpsc::Sender<TableBatch>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), IngestError> {
        let Agent {
            config,
            probes,
            counters,
            mut nics,
            mut packets,
        } = self;
        let clock = KernelClock::now();
        let mut assembler = SpanAssembler::new(clock);
        let mut out = Outbox {
            builder: SpanBatchBuilder::new(config.agent_id, config.host.clone()),
            spans: Vec::new(),
            flows: Vec::new(),
            sink,
            counters: Arc::clone(&counters),
        };
        let loader::LoadedProbes { events, attached } = probes;
        // SAFETY: the ring buffer owns its fd and outlives the registration (both die together).
        let mut ring = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
            .map_err(|e| IngestError::Io(e.into()))?;
        let mut tick = tokio::time::interval(config.flush_interval);
        let mut rescan_tick = tokio::time::interval(RESCAN_INTERVAL);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = guard?;
                    let rb = guard.get_inner_mut();
                    while let Some(item) = rb.next() {
                        IngestCounters::add(&counters.events, 1);
                        match EventView::parse(&item) {
                            Ok(ev) => assembler.push(&ev, &counters),
                            Err(_) => IngestCounters::add(&counters.malformed_events, 1),
                        }
                    }
                    guard.clear_ready();
                }
                Some(p) = packets.recv() => out.add(p),
                _ = tick.tick() => {
                    counters.kernel_ring_drops.store(attached.kernel_drops(), Ordering::Relaxed);
                    out.spans.append(&mut assembler.take_spans());
                    out.flush().await?;
                    assembler.expire_idle(unix_now_micros(), &counters);
                }
                _ = rescan_tick.tick(), if nics.is_some() => {
                    if let Some(n) = nics.take() {
                        nics = Some(rescan(n).await?);
                    }
                }
                () = &mut shutdown => break,
            }
        }
        // Stop the capture threads while still taking what they hand over.
        if let Some(n) = nics.take() {
            let mut stopping = tokio::task::spawn_blocking(move || n.stop());
            loop {
                tokio::select! {
                    Some(p) = packets.recv() => out.add(p),
                    _ = &mut stopping => break,
                }
            }
        }
        while let Ok(p) = packets.try_recv() {
            out.add(p);
        }
        out.spans.append(&mut assembler.take_spans());
        out.flush().await
    }
}

/// Runs a rescan off the async threads: it enters namespaces and opens sockets.
async fn rescan(mut nics: NicCaptures) -> Result<NicCaptures, IngestError> {
    tokio::task::spawn_blocking(move || {
        nics.rescan();
        nics
    })
    .await
    .map_err(|e| IngestError::Io(std::io::Error::other(e)))
}

/// How often packet capture looks for new interfaces.
const RESCAN_INTERVAL: Duration = Duration::from_secs(2);

/// Spans and flows waiting for the next flush.
#[derive(Debug)]
struct Outbox {
    builder: SpanBatchBuilder,
    spans: Vec<Span>,
    flows: Vec<FlowRecord>,
    sink: mpsc::Sender<TableBatch>,
    counters: Arc<IngestCounters>,
}

impl Outbox {
    fn add(&mut self, p: PacketOutput) {
        self.spans.extend(p.spans);
        self.flows.extend(p.flows);
    }

    async fn flush(&mut self) -> Result<(), IngestError> {
        let mut batches = Vec::new();
        if !self.spans.is_empty() {
            batches.push(TableBatch {
                table: L7_FLOW_LOG,
                batch: self.builder.build(&std::mem::take(&mut self.spans))?,
            });
        }
        if !self.flows.is_empty() {
            batches.push(TableBatch {
                table: L4_FLOW_LOG,
                batch: self.builder.build_flows(&std::mem::take(&mut self.flows))?,
            });
        }
        for b in batches {
            if self.sink.send(b).await.is_err() {
                IngestCounters::add(&self.counters.batches_dropped, 1);
            }
        }
        Ok(())
    }
}
