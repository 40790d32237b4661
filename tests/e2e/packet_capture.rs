//! Packet capture on a live two-node lab: one request from pod A to pod B across the VXLAN
//! tunnel is seen six times — by curl (c-p), on A's veth (c), on node 1's NIC inside VXLAN
//! (c-nd), on node 2's NIC (s-nd), on B's veth (s) and by the server (s-p) — and all six agree on
//! the TCP sequence numbers of request and response.

use std::{
    collections::HashMap,
    thread::sleep,
    time::{Duration, Instant},
};

use crate::{
    lab::{Lab, NODE_1, NODE_2, POD_A, POD_B, VNI},
    support::{Wiretrace, can_capture},
};

const COLS: &str = "observation_point, signal_source, capture_nic, netns, ip_0, ip_1, \
                    server_port, req_tcp_seq, resp_tcp_seq, tunnel_type, tunnel_ip_0, \
                    tunnel_ip_1, tunnel_id, inner_tcp_seq(captured_headers), \
                    cast(extract(epoch from start_time) * 1000000 as bigint)";

#[test]
fn one_request_across_a_vxlan_tunnel_is_six_spans_with_equal_seqs() {
    if !can_capture("one_request_across_a_vxlan_tunnel_is_six_spans_with_equal_seqs") {
        return;
    }
    let mut lab = Lab::new("p");
    let site = tempfile::tempdir().unwrap();
    let path = format!("lab-{}.txt", std::process::id());
    std::fs::write(site.path().join(&path), "across the tunnel\n".repeat(200)).unwrap();
    lab.http_server_in_pod_b(8080, site.path());

    let args = lab.capture_args();
    let wt = Wiretrace::up_with(&args);
    assert!(
        lab.curl_from_pod_a(8080, &format!("/{path}"), &[]),
        "curl from pod A failed"
    );

    let names: Vec<&str> = COLS.split(", ").map(str::trim).collect();
    let rows: Vec<HashMap<&str, String>> = wt
        .wait_rows(
            &format!(
                "select {COLS} from l7_flow_log where request_resource = '/{path}' \
                 order by start_time"
            ),
            6,
        )
        .into_iter()
        .map(|r| names.iter().copied().zip(r).collect())
        .collect();
    let by_point: HashMap<&str, &HashMap<&str, String>> = rows
        .iter()
        .map(|r| (r["observation_point"].as_str(), r))
        .collect();
    let path_order = ["c-p", "c", "c-nd", "s-nd", "s", "s-p"];
    let mut points: Vec<&str> = by_point.keys().copied().collect();
    points.sort();
    let mut want = path_order.to_vec();
    want.sort();
    assert_eq!(points, want, "{rows:#?}");

    let (n1, n2) = (lab.ns("n1"), lab.ns("n2"));
    let first = &by_point["c-p"];
    for (point, nic, netns, tunnelled) in [
        ("c", "vppa", n1.as_str(), false),
        ("c-nd", "eth0", n1.as_str(), true),
        ("s-nd", "eth0", n2.as_str(), true),
        ("s", "vppb", n2.as_str(), false),
    ] {
        let r = by_point[point];
        assert_eq!(r["signal_source"], "packet");
        assert_eq!(
            (r["capture_nic"].as_str(), r["netns"].as_str()),
            (nic, netns)
        );
        // The packet spans' sequence numbers are the eBPF spans', and redoing decap on the
        // stored headers in SQL gives them again.
        assert_eq!(r["req_tcp_seq"], first["req_tcp_seq"], "{point}");
        assert_eq!(r["resp_tcp_seq"], first["resp_tcp_seq"], "{point}");
        assert_eq!(r["inner_tcp_seq(captured_headers)"], first["req_tcp_seq"]);
        if tunnelled {
            assert_eq!(r["tunnel_type"], "vxlan", "{point}");
            assert_eq!(r["tunnel_id"], VNI.to_string());
            assert_eq!(
                (r["tunnel_ip_0"].as_str(), r["tunnel_ip_1"].as_str()),
                (NODE_1, NODE_2)
            );
        } else {
            assert_eq!(r["tunnel_type"], "", "{point}: no tunnel on a pod NIC");
            assert_eq!(r["tunnel_id"], "");
        }
    }
    for r in &rows {
        assert_eq!((r["ip_0"].as_str(), r["ip_1"].as_str()), (POD_A, POD_B));
        assert_eq!(r["server_port"], "8080");
    }
    assert_eq!(by_point["s-p"]["req_tcp_seq"], first["req_tcp_seq"]);
    assert_eq!(by_point["s-p"]["resp_tcp_seq"], first["resp_tcp_seq"]);
    // Along the path the request is seen later at each point (one clock; 2 ms slack for the
    // eBPF clock conversion).
    let time = |p: &str| {
        by_point[p]["cast(extract(epoch from start_time) * 1000000 as bigint)"]
            .parse::<i64>()
            .unwrap()
    };
    for pair in path_order.windows(2) {
        assert!(
            time(pair[0]) <= time(pair[1]) + 2_000,
            "{} at {} after {} at {}",
            pair[0],
            time(pair[0]),
            pair[1],
            time(pair[1])
        );
    }

    // One flow row per capture point once curl closed the connection, the client end first.
    let flows = wt.wait_rows(
        &format!(
            "select capture_nic, nic_role, ip_0, ip_1, close_type, tunnel_type, bytes_1 > 3600, \
             handshake_rtt is not null from l4_flow_log where server_port = 8080 and ip_0 = '{POD_A}' \
             and client_port = (select client_port from l7_flow_log where request_resource = '/{path}' limit 1) \
             order by netns, capture_nic"
        ),
        4,
    );
    let got: Vec<Vec<&str>> = flows
        .iter()
        .map(|r| r.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        got,
        [
            ["eth0", "node", POD_A, POD_B, "fin", "vxlan", "t", "t"],
            ["vppa", "pod", POD_A, POD_B, "fin", "", "t", "t"],
            ["eth0", "node", POD_A, POD_B, "fin", "vxlan", "t", "t"],
            ["vppb", "pod", POD_A, POD_B, "fin", "", "t", "t"],
        ]
    );
    assert_eq!(wt.counter("packet_drops"), 0);
    assert_eq!(wt.counter("undecodable_packets"), 0);
}

/// Waits until the `capture_interfaces` gauge reads `n`.
fn wait_interfaces(wt: &Wiretrace, n: u64, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while wt.counter("capture_interfaces") != n {
        assert!(
            Instant::now() < deadline,
            "{why}: capture_interfaces never reached {n}"
        );
        sleep(Duration::from_millis(200));
    }
}

/// Interfaces that appear after the agent started are captured within a rescan; deleting their
/// namespaces ends the captures (an open socket would otherwise keep the namespace alive).
#[test]
fn captures_follow_namespaces_as_they_come_and_go() {
    if !can_capture("captures_follow_namespaces_as_they_come_and_go") {
        return;
    }
    let args = Lab::capture_args_for(&Lab::prefix_for("c"));
    let wt = Wiretrace::up_with(&args);
    assert_eq!(wt.counter("capture_interfaces"), 0, "no lab yet");
    let mut lab = Lab::new("c");
    wait_interfaces(&wt, 4, "lab built");
    let site = tempfile::tempdir().unwrap();
    let path = format!("late-{}.txt", std::process::id());
    std::fs::write(site.path().join(&path), "late\n").unwrap();
    lab.http_server_in_pod_b(8080, site.path());
    assert!(
        lab.curl_from_pod_a(8080, &format!("/{path}"), &[]),
        "curl from pod A failed"
    );
    let points = wt.wait_rows(
        &format!(
            "select observation_point from l7_flow_log where request_resource = '/{path}' \
             and signal_source = 'packet' order by observation_point"
        ),
        4,
    );
    assert_eq!(points, [["c"], ["c-nd"], ["s"], ["s-nd"]]);
    drop(lab);
    wait_interfaces(&wt, 0, "lab deleted");
}
