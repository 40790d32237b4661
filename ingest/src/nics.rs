//! Live packet capture: one thread per selected interface, each owning its ring and its
//! [`FlowTable`], sending spans and flow rows to the agent every flush. [`NicCaptures::rescan`]
//! picks up interfaces that appear later (a new pod, a new namespace) and stops captures whose
//! namespace was deleted: an open socket would otherwise keep a deleted namespace, and its
//! interfaces, alive. A capture whose interface goes away ends by itself.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use crate::{
    capture::{CapturePoint, CaptureRule, Netns, Ring, discover},
    counters::IngestCounters,
    event::unix_now_micros,
    flows::{FlowRecord, FlowTable},
    span::Span,
};

/// What one capture thread hands over per flush.
#[derive(Debug, Default)]
pub struct PacketOutput {
    /// Spans completed.
    pub spans: Vec<Span>,
    /// Flow rows completed.
    pub flows: Vec<FlowRecord>,
}

/// How packet capture runs.
#[derive(Debug, Clone)]
pub struct NicOptions {
    /// Which interfaces, in which namespaces, with which role.
    pub rules: Vec<CaptureRule>,
    /// Bytes kept per frame (headers plus a payload prefix).
    pub snaplen: u32,
    /// Ring size per interface, MiB.
    pub ring_mib: usize,
    /// How often each thread hands over what it found.
    pub flush_interval: Duration,
}

/// One open capture, by (netns, nic).
#[derive(Debug)]
struct Open {
    /// Set to end this capture alone.
    stop: Arc<AtomicBool>,
    /// The pinned namespace file and its inode when the capture opened (None: the host).
    pin: Option<(std::path::PathBuf, u64)>,
}

type OpenSet = Arc<Mutex<HashMap<(String, String), Open>>>;

/// The running capture threads.
#[derive(Debug)]
pub struct NicCaptures {
    options: NicOptions,
    stop: Arc<AtomicBool>,
    open: OpenSet,
    threads: Vec<JoinHandle<()>>,
    tx: mpsc::Sender<PacketOutput>,
    counters: Arc<IngestCounters>,
}

/// The inode of a pinned namespace file: names the namespace itself.
fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

impl NicCaptures {
    /// Starts capturing on every interface the rules select now.
    pub fn start(
        options: NicOptions,
        tx: mpsc::Sender<PacketOutput>,
        counters: Arc<IngestCounters>,
    ) -> Self {
        let mut me = Self {
            options,
            stop: Arc::default(),
            open: OpenSet::default(),
            threads: Vec::new(),
            tx,
            counters,
        };
        me.rescan();
        me
    }

    /// Stops captures whose namespace is gone, then opens captures on selected interfaces not
    /// yet captured.
    pub fn rescan(&mut self) {
        self.threads.retain(|t| !t.is_finished());
        for ((netns, nic), open) in lock(&self.open).iter() {
            if let Some((path, ino)) = &open.pin
                && inode(path) != Some(*ino)
            {
                tracing::info!(%netns, %nic, "namespace deleted: capture stops");
                open.stop.store(true, Ordering::Relaxed);
            }
        }
        for (ns, point) in discover(&self.options.rules) {
            let key = (point.netns.clone(), point.nic.clone());
            if lock(&self.open).contains_key(&key) {
                continue;
            }
            self.open(ns, point, key);
        }
        publish_open(&self.open, &self.counters);
    }

    fn open(&mut self, ns: Netns, point: CapturePoint, key: (String, String)) {
        let pin = match &ns.path {
            Some(p) => match inode(p) {
                Some(ino) => Some((p.clone(), ino)),
                None => return, // deleted since discovery
            },
            None => None,
        };
        match Ring::open(&ns, &point.nic, self.options.snaplen, self.options.ring_mib) {
            Ok(ring) => {
                tracing::info!(netns = %point.netns, nic = %point.nic, role = point.role.name(), "capturing packets");
                let stop = Arc::new(AtomicBool::new(false));
                lock(&self.open).insert(
                    key.clone(),
                    Open {
                        stop: Arc::clone(&stop),
                        pin,
                    },
                );
                self.threads.push(self.spawn(point, ring, key, stop));
            }
            Err(e) => {
                tracing::warn!(netns = %point.netns, nic = %point.nic, error = %e, "cannot capture");
            }
        }
    }

    /// Interfaces being captured, as (netns, nic).
    pub fn points(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = lock(&self.open).keys().cloned().collect();
        v.sort();
        v
    }

    fn spawn(
        &self,
        point: CapturePoint,
        mut ring: Ring,
        key: (String, String),
        own_stop: Arc<AtomicBool>,
    ) -> JoinHandle<()> {
        let (stop, open, tx, counters) = (
            Arc::clone(&self.stop),
            Arc::clone(&self.open),
            self.tx.clone(),
            Arc::clone(&self.counters),
        );
        let flush = self.options.flush_interval;
        std::thread::spawn(move || {
            raise_priority();
            let mut table = FlowTable::new(Arc::new(point));
            let mut last = Instant::now();
            // Every flush, and once at the end (`ending`: open flows become rows): count the
            // ring's drops, close what is due, and hand the rows over.
            let hand_over = |table: &mut FlowTable, ring: &Ring, ending: bool| {
                if let Ok(d) = ring.drops() {
                    IngestCounters::add(&counters.packet_drops, d);
                }
                if ending {
                    table.finish(&counters);
                } else {
                    table.expire_idle(unix_now_micros(), &counters);
                }
                let out = PacketOutput {
                    spans: table.take_spans(),
                    flows: table.take_records(),
                };
                if (!out.spans.is_empty() || !out.flows.is_empty())
                    && tx.blocking_send(out).is_err()
                {
                    IngestCounters::add(&counters.batches_dropped, 1);
                }
            };
            while !stop.load(Ordering::Relaxed) && !own_stop.load(Ordering::Relaxed) {
                if let Err(e) = ring.poll(50, |f| table.push(f, &counters)) {
                    let p = table.point();
                    tracing::info!(netns = %p.netns, nic = %p.nic, error = %e, "capture ended");
                    break;
                }
                if last.elapsed() >= flush {
                    last = Instant::now();
                    hand_over(&mut table, &ring, false);
                }
            }
            hand_over(&mut table, &ring, true);
            drop(ring); // releases the namespace before it is forgotten here
            lock(&open).remove(&key);
            publish_open(&open, &counters);
        })
    }

    /// Stops every thread and waits for them; each first hands over what it holds (open flows
    /// as `open` rows).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
    }
}

/// Dropped without [`NicCaptures::stop`] (the agent never ran): the threads still end.
impl Drop for NicCaptures {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Capture threads run at nice -5 when allowed: on a saturated machine the ring then has to
/// absorb shorter stretches without CPU, and drops fewer frames.
const CAPTURE_NICE: libc::c_int = -5;

fn raise_priority() {
    // SAFETY: gettid and setpriority on the calling thread have no memory preconditions.
    let done = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, CAPTURE_NICE)
    };
    if done != 0 {
        tracing::debug!("capture thread keeps its priority (no CAP_SYS_NICE)");
    }
}

/// Keeps the `capture_interfaces` gauge equal to the number of open captures.
fn publish_open(open: &OpenSet, counters: &IngestCounters) {
    let n = lock(open).len() as u64;
    counters.capture_interfaces.store(n, Ordering::Relaxed);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
