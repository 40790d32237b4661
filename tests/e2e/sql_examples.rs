//! Every query in sql-examples/ runs through psql and returns rows on freshly captured spans:
//! eBPF spans of loopback traffic, and eBPF plus packet spans and flows of a request across the
//! two-node lab's tunnel.

use std::{path::Path, process::Command};

use crate::{
    lab::Lab,
    support::{Wiretrace, can_capture, chain_server, free_port, http_server},
};

#[test]
fn every_sql_example_returns_rows_on_captured_spans() {
    if !can_capture("every_sql_example_returns_rows_on_captured_spans") {
        return;
    }
    let mut lab = Lab::new("s");
    let site = tempfile::tempdir().unwrap();
    lab.http_server_in_pod_b(8080, site.path());
    let args = lab.capture_args();
    let wt = Wiretrace::up_with(&args);
    std::fs::write(site.path().join("index.html"), "<p>hi</p>").unwrap();
    std::fs::write(site.path().join("leaf"), "{\"leaf\": 1}").unwrap();
    let leaf_port = free_port();
    let _leaf = http_server("127.0.0.1", leaf_port, "HTTP/1.1", site.path());
    let chain_port = free_port();
    let _chain = chain_server(chain_port, leaf_port);
    // A 200 and a 404 on one keep-alive connection, then a request that fans out.
    let status = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{leaf_port}/index.html"))
        .arg(format!("http://127.0.0.1:{leaf_port}/missing"))
        .status()
        .unwrap();
    assert!(status.success());
    let status = Command::new("curl")
        .args(["-sf", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{chain_port}/chain"))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        lab.curl_from_pod_a(8080, "/index.html", &[]),
        "curl from pod A failed"
    );
    // c-p + s-p for /index.html, /missing, /chain and the chain's /leaf call.
    wt.wait_rows(
        &format!("select _id from l7_flow_log where server_port in ({leaf_port}, {chain_port})"),
        8,
    );
    // The lab request at six points, and its flow (closed by curl) at four.
    wt.wait_rows(
        "select _id from l7_flow_log where server_port = 8080 and request_resource = '/index.html'",
        6,
    );
    wt.wait_rows(
        "select _id from l4_flow_log where server_port = 8080 and close_type = 'fin' \
         and client_port = (select max(client_port) from l7_flow_log where server_port = 8080)",
        4,
    );

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql-examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "sql-examples has {} files", files.len());
    for f in files {
        let out = wt.psql_file(&f);
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let rows = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .count();
        assert!(rows > 0, "{} returned no rows", f.display());
    }
}
