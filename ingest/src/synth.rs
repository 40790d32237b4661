//! Synthetic socket events shaped like the kernel's, for tests, benches and replay: a client
//! and a server process exchanging HTTP/1.1 on one connection.

use wiretrace_ebpf_common::{Direction, EventKind, SocketEvent};

use crate::event::encode_event;

/// One side of a synthetic connection, producing encoded ring-buffer records.
#[derive(Debug, Clone)]
pub struct SyntheticSocket {
    header: SocketEvent,
    seq: [u32; 2],
    time_ns: u64,
}

impl SyntheticSocket {
    /// A socket of process `pid` (comm `comm`) between 10.0.0.1:`client_port` and
    /// 10.0.0.2:80; `is_client` picks which end is local.
    pub fn new(socket_id: u64, pid: u32, comm: &str, client_port: u16, is_client: bool) -> Self {
        let mut c = [0u8; 16];
        for (d, s) in c.iter_mut().zip(comm.bytes()) {
            *d = s;
        }
        let (client, server) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let (local, remote, lp, rp) = if is_client {
            (client, server, client_port, 80)
        } else {
            (server, client, 80, client_port)
        };
        let mut la = [0u8; 16];
        let mut ra = [0u8; 16];
        la[..4].copy_from_slice(&local);
        ra[..4].copy_from_slice(&remote);
        Self {
            header: SocketEvent {
                timestamp_ns: 0,
                pid_tgid: (u64::from(pid) << 32) | u64::from(pid),
                socket_id,
                syscall_trace_id: 0,
                cap_seq: 0,
                syscall_len: 0,
                tcp_seq: 0,
                fd: 3,
                payload_len: 0,
                kind: EventKind::Data as u8,
                direction: 0,
                family: 2,
                role: 0,
                local_port: lp,
                remote_port: rp,
                syscall: 0,
                local_addr: la,
                remote_addr: ra,
                comm: c,
            },
            // Initial sequence numbers of the bytes this side sends [0] and receives [1].
            seq: [1000 + u32::from(client_port), 5000 + u32::from(client_port)],
            time_ns: 1_000_000,
        }
    }

    /// The record of one syscall moving `bytes` in `dir`, with at most `limit` payload bytes.
    pub fn event(&mut self, dir: Direction, bytes: &[u8], limit: usize, trace_id: u64) -> Vec<u8> {
        let slot = dir as usize;
        let mut h = self.header;
        self.time_ns += 1_000;
        h.timestamp_ns = self.time_ns;
        h.direction = dir as u8;
        h.cap_seq += 1;
        self.header.cap_seq = h.cap_seq;
        h.syscall_len = bytes.len() as u64;
        h.tcp_seq = self.seq[slot];
        h.syscall_trace_id = trace_id;
        self.seq[slot] = self.seq[slot].wrapping_add(bytes.len() as u32);
        encode_event(&h, &bytes[..bytes.len().min(limit)])
    }

    /// The close record.
    pub fn close(&mut self) -> Vec<u8> {
        let mut h = self.header;
        h.kind = EventKind::Close as u8;
        encode_event(&h, &[])
    }
}

/// A plausible request of about 200 bytes.
pub fn request(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: reviews:9080\r\nUser-Agent: python-requests/2.31\r\n\
         Accept: */*\r\nX-Request-ID: 8c3f0e0a-7a8f-4e5e-9d0b-1f2a3b4c5d6e\r\n\r\n"
    )
    .into_bytes()
}

/// A response with a JSON body of `body_len` bytes.
pub fn response(body_len: usize) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n"
    )
    .into_bytes();
    r.resize(r.len() + body_len, b'x');
    r
}
