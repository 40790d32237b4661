//! Ring-buffer records decoded into owned-free views, and kernel clock → wall clock.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use wiretrace_ebpf_common::{Direction, EVENT_HEADER_LEN, EventKind, SocketEvent};

/// One decoded ring-buffer record: the header and the payload prefix that follows it.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    /// The fixed-size header.
    pub header: SocketEvent,
    /// The payload prefix (at most the configured limit).
    pub payload: &'a [u8],
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedEvent;

impl<'a> EventView<'a> {
    /// Decodes a record; rejects one shorter than its header or than the payload it announces.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, MalformedEvent> {
        if bytes.len() < EVENT_HEADER_LEN {
            return Err(MalformedEvent);
        }
        // SAFETY: the length was checked; SocketEvent is plain old data valid for any bits.
        let header = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<SocketEvent>()) };
        let end = EVENT_HEADER_LEN + header.payload_len as usize;
        let payload = bytes.get(EVENT_HEADER_LEN..end).ok_or(MalformedEvent)?;
        if header.kind > EventKind::Close as u8 || header.direction > Direction::Ingress as u8 {
            return Err(MalformedEvent);
        }
        Ok(Self { header, payload })
    }

    /// Data or close.
    pub fn kind(&self) -> EventKind {
        if self.header.kind == EventKind::Close as u8 {
            EventKind::Close
        } else {
            EventKind::Data
        }
    }

    /// Egress (send) or ingress (receive).
    pub fn direction(&self) -> Direction {
        if self.header.direction == Direction::Ingress as u8 {
            Direction::Ingress
        } else {
            Direction::Egress
        }
    }

    /// Process id.
    pub fn tgid(&self) -> u32 {
        (self.header.pid_tgid >> 32) as u32
    }

    /// Thread id.
    pub fn tid(&self) -> u32 {
        self.header.pid_tgid as u32
    }

    /// The process name.
    pub fn comm(&self) -> String {
        let c = &self.header.comm;
        let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
        String::from_utf8_lossy(&c[..end]).into_owned()
    }

    /// Local address (IPv4-mapped IPv6 shown as IPv4).
    pub fn local_ip(&self) -> IpAddr {
        addr(self.header.family, &self.header.local_addr)
    }

    /// Remote address (IPv4-mapped IPv6 shown as IPv4).
    pub fn remote_ip(&self) -> IpAddr {
        addr(self.header.family, &self.header.remote_addr)
    }
}

fn addr(family: u8, raw: &[u8; 16]) -> IpAddr {
    const AF_INET6: u8 = 10;
    if family == AF_INET6 {
        let v6 = Ipv6Addr::from(*raw);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    } else {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    }
}

/// The wall clock now, in Unix µs.
pub fn unix_now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Converts the kernel's CLOCK_MONOTONIC ns to Unix µs, with the offset taken once at start.
#[derive(Debug, Clone, Copy)]
pub struct KernelClock {
    offset_ns: i64,
}

impl KernelClock {
    /// Measures the offset between CLOCK_REALTIME and CLOCK_MONOTONIC now.
    pub fn now() -> Self {
        let read = |clock| {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: valid pointer to a timespec; the clocks always exist on Linux.
            unsafe { libc::clock_gettime(clock, &mut ts) };
            ts.tv_sec * 1_000_000_000 + ts.tv_nsec
        };
        let mono = read(libc::CLOCK_MONOTONIC);
        let real = read(libc::CLOCK_REALTIME);
        Self {
            offset_ns: real - mono,
        }
    }

    /// A clock with a fixed offset (for tests and replay).
    pub fn with_offset_ns(offset_ns: i64) -> Self {
        Self { offset_ns }
    }

    /// Unix µs for a kernel timestamp.
    pub fn unix_micros(&self, kernel_ns: u64) -> i64 {
        (kernel_ns as i64 + self.offset_ns) / 1000
    }
}

/// Encodes an event header + payload as the kernel would (for tests, benches, replay).
pub fn encode_event(header: &SocketEvent, payload: &[u8]) -> Vec<u8> {
    let mut h = *header;
    h.payload_len = payload.len() as u32;
    let mut out = Vec::with_capacity(EVENT_HEADER_LEN + payload.len());
    // SAFETY: SocketEvent is repr(C) plain data without padding.
    let raw = unsafe {
        std::slice::from_raw_parts((&h as *const SocketEvent).cast::<u8>(), EVENT_HEADER_LEN)
    };
    out.extend_from_slice(raw);
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_records_are_rejected() {
        let h = SocketEvent {
            timestamp_ns: 1,
            pid_tgid: (7 << 32) | 8,
            socket_id: 1,
            syscall_trace_id: 0,
            cap_seq: 1,
            syscall_len: 3,
            tcp_seq: 9,
            fd: 3,
            payload_len: 3,
            kind: 0,
            direction: 0,
            family: 2,
            role: 0,
            local_port: 1,
            remote_port: 2,
            syscall: 1,
            local_addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            remote_addr: [0; 16],
            comm: *b"curl\0\0\0\0\0\0\0\0\0\0\0\0",
        };
        let bytes = encode_event(&h, b"abc");
        let v = EventView::parse(&bytes).unwrap();
        assert_eq!(v.payload, b"abc");
        assert_eq!(v.comm(), "curl");
        assert_eq!((v.tgid(), v.tid()), (7, 8));
        assert_eq!(v.local_ip().to_string(), "127.0.0.1");
        assert_eq!(
            EventView::parse(&bytes[..bytes.len() - 1]).unwrap_err(),
            MalformedEvent
        );
        assert_eq!(EventView::parse(&bytes[..10]).unwrap_err(), MalformedEvent);
    }
}
