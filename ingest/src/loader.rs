//! Loads the eBPF programs into the kernel (aya), attaches every tracepoint and hands out the
//! ring buffer they write to.

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use wiretrace_ebpf_common::{
    CONFIG_GLOBAL, DEFAULT_PAYLOAD_LIMIT, DROPS_MAP, EVENTS_MAP, MAX_PAYLOAD, ProbeConfig,
    TRACEPOINTS,
};

use crate::{error::IngestError, offsets};

/// The eBPF object, built from `ingest-ebpf/programs` or the committed prebuilt copy.
pub static EBPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/wiretrace.bpf.o"));

/// Options for the kernel side.
#[derive(Debug, Clone, Copy)]
pub struct ProbeOptions {
    /// Payload prefix copied per syscall (clamped to 1 ..= MAX_PAYLOAD - 1).
    pub payload_limit: u32,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            payload_limit: DEFAULT_PAYLOAD_LIMIT,
        }
    }
}

/// Loaded and attached programs: the ring buffer to drain, and the rest.
pub struct LoadedProbes {
    /// The event ring buffer.
    pub events: RingBuf<MapData>,
    /// The programs (detached when dropped) and their drop counter.
    pub attached: Attached,
}

/// The attached programs; dropping this detaches them.
pub struct Attached {
    /// Keeps programs and links alive.
    _ebpf: Ebpf,
    /// Per-CPU count of events lost to a full ring buffer.
    drops: PerCpuArray<MapData, u64>,
}

impl Attached {
    /// Events the kernel could not deliver because the ring buffer was full, so far.
    pub fn kernel_drops(&self) -> u64 {
        self.drops
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }
}

impl std::fmt::Debug for LoadedProbes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedProbes")
            .field("attached", &self.attached)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached").finish_non_exhaustive()
    }
}

/// Says what is missing for eBPF capture, if anything, before trying to load.
pub fn check_capture_support() -> Result<(), IngestError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(IngestError::Unavailable(
            "not running as root (eBPF capture needs root or CAP_BPF + CAP_PERFMON); \
             `wiretrace serve` and `wiretrace query` work without it"
                .into(),
        ));
    }
    if !std::path::Path::new(offsets::VMLINUX_BTF).exists() {
        return Err(IngestError::Unavailable(format!(
            "{} is missing: the kernel was built without BTF (CONFIG_DEBUG_INFO_BTF)",
            offsets::VMLINUX_BTF
        )));
    }
    Ok(())
}

/// Mounts tracefs when it is not mounted yet (attaching tracepoints needs it).
fn ensure_tracefs() {
    let path = std::path::Path::new("/sys/kernel/tracing");
    if path.join("events").exists()
        || std::path::Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        return;
    }
    let src = c"tracefs";
    let target = c"/sys/kernel/tracing";
    // SAFETY: static C strings; mount(2) failing leaves nothing to undo.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "mounting tracefs failed");
    }
}

/// Loads the programs with this kernel's offsets and attaches every tracepoint.
pub fn load(opts: ProbeOptions, id_seed: u64) -> Result<LoadedProbes, IngestError> {
    check_capture_support()?;
    ensure_tracefs();
    let offsets = offsets::kernel_offsets()?;
    let config = ProbeConfig {
        agent_tgid: std::process::id(),
        payload_limit: opts.payload_limit.clamp(1, MAX_PAYLOAD as u32 - 1),
        id_seed,
        offsets,
    };
    let mut ebpf = EbpfLoader::new()
        .override_global(CONFIG_GLOBAL, &config, true)
        .load(EBPF_OBJECT)
        .map_err(|e| IngestError::Load(format!("{e:#}")))?;
    for (prog, category, name) in TRACEPOINTS {
        let tp: &mut TracePoint = ebpf
            .program_mut(prog)
            .ok_or_else(|| IngestError::Load(format!("program {prog} missing from object")))?
            .try_into()
            .map_err(|e| IngestError::Load(format!("{prog}: {e}")))?;
        tp.load()
            .map_err(|e| IngestError::Load(format!("{prog}: {e} ({})", verifier_hint(&e))))?;
        tp.attach(category, name)
            .map_err(|e| IngestError::Load(format!("attaching {category}/{name}: {e}")))?;
    }
    let map = ebpf
        .take_map(EVENTS_MAP)
        .ok_or_else(|| IngestError::Load(format!("map {EVENTS_MAP} missing")))?;
    let events = RingBuf::try_from(map).map_err(|e| IngestError::Load(e.to_string()))?;
    let drops = ebpf
        .take_map(DROPS_MAP)
        .ok_or_else(|| IngestError::Load(format!("map {DROPS_MAP} missing")))?;
    let drops = PerCpuArray::try_from(drops).map_err(|e| IngestError::Load(e.to_string()))?;
    Ok(LoadedProbes {
        events,
        attached: Attached { _ebpf: ebpf, drops },
    })
}

fn verifier_hint(e: &aya::programs::ProgramError) -> String {
    match e {
        aya::programs::ProgramError::LoadError { verifier_log, .. } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}
