//! A two-node lab in network namespaces: nodes `n1` and `n2` joined by a VXLAN tunnel (VNI 42,
//! UDP 4789) over a veth underlay (`eth0` in each node, 192.168.77.0/24), and one pod per node
//! (`pa` on n1 at 10.244.1.2, `pb` on n2 at 10.244.2.2) behind a veth whose host end is `vpa` /
//! `vpb`. Every address lives inside namespaces the lab created; nothing routes out. Dropping
//! the lab ends the processes it started (by pid) and deletes its namespaces.

use std::process::{Command, Stdio};

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

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    /// Builds the lab under namespace names starting with `wt<tag><pid>`.
    pub(crate) fn new(tag: &str) -> Self {
        let prefix = format!("wt{tag}{}", std::process::id() % 100_000);
        let lab = Self {
            prefix,
            procs: Vec::new(),
        };
        let ns = |n: &str| lab.ns(n);
        let (n1, n2, pa, pb) = (ns("n1"), ns("n2"), ns("pa"), ns("pb"));
        for n in [&n1, &n2, &pa, &pb] {
            let _ = Command::new("ip").args(["netns", "del", n]).output(); // a previous crash
            run(&["ip", "netns", "add", n]);
            run(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        let ip = |n: &str, rest: &str| {
            let mut args = vec!["ip", "-n", n];
            args.extend(rest.split_whitespace());
            run(&args);
        };
        ip(
            &n1,
            &format!("link add eth0 type veth peer name eth0 netns {n2}"),
        );
        for (n, me, peer, vx, sub, pod, host_end) in [
            (&n1, NODE_1, NODE_2, "10.99.0.1", "10.244.1", &pa, "vpa"),
            (&n2, NODE_2, NODE_1, "10.99.0.2", "10.244.2", &pb, "vpb"),
        ] {
            ip(n, &format!("addr add {me}/24 dev eth0"));
            ip(n, "link set eth0 up");
            ip(
                n,
                &format!(
                    "link add vx0 type vxlan id {VNI} local {me} remote {peer} dstport 4789 dev eth0"
                ),
            );
            ip(n, &format!("addr add {vx}/24 dev vx0"));
            ip(n, "link set vx0 up");
            ip(
                n,
                &format!("link add {host_end} type veth peer name eth0 netns {pod}"),
            );
            ip(n, &format!("addr add {sub}.1/24 dev {host_end}"));
            ip(n, &format!("link set {host_end} up"));
            ip(pod, &format!("addr add {sub}.2/24 dev eth0"));
            ip(pod, "link set eth0 up mtu 1400");
            ip(pod, &format!("route add default via {sub}.1"));
            run(&[
                "ip",
                "netns",
                "exec",
                n,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ]);
        }
        ip(&n1, "route add 10.244.2.0/24 via 10.99.0.2");
        ip(&n2, "route add 10.244.1.0/24 via 10.99.0.1");
        lab
    }

    /// The full name of lab namespace `short` (n1, n2, pa, pb).
    pub(crate) fn ns(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    /// Capture rules selecting the lab's node NICs and pod veth host ends.
    pub(crate) fn capture_args(&self) -> Vec<String> {
        vec![
            "--capture".into(),
            format!("node={}n*/eth0", self.prefix),
            "--capture".into(),
            format!("pod={}n*/vp*", self.prefix),
        ]
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
            let ok = self
                .exec("pa", "curl")
                .args(["-s", "-o", "/dev/null", "--max-time", "1"])
                .arg(format!("http://{POD_B}:{port}/"))
                .status()
                .is_ok_and(|s| s.success());
            if ok {
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

impl Drop for Lab {
    fn drop(&mut self) {
        self.procs.clear(); // ends them by pid
        for short in ["pa", "pb", "n1", "n2"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(short)])
                .output();
        }
    }
}
