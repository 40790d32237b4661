//! From a file descriptor to the `struct sock` behind it, and what tracing reads from it.
//! Every offset comes from the agent (BTF of the running kernel).

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use wiretrace_ebpf_common::{Direction, KernelOffsets, SocketEvent};

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;
const SOCK_STREAM: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;

#[inline(always)]
fn read<T>(base: *const u8, off: u32) -> Result<T, i64> {
    // SAFETY: kernel memory read through the helper, which faults safely.
    unsafe { bpf_probe_read_kernel(base.add(off as usize) as *const T) }.map_err(i64::from)
}

/// The `struct sock *` of `fd` in the current task, if it is an inet TCP socket.
#[inline(always)]
pub(crate) fn tcp_sock_of_fd(fd: u32, off: &KernelOffsets) -> Result<*const u8, i64> {
    // SAFETY: helper with no preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let files: *const u8 = read(task, off.task_files)?;
    let fdt: *const u8 = read(files, off.files_fdt)?;
    let max_fds: u32 = read(fdt, off.fdtable_max_fds)?;
    if fd >= max_fds {
        return Err(-1);
    }
    let fd_array: *const u8 = read(fdt, off.fdtable_fd)?;
    let file: *const u8 = read(fd_array, fd * 8)?;
    if file.is_null() {
        return Err(-1);
    }
    let inode: *const u8 = read(file, off.file_f_inode)?;
    let mode: u16 = read(inode, off.inode_i_mode)?;
    if mode & S_IFMT != S_IFSOCK {
        return Err(-1);
    }
    let socket: *const u8 = read(file, off.file_private_data)?;
    let sock_type: u16 = read(socket, off.socket_type)?;
    if sock_type != SOCK_STREAM {
        return Err(-1);
    }
    let sk: *const u8 = read(socket, off.socket_sk)?;
    let family: u16 = read(sk, off.sk_family)?;
    if family != AF_INET && family != AF_INET6 {
        return Err(-1);
    }
    let proto: u16 = read(sk, off.sk_protocol)?;
    if proto != IPPROTO_TCP {
        return Err(-1);
    }
    Ok(sk)
}

/// `write_seq` for a send, `copied_seq` for a receive: the seq of the first byte moved.
#[inline(always)]
pub(crate) fn tcp_seq(sk: *const u8, dir: Direction, off: &KernelOffsets) -> Result<u32, i64> {
    match dir {
        Direction::Egress => read(sk, off.tcp_write_seq),
        Direction::Ingress => read(sk, off.tcp_copied_seq),
    }
}

/// Fills family, ports and addresses of `ev` from the socket.
#[inline(always)]
pub(crate) fn read_tuple(
    sk: *const u8,
    ev: &mut SocketEvent,
    off: &KernelOffsets,
) -> Result<(), i64> {
    let family: u16 = read(sk, off.sk_family)?;
    ev.family = family as u8;
    let num: u16 = read(sk, off.sk_num)?;
    let dport: u16 = read(sk, off.sk_dport)?;
    ev.local_port = num;
    ev.remote_port = u16::from_be(dport);
    if family == AF_INET6 {
        ev.local_addr = read(sk, off.sk_v6_rcv_saddr)?;
        ev.remote_addr = read(sk, off.sk_v6_daddr)?;
    } else {
        let l: [u8; 4] = read(sk, off.sk_rcv_saddr)?;
        let r: [u8; 4] = read(sk, off.sk_daddr)?;
        ev.local_addr = [0; 16];
        ev.remote_addr = [0; 16];
        ev.local_addr[..4].copy_from_slice(&l);
        ev.remote_addr[..4].copy_from_slice(&r);
    }
    Ok(())
}
