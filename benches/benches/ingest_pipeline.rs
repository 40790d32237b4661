//! The user-space ingest path: encoded ring-buffer records → decode → HTTP parse and
//! request/response pairing → `l7_flow_log` Arrow batch. Input: keep-alive connections, each
//! carrying request/response exchanges (≈200-byte requests, 50–2000-byte responses, 1024-byte
//! capture limit), interleaved across 64 connections; throughput is reported in events.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wiretrace_ebpf_common::Direction;
use wiretrace_ingest::{
    IngestCounters,
    batch::SpanBatchBuilder,
    event::{EventView, KernelClock},
    sockets::SpanAssembler,
    synth::{SyntheticSocket, request, response},
};

const CONNECTIONS: u16 = 64;
const EXCHANGES: usize = 160;

fn records() -> Vec<Vec<u8>> {
    let mut socks: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            SyntheticSocket::new(
                u64::from(i) + 1,
                100 + u32::from(i),
                "python3",
                30000 + i,
                i % 2 == 0,
            )
        })
        .collect();
    let mut out = Vec::new();
    for n in 0..EXCHANGES {
        for s in socks.iter_mut() {
            let body = 50 + (n * 37) % 1950;
            out.push(s.event(
                Direction::Egress,
                &request(&format!("/api/v1/items/{n}")),
                1024,
                0,
            ));
            out.push(s.event(Direction::Ingress, &response(body), 1024, n as u64));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let recs = records();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.bench_function("events_to_arrow_batch", |b| {
        b.iter(|| {
            let counters = IngestCounters::default();
            let mut a = SpanAssembler::new(KernelClock::with_offset_ns(0));
            for r in &recs {
                if let Ok(ev) = EventView::parse(r) {
                    a.push(&ev, &counters);
                }
            }
            let spans = a.take_spans();
            black_box(
                SpanBatchBuilder::new(1, "bench")
                    .build(&spans)
                    .expect("batch"),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
