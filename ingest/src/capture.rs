//! Packet capture on chosen interfaces in any network namespace: one AF_PACKET socket with a
//! TPACKET_V3 ring per interface. The kernel copies each frame's first `snaplen` bytes (a
//! one-instruction classic BPF filter truncates them) into blocks of a ring shared with this
//! process, so reading a frame is a pointer walk, not a copy or a syscall.
//!
//! Why AF_PACKET and not a TC eBPF program: it needs no program per interface or qdisc changes
//! in the watched namespaces, sees tunnelled frames whole at the point they cross the NIC, and
//! tells for free whether a frame was leaving or arriving (`sll_pkttype`), which decides the
//! observation point.

use std::{
    ffi::CString,
    fs::File,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::PathBuf,
    ptr::NonNull,
};

use wiretrace_packet::Link;

/// Where network namespaces created by `ip netns add` (and CNI plugins) are pinned.
pub const NETNS_DIR: &str = "/run/netns";

/// Name used for the agent's own (host) namespace.
pub const HOST_NETNS: &str = "host";

/// What an interface is in the topology; it decides the observation point of its spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NicRole {
    /// The host end of a pod's veth (spans `c` / `s`).
    Pod,
    /// A node's NIC, possibly carrying tunnels (spans `c-nd` / `s-nd`).
    Node,
    /// Loopback (spans `local`).
    Loopback,
    /// Unknown (spans `rest`).
    Unknown,
}

impl NicRole {
    /// The name used in rules and in `l4_flow_log.nic_role`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pod => "pod",
            Self::Node => "node",
            Self::Loopback => "local",
            Self::Unknown => "rest",
        }
    }

    /// Parses `pod`, `node`, `local` or `rest`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pod" => Self::Pod,
            "node" => Self::Node,
            "local" => Self::Loopback,
            "rest" => Self::Unknown,
            _ => return None,
        })
    }
}

/// One interface in one network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CapturePoint {
    /// Namespace name (`host`, or its name under /run/netns).
    pub netns: String,
    /// Interface name.
    pub nic: String,
    /// What the interface is.
    pub role: NicRole,
}

/// One captured frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Unix µs.
    pub time_us: i64,
    /// Leaving through the interface (true), arriving (false), or unknown (offline captures).
    pub outgoing: Option<bool>,
    /// The captured bytes, from the link header on.
    pub data: &'a [u8],
    /// What the bytes start with.
    pub link: Link,
    /// The frame's length on the wire.
    pub wire_len: usize,
}

/// A capture rule: interfaces matching `nic` in namespaces matching `netns` have `role`.
/// Written `ROLE=NETNS/NIC` with `*` wildcards, e.g. `node=host/eth*` or `pod=node*/veth*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRule {
    /// The role given to matches.
    pub role: NicRole,
    /// Namespace name pattern.
    pub netns: String,
    /// Interface name pattern.
    pub nic: String,
}

impl std::str::FromStr for CaptureRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("capture rule {s:?}: expected ROLE=NETNS/NIC, e.g. node=host/eth*");
        let (role, rest) = s.split_once('=').ok_or_else(bad)?;
        let (netns, nic) = rest.split_once('/').ok_or_else(bad)?;
        let role = NicRole::parse(role)
            .ok_or_else(|| format!("capture rule {s:?}: role must be pod, node, local or rest"))?;
        if netns.is_empty() || nic.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            role,
            netns: netns.into(),
            nic: nic.into(),
        })
    }
}

/// Default rules: the host's physical NICs as node NICs and the host ends of common CNI veths
/// as pod NICs.
pub const DEFAULT_RULES: &[&str] = &[
    "node=host/eth*",
    "node=host/ens*",
    "node=host/enp*",
    "node=host/eno*",
    "pod=host/veth*",
    "pod=host/cali*",
    "pod=host/lxc*",
];

/// `*` matches any run of characters; everything else matches itself.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == name;
    };
    let Some(mut left) = name.strip_prefix(head) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('*').collect();
    let (last, middle) = parts.split_last().unwrap_or((&"", &[]));
    for part in middle {
        match left.find(part) {
            Some(i) => left = &left[i + part.len()..],
            None => return false,
        }
    }
    left.len() >= last.len() && left.ends_with(last)
}

/// A network namespace: its name and the file that pins it (`None`: the agent's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    /// `host` or the name under /run/netns.
    pub name: String,
    /// The pinned namespace file.
    pub path: Option<PathBuf>,
}

impl Netns {
    /// The namespace pinned as `name` under /run/netns.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.into(),
            path: Some(PathBuf::from(NETNS_DIR).join(name)),
        }
    }
}

/// The host namespace and every namespace pinned under /run/netns.
pub fn namespaces() -> Vec<Netns> {
    let mut all = vec![Netns {
        name: HOST_NETNS.into(),
        path: None,
    }];
    if let Ok(dir) = std::fs::read_dir(NETNS_DIR) {
        let mut named: Vec<Netns> = dir
            .flatten()
            .map(|e| Netns {
                name: e.file_name().to_string_lossy().into_owned(),
                path: Some(e.path()),
            })
            .collect();
        named.sort_by(|a, b| a.name.cmp(&b.name));
        all.extend(named);
    }
    all
}

/// Moves the calling thread into `ns` (threads it starts afterwards are born there too).
pub fn enter_netns(ns: &Netns) -> io::Result<()> {
    let Some(path) = &ns.path else {
        return Ok(());
    };
    let file = File::open(path)?;
    // SAFETY: a valid namespace fd; setns changes only the calling thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a short-lived thread that has entered `ns` (sockets made there stay in that
/// namespace).
pub fn in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    if ns.path.is_none() {
        return f();
    }
    let ns = ns.clone();
    std::thread::spawn(move || {
        enter_netns(&ns)?;
        f()
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))?
}

/// Interface names in `ns`.
pub fn interfaces(ns: &Netns) -> io::Result<Vec<String>> {
    in_netns(ns, || {
        // SAFETY: if_nameindex returns a list ending with a zero entry, freed below.
        unsafe {
            let list = libc::if_nameindex();
            if list.is_null() {
                return Err(io::Error::last_os_error());
            }
            let mut names = Vec::new();
            let mut p = list;
            while (*p).if_index != 0 {
                names.push(
                    std::ffi::CStr::from_ptr((*p).if_name)
                        .to_string_lossy()
                        .into_owned(),
                );
                p = p.add(1);
            }
            libc::if_freenameindex(list);
            Ok(names)
        }
    })
}

/// Every (namespace, interface) the rules select, with the first matching rule's role.
pub fn discover(rules: &[CaptureRule]) -> Vec<(Netns, CapturePoint)> {
    let mut found = Vec::new();
    for ns in namespaces() {
        if !rules.iter().any(|r| wildcard_match(&r.netns, &ns.name)) {
            continue;
        }
        let Ok(nics) = interfaces(&ns) else {
            continue; // the namespace went away
        };
        for nic in nics {
            if let Some(rule) = rules
                .iter()
                .find(|r| wildcard_match(&r.netns, &ns.name) && wildcard_match(&r.nic, &nic))
            {
                let point = CapturePoint {
                    netns: ns.name.clone(),
                    nic,
                    role: rule.role,
                };
                found.push((ns.clone(), point));
            }
        }
    }
    found
}

/// Ring block size: the ring is `ring_mib` blocks of 1 MiB.
const BLOCK_SIZE: usize = 1 << 20;
const FRAME_SIZE: usize = 2048;
/// A block is handed over at the latest this long after its first frame.
const BLOCK_TIMEOUT_MS: u32 = 20;

/// A TPACKET_V3 ring on one interface.
#[derive(Debug)]
pub struct Ring {
    fd: OwnedFd,
    map: NonNull<u8>,
    blocks: usize,
    next_block: usize,
    /// VLAN tags the kernel took out of frames are put back here.
    scratch: Vec<u8>,
}

// SAFETY: the mapping belongs to the ring alone and is only read through `&mut self`.
unsafe impl Send for Ring {}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a T of the given size for the duration of the call.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
}

/// Reads a socket option of type `T`, starting from `value`.
fn getsockopt<T>(fd: &OwnedFd, level: i32, name: i32, mut value: T) -> io::Result<T> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a T of `len` bytes the kernel may fill.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

impl Ring {
    /// Opens a ring of `ring_mib` MiB (at least 2) on `nic` in `ns`, copying at most `snaplen`
    /// bytes of each frame.
    pub fn open(ns: &Netns, nic: &str, snaplen: u32, ring_mib: usize) -> io::Result<Self> {
        let nic = CString::new(nic).map_err(io::Error::other)?;
        in_netns(ns, move || Self::open_here(&nic, snaplen, ring_mib.max(2)))
    }

    fn open_here(nic: &CString, snaplen: u32, blocks: usize) -> io::Result<Self> {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // Protocol 0: the socket receives nothing until `bind` names the interface and the
        // protocol, so no frame of another interface can slip into the ring before that.
        // SAFETY: plain socket creation; the fd is owned below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        check(raw)?;
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(nic.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface {}", nic.to_string_lossy()),
            ));
        }
        // Classic BPF "return snaplen": the kernel copies only that many bytes of each frame.
        let mut truncate = [libc::sock_filter {
            code: 0x06, // BPF_RET | BPF_K
            jt: 0,
            jf: 0,
            k: snaplen,
        }];
        let prog = libc::sock_fprog {
            len: 1,
            filter: truncate.as_mut_ptr(),
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)?;
        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version)?;
        let req = libc::tpacket_req3 {
            tp_block_size: BLOCK_SIZE as u32,
            tp_block_nr: blocks as u32,
            tp_frame_size: FRAME_SIZE as u32,
            tp_frame_nr: (BLOCK_SIZE * blocks / FRAME_SIZE) as u32,
            tp_retire_blk_tov: BLOCK_TIMEOUT_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
        // SAFETY: maps the ring the kernel just allocated for this socket.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BLOCK_SIZE * blocks,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = NonNull::new(map.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        let ring = Self {
            fd,
            map,
            blocks,
            next_block: 0,
            scratch: Vec::new(),
        };
        // SAFETY: zeroed sockaddr_ll is valid; the fields set below are all bind needs.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` is a sockaddr_ll of the given size.
        check(unsafe {
            libc::bind(
                ring.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(ring)
    }

    /// Waits up to `timeout_ms` for frames, then hands every frame of every ready block to `f`.
    /// Returns the number of frames.
    pub fn poll(&mut self, timeout_ms: i32, mut f: impl FnMut(&Frame<'_>)) -> io::Result<usize> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        if !self.block_ready() {
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::Interrupted {
                    Ok(0)
                } else {
                    Err(e)
                };
            }
            if pfd.revents & libc::POLLERR != 0 {
                // The interface went down or away: the socket holds the reason.
                let err: libc::c_int = getsockopt(&self.fd, libc::SOL_SOCKET, libc::SO_ERROR, 0)?;
                if err != 0 {
                    return Err(io::Error::from_raw_os_error(err));
                }
            }
        }
        let mut frames = 0;
        while self.block_ready() {
            frames += self.read_block(&mut f);
        }
        Ok(frames)
    }

    fn block(&self, i: usize) -> *mut libc::tpacket_block_desc {
        // SAFETY: i < self.blocks, so the offset stays inside the mapping.
        unsafe { self.map.as_ptr().add(i * BLOCK_SIZE).cast() }
    }

    fn block_ready(&self) -> bool {
        let b = self.block(self.next_block);
        // SAFETY: the block header lies in the mapping; the kernel writes block_status last.
        let status = unsafe { std::ptr::read_volatile(&raw const (*b).hdr.bh1.block_status) };
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        status & libc::TP_STATUS_USER != 0
    }

    fn read_block(&mut self, f: &mut impl FnMut(&Frame<'_>)) -> usize {
        let b = self.block(self.next_block);
        let base = b.cast::<u8>();
        // SAFETY: the kernel handed this block to user space (TP_STATUS_USER): its header and
        // frames stay put until block_status is written back below.
        let count = unsafe {
            let hdr = &(*b).hdr.bh1;
            let count = hdr.num_pkts as usize;
            let mut off = hdr.offset_to_first_pkt as usize;
            for _ in 0..count {
                if off == 0 || off >= BLOCK_SIZE {
                    break;
                }
                let p = base.add(off).cast::<libc::tpacket3_hdr>();
                let h = &*p;
                let data_at = h.tp_mac as usize;
                let snap = h.tp_snaplen as usize;
                if off + data_at + snap <= BLOCK_SIZE {
                    let data = std::slice::from_raw_parts(base.add(off + data_at), snap);
                    let ll = &*base
                        .add(off + libc::TPACKET_ALIGN(size_of::<libc::tpacket3_hdr>()))
                        .cast::<libc::sockaddr_ll>();
                    let outgoing = ll.sll_pkttype == libc::PACKET_OUTGOING;
                    let time_us = i64::from(h.tp_sec) * 1_000_000 + i64::from(h.tp_nsec / 1_000);
                    let vlan = (h.tp_status & libc::TP_STATUS_VLAN_VALID != 0)
                        .then_some((h.hv1.tp_vlan_tpid, h.hv1.tp_vlan_tci as u16));
                    let (data, extra) = match vlan {
                        Some((tpid, tci)) => (self.with_vlan(data, tpid, tci), 4),
                        None => (data, 0),
                    };
                    f(&Frame {
                        time_us,
                        outgoing: Some(outgoing),
                        data,
                        link: Link::Ethernet,
                        wire_len: h.tp_len as usize + extra,
                    });
                }
                off += h.tp_next_offset as usize;
            }
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            std::ptr::write_volatile(&raw mut (*b).hdr.bh1.block_status, libc::TP_STATUS_KERNEL);
            count
        };
        self.next_block = (self.next_block + 1) % self.blocks;
        count
    }

    /// The frame with the VLAN tag the kernel stripped put back after the MAC addresses.
    fn with_vlan<'a>(&'a mut self, data: &[u8], tpid: u16, tci: u16) -> &'a [u8] {
        let tpid = if tpid == 0 { 0x8100 } else { tpid };
        self.scratch.clear();
        let split = data.len().min(12);
        self.scratch.extend_from_slice(&data[..split]);
        self.scratch.extend_from_slice(&tpid.to_be_bytes());
        self.scratch.extend_from_slice(&tci.to_be_bytes());
        self.scratch.extend_from_slice(&data[split..]);
        &self.scratch
    }

    /// Frames the kernel dropped since the last call (the ring was full).
    pub fn drops(&self) -> io::Result<u64> {
        let none = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let stats = getsockopt(&self.fd, libc::SOL_PACKET, libc::PACKET_STATISTICS, none)?;
        Ok(u64::from(stats.tp_drops))
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what open() mapped; no frame borrows outlive `&mut self`.
        unsafe {
            libc::munmap(self.map.as_ptr().cast(), BLOCK_SIZE * self.blocks);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        for (p, n, want) in [
            ("eth*", "eth0", true),
            ("eth*", "veth0", false),
            ("*", "", true),
            ("v*h*", "veth-a", true),
            ("v*h*x", "veth-a", false),
            ("wt-*-u", "wt-n1-u", true),
            ("lo", "lo", true),
            ("a*a", "a", false),
        ] {
            assert_eq!(wildcard_match(p, n), want, "{p} vs {n}");
        }
    }

    #[test]
    fn rules_parse_or_say_why() {
        let r: CaptureRule = "pod=wt-*/veth*".parse().unwrap();
        assert_eq!(
            (r.role, r.netns.as_str(), r.nic.as_str()),
            (NicRole::Pod, "wt-*", "veth*")
        );
        assert!(
            "eth0"
                .parse::<CaptureRule>()
                .unwrap_err()
                .contains("ROLE=NETNS/NIC")
        );
        assert!(
            "car=host/eth0"
                .parse::<CaptureRule>()
                .unwrap_err()
                .contains("role")
        );
        for d in DEFAULT_RULES {
            d.parse::<CaptureRule>().unwrap();
        }
    }
}
