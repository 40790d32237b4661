//! Kernel struct field offsets from the running kernel's BTF, so the eBPF programs work on any
//! kernel build without CO-RE.

use btf_rs::{Btf, Type};
use wiretrace_ebpf_common::KernelOffsets;

use crate::error::IngestError;

/// Where the kernel publishes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Reads every offset the programs need from `/sys/kernel/btf/vmlinux`.
pub fn kernel_offsets() -> Result<KernelOffsets, IngestError> {
    let btf = Btf::from_file(VMLINUX_BTF).map_err(|e| IngestError::Btf(e.to_string()))?;
    offsets_from(&btf)
}

/// Reads every offset the programs need from `btf`.
pub fn offsets_from(btf: &Btf) -> Result<KernelOffsets, IngestError> {
    let f = |s: &str, path: &str| field_offset(btf, s, path);
    Ok(KernelOffsets {
        task_files: f("task_struct", "files")?,
        files_fdt: f("files_struct", "fdt")?,
        fdtable_fd: f("fdtable", "fd")?,
        fdtable_max_fds: f("fdtable", "max_fds")?,
        file_private_data: f("file", "private_data")?,
        file_f_inode: f("file", "f_inode")?,
        inode_i_mode: f("inode", "i_mode")?,
        socket_type: f("socket", "type")?,
        socket_sk: f("socket", "sk")?,
        sk_family: f("sock", "__sk_common.skc_family")?,
        sk_protocol: f("sock", "sk_protocol")?,
        sk_num: f("sock", "__sk_common.skc_num")?,
        sk_dport: f("sock", "__sk_common.skc_dport")?,
        sk_rcv_saddr: f("sock", "__sk_common.skc_rcv_saddr")?,
        sk_daddr: f("sock", "__sk_common.skc_daddr")?,
        sk_v6_rcv_saddr: f("sock", "__sk_common.skc_v6_rcv_saddr")?,
        sk_v6_daddr: f("sock", "__sk_common.skc_v6_daddr")?,
        tcp_write_seq: f("tcp_sock", "write_seq")?,
        tcp_copied_seq: f("tcp_sock", "copied_seq")?,
        _pad: 0,
    })
}

/// Byte offset of `path` (dot-separated members; anonymous structs and unions are searched
/// through) inside struct `name`.
pub fn field_offset(btf: &Btf, name: &str, path: &str) -> Result<u32, IngestError> {
    let missing = || IngestError::BtfField {
        ty: name.to_string(),
        field: path.to_string(),
    };
    let root = btf
        .resolve_types_by_name(name)
        .map_err(|_| missing())?
        .into_iter()
        .find(|t| matches!(t, Type::Struct(s) if !s.members.is_empty()))
        .ok_or_else(missing)?;
    let mut ty = root;
    let mut bits = 0u32;
    for part in path.split('.') {
        let (off, next) = find_member(btf, &ty, part).ok_or_else(missing)?;
        bits += off;
        ty = next;
    }
    if !bits.is_multiple_of(8) {
        return Err(missing());
    }
    Ok(bits / 8)
}

/// Finds member `name` in a struct/union type, descending into anonymous members; returns its
/// bit offset and its type (typedefs and qualifiers stripped).
fn find_member(btf: &Btf, ty: &Type, name: &str) -> Option<(u32, Type)> {
    let members = match ty {
        Type::Struct(s) | Type::Union(s) => &s.members,
        _ => return None,
    };
    for m in members {
        if m.bitfield_size().is_some_and(|b| b != 0) {
            continue;
        }
        let mname = btf.resolve_name(m).unwrap_or_default();
        let mty = strip(btf, btf.resolve_chained_type(m).ok()?);
        if mname == name {
            return Some((m.bit_offset(), mty));
        }
        if mname.is_empty()
            && let Some((off, t)) = find_member(btf, &mty, name)
        {
            return Some((m.bit_offset() + off, t));
        }
    }
    None
}

fn strip(btf: &Btf, mut ty: Type) -> Type {
    for _ in 0..16 {
        let next = match &ty {
            Type::Typedef(t) => btf.resolve_chained_type(t),
            Type::Const(t) => btf.resolve_chained_type(t),
            Type::Volatile(t) => btf.resolve_chained_type(t),
            Type::Restrict(t) => btf.resolve_chained_type(t),
            Type::TypeTag(t) => btf.resolve_chained_type(t),
            _ => return ty,
        };
        match next {
            Ok(n) => ty = n,
            Err(_) => return ty,
        }
    }
    ty
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_kernel_offsets_are_plausible() {
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{VMLINUX_BTF} is absent; CI must run this test"
            );
            eprintln!("SKIP: {VMLINUX_BTF} is absent on this machine");
            return;
        }
        let o = kernel_offsets().expect("offsets");
        // sock_common is the first member of sock; its fields sit in its first 128 bytes.
        assert!(o.sk_family < 128 && o.sk_daddr < 128 && o.sk_num < 128);
        assert_ne!(o.tcp_write_seq, o.tcp_copied_seq);
        assert!(o.tcp_write_seq > o.sk_protocol);
    }
}
