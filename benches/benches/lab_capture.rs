//! Live packet capture under load (root only): the two-node lab of lab/netns.sh, a minimal
//! HTTP/1.1 responder in pod B, keep-alive clients in pod A sending requests back to back for a
//! few seconds across the VXLAN tunnel, and wiretrace's capture threads on the lab's four
//! interfaces (both pod veths, both node NICs). Reports the request rate the lab sustained, the
//! frames captured per second, the kernel's ring drops, and whether every request became one
//! packet span at each of the four points.
//!
//! `cargo bench -p wiretrace-benches --bench lab_capture -- [SECONDS] [CLIENTS] [RING_MIB]`

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use wiretrace_ingest::{
    IngestCounters,
    capture::{CaptureRule, Netns, enter_netns},
    nics::{NicCaptures, NicOptions, PacketOutput},
};

const PREFIX: &str = "wtbench";
const SERVER: &str = "10.244.2.2:8080";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn lab(action: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../lab/netns.sh");
    let ok = Command::new(script)
        .args([action, PREFIX])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "lab/netns.sh {action} failed");
}

/// Answers every request head on every connection with `RESPONSE`, until `stop`.
fn serve(stop: Arc<AtomicBool>) {
    enter_netns(&Netns::named(&format!("{PREFIX}pb"))).expect("entering pod B");
    let listener = TcpListener::bind(SERVER).expect("binding in pod B");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut conn, _)) => {
                conn.set_nonblocking(false).expect("blocking connection");
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut have = 0;
                    while let Ok(n) = conn.read(&mut buf[have..]) {
                        if n == 0 {
                            return;
                        }
                        have += n;
                        while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n")
                        {
                            if conn.write_all(RESPONSE).is_err() {
                                return;
                            }
                            buf.copy_within(end + 4..have, 0);
                            have -= end + 4;
                        }
                    }
                });
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Sends requests back to back on one keep-alive connection until `deadline`.
fn client(id: usize, deadline: Instant, done: Arc<AtomicU64>) {
    enter_netns(&Netns::named(&format!("{PREFIX}pa"))).expect("entering pod A");
    let mut conn = TcpStream::connect(SERVER).expect("connecting to pod B");
    conn.set_nodelay(true).expect("nodelay");
    let mut buf = [0u8; 256];
    let mut n = 0u64;
    while Instant::now() < deadline {
        let req = format!("GET /bench/{id}/{n} HTTP/1.1\r\nHost: pod-b\r\n\r\n");
        conn.write_all(req.as_bytes()).expect("sending");
        let mut got = 0;
        while got < RESPONSE.len() {
            let k = conn.read(&mut buf[got..]).expect("receiving");
            assert!(k > 0, "server closed");
            got += k;
        }
        n += 1;
    }
    done.fetch_add(n, Ordering::Relaxed);
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let ring_mib: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(wiretrace_ingest::DEFAULT_RING_MIB);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP lab_capture: needs root (network namespaces, AF_PACKET)");
        return;
    }
    lab("up");
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || serve(stop))
    };
    thread::sleep(Duration::from_millis(300));

    let counters = Arc::new(IngestCounters::default());
    let (tx, mut rx) = mpsc::channel::<PacketOutput>(1024);
    let rules = [
        format!("node={PREFIX}n*/eth0"),
        format!("pod={PREFIX}n*/vp*"),
    ]
    .iter()
    .map(|r| r.parse::<CaptureRule>().expect("rule"))
    .collect();
    let captures = NicCaptures::start(
        NicOptions {
            rules,
            snaplen: wiretrace_ingest::DEFAULT_SNAPLEN,
            ring_mib,
            flush_interval: Duration::from_millis(200),
        },
        tx,
        Arc::clone(&counters),
    );
    assert_eq!(captures.points().len(), 4, "{:?}", captures.points());
    let collector = thread::spawn(move || {
        let mut spans: HashMap<&'static str, u64> = HashMap::new();
        while let Some(out) = rx.blocking_recv() {
            for s in out.spans {
                *spans.entry(s.observation_point).or_default() += 1;
            }
        }
        spans
    });

    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..clients)
        .map(|i| {
            let done = Arc::clone(&done);
            thread::spawn(move || client(i, deadline, done))
        })
        .collect();
    for w in workers {
        w.join().expect("client thread");
    }
    let elapsed = started.elapsed().as_secs_f64();
    thread::sleep(Duration::from_millis(500)); // let the rings drain
    captures.stop();
    let spans = collector.join().expect("collector");
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    lab("down");

    let requests = done.load(Ordering::Relaxed);
    let frames = counters.packets.load(Ordering::Relaxed);
    let drops = counters.packet_drops.load(Ordering::Relaxed);
    println!(
        "lab_capture: {clients} keep-alive clients, {ring_mib} MiB rings, {elapsed:.1} s: {requests} requests \
         ({:.0}/s); {frames} frames captured at 4 points ({:.0}/s); kernel ring drops: {drops}",
        requests as f64 / elapsed,
        frames as f64 / elapsed,
    );
    for point in ["c", "c-nd", "s-nd", "s"] {
        let n = spans.get(point).copied().unwrap_or(0);
        println!(
            "  {point:5} {n} spans{}",
            if n == requests {
                " (every request)"
            } else {
                " — MISSING SOME"
            }
        );
    }
}
