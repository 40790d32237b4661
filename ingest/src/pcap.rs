//! Frames from pcap and pcapng files (read with `pcap-parser`), fed to one [`FlowTable`] per
//! interface of the file, as the live capture feeds one per NIC. Records that cannot be read are
//! counted and skipped; a file cut short ends its reading with what came before kept.

use std::{fs::File, io::Read, path::Path, sync::Arc};

use pcap_parser::{
    Block, PcapBlockOwned, PcapError, create_reader, pcapng::EnhancedPacketBlock,
    traits::PcapNGPacketBlock,
};
use wiretrace_packet::Link;

use crate::{
    capture::{CapturePoint, Frame, NicRole},
    counters::IngestCounters,
    error::IngestError,
    flows::FlowTable,
    span::Span,
};

/// Buffer for reading: must hold the largest record.
const READ_BUFFER: usize = 1 << 20;

/// What reading one file produced.
#[derive(Debug, Default)]
pub struct PcapSummary {
    /// Frames fed to the flow tables.
    pub frames: u64,
    /// Records skipped: unsupported link types, unreadable blocks.
    pub skipped: u64,
    /// Why reading stopped early, if it did (a truncated or corrupt file).
    pub stopped_early: Option<String>,
    /// Spans found.
    pub spans: Vec<Span>,
    /// Flow rows (every flow is closed at the end of the file).
    pub flows: Vec<crate::flows::FlowRecord>,
}

/// One interface of the file.
#[derive(Debug)]
struct Interface {
    link: Option<Link>,
    /// pcapng timestamp units per second and offset (s).
    resolution: u64,
    offset: i64,
    table: FlowTable,
}

/// Counts bytes as they are read, for progress.
#[derive(Debug)]
struct Counting<R> {
    inner: R,
    progress: Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads `path` as pcap or pcapng. Spans' capture points are named after the file (netns) and
/// the pcapng interface name (or `if<N>`), with `role`. `progress` counts bytes read.
pub fn read_pcap(
    path: &Path,
    role: NicRole,
    counters: &IngestCounters,
    progress: Arc<std::sync::atomic::AtomicU64>,
) -> Result<PcapSummary, IngestError> {
    let file = File::open(path).map_err(|e| IngestError::Pcap {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let source = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let err = |detail: String| IngestError::Pcap {
        path: path.to_path_buf(),
        detail,
    };
    let mut reader = create_reader(
        READ_BUFFER,
        Counting {
            inner: file,
            progress,
        },
    )
    .map_err(|e| err(format!("not a pcap or pcapng file ({e:?})")))?;
    let point = |nic: String| {
        Arc::new(CapturePoint {
            netns: source.clone(),
            nic,
            role,
        })
    };
    let mut ifaces: Vec<Interface> = Vec::new();
    let mut summary = PcapSummary::default();
    loop {
        match reader.next() {
            Ok((used, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        let resolution = if h.is_nanosecond_precision() {
                            1_000_000_000
                        } else {
                            1_000_000
                        };
                        ifaces = vec![Interface {
                            link: Link::from_linktype(h.network.0),
                            resolution,
                            offset: 0,
                            table: FlowTable::new(point("if0".into())),
                        }];
                    }
                    PcapBlockOwned::Legacy(b) => match ifaces.first_mut() {
                        Some(i) => {
                            let ticks = u64::from(b.ts_sec) * i.resolution + u64::from(b.ts_usec);
                            feed(i, ticks, b.data, b.origlen, None, counters, &mut summary);
                        }
                        None => summary.skipped += 1,
                    },
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => ifaces.clear(),
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        let nic = idb
                            .if_name()
                            .and_then(Result::ok)
                            .map(str::to_string)
                            .unwrap_or_else(|| format!("if{}", ifaces.len()));
                        ifaces.push(Interface {
                            link: Link::from_linktype(idb.linktype.0),
                            resolution: idb.ts_resolution().unwrap_or(1_000_000),
                            offset: idb.ts_offset(),
                            table: FlowTable::new(point(nic)),
                        });
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        match ifaces.get_mut(epb.if_id as usize) {
                            Some(i) => {
                                let ticks = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                                let ticks =
                                    ticks.saturating_add_signed(i.offset * i.resolution as i64);
                                let dir = epb_direction(&epb);
                                let data = &epb.data[..(epb.caplen as usize).min(epb.data.len())];
                                feed(i, ticks, data, epb.origlen, dir, counters, &mut summary);
                            }
                            None => summary.skipped += 1,
                        }
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => match ifaces.first_mut() {
                        Some(i) => feed(i, 0, spb.data, spb.origlen, None, counters, &mut summary),
                        None => summary.skipped += 1,
                    },
                    PcapBlockOwned::NG(_) => {}
                }
                reader.consume(used);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                if reader.reader_exhausted() {
                    summary.stopped_early = Some("the file ends inside a record".into());
                    break;
                }
                if let Err(e) = reader.refill() {
                    summary.stopped_early = Some(format!("reading failed: {e:?}"));
                    break;
                }
            }
            Err(e) => {
                summary.stopped_early = Some(format!("unreadable record: {e:?}"));
                break;
            }
        }
    }
    for mut i in ifaces {
        i.table.finish(counters);
        summary.spans.extend(i.table.take_spans());
        summary.flows.extend(i.table.take_records());
    }
    Ok(summary)
}

/// Direction from the pcapng `epb_flags` option (code 2): inbound 1, outbound 2.
fn epb_direction(epb: &EnhancedPacketBlock<'_>) -> Option<bool> {
    let opt = epb.options.iter().find(|o| o.code.0 == 2)?;
    let b: [u8; 4] = opt.value.get(..4)?.try_into().ok()?;
    let flags = if epb.big_endian() {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    };
    match flags & 3 {
        1 => Some(false),
        2 => Some(true),
        _ => None,
    }
}

fn feed(
    iface: &mut Interface,
    ticks: u64,
    data: &[u8],
    wire_len: u32,
    outgoing: Option<bool>,
    counters: &IngestCounters,
    summary: &mut PcapSummary,
) {
    let Some(link) = iface.link else {
        summary.skipped += 1;
        return;
    };
    summary.frames += 1;
    let per_us = (iface.resolution / 1_000_000).max(1);
    let time_us = if iface.resolution >= 1_000_000 {
        ticks / per_us
    } else {
        ticks.saturating_mul(1_000_000 / iface.resolution.max(1))
    };
    iface.table.push(
        &Frame {
            time_us: time_us as i64,
            outgoing: outgoing.or_else(|| link.outgoing(data)),
            data,
            link,
            wire_len: wire_len as usize,
        },
        counters,
    );
}
