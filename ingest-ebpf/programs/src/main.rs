//! wiretrace's kernel side: syscall tracepoints that turn every data syscall on an inet TCP
//! socket into a [`SocketEvent`] in a ring buffer.
//!
//! Layout: `main.rs` declares the maps and the tracepoint entry points (each `x` forwards to a
//! `try_x` returning `Result`); `sock.rs` walks from a file descriptor to the `struct sock` and
//! reads its tuple and sequence numbers; `ids.rs` keeps socket ids, capture sequence numbers and
//! the per-thread syscall trace id.
//!
//! Built for `bpfel-unknown-none` by ingest's build script. A host build (`cargo clippy
//! --workspace`) gets a std crate with an empty `main`, so the programs can be linted there.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

mod ids;
mod sock;

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
        bpf_probe_read_user_buf,
    },
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use wiretrace_ebpf_common::{
    Direction, EVENT_HEADER_LEN, EventKind, MAX_PAYLOAD, ProbeConfig, SYSCALL_CLOSE, SYSCALL_READ,
    SYSCALL_READV, SYSCALL_RECVFROM, SYSCALL_RECVMSG, SYSCALL_SENDMSG, SYSCALL_SENDTO,
    SYSCALL_WRITE, SYSCALL_WRITEV, SocketEvent, SocketRole,
};

/// Filled in by the agent at load time (offsets from BTF, own pid, payload limit, id seed).
#[unsafe(no_mangle)]
static CONFIG: ProbeConfig = ProbeConfig {
    agent_tgid: 0,
    payload_limit: 0,
    id_seed: 0,
    offsets: wiretrace_ebpf_common::KernelOffsets {
        task_files: 0,
        files_fdt: 0,
        fdtable_fd: 0,
        fdtable_max_fds: 0,
        file_private_data: 0,
        file_f_inode: 0,
        inode_i_mode: 0,
        socket_type: 0,
        socket_sk: 0,
        sk_family: 0,
        sk_protocol: 0,
        sk_num: 0,
        sk_dport: 0,
        sk_rcv_saddr: 0,
        sk_daddr: 0,
        sk_v6_rcv_saddr: 0,
        sk_v6_daddr: 0,
        tcp_write_seq: 0,
        tcp_copied_seq: 0,
        _pad: 0,
    },
};

/// Events to user space.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// How the user buffer of a data syscall is described.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum BufKind {
    /// A plain pointer (read/write/sendto/recvfrom).
    Plain = 0,
    /// An iovec array (readv/writev).
    Iovec = 1,
    /// A `struct user_msghdr` (sendmsg/recvmsg).
    Msghdr = 2,
}

/// What a data syscall's entry leaves for its exit.
#[derive(Clone, Copy)]
#[repr(C)]
struct ActiveCall {
    sock: u64,
    buf: u64,
    entry_ns: u64,
    fd: u32,
    tcp_seq: u32,
    syscall: u32,
    buf_kind: u32,
    direction: u32,
    _pad: u32,
}

/// Events lost because the ring buffer was full (per CPU; the agent sums and reports them).
#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Writes `bytes` to the ring buffer, counting a drop when it is full.
#[inline(always)]
fn submit(bytes: &[u8]) -> Result<(), i64> {
    EVENTS.output::<[u8]>(bytes, 0).map_err(|e| {
        if let Some(d) = DROPS.get_ptr_mut(0) {
            // SAFETY: per-CPU slot; tracepoint programs do not migrate while running.
            unsafe { *d += 1 };
        }
        i64::from(e)
    })
}

/// In-flight data syscalls, by pid_tgid.
#[map]
static ACTIVE: HashMap<u64, ActiveCall> = HashMap::with_max_entries(16384, 0);

/// In-flight connect() calls: pid_tgid -> fd.
#[map]
static CONNECTING: HashMap<u64, u32> = HashMap::with_max_entries(4096, 0);

/// Scratch space for building one event (header + payload); too large for the stack.
#[repr(C)]
struct EventBuf {
    header: SocketEvent,
    payload: [u8; MAX_PAYLOAD],
}

#[map]
static SCRATCH: PerCpuArray<EventBuf> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn config() -> ProbeConfig {
    // SAFETY: CONFIG is a read-only global the loader rewrote; volatile keeps the compiler from
    // folding the zeros above.
    unsafe { core::ptr::read_volatile(&CONFIG) }
}

/// Syscall argument `n` of a `sys_enter_*` tracepoint.
#[inline(always)]
fn arg(ctx: &TracePointContext, n: usize) -> u64 {
    // SAFETY: syscall enter tracepoints lay out 6 u64 args from offset 16.
    unsafe { ctx.read_at::<u64>(16 + n * 8) }.unwrap_or(0)
}

/// Return value of a `sys_exit_*` tracepoint.
#[inline(always)]
fn ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: syscall exit tracepoints put `long ret` at offset 16.
    unsafe { ctx.read_at::<i64>(16) }.unwrap_or(-1)
}

#[inline(always)]
fn is_agent(pid_tgid: u64, cfg: &ProbeConfig) -> bool {
    (pid_tgid >> 32) as u32 == cfg.agent_tgid
}

/// The caller's pid_tgid, the syscall's fd argument and its TCP `struct sock`; an error for the
/// agent's own syscalls and for anything that is not an inet TCP socket.
#[inline(always)]
fn traced_socket(ctx: &TracePointContext, cfg: &ProbeConfig) -> Result<(u64, u32, *const u8), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_agent(pid_tgid, cfg) {
        return Err(0);
    }
    let fd = arg(ctx, 0) as u32;
    let sk = sock::tcp_sock_of_fd(fd, &cfg.offsets)?;
    Ok((pid_tgid, fd, sk))
}

fn enter_data(ctx: &TracePointContext, syscall: u32, buf_kind: BufKind, dir: Direction) -> u32 {
    let _ = try_enter_data(ctx, syscall, buf_kind, dir);
    0
}

fn try_enter_data(
    ctx: &TracePointContext,
    syscall: u32,
    buf_kind: BufKind,
    dir: Direction,
) -> Result<(), i64> {
    let cfg = config();
    let (pid_tgid, fd, sk) = traced_socket(ctx, &cfg)?;
    let tcp_seq = sock::tcp_seq(sk, dir, &cfg.offsets)?;
    let call = ActiveCall {
        sock: sk as u64,
        buf: arg(ctx, 1),
        // SAFETY: helper with no preconditions.
        entry_ns: unsafe { bpf_ktime_get_ns() },
        fd,
        tcp_seq,
        syscall,
        buf_kind: buf_kind as u32,
        direction: dir as u32,
        _pad: 0,
    };
    ACTIVE.insert(pid_tgid, call, 0).map_err(i64::from)
}

fn exit_data(ctx: &TracePointContext) -> u32 {
    let _ = try_exit_data(ctx);
    0
}

fn try_exit_data(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let call = match unsafe { ACTIVE.get(pid_tgid) } {
        Some(c) => *c,
        None => return Ok(()),
    };
    let _ = ACTIVE.remove(pid_tgid);
    let n = ret(ctx);
    if n <= 0 {
        return Ok(());
    }
    let cfg = config();
    let dir = if call.direction == Direction::Egress as u32 {
        Direction::Egress
    } else {
        Direction::Ingress
    };
    let sk = call.sock as *const u8;
    let state = ids::on_data(call.sock, pid_tgid, dir, cfg.id_seed)?;

    let buf = SCRATCH.get_ptr_mut(0).ok_or(-1i64)?;
    // SAFETY: per-CPU scratch slot; this program is the only user on this CPU right now.
    let buf = unsafe { &mut *buf };
    let ev = &mut buf.header;
    ev.timestamp_ns = match dir {
        Direction::Egress => call.entry_ns,
        // SAFETY: helper with no preconditions.
        Direction::Ingress => unsafe { bpf_ktime_get_ns() },
    };
    ev.pid_tgid = pid_tgid;
    ev.socket_id = state.socket_id;
    ev.syscall_trace_id = state.trace_id;
    ev.cap_seq = state.cap_seq;
    ev.syscall_len = n as u64;
    ev.tcp_seq = call.tcp_seq;
    ev.fd = call.fd;
    ev.kind = EventKind::Data as u8;
    ev.direction = dir as u8;
    ev.role = state.role;
    ev.syscall = call.syscall;
    ev.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    sock::read_tuple(sk, ev, &cfg.offsets)?;

    // The first user buffer holding the bytes.
    let (ptr, avail) = user_buffer(call.buf, call.buf_kind, n as u64);
    let mut len = avail;
    if len > cfg.payload_limit as u64 {
        len = cfg.payload_limit as u64;
    }
    let len = (len as usize) & (MAX_PAYLOAD - 1);
    ev.payload_len = len as u32;
    if len > 0 {
        // SAFETY: reads user memory through the helper; `len` is bounded by the mask.
        let dst = unsafe { core::slice::from_raw_parts_mut(buf.payload.as_mut_ptr(), len) };
        // SAFETY: user pointer read by the helper, which faults safely.
        if unsafe { bpf_probe_read_user_buf(ptr as *const u8, dst) }.is_err() {
            buf.header.payload_len = 0;
        }
    }
    let total = EVENT_HEADER_LEN + (buf.header.payload_len as usize & (MAX_PAYLOAD - 1));
    // SAFETY: `buf` is EVENT_HEADER_LEN + MAX_PAYLOAD bytes and total stays within it.
    let bytes = unsafe { core::slice::from_raw_parts(buf as *const EventBuf as *const u8, total) };
    submit(bytes)
}

/// The pointer and length of the first user buffer that holds a syscall's bytes.
#[inline(always)]
fn user_buffer(buf: u64, kind: u32, n: u64) -> (u64, u64) {
    let iov_ptr = if kind == BufKind::Plain as u32 {
        return (buf, n);
    } else if kind == BufKind::Iovec as u32 {
        buf
    } else {
        // struct user_msghdr { void *msg_name; int msg_namelen; struct iovec *msg_iov; ... }
        // SAFETY: user memory read through the helper.
        match unsafe { bpf_probe_read_user((buf + 16) as *const u64) } {
            Ok(p) => p,
            Err(_) => return (0, 0),
        }
    };
    // SAFETY: user memory read through the helper; struct iovec { void *base; size_t len; }.
    match unsafe { bpf_probe_read_user(iov_ptr as *const [u64; 2]) } {
        Ok([base, len]) => (base, if len < n { len } else { n }),
        Err(_) => (0, 0),
    }
}

macro_rules! data_tracepoints {
    ($(($enter:ident, $exit:ident, $syscall:expr, $kind:expr, $dir:expr)),* $(,)?) => {$(
        /// Entry of a data syscall: remember the socket and its sequence number.
        #[tracepoint]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            enter_data(&ctx, $syscall, $kind, $dir)
        }
        /// Exit of a data syscall: emit the event.
        #[tracepoint]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            exit_data(&ctx)
        }
    )*};
}

data_tracepoints!(
    (
        enter_read,
        exit_read,
        SYSCALL_READ,
        BufKind::Plain,
        Direction::Ingress
    ),
    (
        enter_write,
        exit_write,
        SYSCALL_WRITE,
        BufKind::Plain,
        Direction::Egress
    ),
    (
        enter_readv,
        exit_readv,
        SYSCALL_READV,
        BufKind::Iovec,
        Direction::Ingress
    ),
    (
        enter_writev,
        exit_writev,
        SYSCALL_WRITEV,
        BufKind::Iovec,
        Direction::Egress
    ),
    (
        enter_sendto,
        exit_sendto,
        SYSCALL_SENDTO,
        BufKind::Plain,
        Direction::Egress
    ),
    (
        enter_recvfrom,
        exit_recvfrom,
        SYSCALL_RECVFROM,
        BufKind::Plain,
        Direction::Ingress
    ),
    (
        enter_sendmsg,
        exit_sendmsg,
        SYSCALL_SENDMSG,
        BufKind::Msghdr,
        Direction::Egress
    ),
    (
        enter_recvmsg,
        exit_recvmsg,
        SYSCALL_RECVMSG,
        BufKind::Msghdr,
        Direction::Ingress
    ),
);

/// connect() entry: remember the fd for the exit.
#[tracepoint]
pub fn enter_connect(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_agent(pid_tgid, &config()) {
        let _ = CONNECTING.insert(pid_tgid, arg(&ctx, 0) as u32, 0);
    }
    0
}

/// connect() exit: a connected (or connecting) TCP socket is a client.
#[tracepoint]
pub fn exit_connect(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: copied out before removal.
    let fd = match unsafe { CONNECTING.get(pid_tgid) } {
        Some(fd) => *fd,
        None => return 0,
    };
    let _ = CONNECTING.remove(pid_tgid);
    let r = ret(&ctx);
    const EINPROGRESS: i64 = 115;
    if r == 0 || r == -EINPROGRESS {
        let _ = set_role(fd, SocketRole::Client);
    }
    0
}

/// accept4() exit: the new socket is a server.
#[tracepoint]
pub fn exit_accept4(ctx: TracePointContext) -> u32 {
    try_exit_accept(&ctx)
}

/// accept() exit: the new socket is a server.
#[tracepoint]
pub fn exit_accept(ctx: TracePointContext) -> u32 {
    try_exit_accept(&ctx)
}

fn try_exit_accept(ctx: &TracePointContext) -> u32 {
    if is_agent(bpf_get_current_pid_tgid(), &config()) {
        return 0;
    }
    let r = ret(ctx);
    if r >= 0 {
        let _ = set_role(r as u32, SocketRole::Server);
    }
    0
}

fn set_role(fd: u32, role: SocketRole) -> Result<(), i64> {
    let cfg = config();
    let sk = sock::tcp_sock_of_fd(fd, &cfg.offsets)?;
    ids::set_role(sk as u64, role as u8, cfg.id_seed)
}

/// close() entry: forget the socket and tell user space, so it can drop unanswered requests.
#[tracepoint]
pub fn enter_close(ctx: TracePointContext) -> u32 {
    let _ = try_enter_close(&ctx);
    0
}

fn try_enter_close(ctx: &TracePointContext) -> Result<(), i64> {
    let cfg = config();
    let (pid_tgid, fd, sk) = traced_socket(ctx, &cfg)?;
    let socket_id = match ids::forget(sk as u64) {
        Some(id) => id,
        None => return Ok(()),
    };
    let buf = SCRATCH.get_ptr_mut(0).ok_or(-1i64)?;
    // SAFETY: per-CPU scratch slot, used by this program alone on this CPU.
    let ev = unsafe { &mut (*buf).header };
    // SAFETY: helper with no preconditions.
    ev.timestamp_ns = unsafe { bpf_ktime_get_ns() };
    ev.pid_tgid = pid_tgid;
    ev.socket_id = socket_id;
    ev.syscall_trace_id = 0;
    ev.cap_seq = 0;
    ev.syscall_len = 0;
    ev.tcp_seq = 0;
    ev.fd = fd;
    ev.payload_len = 0;
    ev.kind = EventKind::Close as u8;
    ev.direction = 0;
    ev.role = 0;
    ev.syscall = SYSCALL_CLOSE;
    ev.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    sock::read_tuple(sk, ev, &cfg.offsets)?;
    // SAFETY: the header is plain data; the slice covers exactly its bytes.
    let bytes = unsafe {
        core::slice::from_raw_parts(ev as *const SocketEvent as *const u8, EVENT_HEADER_LEN)
    };
    submit(bytes)
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// Nothing to run on the host: the programs only load into a kernel.
#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
