//! The command line as a user meets it.

use std::process::Command;

/// Without root, `wiretrace up` says what is missing and points at `serve`; `query` still
/// works on a data dir.
#[test]
fn up_without_root_explains_and_query_still_works() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Already unprivileged: run it as we are.
        let out = Command::new(env!("CARGO_BIN_EXE_wiretrace"))
            .args(["up", "--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("not running as root"));
        return;
    }
    let data = tempfile::tempdir().unwrap();
    // Drop to nobody for the one command; the data dir must be theirs to create files in.
    let chown = Command::new("chown")
        .arg("65534:65534")
        .arg(data.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_wiretrace"))
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("running setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "up succeeded without root: {err}");
    assert!(err.contains("not running as root"), "{err}");
    assert!(err.contains("wiretrace serve"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_wiretrace"))
        .args(["query", "--data-dir"])
        .arg(data.path())
        .arg("select count(*) as spans from l7_flow_log")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("spans") && table.contains("| 0 "), "{table}");
}
