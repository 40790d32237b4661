//! HTTP/1.x captured by eBPF from real processes, paired into spans, read back over psql.

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    thread::sleep,
    time::Duration,
};

use crate::support::{
    Wiretrace, can_capture, chain_server, fixture, free_port, http_server, python,
};

const COLS: &str = "observation_point, process_kname_0, process_kname_1, ip_0, client_port, ip_1, \
                    server_port, request_type, request_resource, response_code, req_tcp_seq, \
                    resp_tcp_seq, process_id_0, process_id_1, syscall_trace_id_request, \
                    syscall_trace_id_response, _id";

/// A span row as psql printed it, by column name.
fn spans(wt: &Wiretrace, filter: &str, n: usize) -> Vec<HashMap<&'static str, String>> {
    let names: Vec<&'static str> = COLS.split(',').map(str::trim).collect();
    wt.wait_rows(
        &format!(
            "select {COLS} from l7_flow_log where {filter} order by start_time, observation_point"
        ),
        n,
    )
    .into_iter()
    .map(|r| names.iter().copied().zip(r).collect())
    .collect()
}

/// curl → python3 http.server, two GETs on one keep-alive connection: two c-p spans (curl) and
/// two s-p spans (python3) with equal tcp seqs per request; the Parquet files read back the
/// same with pyarrow.
#[test]
fn keep_alive_requests_pair_client_and_server_spans() {
    if !can_capture("keep_alive_requests_pair_client_and_server_spans") {
        return;
    }
    let wt = Wiretrace::up();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("a.txt"), "alpha\n").unwrap();
    std::fs::write(site.path().join("b.txt"), "bravo bravo\n").unwrap();
    let port = free_port();
    let server = http_server("127.0.0.1", port, "HTTP/1.1", site.path());
    let curl = Command::new("curl")
        .args(["-sf", "-o", "/dev/null", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{port}/a.txt"))
        .arg(format!("http://127.0.0.1:{port}/b.txt"))
        .status()
        .expect("running curl");
    assert!(curl.success());

    let rows = spans(&wt, &format!("server_port = {port}"), 4);
    let cp: Vec<_> = rows
        .iter()
        .filter(|r| r["observation_point"] == "c-p")
        .collect();
    let sp: Vec<_> = rows
        .iter()
        .filter(|r| r["observation_point"] == "s-p")
        .collect();
    assert_eq!((cp.len(), sp.len()), (2, 2), "{rows:?}");
    for (c, path) in cp.iter().zip(["/a.txt", "/b.txt"]) {
        assert_eq!(c["process_kname_0"], "curl");
        assert_eq!(c["request_resource"], path);
        let s = sp
            .iter()
            .find(|s| s["request_resource"] == path)
            .unwrap_or_else(|| panic!("no s-p span for {path}: {rows:?}"));
        assert_eq!(s["process_kname_1"], "python3");
        assert_eq!(s["process_id_1"], server.pid().to_string());
        for r in [c, s] {
            assert_eq!(r["request_type"], "GET");
            assert_eq!(r["response_code"], "200");
            assert_eq!(r["ip_0"], "127.0.0.1");
            assert_eq!(r["ip_1"], "127.0.0.1");
            assert_eq!(r["server_port"], port.to_string());
        }
        assert_eq!(c["client_port"], s["client_port"]);
        assert_eq!(c["req_tcp_seq"], s["req_tcp_seq"], "request seq of {path}");
        assert_eq!(
            c["resp_tcp_seq"], s["resp_tcp_seq"],
            "response seq of {path}"
        );
        assert_ne!(c["req_tcp_seq"], "");
    }
    assert_eq!(
        cp[0]["client_port"], cp[1]["client_port"],
        "one keep-alive connection"
    );

    // The Parquet files, read by pyarrow, hold exactly what SQL returned once the store has
    // flushed its buffer (after 1 s here, see `up()` above).
    wt.wait_rows(
        "select value from store_counters where name = 'buffered_rows' and value = 0",
        1,
    );
    let sql: Vec<String> = wt
        .psql(&format!(
            "select _id, req_tcp_seq, resp_tcp_seq, request_resource from l7_flow_log \
             where server_port = {port} order by _id"
        ))
        .into_iter()
        .map(|r| r.join("|"))
        .collect();
    let out = Command::new(python())
        .arg(fixture("read_parquet.py"))
        .arg(wt.data.path())
        .arg(port.to_string())
        .output()
        .expect("running python with pyarrow");
    assert!(
        out.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pyarrow: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(pyarrow, sql);
}

/// A threaded server that calls a downstream server on the handling thread: its s-p span and
/// its outgoing c-p span are linked by syscall_trace_id (s-p.req == c-p.req, c-p.resp == s-p.resp).
#[test]
fn syscall_trace_id_links_inbound_request_to_outbound_call() {
    if !can_capture("syscall_trace_id_links_inbound_request_to_outbound_call") {
        return;
    }
    let wt = Wiretrace::up();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("leaf"), "{\"leaf\": true}").unwrap();
    let leaf_port = free_port();
    let _leaf = http_server("127.0.0.1", leaf_port, "HTTP/1.0", site.path());
    let port = free_port();
    let chain = chain_server(port, leaf_port);
    let curl = Command::new("curl")
        .args(["-sf", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{port}/chain"))
        .status()
        .expect("running curl");
    assert!(curl.success());

    let inbound = spans(
        &wt,
        &format!("server_port = {port} and observation_point = 's-p'"),
        1,
    );
    let outbound = spans(
        &wt,
        &format!(
            "server_port = {leaf_port} and observation_point = 'c-p' and process_id_0 = {}",
            chain.pid()
        ),
        1,
    );
    let (s, c) = (&inbound[0], &outbound[0]);
    assert_eq!(s["process_id_1"], chain.pid().to_string());
    assert_ne!(s["syscall_trace_id_request"], "", "{s:?}");
    assert_ne!(c["syscall_trace_id_response"], "", "{c:?}");
    assert_eq!(s["syscall_trace_id_request"], c["syscall_trace_id_request"]);
    assert_eq!(
        c["syscall_trace_id_response"],
        s["syscall_trace_id_response"]
    );
    assert_ne!(
        s["syscall_trace_id_request"],
        s["syscall_trace_id_response"]
    );
}

/// Non-HTTP traffic, binary garbage sent to an HTTP server, and a client that disconnects
/// mid-request give no span and no crash; the counters show them.
#[test]
fn garbage_and_disconnects_make_no_spans() {
    if !can_capture("garbage_and_disconnects_make_no_spans") {
        return;
    }
    let wt = Wiretrace::up();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("ok"), "ok").unwrap();
    let port = free_port();
    let _server = http_server("127.0.0.1", port, "HTTP/1.1", site.path());
    let before_not_http = wt.counter("not_http_messages");
    let before_unanswered = wt.counter("unanswered_requests");

    // A line protocol on a plain TCP echo between two sockets of this test.
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    let echo_thread = std::thread::spawn(move || {
        let (mut s, _) = echo.accept().unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap();
        s.write_all(&buf[..n]).unwrap();
    });
    let mut c = TcpStream::connect(("127.0.0.1", echo_port)).unwrap();
    c.write_all(b"PING 1\r\n").unwrap();
    let mut reply = [0u8; 8];
    c.read_exact(&mut reply).unwrap();
    echo_thread.join().unwrap();

    // Binary garbage to the HTTP server (it answers 400 and closes).
    let mut g = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let garbage_port = g.local_addr().unwrap().port();
    g.write_all(&[
        0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0xff, 0x00, b'\r', b'\n', b'\r', b'\n',
    ])
    .unwrap();
    let mut sink = Vec::new();
    let _ = g.read_to_end(&mut sink);

    // A client that closes mid-request (half a head) on a server that reads until EOF.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mute_port = mute.local_addr().unwrap().port();
    let mute_thread = std::thread::spawn(move || {
        let (mut s, _) = mute.accept().unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    });
    let mut d = TcpStream::connect(("127.0.0.1", mute_port)).unwrap();
    d.write_all(b"GET /never-finished HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    drop(d);
    mute_thread.join().unwrap();
    sleep(Duration::from_millis(300));

    // A normal request afterwards: the agent still works, and by the time its spans are
    // stored every earlier event has been processed.
    let ok = Command::new("curl")
        .args(["-sf", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{port}/ok"))
        .status()
        .unwrap();
    assert!(ok.success());
    spans(
        &wt,
        &format!("server_port = {port} and request_resource = '/ok'"),
        2,
    );
    let stray = wt.psql(&format!(
        "select observation_point from l7_flow_log where server_port = {echo_port} \
         or server_port = {mute_port} or client_port = {garbage_port}"
    ));
    assert!(stray.is_empty(), "unexpected spans: {stray:?}");
    assert!(wt.counter("not_http_messages") > before_not_http);
    assert!(wt.counter("unanswered_requests") > before_unanswered);
    assert_eq!(
        wt.counter("kernel_ring_drops"),
        0,
        "light load must not fill the ring buffer"
    );
    // SAFETY: signal 0 only checks that the agent process is still alive.
    assert_eq!(
        unsafe { libc::kill(wt.pid() as i32, 0) },
        0,
        "wiretrace up died"
    );
}

/// IPv6 sockets are traced too: curl → python3 over [::1].
#[test]
fn ipv6_exchange_is_captured() {
    if !can_capture("ipv6_exchange_is_captured") {
        return;
    }
    let wt = Wiretrace::up();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("six"), "6").unwrap();
    let port = free_port();
    let _server = http_server("::1", port, "HTTP/1.1", site.path());
    let curl = Command::new("curl")
        .args(["-sf", "-o", "/dev/null"])
        .arg(format!("http://[::1]:{port}/six"))
        .status()
        .expect("running curl");
    assert!(curl.success());
    let rows = spans(&wt, &format!("server_port = {port}"), 2);
    for r in &rows {
        assert_eq!(
            (r["ip_0"].as_str(), r["ip_1"].as_str()),
            ("::1", "::1"),
            "{r:?}"
        );
        assert_eq!(r["request_resource"], "/six");
    }
    assert_eq!(rows[0]["req_tcp_seq"], rows[1]["req_tcp_seq"]);
    assert_eq!(rows[0]["resp_tcp_seq"], rows[1]["resp_tcp_seq"]);
}
