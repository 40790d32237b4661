//! Socket ids, per-socket capture sequence numbers, and the per-thread syscall trace id.
//!
//! The trace id rule (ARCHITECTURE.md, "syscall_trace_id"): a read that follows a write on
//! the thread starts a new id, following reads of the same message keep it, the next write
//! carries it and ends it. So a server's inbound request, its outbound calls and its response
//! chain together without any header.

use aya_ebpf::{
    helpers::generated::bpf_get_smp_processor_id,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use wiretrace_ebpf_common::Direction;

/// What the kernel remembers per socket.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct SockState {
    pub(crate) socket_id: u64,
    pub(crate) cap_seq: u64,
    /// Direction of the last data event + 1 (0: none yet).
    last_dir: u8,
    pub(crate) role: u8,
    _pad: [u8; 6],
}

/// Per-socket state keyed by the `struct sock` address.
#[map]
static SOCKETS: LruHashMap<u64, SockState> = LruHashMap::with_max_entries(65536, 0);

/// Per-thread open syscall trace id, keyed by pid_tgid.
#[map]
static THREAD_TRACE: LruHashMap<u64, u64> = LruHashMap::with_max_entries(65536, 0);

/// Per-CPU id counters: [0] trace ids, [1] socket ids.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// What one data event learns from the id state.
pub(crate) struct DataIds {
    pub(crate) socket_id: u64,
    pub(crate) cap_seq: u64,
    pub(crate) trace_id: u64,
    pub(crate) role: u8,
}

/// A new id, unique within this agent run: the CPU in the top byte, a per-CPU count below.
#[inline(always)]
fn next_id(slot: u32, seed: u64) -> Result<u64, i64> {
    let c = COUNTERS.get_ptr_mut(slot).ok_or(-1i64)?;
    // SAFETY: per-CPU slot; tracepoint programs do not migrate while running.
    let n = unsafe {
        *c += 1;
        *c
    };
    // SAFETY: helper with no preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() } as u64;
    Ok(((cpu & 0x7f) << 56) | (seed.wrapping_add(n) & 0x00ff_ffff_ffff_ffff))
}

#[inline(always)]
fn state_of(sk: u64, seed: u64) -> Result<SockState, i64> {
    // SAFETY: copied out.
    if let Some(s) = unsafe { SOCKETS.get(sk) } {
        return Ok(*s);
    }
    Ok(SockState {
        socket_id: next_id(1, seed)?,
        cap_seq: 0,
        last_dir: 0,
        role: 0,
        _pad: [0; 6],
    })
}

/// Updates socket and thread state for one data event and returns its ids.
#[inline(always)]
pub(crate) fn on_data(sk: u64, pid_tgid: u64, dir: Direction, seed: u64) -> Result<DataIds, i64> {
    let mut st = state_of(sk, seed)?;
    let same_dir = st.last_dir == dir as u8 + 1;
    st.cap_seq += 1;
    st.last_dir = dir as u8 + 1;
    SOCKETS.insert(sk, st, 0).map_err(i64::from)?;

    // SAFETY: copied out.
    let open = unsafe { THREAD_TRACE.get(pid_tgid) }.copied();
    let trace_id = match dir {
        Direction::Ingress => {
            let id = match open {
                Some(id) if same_dir => id,
                _ => next_id(0, seed)?,
            };
            THREAD_TRACE.insert(pid_tgid, id, 0).map_err(i64::from)?;
            id
        }
        Direction::Egress => match open {
            Some(id) => {
                let _ = THREAD_TRACE.remove(pid_tgid);
                id
            }
            None => 0,
        },
    };
    Ok(DataIds {
        socket_id: st.socket_id,
        cap_seq: st.cap_seq,
        trace_id,
        role: st.role,
    })
}

/// Records the role connect()/accept() gave a socket.
#[inline(always)]
pub(crate) fn set_role(sk: u64, role: u8, seed: u64) -> Result<(), i64> {
    let mut st = state_of(sk, seed)?;
    st.role = role;
    SOCKETS.insert(sk, st, 0).map_err(i64::from)
}

/// Forgets a closing socket; returns its id if it was known.
#[inline(always)]
pub(crate) fn forget(sk: u64) -> Option<u64> {
    // SAFETY: copied out before removal.
    let id = unsafe { SOCKETS.get(sk) }.map(|s| s.socket_id)?;
    let _ = SOCKETS.remove(sk);
    Some(id)
}
