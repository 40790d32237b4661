//! Socket events (eBPF) → spans. One [`Conversation`] per socket; the process's end is end 0, so
//! a process that sent the request is the client (`c-p`), one that received it the server (`s-p`).

use std::sync::Arc;

use rustc_hash::FxHashMap;

use wiretrace_ebpf_common::{Direction, EventKind};

use crate::{
    counters::IngestCounters,
    event::{EventView, KernelClock},
    pairing::{Chunk, Conversation, Ends, Exchange},
    span::{ProcessSeen, Seen, Span},
};

/// Connections idle this long are dropped from the agent's state (their requests counted as
/// unanswered).
pub const IDLE_TIMEOUT_US: i64 = 300 * 1_000_000;

/// What a syscall tells about the message starting in it.
#[derive(Debug, Clone, Copy)]
struct SyscallMeta {
    trace_id: u64,
    tid: u32,
    cap_seq: u64,
}

#[derive(Debug)]
struct Socket {
    /// Local and remote address and port, formatted once.
    ends: Ends,
    comm: Arc<str>,
    pid: u32,
    conv: Conversation<SyscallMeta>,
    last_seen_us: i64,
}

/// Turns socket events into spans.
#[derive(Debug)]
pub struct SpanAssembler {
    clock: KernelClock,
    sockets: FxHashMap<u64, Socket>,
    done: Vec<Span>,
    /// Reused per event so pairing does not allocate.
    scratch: Vec<Exchange<SyscallMeta>>,
}

impl SpanAssembler {
    /// A new assembler converting kernel time with `clock`.
    pub fn new(clock: KernelClock) -> Self {
        Self {
            clock,
            sockets: FxHashMap::default(),
            done: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Feeds one event.
    pub fn push(&mut self, ev: &EventView<'_>, counters: &IngestCounters) {
        let id = ev.header.socket_id;
        if ev.kind() == EventKind::Close {
            IngestCounters::add(&counters.close_events, 1);
            if let Some(sock) = self.sockets.remove(&id) {
                IngestCounters::add(&counters.unanswered_requests, sock.conv.pending() as u64);
            }
            return;
        }
        IngestCounters::add(&counters.data_events, 1);
        let now = self.clock.unix_micros(ev.header.timestamp_ns);
        let sock = self.sockets.entry(id).or_insert_with(|| Socket {
            ends: [
                (ev.local_ip().to_string().into(), ev.header.local_port),
                (ev.remote_ip().to_string().into(), ev.header.remote_port),
            ],
            comm: ev.comm().into(),
            pid: ev.tgid(),
            conv: Conversation::default(),
            last_seen_us: now,
        });
        sock.last_seen_us = now;
        let chunk = Chunk {
            dir: ev.direction(),
            time_us: now,
            tcp_seq: ev.header.tcp_seq,
            len: ev.header.syscall_len,
            payload: ev.payload,
        };
        let meta = SyscallMeta {
            trace_id: ev.header.syscall_trace_id,
            tid: ev.tid(),
            cap_seq: ev.header.cap_seq,
        };
        let mut done = std::mem::take(&mut self.scratch);
        sock.conv.push(&chunk, |_| meta, counters, &mut done);
        for x in done.drain(..) {
            let point = if x.request.dir == Direction::Egress {
                "c-p"
            } else {
                "s-p"
            };
            let (pid, comm) = (sock.pid, Arc::clone(&sock.comm));
            self.done
                .push(x.into_span(&sock.ends, point, id, |req, resp| {
                    Seen::Process(ProcessSeen {
                        syscall_trace_id_request: req.meta.trace_id,
                        syscall_trace_id_response: resp.meta.trace_id,
                        thread_0: req.meta.tid,
                        thread_1: resp.meta.tid,
                        cap_seq_0: req.meta.cap_seq,
                        cap_seq_1: resp.meta.cap_seq,
                        pid,
                        comm,
                    })
                }));
        }
        self.scratch = done;
    }

    /// Spans completed since the last call.
    pub fn take_spans(&mut self) -> Vec<Span> {
        std::mem::take(&mut self.done)
    }

    /// Drops connections idle since before `now_us - IDLE_TIMEOUT_US`.
    pub fn expire_idle(&mut self, now_us: i64, counters: &IngestCounters) {
        let cutoff = now_us - IDLE_TIMEOUT_US;
        self.sockets.retain(|_, s| {
            let keep = s.last_seen_us >= cutoff;
            if !keep {
                IngestCounters::add(&counters.idle_connections_dropped, 1);
                IngestCounters::add(&counters.unanswered_requests, s.conv.pending() as u64);
            }
            keep
        });
    }

    /// Connections currently tracked.
    pub fn connections(&self) -> usize {
        self.sockets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{SyntheticSocket, request, response};

    const LIMIT: usize = 1024;

    fn feed(a: &mut SpanAssembler, c: &IngestCounters, raw: &[u8]) {
        a.push(&EventView::parse(raw).unwrap(), c);
    }

    fn assembler() -> (SpanAssembler, IngestCounters) {
        (
            SpanAssembler::new(KernelClock::with_offset_ns(0)),
            IngestCounters::default(),
        )
    }

    #[test]
    fn keep_alive_exchanges_pair_in_order_with_seqs() {
        let (mut a, c) = assembler();
        let mut cli = SyntheticSocket::new(1, 10, "curl", 40000, true);
        let mut seqs = Vec::new();
        for path in ["/a", "/b"] {
            let req = cli.event(Direction::Egress, &request(path), LIMIT, 0);
            let resp = cli.event(Direction::Ingress, &response(10), LIMIT, 7);
            seqs.push((
                EventView::parse(&req).unwrap().header.tcp_seq,
                EventView::parse(&resp).unwrap().header.tcp_seq,
            ));
            feed(&mut a, &c, &req);
            feed(&mut a, &c, &resp);
        }
        let spans = a.take_spans();
        assert_eq!(spans.len(), 2);
        for (s, (path, (req_seq, resp_seq))) in spans.iter().zip(["/a", "/b"].iter().zip(seqs)) {
            assert_eq!(s.observation_point, "c-p");
            assert_eq!(&s.path, path);
            assert_eq!((s.req_tcp_seq, s.resp_tcp_seq), (req_seq, resp_seq));
            assert_eq!(s.client.1, 40000);
            assert_eq!(s.server.1, 80);
            assert_eq!(s.process().unwrap().syscall_trace_id_response, 7);
        }
    }

    #[test]
    fn pipelined_requests_in_one_write_get_offset_seqs() {
        let (mut a, c) = assembler();
        let mut srv = SyntheticSocket::new(2, 20, "python3", 40001, false);
        let (r1, r2) = (request("/one"), request("/two"));
        let both = [r1.clone(), r2].concat();
        let ev = srv.event(Direction::Ingress, &both, LIMIT, 3);
        let base = EventView::parse(&ev).unwrap().header.tcp_seq;
        feed(&mut a, &c, &ev);
        let (p1, p2) = (response(3), response(4));
        let ev = srv.event(Direction::Egress, &[p1.clone(), p2].concat(), LIMIT, 3);
        let resp_base = EventView::parse(&ev).unwrap().header.tcp_seq;
        feed(&mut a, &c, &ev);
        let spans = a.take_spans();
        assert_eq!(spans.len(), 2);
        assert_eq!(
            (spans[0].path.as_str(), spans[1].path.as_str()),
            ("/one", "/two")
        );
        assert_eq!(spans[0].req_tcp_seq, base);
        assert_eq!(spans[1].req_tcp_seq, base + r1.len() as u32);
        assert_eq!(spans[1].resp_tcp_seq, resp_base + p1.len() as u32);
        assert!(spans.iter().all(|s| s.observation_point == "s-p"));
    }

    #[test]
    fn body_split_across_syscalls_is_skipped() {
        let (mut a, c) = assembler();
        let mut cli = SyntheticSocket::new(3, 10, "curl", 40002, true);
        feed(
            &mut a,
            &c,
            &cli.event(Direction::Egress, &request("/big"), LIMIT, 0),
        );
        let resp = response(5000);
        // A 5000-byte body read in three syscalls, the first with only a prefix captured.
        feed(
            &mut a,
            &c,
            &cli.event(Direction::Ingress, &resp[..2000], LIMIT, 0),
        );
        feed(
            &mut a,
            &c,
            &cli.event(Direction::Ingress, &resp[2000..4000], LIMIT, 0),
        );
        feed(
            &mut a,
            &c,
            &cli.event(Direction::Ingress, &resp[4000..], LIMIT, 0),
        );
        feed(
            &mut a,
            &c,
            &cli.event(Direction::Egress, &request("/next"), LIMIT, 0),
        );
        feed(
            &mut a,
            &c,
            &cli.event(Direction::Ingress, &response(2), LIMIT, 0),
        );
        let spans = a.take_spans();
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].response_len, resp.len() as u64);
        assert_eq!(spans[1].path, "/next");
        assert_eq!(
            c.not_http_messages
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    #[test]
    fn close_with_pending_request_counts_unanswered() {
        let (mut a, c) = assembler();
        let mut cli = SyntheticSocket::new(4, 10, "curl", 40003, true);
        feed(
            &mut a,
            &c,
            &cli.event(Direction::Egress, &request("/x"), LIMIT, 0),
        );
        feed(&mut a, &c, &cli.close());
        assert!(a.take_spans().is_empty());
        assert_eq!(
            c.unanswered_requests
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(a.connections(), 0);
    }

    #[test]
    fn chunked_response_ends_when_the_client_speaks_again() {
        let (mut a, c) = assembler();
        let mut cli = SyntheticSocket::new(5, 10, "curl", 40004, true);
        feed(
            &mut a,
            &c,
            &cli.event(Direction::Egress, &request("/c"), LIMIT, 0),
        );
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
        feed(&mut a, &c, &cli.event(Direction::Ingress, head, LIMIT, 0));
        feed(
            &mut a,
            &c,
            &cli.event(Direction::Ingress, b"0\r\n\r\n", LIMIT, 0),
        );
        feed(
            &mut a,
            &c,
            &cli.event(Direction::Egress, &request("/d"), LIMIT, 0),
        );
        feed(
            &mut a,
            &c,
            &cli.event(Direction::Ingress, &response(1), LIMIT, 0),
        );
        let paths: Vec<_> = a.take_spans().into_iter().map(|s| s.path).collect();
        assert_eq!(paths, ["/c", "/d"]);
    }

    /// Regression: the agent once passed the boot time instead of "now", so idle connections
    /// were never expired. Expiry is relative to the events' own wall-clock times.
    #[test]
    fn idle_connections_expire_and_count_their_requests() {
        let (mut a, c) = assembler();
        let mut cli = SyntheticSocket::new(6, 10, "curl", 40006, true);
        let ev = cli.event(Direction::Egress, &request("/slow"), LIMIT, 0);
        let seen = KernelClock::with_offset_ns(0)
            .unix_micros(EventView::parse(&ev).unwrap().header.timestamp_ns);
        feed(&mut a, &c, &ev);
        a.expire_idle(seen + IDLE_TIMEOUT_US, &c);
        assert_eq!(a.connections(), 1, "not idle yet");
        a.expire_idle(seen + IDLE_TIMEOUT_US + 1, &c);
        assert_eq!(a.connections(), 0);
        assert_eq!(
            c.unanswered_requests
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(
            c.idle_connections_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    /// Regression guard: random records and random payloads on a real header never panic the
    /// decoder or the assembler (they become malformed events, not-HTTP messages or spans).
    #[test]
    fn random_bytes_never_panic() {
        let (mut a, c) = assembler();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut sock = SyntheticSocket::new(9, 10, "fuzz", 40009, true);
        for round in 0..20_000 {
            let len = (next() % 300) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 3 == 0 {
                // Garbage whole record.
                let _ = EventView::parse(&bytes).map(|ev| a.push(&ev, &c));
                continue;
            }
            if round % 5 == 0 {
                let prefix: &[u8] = if round % 2 == 0 {
                    b"HTTP/1.1 200 OK\r\nContent-Length: "
                } else {
                    b"GET /"
                };
                bytes.splice(0..0, prefix.iter().copied());
            }
            let dir = if next() % 2 == 0 {
                Direction::Egress
            } else {
                Direction::Ingress
            };
            let limit = (next() % 64) as usize;
            let rec = sock.event(dir, &bytes, limit, next());
            a.push(&EventView::parse(&rec).unwrap(), &c);
        }
        let _ = a.take_spans();
    }
}
