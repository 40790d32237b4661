//! kill -9 of `wiretrace up` during a steady ingest: every span that was queryable before the
//! kill (logged, hence acknowledged) is there after a restart, exactly once.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    thread::sleep,
    time::{Duration, Instant},
};

use crate::support::{Wiretrace, can_capture, free_port, http_server, output_lines};

/// One HTTP/1.0 GET to the server on `port`.
fn get(port: u16) {
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
        let _ = s.read_to_end(&mut Vec::new());
    }
}

/// The `_id`s of the spans of requests to `port`, read by `wiretrace query` over `dir`.
fn ids_in(dir: &std::path::Path, port: u16) -> Vec<i64> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wiretrace"));
    cmd.args(["query", "--data-dir"]).arg(dir).arg(format!(
        "select _id from l7_flow_log where server_port = {port}"
    ));
    output_lines(cmd)
        .iter()
        .filter_map(|l| l.trim_matches(|c| c == '|' || c == ' ').parse().ok())
        .collect()
}

#[test]
fn kill_9_loses_no_acknowledged_span_and_doubles_none() {
    if !can_capture("kill_9_loses_no_acknowledged_span_and_doubles_none") {
        return;
    }
    let site = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = http_server("127.0.0.1", port, "HTTP/1.0", site.path());
    // Spans reach the store every 200 ms; Parquet flushes come every second.
    let wt = Wiretrace::up_with(&["--no-packets".into()]);
    let stop = AtomicBool::new(false);
    let mut seen = BTreeSet::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                get(port);
                sleep(Duration::from_millis(5));
            }
        });
        // Some spans flushed to Parquet, some only logged, when the kill comes.
        let until = Instant::now() + Duration::from_millis(3500);
        while Instant::now() < until {
            for r in wt.psql(&format!(
                "select _id from l7_flow_log where server_port = {port}"
            )) {
                seen.insert(r[0].parse::<i64>().unwrap());
            }
            sleep(Duration::from_millis(200));
        }
        // SAFETY: SIGKILL to the wiretrace child this test started.
        unsafe { libc::kill(wt.pid() as i32, libc::SIGKILL) };
        sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
    });
    assert!(seen.len() > 20, "too little ingest to test: {}", seen.len());
    let after = ids_in(wt.data.path(), port);
    let unique: BTreeSet<i64> = after.iter().copied().collect();
    assert_eq!(unique.len(), after.len(), "rows doubled by the restart");
    let lost: Vec<_> = seen.difference(&unique).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged spans lost: {lost:?}",
        lost.len(),
        seen.len()
    );
    eprintln!(
        "kill -9: {} spans seen before, {} after the restart, none doubled",
        seen.len(),
        after.len()
    );
}

/// A truncated Parquet file is moved to quarantine (and listed in `storage_quarantine`) while
/// queries go on over the rest; partitions past their table's retention (`--table-retention`,
/// which overrides `--retention-hours`) are dropped.
#[test]
fn corrupt_files_are_quarantined_and_old_partitions_dropped() {
    let mut victim = std::path::PathBuf::new();
    let wt = Wiretrace::serve_prepared(
        |dir| {
            let mut generate = Command::new(env!("CARGO_BIN_EXE_wiretrace"));
            generate
                .args([
                    "generate",
                    "--traces",
                    "2000",
                    "--spread-s",
                    "18000",
                    "--data-dir",
                ])
                .arg(dir);
            output_lines(generate);
            let mut files: Vec<_> = std::fs::read_dir(dir.join("l7_flow_log"))
                .unwrap()
                .flatten()
                .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
                .flat_map(|h| std::fs::read_dir(h.path()).unwrap().flatten())
                .map(|f| f.path())
                .collect();
            files.sort();
            assert!(
                files.len() >= 4,
                "5 hours of spans cover at least 4 whole hours: {files:?}"
            );
            victim = files.last().unwrap().clone();
            let bytes = std::fs::read(&victim).unwrap();
            std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
        },
        &[
            "--retention-hours",
            "100",
            "--table-retention",
            "l7_flow_log=1",
        ],
    );
    let quarantined = wt.wait_rows("select path from storage_quarantine", 1);
    assert!(
        quarantined[0][0].ends_with(victim.file_name().unwrap().to_str().unwrap()),
        "{quarantined:?}"
    );
    assert!(!victim.exists());
    // l7_flow_log hours that ended over an hour ago are gone (its own limit, not the 100 h
    // default); the newest two (at most) remain.
    let parts =
        wt.psql("select partition from storage_partitions where table_name = 'l7_flow_log'");
    assert!(!parts.is_empty() && parts.len() <= 2, "{parts:?}");
    let n: u64 = wt.psql("select count(*) from l7_flow_log")[0][0]
        .parse()
        .unwrap();
    assert!(n > 0, "the remaining files are queryable");
}
