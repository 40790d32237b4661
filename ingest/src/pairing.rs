//! Byte streams → HTTP messages → request/response exchanges. A [`Conversation`] is one
//! connection's message state: it finds message boundaries (keep-alive, pipelining, bodies spread
//! over many chunks) and pairs each response with the oldest request still waiting. Socket
//! syscalls (`sockets`) and TCP segments seen in packets (`flows`) feed it alike.

use std::{collections::VecDeque, sync::Arc};

use wiretrace_ebpf_common::Direction;

use crate::{
    counters::IngestCounters,
    proto::http::{HttpHead, StartLine, parse_head},
    span::{Seen, Span},
};

/// Where the next message starts in one direction of a connection.
#[derive(Debug, Default, Clone, Copy)]
enum Framing {
    /// The next byte starts a message.
    #[default]
    Boundary,
    /// This many body bytes remain before the next message.
    Body(u64),
    /// A body of unknown length (chunked or until close), or bytes lost: everything until the
    /// direction changes belongs to it.
    UntilTurn,
}

/// Bytes of one direction of a connection: one syscall's, or one TCP segment's payload.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    /// Which end sent them (`Egress` = end 0: the local process, or a flow's first sender).
    pub dir: Direction,
    /// Unix µs.
    pub time_us: i64,
    /// TCP sequence number of the first byte.
    pub tcp_seq: u32,
    /// Bytes in the chunk.
    pub len: u64,
    /// The captured prefix of those bytes.
    pub payload: &'a [u8],
}

/// One HTTP message: its head, where and when it started, and what its observer noted then.
#[derive(Debug)]
pub struct Message<M> {
    /// The parsed head.
    pub head: HttpHead,
    /// Which end sent it.
    pub dir: Direction,
    /// Unix µs of its first chunk.
    pub time_us: i64,
    /// TCP seq of its first byte.
    pub tcp_seq: u32,
    /// Its length (framing), or the bytes of its first chunk when unknown.
    pub len: u64,
    /// The observer's notes taken at its first chunk.
    pub meta: M,
}

/// A request and its response.
#[derive(Debug)]
pub struct Exchange<M> {
    /// The request.
    pub request: Message<M>,
    /// The response.
    pub response: Message<M>,
}

/// One connection's message state.
#[derive(Debug)]
pub struct Conversation<M> {
    framing: [Framing; 2],
    last_dir: Option<Direction>,
    pending: VecDeque<Message<M>>,
}

impl<M> Default for Conversation<M> {
    fn default() -> Self {
        Self {
            framing: [Framing::Boundary; 2],
            last_dir: None,
            pending: VecDeque::new(),
        }
    }
}

/// Where one message starts inside a chunk.
#[derive(Debug)]
struct Found {
    head: HttpHead,
    offset: u64,
    len: Option<u64>,
}

impl<M> Conversation<M> {
    /// Requests still waiting for a response.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Bytes of direction `dir` were lost (a capture gap): forget where its messages end.
    pub fn lost(&mut self, dir: Direction) {
        self.framing[dir as usize] = Framing::UntilTurn;
    }

    /// Feeds one chunk; `meta(is_request)` is called once per message starting in it;
    /// completed exchanges are appended to `out`.
    pub fn push(
        &mut self,
        chunk: &Chunk<'_>,
        mut meta: impl FnMut(bool) -> M,
        counters: &IngestCounters,
        out: &mut Vec<Exchange<M>>,
    ) {
        let dir = chunk.dir;
        let turned = self.last_dir.is_some_and(|d| d != dir);
        self.last_dir = Some(dir);
        let slot = dir as usize;
        if turned && matches!(self.framing[slot], Framing::UntilTurn) {
            self.framing[slot] = Framing::Boundary;
        }
        // The other direction's unknown-length body ended when this side spoke.
        if matches!(self.framing[1 - slot], Framing::UntilTurn) {
            self.framing[1 - slot] = Framing::Boundary;
        }
        let mut off = 0u64;
        while let Some(found) = self.next_message(chunk, &mut off, counters) {
            let is_request = matches!(found.head.start, StartLine::Request { .. });
            let message = Message {
                len: found
                    .len
                    .unwrap_or_else(|| chunk.len.saturating_sub(found.offset)),
                head: found.head,
                dir,
                time_us: chunk.time_us,
                tcp_seq: chunk.tcp_seq.wrapping_add(found.offset as u32),
                meta: meta(is_request),
            };
            if is_request {
                IngestCounters::add(&counters.http_requests, 1);
                self.pending.push_back(message);
                continue;
            }
            IngestCounters::add(&counters.http_responses, 1);
            if let StartLine::Response { code, .. } = message.head.start
                && code < 200
            {
                continue; // interim (100 Continue): the final response follows
            }
            let Some(request) = self
                .pending
                .iter()
                .position(|p| p.dir != dir)
                .and_then(|pos| self.pending.remove(pos))
            else {
                IngestCounters::add(&counters.orphan_responses, 1);
                continue;
            };
            IngestCounters::add(&counters.spans, 1);
            out.push(Exchange {
                request,
                response: message,
            });
        }
    }

    /// Finds the next message starting in `chunk` at or after `*off`, advancing the framing.
    fn next_message(
        &mut self,
        chunk: &Chunk<'_>,
        off: &mut u64,
        counters: &IngestCounters,
    ) -> Option<Found> {
        let slot = chunk.dir as usize;
        let total = chunk.len;
        while *off < total {
            match self.framing[slot] {
                Framing::UntilTurn => return None,
                Framing::Body(n) => {
                    let k = n.min(total - *off);
                    *off += k;
                    self.framing[slot] = if n > k {
                        Framing::Body(n - k)
                    } else {
                        Framing::Boundary
                    };
                    continue;
                }
                Framing::Boundary => {}
            }
            let Some(bytes) = chunk.payload.get(*off as usize..).filter(|b| !b.is_empty()) else {
                // The message starts past the captured prefix: its bytes are not visible.
                self.framing[slot] = Framing::UntilTurn;
                return None;
            };
            let truncated = (chunk.payload.len() as u64) < total;
            let Some(head) = parse_head(bytes, truncated) else {
                IngestCounters::add(&counters.not_http_messages, 1);
                self.framing[slot] = Framing::UntilTurn;
                return None;
            };
            let method = match &head.start {
                StartLine::Request { .. } => None,
                StartLine::Response { .. } => self
                    .pending
                    .iter()
                    .find(|p| p.dir != chunk.dir)
                    .and_then(|p| match &p.head.start {
                        StartLine::Request { method, .. } => Some(method.as_str()),
                        StartLine::Response { .. } => None,
                    }),
            };
            let len = head.message_len(method);
            let start = *off;
            match len {
                Some(l) if l > 0 => {
                    let end = start.saturating_add(l);
                    if end > total {
                        self.framing[slot] = Framing::Body(end - total);
                    }
                    *off = end.min(total);
                }
                _ => {
                    self.framing[slot] = Framing::UntilTurn;
                    *off = total;
                }
            }
            return Some(Found {
                head,
                offset: start,
                len,
            });
        }
        None
    }
}

/// The two ends of a connection as addresses and ports: end 0 (`Egress` side) and end 1.
pub type Ends = [(Arc<str>, u16); 2];

impl<M> Exchange<M> {
    /// The span of this exchange: the end that sent the request is the client.
    pub fn into_span(
        self,
        ends: &Ends,
        observation_point: &'static str,
        flow_id: u64,
        seen: impl FnOnce(Message<M>, Message<M>) -> Seen,
    ) -> Span {
        let Exchange { request, response } = self;
        let c = request.dir as usize;
        let version = request.head.version();
        let (method, path) = match &request.head.start {
            StartLine::Request { method, path } => (method.clone(), path.clone()),
            StartLine::Response { .. } => (String::new(), String::new()),
        };
        let (status, reason) = match &response.head.start {
            StartLine::Response { code, reason } => (*code, reason.clone()),
            StartLine::Request { .. } => (0, String::new()),
        };
        let req_h = &request.head.headers;
        Span {
            start_us: request.time_us,
            end_us: response.time_us.max(request.time_us),
            observation_point,
            client: (Arc::clone(&ends[c].0), ends[c].1),
            server: (Arc::clone(&ends[1 - c].0), ends[1 - c].1),
            version,
            method,
            host: req_h.host.clone(),
            path,
            status,
            reason,
            request_len: request.len,
            response_len: response.len,
            req_tcp_seq: request.tcp_seq,
            resp_tcp_seq: response.tcp_seq,
            x_request_id: (
                req_h.x_request_id.clone(),
                response.head.headers.x_request_id.clone(),
            ),
            trace_id: req_h.trace_id.clone(),
            span_id: req_h.span_id.clone(),
            parent_span_id: req_h.parent_span_id.clone(),
            flow_id,
            seen: seen(request, response),
        }
    }
}
