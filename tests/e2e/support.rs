//! Shared pieces of the end-to-end tests: privilege checks that skip loudly outside CI, a
//! `wiretrace up` child process on a temp data dir, psql, and processes ended by pid.

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

/// True when the test may use root and BPF; otherwise prints why it skips. With CI=true a
/// missing privilege fails the test instead.
pub(crate) fn can_capture(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    if root && btf {
        return true;
    }
    skip(&format!(
        "{test}: needs root and kernel BTF (root={root}, btf={btf})"
    ))
}

/// Skips a test loudly, saying `why` (returns false); with CI=true fails it instead, since CI
/// must run every test.
pub(crate) fn skip(why: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}; CI must run it");
    }
    eprintln!("SKIP {why}");
    false
}

/// Runs `cmd` to success and returns its output lines.
pub(crate) fn output_lines(mut cmd: Command) -> Vec<String> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{cmd:?}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_string).collect()
}

/// A TCP port free on loopback right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port")
}

/// Waits until something accepts on `host`:`port`.
pub(crate) fn wait_for_port(host: &str, port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect((host, port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        sleep(Duration::from_millis(50));
    }
}

/// A child process ended (by its pid) when dropped.
pub(crate) struct ChildGuard {
    /// The child.
    pub(crate) child: Child,
    what: String,
}

impl ChildGuard {
    /// Spawns `cmd`, described as `what` in failures.
    pub(crate) fn spawn(mut cmd: Command, what: &str) -> Self {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        Self {
            child,
            what: what.to_string(),
        }
    }

    /// The child's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > deadline {
                    eprintln!("{} did not stop on SIGTERM; killing", self.what);
                    let _ = self.child.kill();
                    break;
                }
                sleep(Duration::from_millis(50));
            }
            let _ = self.child.wait();
        }
    }
}

/// A running `wiretrace up` on its own temp data dir and SQL port.
pub(crate) struct Wiretrace {
    /// The process; declared first so it is stopped before the data dir is removed.
    proc: ChildGuard,
    /// The data dir (removed on drop, after the process has stopped).
    pub(crate) data: tempfile::TempDir,
    /// The SQL port.
    pub(crate) port: u16,
}

impl Wiretrace {
    /// Starts `wiretrace up` (capture + SQL; spans handed to the store every 200 ms, flushed to
    /// Parquet after 1 s) and waits for its SQL port.
    pub(crate) fn up() -> Self {
        Self::up_with(&[])
    }

    /// Starts `wiretrace up` with extra arguments.
    pub(crate) fn up_with(extra: &[String]) -> Self {
        let mut args = vec!["up", "--flush-ms", "200", "--flush-age-s", "1"];
        args.extend(extra.iter().map(String::as_str));
        Self::start(&args)
    }

    /// Starts `wiretrace serve` (SQL only, no capture) and waits for its SQL port.
    pub(crate) fn serve() -> Self {
        Self::start(&["serve"])
    }

    /// Starts `wiretrace serve` with extra arguments.
    pub(crate) fn serve_with(extra: &[&str]) -> Self {
        let mut args = vec!["serve"];
        args.extend(extra);
        Self::start(&args)
    }

    /// Starts `wiretrace serve` with extra arguments over a data dir `prepare` fills first.
    pub(crate) fn serve_prepared(prepare: impl FnOnce(&Path), extra: &[&str]) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        prepare(data.path());
        let mut args = vec!["serve"];
        args.extend(extra);
        Self::start_in(data, &args)
    }

    fn start(args: &[&str]) -> Self {
        Self::start_in(tempfile::tempdir().expect("temp dir"), args)
    }

    fn start_in(data: tempfile::TempDir, args: &[&str]) -> Self {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wiretrace"));
        cmd.args(args)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data.path())
            .stdout(Stdio::null());
        let proc = ChildGuard::spawn(cmd, &format!("wiretrace {}", args[0]));
        wait_for_port("127.0.0.1", port, "wiretrace");
        Self { data, port, proc }
    }

    /// The process's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.proc.pid()
    }

    fn psql_command(&self) -> Command {
        let mut cmd = Command::new("psql");
        cmd.args(["-h", "127.0.0.1", "-U", "wiretrace", "-d", "wiretrace"])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-F", "|", "-p"])
            .arg(self.port.to_string());
        cmd
    }

    /// Runs `sql` with the real psql binary, returning its output whatever the outcome.
    pub(crate) fn psql_raw(&self, sql: &str) -> std::process::Output {
        self.psql_command()
            .args(["-c", sql])
            .output()
            .expect("running psql (install postgresql-client)")
    }

    /// Runs the SQL file `path` with psql.
    pub(crate) fn psql_file(&self, path: &Path) -> std::process::Output {
        self.psql_command()
            .arg("-f")
            .arg(path)
            .output()
            .expect("running psql (install postgresql-client)")
    }

    /// Runs `sql` with the real psql binary; rows as `|`-separated fields.
    pub(crate) fn psql(&self, sql: &str) -> Vec<Vec<String>> {
        let out = self.psql_raw(sql);
        assert!(
            out.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('|').map(str::to_string).collect())
            .collect()
    }

    /// Polls `sql` until it returns `n` rows (or fails after 20 s).
    pub(crate) fn wait_rows(&self, sql: &str, n: usize) -> Vec<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let rows = self.psql(sql);
            if rows.len() >= n || Instant::now() > deadline {
                assert_eq!(rows.len(), n, "rows of {sql}: {rows:?}");
                return rows;
            }
            sleep(Duration::from_millis(200));
        }
    }

    /// Value of one ingest counter.
    pub(crate) fn counter(&self, name: &str) -> u64 {
        let rows = self.psql(&format!(
            "select value from ingest_counters where name = '{name}'"
        ));
        rows[0][0].parse().expect("counter value")
    }
}

/// Path of a file under tests/e2e/fixtures.
pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e/fixtures")
        .join(name)
}

/// The Python interpreter for helpers that need pyarrow (the venv made by scripts/setup.sh
/// when present).
pub(crate) fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// `python3 -m http.server` on `bind`:`port` serving `dir`, speaking `protocol`.
pub(crate) fn http_server(bind: &str, port: u16, protocol: &str, dir: &Path) -> ChildGuard {
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "http.server",
        "--bind",
        bind,
        "--protocol",
        protocol,
        "--directory",
    ])
    .arg(dir)
    .arg(port.to_string())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let g = ChildGuard::spawn(cmd, "python3 -m http.server");
    wait_for_port(bind, port, "python3 -m http.server");
    g
}

/// The threaded chain server (fixtures/chain_server.py) on `port`, calling `downstream`.
pub(crate) fn chain_server(port: u16, downstream: u16) -> ChildGuard {
    let mut cmd = Command::new("python3");
    cmd.arg(fixture("chain_server.py"))
        .args([port.to_string(), downstream.to_string()]);
    let g = ChildGuard::spawn(cmd, "chain_server.py");
    wait_for_port("127.0.0.1", port, "chain_server.py");
    g
}
