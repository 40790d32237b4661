//! Packet headers down to the inner TCP or UDP segment, through up to two tiers of tunnels.
//!
//! Layout: `decap.rs` walks a frame layer by layer (Ethernet, VLAN/QinQ, IPv4/IPv6 with
//! extension headers, then VXLAN, Geneve, GRE, IP-in-IP or the final TCP/UDP header) and returns
//! a [`Decapsulated`] view; `tunnel.rs` parses the tunnel headers etherparse does not cover;
//! `craft.rs` builds frames in every encapsulation (for tests, benches and generated data).
//! It sits below both `ingest` (the agent) and `query` (the `decap()` SQL functions), so the two
//! can never disagree about a packet.

pub mod craft;
mod decap;
mod tunnel;

pub use decap::{
    DecapError, Decapsulated, Inline, Inner, L4, Link, MAX_TUNNEL_TIERS, MAX_VLAN_TAGS, TcpInfo,
    Tunnel, TunnelKind, decap, decap_link,
};
