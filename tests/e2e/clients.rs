//! Real Postgres clients against `wiretrace serve` over generated spans: psycopg2, asyncpg,
//! node-postgres, pgJDBC, and pgx replaying Grafana (health check, query editor, every panel
//! of the provisioned dashboard); SCRAM passwords and TLS with psql; cancel requests and
//! statement_timeout. Each client script prints `ok <check>` per check (tests/e2e/clients).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::support::{Wiretrace, output_lines, python, skip};

/// The client scripts' folder.
fn clients() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/clients")
}

/// True when `program` runs; otherwise skips loudly (fails under CI=true, where
/// scripts/setup.sh installs it).
fn have(program: &str, test: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
        || skip(&format!(
            "{test}: {program} is not installed (scripts/setup.sh installs it)"
        ))
}

/// `wiretrace serve` over a few hundred generated traces (spans from the last minute).
fn server_with_spans() -> Wiretrace {
    let wt = Wiretrace::serve();
    let mut generate = Command::new(env!("CARGO_BIN_EXE_wiretrace"));
    generate
        .args([
            "generate",
            "--traces",
            "300",
            "--spread-s",
            "60",
            "--data-dir",
        ])
        .arg(wt.data.path());
    output_lines(generate);
    wt
}

/// Runs `cmd PORT` against a server with spans and checks it printed exactly `ok <check>` for
/// each of `want`.
fn session(mut cmd: Command, want: &[&str]) {
    let wt = server_with_spans();
    cmd.arg(wt.port.to_string());
    let want: Vec<String> = want.iter().map(|c| format!("ok {c}")).collect();
    assert_eq!(output_lines(cmd), want);
}

#[test]
fn psycopg2_session() {
    let mut cmd = Command::new(python());
    cmd.arg(clients().join("psycopg2_session.py"));
    session(cmd, &["version", "count", "params", "refused", "alive"]);
}

#[test]
fn asyncpg_session() {
    let mut cmd = Command::new(python());
    cmd.arg(clients().join("asyncpg_session.py"));
    session(
        cmd,
        &[
            "version", "count", "params", "binary", "prepared", "refused", "alive", "pool",
        ],
    );
}

#[test]
fn node_postgres_session() {
    if !have("node", "node_postgres_session") {
        return;
    }
    assert!(
        clients().join("node_modules/pg").exists(),
        "node-postgres is missing: scripts/setup.sh runs npm ci in tests/e2e/clients"
    );
    let mut cmd = Command::new("node");
    cmd.current_dir(clients()).arg("node_session.js");
    session(cmd, &["version", "count", "params", "refused", "alive"]);
}

#[test]
fn jdbc_session() {
    let jar = Path::new("/usr/share/java/postgresql.jar");
    if !have("java", "jdbc_session") {
        return;
    }
    assert!(
        jar.exists(),
        "pgJDBC is missing: scripts/setup.sh installs libpostgresql-jdbc-java"
    );
    let mut cmd = Command::new("java");
    cmd.arg("-cp")
        .arg(jar)
        .arg(clients().join("JdbcSession.java"));
    session(
        cmd,
        &[
            "version", "tables", "columns", "count", "params", "portal", "refused", "alive",
        ],
    );
}

#[test]
fn grafana_replayed_with_pgx() {
    if !have("go", "grafana_replayed_with_pgx") {
        return;
    }
    let build = tempfile::tempdir().unwrap();
    let bin = build.path().join("grafana_pgx");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(clients().join("grafana_pgx.go"))
        // Debian packages pgx v4 as GOPATH sources; the module proxy is not needed.
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", build.path().join("cache"))
        .output()
        .expect("running go build");
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = Command::new(bin);
    cmd.arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("sql-examples/grafana/dashboards/wiretrace.json"),
    );
    session(cmd, &["health", "editor", "extended", "dashboard"]);
}

/// SCRAM-SHA-256 users over TLS: the right password gets in (encrypted), a wrong one or an
/// unknown user gets 28P01 (password authentication failed), no password is refused.
#[test]
fn passwords_and_tls() {
    if !have("openssl", "passwords_and_tls") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("running openssl")
        .status
        .success();
    assert!(ok, "openssl could not make a certificate");
    let users = dir.path().join("users");
    std::fs::write(&users, "# name:password\nalice:s3cret:with:colons\n").unwrap();
    let wt = Wiretrace::serve_with(&[
        "--users",
        users.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let psql = |user: &str, password: Option<&str>, sslmode: &str, sql: &str| {
        let mut cmd = Command::new("psql");
        cmd.arg(format!(
            "host=127.0.0.1 port={} user={user} dbname=wiretrace sslmode={sslmode}",
            wt.port
        ))
        .args(["-X", "-A", "-t", "-w", "-c", sql]);
        match password {
            Some(p) => cmd.env("PGPASSWORD", p),
            None => cmd.env_remove("PGPASSWORD"),
        };
        cmd.output().expect("running psql")
    };
    let good = psql(
        "alice",
        Some("s3cret:with:colons"),
        "require",
        "select 40 + 2",
    );
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&good.stdout).trim(), "42");
    for (user, password) in [("alice", Some("wrong")), ("mallory", Some("s3cret"))] {
        let out = psql(user, password, "require", "select 1");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{user} got in");
        // psql prints no SQLSTATE for a failed connection; 28P01's message it does.
        assert!(
            err.contains("assword authentication failed"),
            "{user}: {err}"
        );
    }
    let out = psql("alice", None, "disable", "select 1");
    assert!(!out.status.success(), "got in without a password");
}

/// statement_timeout bounds the trace functions like any query; without it the same
/// `traces()` returns every span.
#[test]
fn trace_functions_obey_statement_timeout() {
    let wt = server_with_spans();
    let all =
        "select count(*) from traces(now() - interval '10 minutes', now() + interval '1 minute')";
    let out = wt.psql_raw(&format!("set statement_timeout = 1; {all}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("statement timeout"), "{err}");
    let spans: usize = wt.psql(all)[0][0].parse().unwrap();
    let stored: usize = wt.psql("select count(*) from l7_flow_log")[0][0]
        .parse()
        .unwrap();
    assert_eq!(spans, stored);
}

/// A cancel request (psycopg 3's `cancel()`) and statement_timeout (psql) stop a long query
/// with SQLSTATE 57014 within a second or two; the connection and server go on.
#[test]
fn cancel_and_statement_timeout_stop_long_queries() {
    let wt = Wiretrace::serve();
    let long = "select count(*) from range(100000000000)";
    let started = std::time::Instant::now();
    let out = wt.psql_raw(&format!("set statement_timeout = 500; {long}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("statement timeout"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the timeout took {:?}",
        started.elapsed()
    );
    let out = Command::new(python())
        .arg("-c")
        .arg(format!(
            "import sys, threading, psycopg\n\
             c = psycopg.connect(host='127.0.0.1', port={}, user='wiretrace', dbname='wiretrace', autocommit=True)\n\
             threading.Timer(0.5, c.cancel).start()\n\
             try:\n    c.execute('{long}').fetchall(); print('finished')\n\
             except psycopg.Error as e: print('cancelled', e.sqlstate)\n\
             print('alive', c.execute('select 42').fetchone()[0])",
            wt.port
        ))
        .output()
        .expect("running python with psycopg");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        ["cancelled 57014", "alive 42"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
