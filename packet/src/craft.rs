//! Frames built layer by layer: what tests, benches and the span generator feed the parser.
//! Every encapsulation [`decap`](crate::decap) knows can be produced here, and a list of frames
//! can be written as a pcap file.

use std::net::IpAddr;

use etherparse::{IpNumber, Ipv4Header, Ipv6Header, PacketBuilder};

/// TCP flags for [`tcp`].
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// An IP packet carrying one TCP segment (IPv4 or IPv6 after the addresses).
pub fn tcp(
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    seq: u32,
    ack: u32,
    tcp_flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let ip = match (src.0, dst.0) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed address families"),
    };
    let mut b = ip.tcp(src.1, dst.1, seq, 65535);
    if tcp_flags & flags::ACK != 0 {
        b = b.ack(ack);
    }
    if tcp_flags & flags::SYN != 0 {
        b = b.syn();
    }
    if tcp_flags & flags::FIN != 0 {
        b = b.fin();
    }
    if tcp_flags & flags::RST != 0 {
        b = b.rst();
    }
    if tcp_flags & flags::PSH != 0 {
        b = b.psh();
    }
    let mut v = Vec::with_capacity(payload.len() + 60);
    b.write(&mut v, payload)
        .expect("a TCP segment within IP limits");
    v
}

/// EtherType of an IP packet, from its version nibble.
fn ether_type_of(ip: &[u8]) -> u16 {
    if ip.first().is_some_and(|b| b >> 4 == 6) {
        0x86dd
    } else {
        0x0800
    }
}

/// An Ethernet frame.
pub fn eth(ether_type: u16, payload: &[u8]) -> Vec<u8> {
    vlan_tags(&[], ether_type, payload)
}

/// An Ethernet frame with VLAN tags `(TPID, VLAN id)`, outermost first.
pub fn vlan_tags(tags: &[(u16, u16)], ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    let mut types: Vec<u16> = tags.iter().map(|t| t.0).collect();
    types.push(ether_type);
    v.extend_from_slice(&types[0].to_be_bytes());
    for (i, (_, id)) in tags.iter().enumerate() {
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(&types[i + 1].to_be_bytes());
    }
    v.extend_from_slice(payload);
    v
}

/// An IPv4 packet with protocol `proto`.
pub fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let h = Ipv4Header::new(payload.len() as u16, 64, IpNumber(proto), src, dst)
        .expect("an IPv4 payload within limits");
    let mut v = Vec::with_capacity(payload.len() + 20);
    h.write(&mut v).expect("writing to a Vec");
    v.extend_from_slice(payload);
    v
}

/// An IPv6 packet with next header `next`.
pub fn ipv6(next: u8, src: [u8; 16], dst: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let h = Ipv6Header {
        traffic_class: 0,
        flow_label: Default::default(),
        payload_length: payload.len() as u16,
        next_header: IpNumber(next),
        hop_limit: 64,
        source: src,
        destination: dst,
    };
    let mut v = Vec::with_capacity(payload.len() + 40);
    h.write(&mut v).expect("writing to a Vec");
    v.extend_from_slice(payload);
    v
}

/// A UDP header (checksum 0) from port 51000 to `dport`, then `payload`.
pub fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 8);
    v.extend_from_slice(&51000u16.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

/// A VXLAN header with `vni`, then the inner Ethernet frame.
pub fn vxlan(vni: u32, inner_frame: &[u8]) -> Vec<u8> {
    let mut v = vec![0x08, 0, 0, 0];
    v.extend_from_slice(&vni.to_be_bytes()[1..]);
    v.push(0);
    v.extend_from_slice(inner_frame);
    v
}

/// A Geneve header with `vni`, `opt_words` 4-byte option words and inner protocol `proto`.
pub fn geneve(vni: u32, opt_words: u8, proto: u16, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![opt_words & 0x3f, 0];
    v.extend_from_slice(&proto.to_be_bytes());
    v.extend_from_slice(&vni.to_be_bytes()[1..]);
    v.push(0);
    for i in 0..opt_words {
        v.extend_from_slice(&[0x01, 0x02, 0x80 | i, 0]); // option TLVs, opaque to the parser
    }
    v.extend_from_slice(inner);
    v
}

/// A GRE header with the optional checksum, key and sequence fields, carrying `proto`.
pub fn gre(checksum: bool, key: Option<u32>, seq: bool, proto: u16, inner: &[u8]) -> Vec<u8> {
    let flags = (if checksum { 0x8000u16 } else { 0 })
        | (if key.is_some() { 0x2000 } else { 0 })
        | (if seq { 0x1000 } else { 0 });
    let mut v = Vec::with_capacity(inner.len() + 16);
    v.extend_from_slice(&flags.to_be_bytes());
    v.extend_from_slice(&proto.to_be_bytes());
    if checksum {
        v.extend_from_slice(&[0, 0, 0, 0]);
    }
    if let Some(k) = key {
        v.extend_from_slice(&k.to_be_bytes());
    }
    if seq {
        v.extend_from_slice(&7u32.to_be_bytes());
    }
    v.extend_from_slice(inner);
    v
}

/// Outer (underlay) IPv4 addresses used by [`Encap::wrap`].
pub const UNDERLAY_V4: ([u8; 4], [u8; 4]) = ([192, 168, 50, 1], [192, 168, 50, 2]);
/// Outer (underlay) IPv6 addresses used by [`Encap::wrap`].
pub const UNDERLAY_V6: ([u8; 16], [u8; 16]) = (
    [0xfd, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    [0xfd, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
);

/// A way to carry an IP packet in an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// Ethernet only.
    Plain,
    /// One 802.1Q tag.
    Vlan(u16),
    /// 802.1ad outer tag + 802.1Q inner tag.
    QinQ(u16, u16),
    /// VXLAN (UDP 4789) over an IPv4 underlay, or IPv6 when `v6_underlay`.
    Vxlan {
        /// The VNI.
        vni: u32,
        /// IPv6 outer header.
        v6_underlay: bool,
    },
    /// Geneve with options.
    Geneve {
        /// The VNI.
        vni: u32,
        /// 4-byte option words.
        opt_words: u8,
    },
    /// GRE carrying IP, with a key.
    Gre(u32),
    /// GRE carrying Ethernet (TEB), with a key.
    GreTeb(u32),
    /// IP-in-IP (IPv4 outer, protocol 4 or 41 by the inner version).
    IpIp,
}

impl Encap {
    /// The Ethernet frame carrying `ip` this way.
    pub fn wrap(self, ip: &[u8]) -> Vec<u8> {
        let et = ether_type_of(ip);
        let (o_src, o_dst) = UNDERLAY_V4;
        let v4 = |proto: u8, payload: &[u8]| eth(0x0800, &ipv4(proto, o_src, o_dst, payload));
        match self {
            Self::Plain => eth(et, ip),
            Self::Vlan(id) => vlan_tags(&[(0x8100, id)], et, ip),
            Self::QinQ(outer, inner) => vlan_tags(&[(0x88a8, outer), (0x8100, inner)], et, ip),
            Self::Vxlan { vni, v6_underlay } => {
                let body = udp(4789, &vxlan(vni, &eth(et, ip)));
                if v6_underlay {
                    let (s, d) = UNDERLAY_V6;
                    eth(0x86dd, &ipv6(17, s, d, &body))
                } else {
                    v4(17, &body)
                }
            }
            Self::Geneve { vni, opt_words } => v4(17, &udp(6081, &geneve(vni, opt_words, et, ip))),
            Self::Gre(key) => v4(47, &gre(true, Some(key), true, et, ip)),
            Self::GreTeb(key) => v4(47, &gre(false, Some(key), false, 0x6558, &eth(et, ip))),
            Self::IpIp => v4(if et == 0x0800 { 4 } else { 41 }, ip),
        }
    }
}

/// A pcap file (microsecond timestamps, Ethernet) holding `(unix µs, frame)` records, each cut
/// to `snaplen` bytes as a capture would (the record keeps the frame's original length).
pub fn pcap_file(frames: &[(i64, Vec<u8>)], snaplen: usize) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    for word in [0u32, 0, snaplen as u32, 1] {
        v.extend_from_slice(&word.to_le_bytes());
    }
    for (t, f) in frames {
        let (sec, usec) = (t.div_euclid(1_000_000), t.rem_euclid(1_000_000));
        let cap = f.len().min(snaplen);
        for word in [sec as u32, usec as u32, cap as u32, f.len() as u32] {
            v.extend_from_slice(&word.to_le_bytes());
        }
        v.extend_from_slice(&f[..cap]);
    }
    v
}

/// Both ends of a TCP connection, tracking sequence numbers as segments are made.
#[derive(Debug, Clone)]
pub struct TcpSession {
    /// Client address and port.
    pub client: (IpAddr, u16),
    /// Server address and port.
    pub server: (IpAddr, u16),
    /// Next sequence number of the client and of the server.
    pub next_seq: [u32; 2],
}

impl TcpSession {
    /// A session whose initial sequence numbers are `isn` (client, server).
    pub fn new(client: (IpAddr, u16), server: (IpAddr, u16), isn: [u32; 2]) -> Self {
        Self {
            client,
            server,
            next_seq: isn,
        }
    }

    fn ends(&self, from_client: bool) -> ((IpAddr, u16), (IpAddr, u16), usize) {
        if from_client {
            (self.client, self.server, 0)
        } else {
            (self.server, self.client, 1)
        }
    }

    /// One segment from the client (or server) with `flags`, advancing its sequence number.
    pub fn segment(&mut self, from_client: bool, tcp_flags: u8, payload: &[u8]) -> Vec<u8> {
        let (src, dst, me) = self.ends(from_client);
        let seq = self.next_seq[me];
        let ack = self.next_seq[1 - me];
        let consumed = payload.len() as u32 + u32::from(tcp_flags & (flags::SYN | flags::FIN) != 0);
        self.next_seq[me] = seq.wrapping_add(consumed);
        tcp(src, dst, seq, ack, tcp_flags, payload)
    }

    /// SYN, SYN-ACK, ACK.
    pub fn handshake(&mut self) -> Vec<Vec<u8>> {
        vec![
            self.segment(true, flags::SYN, b""),
            self.segment(false, flags::SYN | flags::ACK, b""),
            self.segment(true, flags::ACK, b""),
        ]
    }

    /// `data` from one end in segments of at most `mss` bytes.
    pub fn send(&mut self, from_client: bool, data: &[u8], mss: usize) -> Vec<Vec<u8>> {
        data.chunks(mss.max(1))
            .map(|c| self.segment(from_client, flags::ACK | flags::PSH, c))
            .collect()
    }

    /// FIN from each end, then the last ACK.
    pub fn close(&mut self) -> Vec<Vec<u8>> {
        vec![
            self.segment(true, flags::FIN | flags::ACK, b""),
            self.segment(false, flags::FIN | flags::ACK, b""),
            self.segment(true, flags::ACK, b""),
        ]
    }
}

/// A pcapng file with one Ethernet interface named `nic` holding `(unix µs, frame, outgoing)`
/// records; the direction goes into each packet's `epb_flags` option.
pub fn pcapng_file(nic: &str, frames: &[(i64, Vec<u8>, bool)]) -> Vec<u8> {
    fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
        let len = (12 + body.len()) as u32;
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&len.to_le_bytes());
    }
    fn option(body: &mut Vec<u8>, code: u16, value: &[u8]) {
        body.extend_from_slice(&code.to_le_bytes());
        body.extend_from_slice(&(value.len() as u16).to_le_bytes());
        body.extend_from_slice(value);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0a0d_0d0a, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&1u16.to_le_bytes()); // LINKTYPE_ETHERNET
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&65535u32.to_le_bytes());
    option(&mut idb, 2, nic.as_bytes()); // if_name
    option(&mut idb, 0, b"");
    block(&mut out, 1, &idb);
    for (t, f, outgoing) in frames {
        let mut epb = Vec::new();
        let t = *t as u64;
        for word in [
            0u32,
            (t >> 32) as u32,
            t as u32,
            f.len() as u32,
            f.len() as u32,
        ] {
            epb.extend_from_slice(&word.to_le_bytes());
        }
        epb.extend_from_slice(f);
        epb.resize(epb.len().next_multiple_of(4), 0);
        let flags: u32 = if *outgoing { 2 } else { 1 };
        option(&mut epb, 2, &flags.to_le_bytes()); // epb_flags: direction
        option(&mut epb, 0, b"");
        block(&mut out, 6, &epb);
    }
    out
}
