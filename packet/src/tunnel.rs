//! Tunnel headers: VXLAN, Geneve and GRE (etherparse parses the rest).

use crate::decap::DecapError;

/// UDP ports VXLAN is carried on: IANA's and Linux's historical default.
pub(crate) const VXLAN_PORTS: [u16; 2] = [4789, 8472];
/// Geneve's UDP port.
pub(crate) const GENEVE_PORT: u16 = 6081;

/// EtherType of Transparent Ethernet Bridging (an Ethernet frame inside GRE or Geneve).
pub(crate) const ETHERTYPE_TEB: u16 = 0x6558;

/// What follows a tunnel header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// An Ethernet frame.
    Ethernet,
    /// A packet of this EtherType (IPv4 or IPv6).
    EtherType(u16),
}

/// A parsed tunnel header: its length, the id it carries (VNI or key) and what follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TunnelHeader {
    pub(crate) len: usize,
    pub(crate) id: Option<u32>,
    pub(crate) next: Next,
}

fn be16(b: &[u8], at: usize) -> Result<u16, DecapError> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or(DecapError::Truncated { layer: "tunnel" })
}

fn vni(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[4], b[5], b[6]])
}

/// VXLAN: 8 bytes, flags (I bit = VNI valid), 24-bit VNI; an Ethernet frame follows.
pub(crate) fn vxlan(b: &[u8]) -> Result<TunnelHeader, DecapError> {
    if b.len() < 8 {
        return Err(DecapError::Truncated { layer: "vxlan" });
    }
    Ok(TunnelHeader {
        len: 8,
        id: (b[0] & 0x08 != 0).then(|| vni(b)),
        next: Next::Ethernet,
    })
}

/// Geneve: 8 bytes plus options (length in 4-byte words), protocol type, 24-bit VNI.
pub(crate) fn geneve(b: &[u8]) -> Result<TunnelHeader, DecapError> {
    if b.len() < 8 {
        return Err(DecapError::Truncated { layer: "geneve" });
    }
    if b[0] >> 6 != 0 {
        return Err(DecapError::Unsupported {
            what: "Geneve version",
            value: u32::from(b[0] >> 6),
        });
    }
    let len = 8 + usize::from(b[0] & 0x3f) * 4;
    if b.len() < len {
        return Err(DecapError::Truncated {
            layer: "geneve options",
        });
    }
    Ok(TunnelHeader {
        len,
        id: Some(vni(b)),
        next: next_for(be16(b, 2)?),
    })
}

/// GRE (RFC 2784/2890): flags with optional checksum, key and sequence words; version 0.
pub(crate) fn gre(b: &[u8]) -> Result<TunnelHeader, DecapError> {
    let flags = be16(b, 0)?;
    if flags & 0x7 != 0 {
        return Err(DecapError::Unsupported {
            what: "GRE version",
            value: u32::from(flags & 0x7),
        });
    }
    let (c, k, s) = (
        flags & 0x8000 != 0,
        flags & 0x2000 != 0,
        flags & 0x1000 != 0,
    );
    let key_at = 4 + if c { 4 } else { 0 };
    let len = key_at + if k { 4 } else { 0 } + if s { 4 } else { 0 };
    if b.len() < len {
        return Err(DecapError::Truncated { layer: "gre" });
    }
    let id =
        k.then(|| u32::from_be_bytes([b[key_at], b[key_at + 1], b[key_at + 2], b[key_at + 3]]));
    Ok(TunnelHeader {
        len,
        id,
        next: next_for(be16(b, 2)?),
    })
}

fn next_for(proto: u16) -> Next {
    if proto == ETHERTYPE_TEB {
        Next::Ethernet
    } else {
        Next::EtherType(proto)
    }
}
