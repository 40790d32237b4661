//! Packets at one capture point → TCP flows → HTTP spans and `l4_flow_log` rows. Each frame is
//! decapsulated to its inner TCP header (the one parser in `wiretrace-packet`); a flow's payload
//! is fed in sequence order to the same [`Conversation`] socket events use, so a span's
//! `req_tcp_seq` / `resp_tcp_seq` are the first bytes' sequence numbers, as in eBPF spans.

use std::{
    collections::hash_map::Entry,
    hash::{Hash, Hasher},
    net::IpAddr,
    sync::Arc,
};

use rustc_hash::FxHashMap;
use wiretrace_ebpf_common::Direction;
use wiretrace_packet::{DecapError, L4, Tunnel, decap_link};

use crate::{
    capture::{CapturePoint, Frame, NicRole},
    counters::IngestCounters,
    pairing::{Chunk, Conversation, Ends, Exchange},
    span::{PacketSeen, Seen, Span},
};

/// Flows with no packet for this long are closed (row written, state dropped).
pub const FLOW_IDLE_TIMEOUT_US: i64 = 60 * 1_000_000;

/// A flow open this long writes a row for the period (counts since its previous row).
pub const FLOW_REPORT_PERIOD_US: i64 = 60 * 1_000_000;

/// Most header bytes kept per span in `captured_headers`.
const MAX_HEADER_BYTES: usize = 256;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// One flow at one capture point over one period (from its first packet or previous row to its
/// close, or to the end of a report period), as a row of `l4_flow_log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    /// Where it was seen.
    pub point: Arc<CapturePoint>,
    /// Per-point flow id.
    pub flow_id: u64,
    /// "tcp" or "udp".
    pub protocol: &'static str,
    /// Client (SYN sender, else first sender) and server address and port.
    pub ends: Ends,
    /// First and last packet, unix µs.
    pub start_us: i64,
    /// Last packet, unix µs.
    pub end_us: i64,
    /// Payload bytes client→server and server→client.
    pub bytes: [u64; 2],
    /// Packets each way.
    pub packets: [u64; 2],
    /// Segments each way that repeated bytes already seen.
    pub retransmissions: [u64; 2],
    /// SYN, SYN-ACK, and first FIN of each side, unix µs.
    pub syn_us: Option<i64>,
    /// SYN-ACK time.
    pub syn_ack_us: Option<i64>,
    /// FIN times (client, server).
    pub fin_us: [Option<i64>; 2],
    /// The outermost tunnel.
    pub tunnel: Option<Tunnel>,
    /// "fin", "rst", "timeout", or "open": still open at the end of a report period or when
    /// capture stopped.
    pub close: &'static str,
}

impl FlowRecord {
    /// SYN → SYN-ACK at this capture point, µs.
    pub fn handshake_rtt_us(&self) -> Option<i64> {
        Some(self.syn_ack_us? - self.syn_us?)
    }
}

/// What the first packet of a message tells.
#[derive(Debug)]
struct PacketMeta {
    headers: Vec<u8>,
    outgoing: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
    proto: u8,
    tunnel_id: u32,
}

/// Hashes the addresses as integers and the small fields as one word: a few multiply-rotates
/// with FxHash, where the derived impl hashes enum tags and length-prefixed byte slices.
impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        for ip in [self.lo.0, self.hi.0] {
            match ip {
                IpAddr::V4(a) => h.write_u32(a.to_bits()),
                IpAddr::V6(a) => h.write_u128(a.to_bits()),
            }
        }
        h.write_u64(
            u64::from(self.lo.1) << 48
                | u64::from(self.hi.1) << 32
                | u64::from(self.tunnel_id) << 8
                | u64::from(self.proto),
        );
    }
}

impl Flow {
    /// The last row of a flow that ends (`how`), its waiting requests counted as unanswered.
    fn close(mut self, how: &'static str, counters: &IngestCounters) -> FlowRecord {
        IngestCounters::add(&counters.unanswered_requests, self.conv.pending() as u64);
        self.report(how, self.last_us)
    }

    /// The row for the period that ends at `end_us` (client end first); the next period starts
    /// there with its counts at zero.
    fn report(&mut self, how: &'static str, end_us: i64) -> FlowRecord {
        let mut rec = FlowRecord {
            close: how,
            end_us: end_us.max(self.record.start_us),
            packets: std::mem::take(&mut self.packets),
            bytes: std::mem::take(&mut self.bytes),
            ..(*self.record).clone()
        };
        let next = &mut self.record;
        next.start_us = end_us;
        next.retransmissions = [0; 2];
        (next.syn_us, next.syn_ack_us, next.fin_us) = (None, None, [None; 2]);
        if self.client == Some(1) {
            rec.ends.swap(0, 1);
            rec.bytes.swap(0, 1);
            rec.packets.swap(0, 1);
            rec.retransmissions.swap(0, 1);
            rec.fin_us.swap(0, 1);
        }
        rec
    }
}

/// One flow's state. What every frame touches stays inline and small, so thousands of flows
/// fit in cache; the rest (the row being built) sits behind a box.
#[derive(Debug)]
struct Flow {
    /// End 0 is the first packet's sender.
    end0: (IpAddr, u16),
    next_seq: [Option<u32>; 2],
    fin: [bool; 2],
    /// Which end sent the SYN.
    client: Option<u8>,
    packets: [u64; 2],
    bytes: [u64; 2],
    last_us: i64,
    conv: Conversation<PacketMeta>,
    record: Box<FlowRecord>,
}

/// Turns the frames of one capture point into spans and flow rows.
#[derive(Debug)]
pub struct FlowTable {
    point: Arc<CapturePoint>,
    flows: FxHashMap<FlowKey, Flow>,
    next_id: u64,
    spans: Vec<Span>,
    records: Vec<FlowRecord>,
    scratch: Vec<Exchange<PacketMeta>>,
}

impl FlowTable {
    /// A table for frames captured at `point`.
    pub fn new(point: Arc<CapturePoint>) -> Self {
        Self {
            point,
            flows: FxHashMap::default(),
            next_id: 1,
            spans: Vec::new(),
            records: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The capture point.
    pub fn point(&self) -> &Arc<CapturePoint> {
        &self.point
    }

    /// Feeds one frame.
    pub fn push(&mut self, frame: &Frame<'_>, counters: &IngestCounters) {
        IngestCounters::add(&counters.packets, 1);
        let d = match decap_link(frame.link, frame.data) {
            Ok(d) => d,
            Err(DecapError::Unsupported { .. } | DecapError::Fragment) => {
                IngestCounters::add(&counters.other_packets, 1);
                return;
            }
            Err(_) => {
                IngestCounters::add(&counters.undecodable_packets, 1);
                return;
            }
        };
        let (proto, tcp) = match d.inner.l4 {
            L4::Tcp(t) => (6, Some(t)),
            L4::Udp => (17, None),
            L4::Other(_) => {
                IngestCounters::add(&counters.other_packets, 1);
                return;
            }
        };
        let src = (d.inner.src, d.inner.src_port);
        let dst = (d.inner.dst, d.inner.dst_port);
        let tunnel = d.tunnels.first().copied();
        let key = FlowKey {
            lo: src.min(dst),
            hi: src.max(dst),
            proto,
            tunnel_id: tunnel.and_then(|t| t.id).unwrap_or(0),
        };
        let payload_len = d.payload_len(frame.wire_len) as u64;
        let flow = match self.flows.entry(key) {
            Entry::Occupied(o) => o.into_mut(),
            // The last ACK after both FINs (or a stray ACK) must not open a flow.
            Entry::Vacant(_) if tcp.is_some_and(|t| t.flags & SYN == 0) && payload_len == 0 => {
                return;
            }
            Entry::Vacant(v) => {
                IngestCounters::add(&counters.flows, 1);
                let id = self.next_id;
                self.next_id += 1;
                v.insert(Flow {
                    end0: src,
                    next_seq: [None; 2],
                    fin: [false; 2],
                    client: None,
                    packets: [0; 2],
                    bytes: [0; 2],
                    last_us: frame.time_us,
                    conv: Conversation::default(),
                    record: Box::new(FlowRecord {
                        point: Arc::clone(&self.point),
                        flow_id: id,
                        protocol: if proto == 6 { "tcp" } else { "udp" },
                        ends: [
                            (src.0.to_string().into(), src.1),
                            (dst.0.to_string().into(), dst.1),
                        ],
                        start_us: frame.time_us,
                        end_us: frame.time_us,
                        bytes: [0; 2],
                        packets: [0; 2],
                        retransmissions: [0; 2],
                        syn_us: None,
                        syn_ack_us: None,
                        fin_us: [None; 2],
                        tunnel,
                        close: "open",
                    }),
                })
            }
        };
        let dir = if src == flow.end0 {
            Direction::Egress
        } else {
            Direction::Ingress
        };
        let side = dir as usize;
        flow.last_us = flow.last_us.max(frame.time_us);
        flow.packets[side] += 1;
        flow.bytes[side] += payload_len;
        let Some(tcp) = tcp else {
            return;
        };
        let rec = &mut flow.record;
        let flags = tcp.flags;
        let mut seq = tcp.seq;
        if flags & SYN != 0 {
            if flags & ACK == 0 {
                rec.syn_us.get_or_insert(frame.time_us);
                flow.client = Some(side as u8);
            } else {
                rec.syn_ack_us.get_or_insert(frame.time_us);
                flow.client.get_or_insert(1 - side as u8);
            }
            seq = seq.wrapping_add(1);
            flow.next_seq[side] = Some(seq);
        }
        if payload_len > 0 {
            let end = d.ip_end.unwrap_or(frame.data.len()).min(frame.data.len());
            let payload = frame.data.get(d.payload_offset..end).unwrap_or_default();
            let mut skip = 0u64;
            if let Some(next) = flow.next_seq[side] {
                let ahead = seq.wrapping_sub(next) as i32;
                if ahead < 0 {
                    // Starts before what was already seen: a retransmission (maybe partial).
                    rec.retransmissions[side] += 1;
                    skip = u64::from(ahead.unsigned_abs()).min(payload_len);
                } else if ahead > 0 {
                    IngestCounters::add(&counters.packet_gaps, 1);
                    flow.conv.lost(dir);
                }
            }
            if skip < payload_len {
                let chunk = Chunk {
                    dir,
                    time_us: frame.time_us,
                    tcp_seq: seq.wrapping_add(skip as u32),
                    len: payload_len - skip,
                    payload: payload.get(skip as usize..).unwrap_or_default(),
                };
                let headers = &frame.data[..d.payload_offset.min(MAX_HEADER_BYTES)];
                // Only a request's headers are kept (in `captured_headers`).
                let meta = |is_request: bool| PacketMeta {
                    headers: if is_request {
                        headers.to_vec()
                    } else {
                        Vec::new()
                    },
                    outgoing: frame.outgoing,
                };
                flow.conv.push(&chunk, meta, counters, &mut self.scratch);
                flow.next_seq[side] = Some(seq.wrapping_add(payload_len as u32));
            }
        }
        if flags & FIN != 0 && !flow.fin[side] {
            flow.fin[side] = true;
            rec.fin_us[side] = Some(frame.time_us);
            if let Some(n) = &mut flow.next_seq[side] {
                *n = n.wrapping_add(1);
            }
        }
        for x in self.scratch.drain(..) {
            let point = observation_point(self.point.role, x.request.meta.outgoing);
            let tunnel = flow.record.tunnel;
            self.spans.push(x.into_span(
                &flow.record.ends,
                point,
                flow.record.flow_id,
                |req, _| {
                    Seen::Packet(PacketSeen {
                        point: Arc::clone(&self.point),
                        tunnel,
                        headers: req.meta.headers,
                    })
                },
            ));
        }
        let closed = if flags & RST != 0 {
            Some("rst")
        } else if flow.fin == [true, true] {
            Some("fin")
        } else {
            None
        };
        if let Some(how) = closed
            && let Some(flow) = self.flows.remove(&key)
        {
            self.records.push(flow.close(how, counters));
        }
    }

    /// Closes flows idle since before `now_us - FLOW_IDLE_TIMEOUT_US`, and has every flow open
    /// for a whole [`FLOW_REPORT_PERIOD_US`] report that period.
    pub fn expire_idle(&mut self, now_us: i64, counters: &IngestCounters) {
        let cutoff = now_us - FLOW_IDLE_TIMEOUT_US;
        for (_, flow) in self.flows.extract_if(|_, f| f.last_us < cutoff) {
            self.records.push(flow.close("timeout", counters));
        }
        for flow in self.flows.values_mut() {
            if now_us - flow.record.start_us >= FLOW_REPORT_PERIOD_US {
                self.records.push(flow.report("open", now_us));
            }
        }
    }

    /// Writes a row for every flow still open (the capture is ending).
    pub fn finish(&mut self, counters: &IngestCounters) {
        for (_, flow) in self.flows.drain() {
            self.records.push(flow.close("open", counters));
        }
    }

    /// Spans completed since the last call.
    pub fn take_spans(&mut self) -> Vec<Span> {
        std::mem::take(&mut self.spans)
    }

    /// Flow rows completed since the last call.
    pub fn take_records(&mut self) -> Vec<FlowRecord> {
        std::mem::take(&mut self.records)
    }

    /// Flows currently tracked.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }
}

/// Where on the path a span was seen, from the interface's role and whether the request's first
/// packet was leaving (`outgoing`) or arriving through the interface.
fn observation_point(role: NicRole, outgoing: Option<bool>) -> &'static str {
    match (role, outgoing) {
        (NicRole::Loopback, _) => "local",
        // A pod's traffic arrives on the host end of its veth: the client is behind it.
        (NicRole::Pod, Some(false)) => "c",
        (NicRole::Pod, Some(true)) => "s",
        // A node NIC sends what its node's clients ask.
        (NicRole::Node, Some(true)) => "c-nd",
        (NicRole::Node, Some(false)) => "s-nd",
        _ => "rest",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use wiretrace_packet::{
        Link,
        craft::{Encap, TcpSession},
        decap,
    };

    use super::*;

    const REQ: &[u8] = b"GET /api/items?id=7 HTTP/1.1\r\nHost: shop\r\nX-Request-ID: r-1\r\n\r\n";

    fn response(body: usize) -> Vec<u8> {
        let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {body}\r\n\r\n").into_bytes();
        r.resize(r.len() + body, b'x');
        r
    }

    fn table(role: NicRole) -> (FlowTable, IngestCounters) {
        let point = CapturePoint {
            netns: "n1".into(),
            nic: "veth-a".into(),
            role,
        };
        (FlowTable::new(Arc::new(point)), IngestCounters::default())
    }

    /// Feeds IP packets wrapped by `encap`; `outgoing` tells, per packet, if the client sent it.
    fn feed(
        t: &mut FlowTable,
        c: &IngestCounters,
        encap: Encap,
        client_sent_leaves: bool,
        s: &TcpSession,
        packets: &[Vec<u8>],
        time_us: &mut i64,
    ) {
        for ip in packets {
            let frame = encap.wrap(ip);
            let from_client = decap(&frame).unwrap().inner.src == s.client.0;
            *time_us += 100;
            t.push(
                &Frame {
                    time_us: *time_us,
                    outgoing: Some(from_client == client_sent_leaves),
                    data: &frame,
                    link: Link::Ethernet,
                    wire_len: frame.len(),
                },
                c,
            );
        }
    }

    fn session() -> TcpSession {
        TcpSession::new(
            ("10.1.0.5".parse().unwrap(), 40000),
            ("10.2.0.7".parse().unwrap(), 8080),
            [1000, 0xffff_ff00], // the server's sequence numbers wrap around
        )
    }

    #[test]
    fn keep_alive_exchanges_over_segments_get_wire_seqs_and_one_flow_row() {
        let (mut t, c) = table(NicRole::Pod);
        let mut s = session();
        let mut now = 1_700_000_000_000_000;
        let mut want = Vec::new();
        let mut packets = s.handshake();
        for body in [3000, 10] {
            want.push((s.next_seq[0], s.next_seq[1]));
            packets.extend(s.send(true, REQ, 1400));
            packets.extend(s.send(false, &response(body), 1400));
        }
        packets.extend(s.close());
        // The pod is the client: its packets arrive on the host end of its veth.
        feed(&mut t, &c, Encap::Plain, false, &s, &packets, &mut now);
        let spans = t.take_spans();
        assert_eq!(spans.len(), 2);
        for (span, (req, resp)) in spans.iter().zip(&want) {
            assert_eq!((span.req_tcp_seq, span.resp_tcp_seq), (*req, *resp));
            assert_eq!(span.observation_point, "c");
            assert_eq!(span.client, ("10.1.0.5".into(), 40000));
            assert_eq!(span.server, ("10.2.0.7".into(), 8080));
            assert_eq!(span.path, "/api/items?id=7");
            assert_eq!(span.x_request_id.0.as_deref(), Some("r-1"));
            let p = span.packet().unwrap();
            assert!(p.tunnel.is_none());
            assert_eq!(decap(&p.headers).unwrap().inner.src_port, 40000);
        }
        assert_eq!(spans[0].response_len, response(3000).len() as u64);
        assert!(
            t.flows() == 0,
            "both FINs close the flow; the last ACK opens none"
        );
        let rows = t.take_records();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.close, "fin");
        assert_eq!(r.ends[0], ("10.1.0.5".into(), 40000));
        assert_eq!(
            r.bytes,
            [
                2 * REQ.len() as u64,
                (response(3000).len() + response(10).len()) as u64
            ]
        );
        assert_eq!(r.handshake_rtt_us(), Some(100));
        assert_eq!(r.retransmissions, [0, 0]);
        assert!(r.fin_us[0].is_some() && r.fin_us[1].is_some());
    }

    #[test]
    fn retransmissions_are_counted_not_paired_twice() {
        let (mut t, c) = table(NicRole::Pod);
        let mut s = session();
        let mut now = 0;
        let mut packets = s.handshake();
        let req = s.send(true, REQ, 1400);
        packets.extend(req.clone());
        packets.extend(req); // the same segment again
        packets.extend(s.send(false, &response(5), 1400));
        // The pod is the server here: its requests leave the host end of its veth.
        feed(&mut t, &c, Encap::Plain, true, &s, &packets, &mut now);
        let spans = t.take_spans();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].observation_point, "s");
        t.finish(&c);
        let rows = t.take_records();
        assert_eq!((rows[0].retransmissions, rows[0].close), ([1, 0], "open"));
    }

    #[test]
    fn tunnelled_frames_on_a_node_nic_keep_inner_seqs_and_tunnel_columns() {
        for encap in [
            Encap::Vxlan {
                vni: 42,
                v6_underlay: false,
            },
            Encap::Vxlan {
                vni: 42,
                v6_underlay: true,
            },
            Encap::Geneve {
                vni: 42,
                opt_words: 2,
            },
            Encap::Gre(42),
            Encap::GreTeb(42),
            Encap::IpIp,
            Encap::QinQ(100, 42),
        ] {
            let (mut t, c) = table(NicRole::Node);
            let mut s = session();
            let mut now = 0;
            let mut packets = s.handshake();
            let seqs = s.next_seq;
            packets.extend(s.send(true, REQ, 1400));
            packets.extend(s.send(false, &response(1), 1400));
            feed(&mut t, &c, encap, true, &s, &packets, &mut now);
            let spans = t.take_spans();
            assert_eq!(spans.len(), 1, "{encap:?}");
            let span = &spans[0];
            assert_eq!((span.req_tcp_seq, span.resp_tcp_seq), (seqs[0], seqs[1]));
            assert_eq!(span.observation_point, "c-nd");
            let tunnel = span.packet().unwrap().tunnel;
            match encap {
                Encap::QinQ(..) => assert!(tunnel.is_none()),
                Encap::IpIp => assert_eq!(tunnel.unwrap().id, None),
                _ => assert_eq!(tunnel.unwrap().id, Some(42), "{encap:?}"),
            }
        }
    }

    #[test]
    fn a_lost_segment_costs_that_message_only() {
        let (mut t, c) = table(NicRole::Node);
        let mut s = session();
        let mut now = 0;
        let mut packets = s.handshake();
        packets.extend(s.send(true, REQ, 1400));
        let mut resp = s.send(false, &response(4000), 1400);
        resp.remove(1); // lost in capture
        packets.extend(resp);
        let second = s.next_seq;
        packets.extend(s.send(true, REQ, 1400));
        packets.extend(s.send(false, &response(2), 1400));
        feed(&mut t, &c, Encap::Plain, false, &s, &packets, &mut now);
        let spans = t.take_spans();
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[1].observation_point, "s-nd");
        assert_eq!(
            (spans[1].req_tcp_seq, spans[1].resp_tcp_seq),
            (second[0], second[1])
        );
        assert_eq!(c.packet_gaps.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn joining_mid_connection_still_finds_the_client() {
        let (mut t, c) = table(NicRole::Unknown);
        let mut s = session();
        let mut now = 0;
        let _ = s.handshake(); // not captured
        let _ = s.send(false, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1400); // nor this
        let seqs = s.next_seq;
        let mut packets = s.send(true, REQ, 1400);
        packets.extend(s.send(false, &response(3), 1400));
        feed(&mut t, &c, Encap::Plain, false, &s, &packets, &mut now);
        let spans = t.take_spans();
        assert_eq!(spans.len(), 1);
        assert_eq!(
            (spans[0].req_tcp_seq, spans[0].resp_tcp_seq),
            (seqs[0], seqs[1])
        );
        assert_eq!(spans[0].observation_point, "rest");
        assert_eq!(spans[0].client.1, 40000);
    }

    #[test]
    fn long_flows_report_every_period_with_that_periods_counts() {
        let (mut t, c) = table(NicRole::Pod);
        let mut s = session();
        let mut now = 0;
        let hs = s.handshake();
        feed(&mut t, &c, Encap::Plain, false, &s, &hs, &mut now);
        // An exchange every 20 s: the flow never idles, but it lives past a period.
        for _ in 0..3 {
            now += 20_000_000;
            let mut p = s.send(true, REQ, 1400);
            p.extend(s.send(false, &response(10), 1400));
            feed(&mut t, &c, Encap::Plain, false, &s, &p, &mut now);
        }
        let cut = now + 1;
        t.expire_idle(cut, &c);
        let first = t.take_records();
        assert_eq!(first.len(), 1, "one period row, flow kept");
        assert_eq!(t.flows(), 1);
        assert_eq!(
            (first[0].close, first[0].start_us, first[0].end_us),
            ("open", 100, cut)
        );
        assert_eq!(
            first[0].packets,
            [2 + 3, 1 + 3],
            "SYN, ACK, 3 requests; SYN-ACK, 3 responses"
        );
        assert!(first[0].syn_us.is_some());
        let fin = s.close();
        feed(&mut t, &c, Encap::Plain, false, &s, &fin, &mut now);
        let last = t.take_records();
        assert_eq!(last.len(), 1);
        assert_eq!((last[0].close, last[0].start_us), ("fin", cut));
        assert_eq!(last[0].packets, [1, 1], "only this period's FINs");
        assert_eq!(last[0].syn_us, None);
        assert_eq!(t.take_spans().len(), 3);
    }

    #[test]
    fn garbage_frames_are_counted_not_fatal() {
        let (mut t, c) = table(NicRole::Node);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..20_000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut f = Encap::Plain.wrap(&crate::flows::tests::session().send(true, REQ, 1400)[0]);
            let at = (x as usize) % f.len();
            f[at] = (x >> 32) as u8;
            f.truncate(f.len() - (i % 7));
            t.push(
                &Frame {
                    time_us: i as i64,
                    outgoing: None,
                    data: &f,
                    link: Link::Ethernet,
                    wire_len: f.len(),
                },
                &c,
            );
        }
        assert!(c.packets.load(Ordering::Relaxed) == 20_000);
    }
}
