//! One walk from the first byte of a frame to the inner TCP/UDP header.

use std::net::IpAddr;

use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice, TcpHeaderSlice};

use crate::tunnel::{self, GENEVE_PORT, Next, TunnelHeader, VXLAN_PORTS};

/// Most tunnels nested in one frame (VLAN tags do not count).
pub const MAX_TUNNEL_TIERS: usize = 2;

/// Most VLAN tags kept from one frame (outer and inner tags of two tiers).
pub const MAX_VLAN_TAGS: usize = 4;

/// A short list held inline, so decapsulating a frame allocates nothing. Reads as a slice.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Inline<T: Copy, const N: usize> {
    len: usize,
    items: [T; N],
}

impl<T: Copy, const N: usize> Inline<T, N> {
    fn new(filler: T) -> Self {
        Self {
            len: 0,
            items: [filler; N],
        }
    }

    /// Appends `item`; false when full.
    fn push(&mut self, item: T) -> bool {
        let Some(slot) = self.items.get_mut(self.len) else {
            return false;
        };
        *slot = item;
        self.len += 1;
        true
    }
}

impl<T: Copy, const N: usize> std::ops::Deref for Inline<T, N> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.items[..self.len]
    }
}

impl<T: Copy + std::fmt::Debug, const N: usize> std::fmt::Debug for Inline<T, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;

/// A kind of encapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    /// VXLAN over UDP 4789 or 8472.
    Vxlan,
    /// Geneve over UDP 6081.
    Geneve,
    /// GRE carrying IP.
    Gre,
    /// GRE carrying Ethernet (transparent Ethernet bridging).
    GreTeb,
    /// IPv4 or IPv6 inside IPv4 (protocol 4).
    IpIp,
    /// IPv6 inside IP (protocol 41).
    Ip6InIp,
}

impl TunnelKind {
    /// The name stored in `tunnel_type`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vxlan => "vxlan",
            Self::Geneve => "geneve",
            Self::Gre => "gre",
            Self::GreTeb => "gre-teb",
            Self::IpIp => "ipip",
            Self::Ip6InIp => "ip6in4",
        }
    }
}

/// One tunnel tier: its kind, id (VNI or GRE key) and outer addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    /// The encapsulation.
    pub kind: TunnelKind,
    /// VNI (VXLAN, Geneve) or key (GRE), when present.
    pub id: Option<u32>,
    /// Outer source address.
    pub outer_src: IpAddr,
    /// Outer destination address.
    pub outer_dst: IpAddr,
}

/// TCP header fields trace matching needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    /// Sequence number of the first payload byte.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80).
    pub flags: u8,
}

/// The innermost transport layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// TCP with its header fields.
    Tcp(TcpInfo),
    /// UDP.
    Udp,
    /// Another IP protocol (ports are 0).
    Other(u8),
}

/// The innermost IP packet's addressing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inner {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 when not TCP/UDP).
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Transport protocol.
    pub l4: L4,
}

/// A frame decapsulated down to its inner segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decapsulated {
    /// Tunnels from outermost to innermost (at most [`MAX_TUNNEL_TIERS`]).
    pub tunnels: Inline<Tunnel, MAX_TUNNEL_TIERS>,
    /// VLAN ids seen on any Ethernet layer, outermost first (at most [`MAX_VLAN_TAGS`]).
    pub vlans: Inline<u16, MAX_VLAN_TAGS>,
    /// The inner packet.
    pub inner: Inner,
    /// Offset of the inner transport payload in the frame.
    pub payload_offset: usize,
    /// Offset just past the inner IP packet, from its length field: bytes after it are link
    /// padding. `None` when the field is 0 (a GSO packet larger than 64 KiB).
    pub ip_end: Option<usize>,
}

impl Decapsulated {
    /// Transport payload bytes the packet carried on the wire, given the frame's original
    /// length (the capture may hold fewer bytes).
    pub fn payload_len(&self, wire_len: usize) -> usize {
        self.ip_end
            .map_or(wire_len, |end| end.min(wire_len))
            .saturating_sub(self.payload_offset)
    }
}

/// Why a frame could not be decapsulated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecapError {
    /// The bytes end inside a header.
    Truncated {
        /// The header being read.
        layer: &'static str,
    },
    /// A header is malformed.
    Malformed {
        /// The header.
        layer: &'static str,
        /// What etherparse said.
        detail: String,
    },
    /// A protocol or version this parser does not handle.
    Unsupported {
        /// What was unsupported.
        what: &'static str,
        /// Its value.
        value: u32,
    },
    /// More than [`MAX_TUNNEL_TIERS`] tunnels.
    TooDeep,
    /// A non-first IP fragment: no transport header in it.
    Fragment,
}

impl std::fmt::Display for DecapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated { layer } => write!(f, "truncated {layer} header"),
            Self::Malformed { layer, detail } => write!(f, "malformed {layer} header: {detail}"),
            Self::Unsupported { what, value } => write!(f, "unsupported {what} {value:#x}"),
            Self::TooDeep => write!(f, "more than {MAX_TUNNEL_TIERS} tunnel tiers"),
            Self::Fragment => write!(f, "non-first IP fragment"),
        }
    }
}

impl std::error::Error for DecapError {}

enum Layer {
    Ethernet,
    EtherType(u16),
}

/// The link layer a capture's frames start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Ethernet (pcap LINKTYPE_ETHERNET, AF_PACKET on Ethernet-like NICs).
    Ethernet,
    /// Linux cooked capture v1 (`tcpdump -i any`), 16-byte header.
    LinuxSll,
    /// Linux cooked capture v2, 20-byte header.
    LinuxSll2,
    /// Bare IPv4 or IPv6 packets.
    RawIp,
}

impl Link {
    /// The link for a pcap LINKTYPE value, if supported.
    pub fn from_linktype(linktype: i32) -> Option<Self> {
        Some(match linktype {
            1 => Self::Ethernet,
            113 => Self::LinuxSll,
            276 => Self::LinuxSll2,
            12 | 14 | 101 | 228 | 229 => Self::RawIp,
            _ => return None,
        })
    }

    /// Whether the frame was leaving the host, when the link header says (cooked captures).
    pub fn outgoing(self, frame: &[u8]) -> Option<bool> {
        let pkttype = match self {
            Self::LinuxSll => be16(frame, 0, "sll").ok()?,
            Self::LinuxSll2 => u16::from(*frame.get(10)?),
            Self::Ethernet | Self::RawIp => return None,
        };
        Some(pkttype == 4) // PACKET_OUTGOING
    }
}

/// Decapsulates an Ethernet frame.
pub fn decap(frame: &[u8]) -> Result<Decapsulated, DecapError> {
    walk(frame, Layer::Ethernet, 0)
}

/// Decapsulates a frame that starts with `link`'s header.
pub fn decap_link(link: Link, frame: &[u8]) -> Result<Decapsulated, DecapError> {
    match link {
        Link::Ethernet => decap(frame),
        Link::LinuxSll => walk(frame, Layer::EtherType(be16(frame, 14, "sll")?), 16),
        Link::LinuxSll2 => walk(frame, Layer::EtherType(be16(frame, 0, "sll2")?), 20),
        Link::RawIp => {
            let version = frame.first().ok_or(DecapError::Truncated { layer: "ip" })? >> 4;
            let ether_type = match version {
                4 => ETHERTYPE_IPV4,
                6 => ETHERTYPE_IPV6,
                v => {
                    return Err(DecapError::Unsupported {
                        what: "IP version",
                        value: u32::from(v),
                    });
                }
            };
            walk(frame, Layer::EtherType(ether_type), 0)
        }
    }
}

fn be16(b: &[u8], at: usize, layer: &'static str) -> Result<u16, DecapError> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or(DecapError::Truncated { layer })
}

fn malformed(layer: &'static str) -> impl Fn(String) -> DecapError {
    move |detail| {
        if detail.contains("length") || detail.contains("len") {
            DecapError::Truncated { layer }
        } else {
            DecapError::Malformed { layer, detail }
        }
    }
}

fn walk(frame: &[u8], first: Layer, start: usize) -> Result<Decapsulated, DecapError> {
    let unspecified = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
    let mut tunnels = Inline::<Tunnel, MAX_TUNNEL_TIERS>::new(Tunnel {
        kind: TunnelKind::Vxlan,
        id: None,
        outer_src: unspecified,
        outer_dst: unspecified,
    });
    let mut vlans = Inline::<u16, MAX_VLAN_TAGS>::new(0);
    let mut off = start;
    let mut layer = first;
    loop {
        // Link layer (Ethernet + VLAN tags) down to an EtherType.
        let ether_type = match layer {
            Layer::EtherType(t) => t,
            Layer::Ethernet => {
                let mut t = be16(frame, off + 12, "ethernet")?;
                off += 14;
                while matches!(t, ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD) {
                    if !vlans.push(be16(frame, off, "vlan")? & 0x0fff) {
                        return Err(DecapError::Unsupported {
                            what: "VLAN tags beyond",
                            value: MAX_VLAN_TAGS as u32,
                        });
                    }
                    t = be16(frame, off + 2, "vlan")?;
                    off += 4;
                }
                t
            }
        };
        // Network layer.
        let rest = frame.get(off..).unwrap_or_default();
        let ip_start = off;
        let (src, dst, mut proto, ip_len, total_len) = match ether_type {
            ETHERTYPE_IPV4 => {
                let ip = Ipv4HeaderSlice::from_slice(rest)
                    .map_err(|e| malformed("ipv4")(e.to_string()))?;
                if ip.fragments_offset().value() != 0 {
                    return Err(DecapError::Fragment);
                }
                let len = usize::from(ip.ihl()) * 4;
                (
                    IpAddr::V4(ip.source_addr()),
                    IpAddr::V4(ip.destination_addr()),
                    ip.protocol().0,
                    len,
                    usize::from(ip.total_len()),
                )
            }
            ETHERTYPE_IPV6 => {
                let ip = Ipv6HeaderSlice::from_slice(rest)
                    .map_err(|e| malformed("ipv6")(e.to_string()))?;
                (
                    IpAddr::V6(ip.source_addr()),
                    IpAddr::V6(ip.destination_addr()),
                    ip.next_header().0,
                    40,
                    // A zero payload length (jumbogram or GSO) stays 0: "unknown" below.
                    match ip.payload_length() {
                        0 => 0,
                        n => 40 + usize::from(n),
                    },
                )
            }
            other => {
                return Err(DecapError::Unsupported {
                    what: "EtherType",
                    value: u32::from(other),
                });
            }
        };
        off += ip_len;
        // IPv6 extension headers: hop-by-hop, routing, destination options, fragment.
        if ether_type == ETHERTYPE_IPV6 {
            while matches!(proto, 0 | 43 | 60 | 44) {
                let h = frame.get(off..off + 8).ok_or(DecapError::Truncated {
                    layer: "ipv6 extension",
                })?;
                if proto == 44 && (u16::from_be_bytes([h[2], h[3]]) & 0xfff8) != 0 {
                    return Err(DecapError::Fragment);
                }
                let len = if proto == 44 {
                    8
                } else {
                    (usize::from(h[1]) + 1) * 8
                };
                proto = h[0];
                off += len;
            }
        }
        let mut enter = |kind: TunnelKind, id: Option<u32>| -> Result<(), DecapError> {
            let tier = Tunnel {
                kind,
                id,
                outer_src: src,
                outer_dst: dst,
            };
            if tunnels.push(tier) {
                Ok(())
            } else {
                Err(DecapError::TooDeep)
            }
        };
        let rest = frame.get(off..).unwrap_or_default();
        let (inner, payload_offset) = match proto {
            4 => {
                enter(TunnelKind::IpIp, None)?;
                layer = Layer::EtherType(ETHERTYPE_IPV4);
                continue;
            }
            41 => {
                enter(TunnelKind::Ip6InIp, None)?;
                layer = Layer::EtherType(ETHERTYPE_IPV6);
                continue;
            }
            47 => {
                let TunnelHeader { len, id, next } = tunnel::gre(rest)?;
                let kind = if next == Next::Ethernet {
                    TunnelKind::GreTeb
                } else {
                    TunnelKind::Gre
                };
                enter(kind, id)?;
                off += len;
                layer = to_layer(next);
                continue;
            }
            17 => {
                let sport = be16(frame, off, "udp")?;
                let dport = be16(frame, off + 2, "udp")?;
                if frame.len() < off + 8 {
                    return Err(DecapError::Truncated { layer: "udp" });
                }
                let body = &frame[off + 8..];
                let tunnel = if VXLAN_PORTS.contains(&dport) {
                    Some((TunnelKind::Vxlan, tunnel::vxlan(body)?))
                } else if dport == GENEVE_PORT {
                    Some((TunnelKind::Geneve, tunnel::geneve(body)?))
                } else {
                    None
                };
                if let Some((kind, h)) = tunnel {
                    enter(kind, h.id)?;
                    off += 8 + h.len;
                    layer = to_layer(h.next);
                    continue;
                }
                let inner = Inner {
                    src,
                    dst,
                    src_port: sport,
                    dst_port: dport,
                    l4: L4::Udp,
                };
                (inner, off + 8)
            }
            6 => {
                let tcp = TcpHeaderSlice::from_slice(rest)
                    .map_err(|e| malformed("tcp")(e.to_string()))?;
                let inner = Inner {
                    src,
                    dst,
                    src_port: tcp.source_port(),
                    dst_port: tcp.destination_port(),
                    l4: L4::Tcp(TcpInfo {
                        seq: tcp.sequence_number(),
                        ack: tcp.acknowledgment_number(),
                        flags: rest[13],
                    }),
                };
                (inner, off + usize::from(tcp.data_offset()) * 4)
            }
            other => {
                let inner = Inner {
                    src,
                    dst,
                    src_port: 0,
                    dst_port: 0,
                    l4: L4::Other(other),
                };
                (inner, off)
            }
        };
        return Ok(Decapsulated {
            tunnels,
            vlans,
            inner,
            payload_offset,
            ip_end: (total_len != 0).then_some(ip_start + total_len),
        });
    }
}

fn to_layer(next: Next) -> Layer {
    match next {
        Next::Ethernet => Layer::Ethernet,
        Next::EtherType(t) => Layer::EtherType(t),
    }
}
