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

use crate::{
    batch::SpanBatchBuilder,
    counters::IngestCounters,
    error::IngestError,
    event::{EventView, KernelClock, unix_now_micros},
    loader::{self, ProbeOptions},
    pairing::SpanAssembler,
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
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            agent_id: 1,
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            probe: ProbeOptions::default(),
            flush_interval: Duration::from_millis(500),
        }
    }
}

/// A loaded eBPF agent, ready to run.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    probes: loader::LoadedProbes,
    counters: Arc<IngestCounters>,
}

impl Agent {
    /// Loads and attaches the kernel programs.
    pub fn load(config: AgentConfig) -> Result<Self, IngestError> {
        // Wall-clock time in 100 ns units: differs per agent run, so ids of two runs do not meet.
        let seed = (unix_now_micros() as u64).wrapping_mul(10);
        let probes = loader::load(config.probe, seed)?;
        Ok(Self {
            config,
            probes,
            counters: Arc::default(),
        })
    }

    /// The agent's counters (live).
    pub fn counters(&self) -> Arc<IngestCounters> {
        Arc::clone(&self.counters)
    }

    /// Captures until `shutdown` resolves, sending span batches to `sink`.
    pub async fn run(
        self,
        sink: mpsc::Sender<RecordBatch>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), IngestError> {
        let Agent {
            config,
            probes,
            counters,
        } = self;
        let clock = KernelClock::now();
        let mut assembler = SpanAssembler::new(clock);
        let mut builder = SpanBatchBuilder::new(config.agent_id, config.host.clone());
        let loader::LoadedProbes { events, attached } = probes;
        // SAFETY: the ring buffer owns its fd and outlives the registration (both die together).
        let mut ring = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
            .map_err(|e| IngestError::Io(e.into()))?;
        let mut tick = tokio::time::interval(config.flush_interval);
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
                _ = tick.tick() => {
                    counters.kernel_ring_drops.store(attached.kernel_drops(), Ordering::Relaxed);
                    flush(&mut assembler, &mut builder, &sink, &counters).await?;
                    assembler.expire_idle(unix_now_micros(), &counters);
                }
                () = &mut shutdown => {
                    flush(&mut assembler, &mut builder, &sink, &counters).await?;
                    return Ok(());
                }
            }
        }
    }
}

async fn flush(
    assembler: &mut SpanAssembler,
    builder: &mut SpanBatchBuilder,
    sink: &mpsc::Sender<RecordBatch>,
    counters: &IngestCounters,
) -> Result<(), IngestError> {
    let spans = assembler.take_spans();
    if spans.is_empty() {
        return Ok(());
    }
    let batch = builder.build(&spans)?;
    if sink.send(batch).await.is_err() {
        IngestCounters::add(&counters.batches_dropped, 1);
    }
    Ok(())
}
