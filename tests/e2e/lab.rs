//! The two-node lab of lab/netns.sh: nodes `n1` and `n2` joined by a VXLAN tunnel (VNI 42,
//! UDP 4789) over a veth underlay (`eth0` in each node, 192.168.77.0/24), and one pod per node
//! (`pa` on n1 at 10.244.1.2, `pb` on n2 at 10.244.2.2) behind a veth whose host end is `vppa` /
//! `vppb` (on the node's bridge `cni0`). Every address lives inside namespaces the lab created; nothing routes out. Dropping
//! the lab ends the processes it started (by pid) and deletes its namespaces.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use crate::support::ChildGuard;

/// Pod A's address (client side, node 1).
pub(crate) const POD_A: &str = "10.244.1.2";
/// Pod B's address (server side, node 2).
pub(crate) const POD_B: &str = "10.244.2.2";
/// Node underlay addresses.
pub(crate) const NODE_1: &str = "192.168.77.1";
/// Node 2's underlay address.
pub(crate) const NODE_2: &str = "192.168.77.2";
/// The tunnel's VNI.
pub(crate) const VNI: u32 = 42;

/// The running lab.
pub(crate) struct Lab {
    /// Namespace name prefix, unique per test process.
    pub(crate) prefix: String,
    procs: Vec<ChildGuard>,
}

/// Runs the lab script `script` (a path under lab/) with `args`.
pub(crate) fn lab_script(script: &str, args: &[&str]) -> std::process::Output {
    Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("lab")
            .join(script),
    )
    .args(args)
    .output()
    .unwrap_or_else(|e| panic!("running lab/{script}: {e}"))
}

impl Lab {
    /// The namespace name prefix of the lab `new(tag)` builds.
    pub(crate) fn prefix_for(tag: &str) -> String {
        format!("wt{tag}{}", std::process::id() % 100_000)
    }

    /// Capture rules selecting the node NICs and pod veth host ends of the lab with `prefix`.
    pub(crate) fn capture_args_for(prefix: &str) -> Vec<String> {
        vec![
            "--capture".into(),
            format!("node={prefix}n*/eth0"),
            "--capture".into(),
            format!("pod={prefix}n*/vp*"),
        ]
    }

    /// Builds the lab (lab/netns.sh) under namespace names starting with `wt<tag><pid>`.
    pub(crate) fn new(tag: &str) -> Self {
        let prefix = Self::prefix_for(tag);
        let out = lab_script("netns.sh", &["up", &prefix]);
        let lab = Self {
            prefix,
            procs: Vec::new(),
        };
        assert!(
            out.status.success(),
            "lab/netns.sh up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    /// The full name of lab namespace `short` (n1, n2, pa, pb).
    pub(crate) fn ns(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    /// Capture rules selecting the lab's node NICs and pod veth host ends.
    pub(crate) fn capture_args(&self) -> Vec<String> {
        Self::capture_args_for(&self.prefix)
    }

    /// A command run inside lab namespace `short`.
    pub(crate) fn exec(&self, short: &str, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(short), program]);
        cmd
    }

    /// Starts `python3 -m http.server` in pod B on `port`, serving `dir`, and waits until pod A
    /// can fetch from it.
    pub(crate) fn http_server_in_pod_b(&mut self, port: u16, dir: &std::path::Path) {
        let mut cmd = self.exec("pb", "python3");
        cmd.args([
            "-m",
            "http.server",
            "--bind",
            POD_B,
            "--protocol",
            "HTTP/1.1",
        ])
        .arg("--directory")
        .arg(dir)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        self.procs
            .push(ChildGuard::spawn(cmd, "python3 -m http.server in pod B"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if self.curl_from_pod_a(port, "/", &["--max-time", "1"]) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pod B's server is not reachable from pod A"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Lab {
    /// Starts fixtures/chain_server.py in lab namespace `short`, listening on `bind`:`port` and
    /// calling `downstream` (a URL, or `-` for none) for each request.
    pub(crate) fn chain_server(&mut self, short: &str, bind: &str, port: u16, downstream: &str) {
        let mut cmd = self.exec(short, "python3");
        cmd.arg(crate::support::fixture("chain_server.py"))
            .args([&port.to_string(), downstream, bind])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.procs
            .push(ChildGuard::spawn(cmd, "chain_server.py in the lab"));
    }

    /// GETs `path` from pod B's `port` with curl in pod A (plus `extra` curl options); true on
    /// a 2xx answer.
    pub(crate) fn curl_from_pod_a(&self, port: u16, path: &str, extra: &[&str]) -> bool {
        self.exec("pa", "curl")
            .args(["-sf", "-o", "/dev/null"])
            .args(extra)
            .arg(format!("http://{POD_B}:{port}{path}"))
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.procs.clear(); // ends them by pid
        let _ = lab_script("netns.sh", &["down", &self.prefix]);
    }
}
