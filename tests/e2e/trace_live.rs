//! `trace()` on live captured data: curl in pod A → a forwarding server in pod B (across the
//! VXLAN tunnel) → a server beside it in pod B (loopback) → a downstream server in pod A
//! (across the tunnel again). No headers link the hops: the trace is rebuilt from TCP sequence
//! numbers (eBPF and packet spans) and syscall trace ids alone, and is the same 14-span chain
//! whichever span it starts from.

use std::{thread::sleep, time::Duration};

use crate::{
    lab::{Lab, POD_A, POD_B},
    support::{Wiretrace, can_capture},
};

/// The chain, in order: (observation point, server port) of each span.
const CHAIN: [(&str, &str); 14] = [
    ("c-p", "8080"),
    ("c", "8080"),
    ("c-nd", "8080"),
    ("s-nd", "8080"),
    ("s", "8080"),
    ("s-p", "8080"),
    ("c-p", "8081"),
    ("s-p", "8081"),
    ("c-p", "8082"),
    ("c", "8082"),
    ("c-nd", "8082"),
    ("s-nd", "8082"),
    ("s", "8082"),
    ("s-p", "8082"),
];

#[test]
fn trace_rebuilds_a_live_chain_from_any_of_its_spans() {
    if !can_capture("trace_rebuilds_a_live_chain_from_any_of_its_spans") {
        return;
    }
    let mut lab = Lab::new("t");
    lab.chain_server("pa", POD_A, 8082, "-");
    lab.chain_server(
        "pb",
        "127.0.0.1",
        8081,
        &format!("http://{POD_A}:8082/leaf"),
    );
    lab.chain_server("pb", POD_B, 8080, "http://127.0.0.1:8081/mid");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !lab.curl_from_pod_a(8080, "/ready", &["--max-time", "2"]) {
        assert!(
            std::time::Instant::now() < deadline,
            "the chain never answered"
        );
        sleep(Duration::from_millis(200));
    }

    let wt = Wiretrace::up_with(&lab.capture_args());
    let path = format!("/traced-{}", std::process::id());
    assert!(
        lab.curl_from_pod_a(8080, &path, &[]),
        "curl through the chain failed"
    );
    let seed = wt.wait_rows(
        &format!(
            "select _id from l7_flow_log where request_resource = '{path}' \
             and observation_point = 'c-p'"
        ),
        1,
    )[0][0]
        .clone();
    // Every span of the chain has landed once the last one (pod A's downstream server) has.
    wt.wait_rows(
        &format!(
            "select _id from trace({seed}) where server_port = 8082 and observation_point = 's-p'"
        ),
        1,
    );
    sleep(Duration::from_secs(1));

    let cols = "span_order, depth, observation_point, server_port, _id, parent_id, trace_uid";
    let tree = |id: &str| {
        wt.psql(&format!(
            "select {cols} from trace({id}) order by span_order"
        ))
    };
    let first = tree(&seed);
    let shape: Vec<(&str, &str)> = first
        .iter()
        .map(|r| (r[2].as_str(), r[3].as_str()))
        .collect();
    assert_eq!(shape, CHAIN, "{first:#?}");
    for (k, r) in first.iter().enumerate() {
        assert_eq!(r[0], k.to_string(), "span_order");
        assert_eq!(r[1], k.to_string(), "depth: the chain is a path");
        let parent = if k == 0 { "" } else { first[k - 1][4].as_str() };
        assert_eq!(r[5], parent, "parent of span {k} ({})", r[2]);
        assert_eq!(r[6], seed, "trace_uid is the root's _id");
    }
    for r in &first[1..] {
        assert_eq!(tree(&r[4]), first, "trace({}) from the {} span", r[4], r[2]);
    }
}
