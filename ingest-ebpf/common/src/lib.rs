//! Types shared by wiretrace's eBPF programs (kernel side) and its agent (user side).
//!
//! Layout: everything here is `#[repr(C)]` and `Copy`, so the kernel writes it into the ring
//! buffer and user space reads it back byte for byte. With the `user` feature the types also
//! implement `aya::Pod`, so the agent can hand [`ProbeConfig`] to the kernel as a global.
#![no_std]

/// Largest payload prefix the kernel can copy per event; the runtime limit is at most this - 1.
pub const MAX_PAYLOAD: usize = 4096;

/// Default payload prefix copied per data syscall.
pub const DEFAULT_PAYLOAD_LIMIT: u32 = 1024;

/// Length of a task's `comm` (process name) in the kernel.
pub const COMM_LEN: usize = 16;

/// Name of the ring buffer map the programs write [`SocketEvent`]s into.
pub const EVENTS_MAP: &str = "EVENTS";

/// Name of the per-CPU counter of events the kernel could not put in the full ring buffer.
pub const DROPS_MAP: &str = "DROPS";

/// Name of the global holding the [`ProbeConfig`].
pub const CONFIG_GLOBAL: &str = "CONFIG";

/// Bytes of a [`SocketEvent`] header in the ring buffer; the payload follows it.
pub const EVENT_HEADER_LEN: usize = core::mem::size_of::<SocketEvent>();

/// Traffic direction of a data syscall, from the calling process's point of view.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// write/send: bytes leave the process.
    Egress = 0,
    /// read/recv: bytes enter the process.
    Ingress = 1,
}

/// What a [`SocketEvent`] reports.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A data syscall moved bytes; a payload prefix follows the header.
    Data = 0,
    /// The process closed the socket; no payload.
    Close = 1,
}

/// The socket's role as learnt from connect/accept (0 when neither was seen).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketRole {
    /// Not seen connecting or being accepted.
    Unknown = 0,
    /// The process called connect() on it.
    Client = 1,
    /// The process got it from accept().
    Server = 2,
}

/// Byte offsets of the kernel struct fields the programs read, taken from the running kernel's
/// BTF at load time so no offset is tied to one kernel build.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.files`
    pub task_files: u32,
    /// `files_struct.fdt`
    pub files_fdt: u32,
    /// `fdtable.fd`
    pub fdtable_fd: u32,
    /// `fdtable.max_fds`
    pub fdtable_max_fds: u32,
    /// `file.private_data` (the `struct socket` of a socket file)
    pub file_private_data: u32,
    /// `file.f_inode`
    pub file_f_inode: u32,
    /// `inode.i_mode`
    pub inode_i_mode: u32,
    /// `socket.type`
    pub socket_type: u32,
    /// `socket.sk`
    pub socket_sk: u32,
    /// `sock.__sk_common.skc_family`
    pub sk_family: u32,
    /// `sock.sk_protocol`
    pub sk_protocol: u32,
    /// `sock.__sk_common.skc_num` (local port, host order)
    pub sk_num: u32,
    /// `sock.__sk_common.skc_dport` (remote port, network order)
    pub sk_dport: u32,
    /// `sock.__sk_common.skc_rcv_saddr`
    pub sk_rcv_saddr: u32,
    /// `sock.__sk_common.skc_daddr`
    pub sk_daddr: u32,
    /// `sock.__sk_common.skc_v6_rcv_saddr`
    pub sk_v6_rcv_saddr: u32,
    /// `sock.__sk_common.skc_v6_daddr`
    pub sk_v6_daddr: u32,
    /// `tcp_sock.write_seq`
    pub tcp_write_seq: u32,
    /// `tcp_sock.copied_seq`
    pub tcp_copied_seq: u32,
    /// Keeps the struct a multiple of 8 bytes.
    pub _pad: u32,
}

/// Settings the agent writes into the programs' read-only global before loading them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// The agent's own process id: its syscalls are ignored.
    pub agent_tgid: u32,
    /// Payload prefix copied per data syscall (1 ..= MAX_PAYLOAD - 1).
    pub payload_limit: u32,
    /// Seed folded into syscall trace ids and socket ids so they are unique for this agent run.
    pub id_seed: u64,
    /// Field offsets of the running kernel.
    pub offsets: KernelOffsets,
}

/// One ring-buffer record: a data syscall on an inet TCP socket, or its close.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketEvent {
    /// CLOCK_MONOTONIC ns: syscall entry for egress, syscall exit for ingress.
    pub timestamp_ns: u64,
    /// `tgid << 32 | tid` of the calling thread.
    pub pid_tgid: u64,
    /// Per-socket id, unique within one agent run.
    pub socket_id: u64,
    /// The thread's syscall trace id (0 when an egress had no preceding ingress).
    pub syscall_trace_id: u64,
    /// Per-socket event counter (capture sequence).
    pub cap_seq: u64,
    /// Bytes the syscall moved (its return value).
    pub syscall_len: u64,
    /// TCP sequence number of the first byte: `write_seq` at send entry, `copied_seq` at receive entry.
    pub tcp_seq: u32,
    /// The file descriptor.
    pub fd: u32,
    /// Payload bytes following this header.
    pub payload_len: u32,
    /// [`EventKind`] as u8.
    pub kind: u8,
    /// [`Direction`] as u8.
    pub direction: u8,
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u8,
    /// [`SocketRole`] as u8.
    pub role: u8,
    /// Local port, host order.
    pub local_port: u16,
    /// Remote port, host order.
    pub remote_port: u16,
    /// Which syscall produced the event (a `SYSCALL_*` constant).
    pub syscall: u32,
    /// Local address: IPv4 in the first 4 bytes, or IPv6.
    pub local_addr: [u8; 16],
    /// Remote address: IPv4 in the first 4 bytes, or IPv6.
    pub remote_addr: [u8; 16],
    /// The thread's comm.
    pub comm: [u8; COMM_LEN],
}

/// `read(2)`
pub const SYSCALL_READ: u32 = 0;
/// `write(2)`
pub const SYSCALL_WRITE: u32 = 1;
/// `readv(2)`
pub const SYSCALL_READV: u32 = 2;
/// `writev(2)`
pub const SYSCALL_WRITEV: u32 = 3;
/// `sendto(2)`
pub const SYSCALL_SENDTO: u32 = 4;
/// `recvfrom(2)`
pub const SYSCALL_RECVFROM: u32 = 5;
/// `sendmsg(2)`
pub const SYSCALL_SENDMSG: u32 = 6;
/// `recvmsg(2)`
pub const SYSCALL_RECVMSG: u32 = 7;
/// `close(2)`
pub const SYSCALL_CLOSE: u32 = 8;

/// Every tracepoint program: (program name, tracepoint category, tracepoint name).
pub const TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("enter_read", "syscalls", "sys_enter_read"),
    ("exit_read", "syscalls", "sys_exit_read"),
    ("enter_write", "syscalls", "sys_enter_write"),
    ("exit_write", "syscalls", "sys_exit_write"),
    ("enter_readv", "syscalls", "sys_enter_readv"),
    ("exit_readv", "syscalls", "sys_exit_readv"),
    ("enter_writev", "syscalls", "sys_enter_writev"),
    ("exit_writev", "syscalls", "sys_exit_writev"),
    ("enter_sendto", "syscalls", "sys_enter_sendto"),
    ("exit_sendto", "syscalls", "sys_exit_sendto"),
    ("enter_recvfrom", "syscalls", "sys_enter_recvfrom"),
    ("exit_recvfrom", "syscalls", "sys_exit_recvfrom"),
    ("enter_sendmsg", "syscalls", "sys_enter_sendmsg"),
    ("exit_sendmsg", "syscalls", "sys_exit_sendmsg"),
    ("enter_recvmsg", "syscalls", "sys_enter_recvmsg"),
    ("exit_recvmsg", "syscalls", "sys_exit_recvmsg"),
    ("enter_connect", "syscalls", "sys_enter_connect"),
    ("exit_connect", "syscalls", "sys_exit_connect"),
    ("exit_accept4", "syscalls", "sys_exit_accept4"),
    ("exit_accept", "syscalls", "sys_exit_accept"),
    ("enter_close", "syscalls", "sys_enter_close"),
];

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data: repr(C), Copy, no padding-dependent invariants, any bit pattern valid.
    unsafe impl aya::Pod for super::ProbeConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelOffsets {}
}
