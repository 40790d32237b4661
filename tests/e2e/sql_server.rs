//! The Postgres front door with the real psql: read-only enforcement, bad input, catalog.

use std::{io::Write, net::TcpStream};

use crate::support::Wiretrace;

/// Writes, DDL and file access are refused with SQLSTATE 25006 and change nothing.
#[test]
fn writes_and_file_access_are_refused_and_change_nothing() {
    let wt = Wiretrace::serve();
    let outside = tempfile::tempdir().unwrap();
    let copy_target = outside.path().join("spans.csv");
    let refused = [
        "create table t (a int)".to_string(),
        "insert into l7_flow_log (_id) values (1)".into(),
        "drop table l7_flow_log".into(),
        format!("copy l7_flow_log to '{}'", copy_target.display()),
        "copy l7_flow_log from '/etc/passwd'".into(),
        "create view v as select 1".into(),
        "create external table leak stored as csv location '/etc/passwd'".into(),
    ];
    for sql in &refused {
        let out = wt.psql_raw(sql);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{sql} was accepted");
        assert!(err.contains("ERROR"), "{sql}: {err}");
    }
    let out = wt.psql_raw("create table t (a int)");
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));
    assert!(!copy_target.exists(), "COPY wrote a server file");
    let tables = wt.psql(
        "select table_name from information_schema.tables where table_schema = 'public' \
         and table_type = 'BASE TABLE' order by table_name",
    );
    assert_eq!(tables, [["l4_flow_log"], ["l7_flow_log"]]);
    assert_eq!(
        wt.psql("select count(*) from l7_flow_log"),
        vec![vec!["0".to_string()]]
    );
}

/// Garbage SQL, comment-only queries and a broken protocol message get an error or an empty
/// result; the server keeps serving.
#[test]
fn bad_input_gets_errors_and_the_server_stays_up() {
    let wt = Wiretrace::serve();
    let out = wt.psql_raw("selec * frm nowhere");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ERROR"));
    assert!(
        wt.psql_raw("-- ping").status.success(),
        "comment-only query (Grafana's ping)"
    );
    // A startup packet that claims 1 GB, then garbage.
    let mut s = TcpStream::connect(("127.0.0.1", wt.port)).unwrap();
    let _ = s.write_all(&[0x3f, 0xff, 0xff, 0xff, 0, 3, 0, 0, b'x', b'y', 0, 0]);
    drop(s);
    // Regression: a 20 000-long `1 + 1 + …` chain overflowed a worker's stack and killed the
    // server; it is now refused up front.
    let big = format!("select {} as x", "1 + ".repeat(20_000) + "1");
    let out = wt.psql_raw(&big);
    assert!(String::from_utf8_lossy(&out.stderr).contains("too complex"));
    assert_eq!(wt.psql("select 40 + 2"), vec![vec!["42".to_string()]]);
    // SAFETY: signal 0 only checks that the server process is still alive.
    assert_eq!(
        unsafe { libc::kill(wt.pid() as i32, 0) },
        0,
        "wiretrace serve died"
    );
}

/// psql's `\l`, `\d`, `\dt` and `\d l7_flow_log` work against the catalog.
#[test]
fn psql_lists_and_describes_the_span_table() {
    let wt = Wiretrace::serve();
    let dt = wt.psql("\\dt");
    assert!(
        dt.iter()
            .any(|r| r.get(1).is_some_and(|n| n == "l7_flow_log")),
        "{dt:?}"
    );
    let d = wt.psql("\\d l7_flow_log");
    assert!(d.iter().any(|r| r[0] == "req_tcp_seq"), "{d:?}");
    let l = wt.psql("\\l");
    assert!(l.iter().any(|r| r[0] == "wiretrace"), "{l:?}");
    let all = wt.psql("\\d");
    assert!(all.iter().any(|r| r[1] == "l4_flow_log"), "{all:?}");
}

/// The extended protocol (psycopg 3) gets typed parameters, and the same read-only and
/// complexity refusals as the simple protocol.
#[test]
fn extended_protocol_client_is_served_and_guarded() {
    let wt = Wiretrace::serve();
    let mut cmd = std::process::Command::new(crate::support::python());
    cmd.arg(crate::support::fixture("extended_client.py"))
        .arg(wt.port.to_string());
    let lines = crate::support::output_lines(cmd);
    assert_eq!(
        lines,
        [
            "param 42 0",
            "write refused 25006",
            "deep refused 54001",
            "alive 42"
        ]
    );
}

/// A query needing more than `--query-memory-mib` fails with an error naming the limit; the
/// server goes on.
#[test]
fn a_runaway_query_hits_the_memory_limit() {
    let wt = Wiretrace::serve_with(&["--query-memory-mib", "64"]);
    let out = wt.psql_raw(
        "select count(*) from range(10000000) a join range(10000000) b on a.value = b.value",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the join ran within 64 MiB");
    assert!(err.contains("memory pool"), "{err}");
    assert_eq!(wt.psql("select 40 + 2"), vec![vec!["42".to_string()]]);
}

/// A 10 MB query string gets an answer (here: an error), and 200 clients connected at once are
/// all served; the server stays up.
#[test]
fn a_huge_query_and_200_connections_are_handled() {
    let wt = Wiretrace::serve();
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.sql");
    std::fs::write(
        &huge,
        format!("select length('{}') as n;\n", "x".repeat(10 << 20)),
    )
    .unwrap();
    let out = wt.psql_file(&huge);
    let answer = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        answer.contains("10485760") || answer.contains("ERROR"),
        "no answer to a 10 MB query: {}",
        &answer[..answer.len().min(300)]
    );
    let out = std::process::Command::new(crate::support::python())
        .arg("-c")
        .arg(format!(
            "import threading, psycopg\n\
             conns = [psycopg.connect(host='127.0.0.1', port={}, user='wiretrace', dbname='wiretrace', autocommit=True) for _ in range(200)]\n\
             got = []\n\
             def run(c): got.append(c.execute('select 1').fetchone()[0])\n\
             ts = [threading.Thread(target=run, args=(c,)) for c in conns]\n\
             [t.start() for t in ts]; [t.join() for t in ts]\n\
             print(len(conns), sum(got))",
            wt.port
        ))
        .output()
        .expect("running python with psycopg");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "200 200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(wt.psql("select 40 + 2"), vec![vec!["42".to_string()]]);
}
