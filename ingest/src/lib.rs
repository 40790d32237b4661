//! placeholder
/// The compiled eBPF object.
pub static EBPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/wiretrace.bpf.o"));
