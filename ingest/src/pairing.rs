//! Socket events → HTTP messages → spans. Per socket it finds message boundaries (HTTP framing,
//! keep-alive and pipelining included) and pairs each response with the oldest request still
//! waiting on that socket.

use std::{collections::VecDeque, sync::Arc};

use rustc_hash::FxHashMap;

use wiretrace_ebpf_common::{Direction, EventKind};

use crate::{
    counters::IngestCounters,
    event::{EventView, KernelClock},
    proto::http::{HttpHead, StartLine, parse_head},
    span::Span,
};

/// Connections idle this long are dropped from the agent's state (their requests counted as
/// unanswered).
pub const IDLE_TIMEOUT_US: i64 = 300 * 1_000_000;

/// Where the next message starts in one direction of a connection.
#[derive(Debug, Default, Clone, Copy)]
enum Framing {
    /// The next byte starts a message.
    #[default]
    Boundary,
    /// This many body bytes remain before the next message.
    Body(u64),
    /// A body of unknown length (chunked or until close): everything until the direction
    /// changes belongs to it.
    UntilTurn,
}

/// A request seen on a connection, waiting for its response.
#[derive(Debug)]
struct Pending {
    head: HttpHead,
    dir: Direction,
    time_us: i64,
    tcp_seq: u32,
    trace_id: u64,
    tid: u32,
    cap_seq: u64,
    len: u64,
}

#[derive(Debug)]
struct Conn {
    /// Local and remote address, formatted once.
    local_ip: Arc<str>,
    remote_ip: Arc<str>,
    comm: Arc<str>,
    framing: [Framing; 2],
    last_dir: Option<Direction>,
    pending: VecDeque<Pending>,
    last_seen_us: i64,
}

/// Turns socket events into spans.
#[derive(Debug)]
pub struct SpanAssembler {
    clock: KernelClock,
    conns: FxHashMap<u64, Conn>,
    done: Vec<Span>,
    /// Reused per event so finding messages does not allocate.
    scratch: Vec<Message>,
}

/// One message found in a data event.
#[derive(Debug)]
struct Message {
    head: HttpHead,
    offset: u64,
    len: Option<u64>,
}

impl SpanAssembler {
    /// A new assembler converting kernel time with `clock`.
    pub fn new(clock: KernelClock) -> Self {
        Self {
            clock,
            conns: FxHashMap::default(),
            done: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Feeds one event.
    pub fn push(&mut self, ev: &EventView<'_>, counters: &IngestCounters) {
        let id = ev.header.socket_id;
        if ev.kind() == EventKind::Close {
            IngestCounters::add(&counters.close_events, 1);
            if let Some(conn) = self.conns.remove(&id) {
                IngestCounters::add(&counters.unanswered_requests, conn.pending.len() as u64);
            }
            return;
        }
        IngestCounters::add(&counters.data_events, 1);
        let now = self.clock.unix_micros(ev.header.timestamp_ns);
        let conn = self.conns.entry(id).or_insert_with(|| Conn {
            local_ip: ev.local_ip().to_string().into(),
            remote_ip: ev.remote_ip().to_string().into(),
            comm: ev.comm().into(),
            framing: [Framing::Boundary; 2],
            last_dir: None,
            pending: VecDeque::new(),
            last_seen_us: now,
        });
        conn.last_seen_us = now;
        let dir = ev.direction();
        let turned = conn.last_dir.is_some_and(|d| d != dir);
        conn.last_dir = Some(dir);
        let slot = dir as usize;
        if turned && matches!(conn.framing[slot], Framing::UntilTurn) {
            conn.framing[slot] = Framing::Boundary;
        }
        // The other direction's unknown-length body ended when this side spoke.
        if matches!(conn.framing[1 - slot], Framing::UntilTurn) {
            conn.framing[1 - slot] = Framing::Boundary;
        }
        let mut messages = std::mem::take(&mut self.scratch);
        split_messages(conn, ev, counters, &mut messages);
        for m in messages.drain(..) {
            let is_request = matches!(m.head.start, StartLine::Request { .. });
            let tcp_seq = ev.header.tcp_seq.wrapping_add(m.offset as u32);
            let seen_len = ev.header.syscall_len.saturating_sub(m.offset);
            if is_request {
                IngestCounters::add(&counters.http_requests, 1);
                conn.pending.push_back(Pending {
                    len: m.len.unwrap_or(seen_len),
                    head: m.head,
                    dir,
                    time_us: now,
                    tcp_seq,
                    trace_id: ev.header.syscall_trace_id,
                    tid: ev.tid(),
                    cap_seq: ev.header.cap_seq,
                });
                continue;
            }
            IngestCounters::add(&counters.http_responses, 1);
            if let StartLine::Response { code, .. } = m.head.start
                && code < 200
            {
                continue; // interim (100 Continue): the final response follows
            }
            let Some(pos) = conn.pending.iter().position(|p| p.dir != dir) else {
                IngestCounters::add(&counters.orphan_responses, 1);
                continue;
            };
            let Some(req) = conn.pending.remove(pos) else {
                continue;
            };
            IngestCounters::add(&counters.spans, 1);
            self.done.push(make_span(
                conn,
                ev,
                req,
                m.head,
                m.len.unwrap_or(seen_len),
                now,
                tcp_seq,
            ));
        }
        self.scratch = messages;
    }

    /// Spans completed since the last call.
    pub fn take_spans(&mut self) -> Vec<Span> {
        std::mem::take(&mut self.done)
    }

    /// Drops connections idle since before `now_us - IDLE_TIMEOUT_US`.
    pub fn expire_idle(&mut self, now_us: i64, counters: &IngestCounters) {
        let cutoff = now_us - IDLE_TIMEOUT_US;
        self.conns.retain(|_, c| {
            let keep = c.last_seen_us >= cutoff;
            if !keep {
                IngestCounters::add(&counters.idle_connections_dropped, 1);
                IngestCounters::add(&counters.unanswered_requests, c.pending.len() as u64);
            }
            keep
        });
    }

    /// Connections currently tracked.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }
}

/// Finds the messages that start inside this event, advancing the connection's framing.
fn split_messages(
    conn: &mut Conn,
    ev: &EventView<'_>,
    counters: &IngestCounters,
    out: &mut Vec<Message>,
) {
    let slot = ev.direction() as usize;
    let total = ev.header.syscall_len;
    let mut off = 0u64;
    while off < total {
        match conn.framing[slot] {
            Framing::UntilTurn => return,
            Framing::Body(n) => {
                let k = n.min(total - off);
                off += k;
                conn.framing[slot] = if n > k {
                    Framing::Body(n - k)
                } else {
                    Framing::Boundary
                };
                continue;
            }
            Framing::Boundary => {}
        }
        let Some(bytes) = ev.payload.get(off as usize..).filter(|b| !b.is_empty()) else {
            // The message starts past the captured prefix: its bytes are not visible.
            conn.framing[slot] = Framing::UntilTurn;
            return;
        };
        let truncated = (ev.payload.len() as u64) < total;
        let head = match parse_head(bytes, truncated) {
            Some(h) => h,
            None => {
                IngestCounters::add(&counters.not_http_messages, 1);
                conn.framing[slot] = Framing::UntilTurn;
                return;
            }
        };
        let method = match &head.start {
            StartLine::Request { .. } => None,
            StartLine::Response { .. } => conn
                .pending
                .iter()
                .find(|p| p.dir as usize != slot)
                .and_then(|p| match &p.head.start {
                    StartLine::Request { method, .. } => Some(method.as_str()),
                    StartLine::Response { .. } => None,
                }),
        };
        let len = head.message_len(method);
        let start = off;
        match len {
            Some(l) if l > 0 => {
                let end = off.saturating_add(l);
                if end > total {
                    conn.framing[slot] = Framing::Body(end - total);
                }
                off = end.min(total);
            }
            _ => {
                conn.framing[slot] = Framing::UntilTurn;
                off = total;
            }
        }
        out.push(Message {
            head,
            offset: start,
            len,
        });
    }
}

fn make_span(
    conn: &Conn,
    resp_ev: &EventView<'_>,
    req: Pending,
    resp: HttpHead,
    resp_len: u64,
    resp_time_us: i64,
    resp_tcp_seq: u32,
) -> Span {
    // A process that sent the request is the client of this exchange.
    let is_client = req.dir == Direction::Egress;
    let local = (Arc::clone(&conn.local_ip), resp_ev.header.local_port);
    let remote = (Arc::clone(&conn.remote_ip), resp_ev.header.remote_port);
    let (client, server) = if is_client {
        (local, remote)
    } else {
        (remote, local)
    };
    let version = req.head.version();
    let (method, path) = match req.head.start {
        StartLine::Request { method, path } => (method, path),
        StartLine::Response { .. } => (String::new(), String::new()),
    };
    let (status, reason) = match resp.start {
        StartLine::Response { code, reason } => (code, reason),
        StartLine::Request { .. } => (0, String::new()),
    };
    Span {
        start_us: req.time_us,
        end_us: resp_time_us.max(req.time_us),
        observation_point: if is_client { "c-p" } else { "s-p" },
        client,
        server,
        version,
        method,
        host: req.head.headers.host,
        path,
        status,
        reason,
        request_len: req.len,
        response_len: resp_len,
        req_tcp_seq: req.tcp_seq,
        resp_tcp_seq,
        syscall_trace_id_request: req.trace_id,
        syscall_trace_id_response: resp_ev.header.syscall_trace_id,
        thread_0: req.tid,
        thread_1: resp_ev.tid(),
        cap_seq_0: req.cap_seq,
        cap_seq_1: resp_ev.header.cap_seq,
        pid: resp_ev.tgid(),
        comm: Arc::clone(&conn.comm),
        x_request_id: (req.head.headers.x_request_id, resp.headers.x_request_id),
        trace_id: req.head.headers.trace_id,
        span_id: req.head.headers.span_id,
        parent_span_id: req.head.headers.parent_span_id,
        socket_id: resp_ev.header.socket_id,
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
            assert_eq!(s.syscall_trace_id_response, 7);
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
