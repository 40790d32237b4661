//! The packet path: captured frames → decapsulation → flow lookup → TCP reassembly order →
//! HTTP framing and pairing → spans and flow rows; and the same frames read from a pcap file.
//! Input: 2 000 keep-alive connections interleaved, each with a handshake, 8 exchanges
//! (≈150-byte requests, 200–6 000-byte responses in 1 400-byte segments, an ACK for every two
//! segments) and a close, seen on a node NIC inside VXLAN; frames cut to the 512-byte default
//! snaplen as the capture ring would hold them. Throughput is reported in frames. The `opaque`
//! variants carry the same sizes of non-HTTP bytes (the per-packet path alone), once from 2 000
//! and once from 200 connections (flow state that fits in cache).

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    sync::{Arc, atomic::AtomicU64},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wiretrace_ingest::{
    IngestCounters,
    capture::{CapturePoint, Frame, NicRole},
    flows::FlowTable,
    pcap::read_pcap,
};
use wiretrace_packet::{
    Link,
    craft::{Encap, TcpSession, flags, pcap_file},
    decap,
};

const CONNECTIONS: u32 = 2_000;
const EXCHANGES: usize = 8;
const SNAPLEN: usize = 512;

/// Whole frames, interleaved across connections; `http` false sends the same sizes of opaque
/// (TLS-like) bytes, so no message head is ever found: what is left is the per-packet path.
fn frames(http: bool, connections: u32) -> Vec<Vec<u8>> {
    let per_conn: Vec<Vec<Vec<u8>>> = (0..connections)
        .map(|i| {
            let client = IpAddr::V4(Ipv4Addr::from(0x0af4_0100 + (i % 200)));
            let server = IpAddr::V4(Ipv4Addr::from(0x0af4_0200 + (i % 50)));
            let mut s = TcpSession::new(
                (client, 20_000 + i as u16),
                (server, 8080),
                [i.wrapping_mul(2_654_435_761), i.wrapping_mul(40_503)],
            );
            let mut packets = s.handshake();
            for n in 0..EXCHANGES {
                let req = format!(
                    "GET /api/v1/items/{n}?user={i} HTTP/1.1\r\nHost: catalog\r\nX-Request-ID: {i:08x}-{n}\r\n\r\n"
                );
                let opaque = |len: usize| vec![0x17u8; len];
                let req = if http {
                    req.into_bytes()
                } else {
                    opaque(req.len())
                };
                packets.extend(s.send(true, &req, 1400));
                let body = 200 + (i as usize * 131 + n * 977) % 5800;
                let mut resp =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {body}\r\n\r\n").into_bytes();
                resp.resize(resp.len() + body, b'{');
                if !http {
                    resp = opaque(resp.len());
                }
                for (k, seg) in s.send(false, &resp, 1400).into_iter().enumerate() {
                    packets.push(seg);
                    if k % 2 == 1 {
                        packets.push(s.segment(true, flags::ACK, b""));
                    }
                }
            }
            packets.extend(s.close());
            packets
        })
        .collect();
    let mut out = Vec::new();
    let longest = per_conn.iter().map(Vec::len).max().unwrap_or(0);
    for k in 0..longest {
        for conn in &per_conn {
            if let Some(p) = conn.get(k) {
                out.push(
                    Encap::Vxlan {
                        vni: 7,
                        v6_underlay: false,
                    }
                    .wrap(p),
                );
            }
        }
    }
    out
}

fn point() -> Arc<CapturePoint> {
    Arc::new(CapturePoint {
        netns: "bench".into(),
        nic: "eth0".into(),
        role: NicRole::Node,
    })
}

fn bench(c: &mut Criterion) {
    let whole = frames(true, CONNECTIONS);
    let opaque = frames(false, CONNECTIONS);
    // The same traffic from a tenth of the connections: their state stays in cache.
    let few = frames(false, CONNECTIONS / 10);
    // As the capture ring holds them: cut to the snaplen, with the wire length kept.
    let snapped = |all: &[Vec<u8>]| -> Vec<(Vec<u8>, usize)> {
        all.iter()
            .map(|f| (f[..f.len().min(SNAPLEN)].to_vec(), f.len()))
            .collect()
    };
    let frames = snapped(&whole);
    let opaque = snapped(&opaque);
    let few = snapped(&few);
    let mut g = c.benchmark_group("packet_pipeline");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("decap", |b| {
        b.iter(|| {
            for (f, _) in &frames {
                black_box(decap(f).ok());
            }
        })
    });
    for (name, input, spans) in [
        ("flow_table", &frames, CONNECTIONS as usize * EXCHANGES),
        ("flow_table_opaque", &opaque, 0),
        ("flow_table_opaque_200_flows", &few, 0),
    ] {
        g.throughput(Throughput::Elements(input.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let counters = IngestCounters::default();
                let mut t = FlowTable::new(point());
                for (i, (f, wire)) in input.iter().enumerate() {
                    t.push(
                        &Frame {
                            time_us: i as i64,
                            outgoing: Some(true),
                            data: f,
                            link: Link::Ethernet,
                            wire_len: *wire,
                        },
                        &counters,
                    );
                }
                t.finish(&counters);
                assert_eq!(t.take_spans().len(), spans);
                black_box(t.take_records());
            })
        });
    }
    let dir = std::env::temp_dir().join(format!("wiretrace-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bench.pcap");
    let records: Vec<(i64, Vec<u8>)> = whole
        .into_iter()
        .enumerate()
        .map(|(i, f)| (1_767_225_600_000_000 + i as i64, f))
        .collect();
    std::fs::write(&file, pcap_file(&records, SNAPLEN)).expect("writing the pcap");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("pcap_file", |b| {
        b.iter(|| {
            let counters = IngestCounters::default();
            let s = read_pcap(&file, NicRole::Node, &counters, Arc::new(AtomicU64::new(0)))
                .expect("reading the pcap");
            assert_eq!(s.spans.len(), CONNECTIONS as usize * EXCHANGES);
            black_box(s);
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
