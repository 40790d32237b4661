//! The reference trace, live (lab/bookinfo): one curl through Bookinfo — Python, Ruby, Java and
//! Node.js apps, each behind an nginx sidecar, on two nodes joined by a VXLAN tunnel — comes
//! back from SQL over the Postgres wire as ONE trace of 38 spans (24 eBPF, 14 packet) whose
//! parent links are DeepFlow's reference table (../shared/design/BOOKINFO_TRACE.md). Then 20
//! sequential requests give 20 separate complete traces, and 8 concurrent clients for 10 s give
//! one correct trace per request.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::{
    lab::{Lab, lab_script},
    support::{Wiretrace, can_capture},
};

/// The reference, row by row: signal source, observation point, request path, server port,
/// process (eBPF) or NIC (packet), and the parent's row number (1-based; 0 for the root).
const REFERENCE: [(&str, &str, &str, u16, &str, usize); 38] = [
    ("ebpf", "c-p", "/productpage", 15000, "curl", 0),
    ("ebpf", "s-p", "/productpage", 15000, "nginx", 1),
    ("ebpf", "c-p", "/productpage", 9080, "nginx", 2),
    ("packet", "c", "/productpage", 9080, "vplg", 3),
    ("packet", "s", "/productpage", 9080, "vppp", 4),
    ("ebpf", "s-p", "/productpage", 9080, "nginx", 5),
    ("ebpf", "c-p", "/productpage", 9081, "nginx", 6),
    ("ebpf", "s-p", "/productpage", 9081, "python", 7),
    ("ebpf", "c-p", "/details/0", 15001, "python", 8),
    ("ebpf", "s-p", "/details/0", 15001, "nginx", 9),
    ("ebpf", "c-p", "/details/0", 9080, "nginx", 10),
    ("packet", "c", "/details/0", 9080, "vppp", 11),
    ("packet", "c-nd", "/details/0", 9080, "eth0", 12),
    ("packet", "s-nd", "/details/0", 9080, "eth0", 13),
    ("packet", "s", "/details/0", 9080, "vpde", 14),
    ("ebpf", "s-p", "/details/0", 9080, "nginx", 15),
    ("ebpf", "c-p", "/details/0", 9081, "nginx", 16),
    ("ebpf", "s-p", "/details/0", 9081, "ruby", 17),
    ("ebpf", "c-p", "/reviews/0", 15002, "python", 8),
    ("ebpf", "s-p", "/reviews/0", 15002, "nginx", 19),
    ("ebpf", "c-p", "/reviews/0", 9080, "nginx", 20),
    ("packet", "c", "/reviews/0", 9080, "vppp", 21),
    ("packet", "c-nd", "/reviews/0", 9080, "eth0", 22),
    ("packet", "s-nd", "/reviews/0", 9080, "eth0", 23),
    ("packet", "s", "/reviews/0", 9080, "vprv", 24),
    ("ebpf", "s-p", "/reviews/0", 9080, "nginx", 25),
    ("ebpf", "c-p", "/reviews/0", 9081, "nginx", 26),
    ("ebpf", "s-p", "/reviews/0", 9081, "java", 27),
    ("ebpf", "c-p", "/ratings/0", 15003, "java", 28),
    ("ebpf", "s-p", "/ratings/0", 15003, "nginx", 29),
    ("ebpf", "c-p", "/ratings/0", 9080, "nginx", 30),
    ("packet", "c", "/ratings/0", 9080, "vprv", 31),
    ("packet", "c-nd", "/ratings/0", 9080, "eth0", 32),
    ("packet", "s-nd", "/ratings/0", 9080, "eth0", 33),
    ("packet", "s", "/ratings/0", 9080, "vpra", 34),
    ("ebpf", "s-p", "/ratings/0", 9080, "nginx", 35),
    ("ebpf", "c-p", "/ratings/0", 9081, "nginx", 36),
    ("ebpf", "s-p", "/ratings/0", 9081, "node", 37),
];

/// The paths a Bookinfo request touches.
const PATHS: [&str; 4] = ["/productpage", "/details/0", "/reviews/0", "/ratings/0"];

/// Columns read per span: span_order, _id, parent_id, trace_uid, signal_source,
/// observation_point, request_resource, server_port, process name or NIC.
const COLUMNS: &str = "span_order, _id, parent_id, trace_uid, signal_source, observation_point, \
     request_resource, server_port, coalesce(process_kname_0, process_kname_1, capture_nic)";

/// The running Bookinfo lab; dropping it stops its processes and deletes its namespaces.
struct Bookinfo {
    prefix: String,
    dir: tempfile::TempDir,
}

impl Bookinfo {
    fn script(args: &[&str]) -> std::process::Output {
        lab_script("bookinfo/bookinfo.sh", args)
    }

    fn up() -> Self {
        let lab = Self {
            prefix: Lab::prefix_for("b"),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let out = Self::script(&["up", &lab.prefix, &lab.dir_str()]);
        assert!(
            out.status.success(),
            "bookinfo.sh up failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            lab.logs()
        );
        lab
    }

    fn dir_str(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// Every process log of the lab, for failure messages.
    fn logs(&self) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "log") {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                all += &format!("\n--- {}\n{text}", e.path().display());
            }
        }
        all
    }

    /// One request from the loadgenerator; true when productpage answered.
    fn request(&self) -> bool {
        Self::script(&["request", &self.prefix]).status.success()
    }
}

impl Drop for Bookinfo {
    fn drop(&mut self) {
        let _ = Self::script(&["down", &self.prefix, &self.dir_str()]);
    }
}

/// The reference's name for a process (thread names vary by runtime) or NIC.
fn who(name: &str) -> &str {
    match name {
        "python3" => "python",
        n if n.starts_with("details.rb") || n.starts_with("ruby") => "ruby",
        n if n.starts_with("pool-") || n == "java" => "java",
        n => n,
    }
}

/// Checks one trace's rows (in span order) against the reference: same spans in the same
/// order, every parent the reference's.
fn check(rows: &[Vec<String>]) -> Result<(), String> {
    if rows.len() != REFERENCE.len() {
        return Err(format!("{} spans, not {}", rows.len(), REFERENCE.len()));
    }
    for (k, (r, want)) in rows.iter().zip(REFERENCE).enumerate() {
        let (sig, op, path, port, name, parent) = want;
        let got = (
            r[4].as_str(),
            r[5].as_str(),
            r[6].as_str(),
            r[7].as_str(),
            who(&r[8]),
        );
        if got != (sig, op, path, port.to_string().as_str(), name) {
            return Err(format!("span {}: {got:?}, reference {want:?}", k + 1));
        }
        let parent_id = if parent == 0 {
            ""
        } else {
            rows[parent - 1][1].as_str()
        };
        if r[2] != parent_id {
            return Err(format!(
                "span {} ({want:?}): parent {} not row {parent}",
                k + 1,
                r[2]
            ));
        }
    }
    Ok(())
}

/// Now as a SQL timestamp expression.
fn sql_now() -> String {
    let us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros();
    format!("to_timestamp_micros({us})")
}

/// The traces that start in [from, to] and touch Bookinfo, each as its rows in span order (the
/// host's other traffic — other tests run beside this one — is left out).
fn traces_between(wt: &Wiretrace, from: &str, to: &str) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut traces: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for r in wt.psql(&format!(
        "select {COLUMNS} from traces({from}, {to}) order by trace_uid, span_order"
    )) {
        traces.entry(r[3].clone()).or_default().push(r);
    }
    traces.retain(|_, rows| rows.iter().any(|r| PATHS.contains(&r[6].as_str())));
    traces
}

/// Waits until `n` requests' spans have landed: 38 each.
fn wait_spans(wt: &Wiretrace, from: &str, n: usize) {
    let want = (n * REFERENCE.len()).to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = wt.psql(&format!(
            "select count(*) from l7_flow_log where start_time >= {from} \
             and request_resource in ('{}')",
            PATHS.join("', '")
        ))[0][0]
            .clone();
        if got == want || Instant::now() > deadline {
            assert_eq!(got, want, "spans of {n} requests");
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn bookinfo_request_is_the_38_span_reference_trace() {
    if !can_capture("bookinfo_request_is_the_38_span_reference_trace") {
        return;
    }
    let lab = Bookinfo::up();
    let wt = Wiretrace::up_with(&Lab::capture_args_for(&lab.prefix));
    // Let every capture open before the first request.
    std::thread::sleep(Duration::from_secs(1));

    // One request → one trace, the reference's, whichever span it is asked from.
    let from = sql_now();
    assert!(lab.request(), "the request failed{}", lab.logs());
    wait_spans(&wt, &from, 1);
    let traces = traces_between(&wt, &from, &sql_now());
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let one = traces.into_values().next().unwrap();
    if let Err(e) = check(&one) {
        panic!("{e}\n{one:#?}");
    }
    for id in [&one[0][1], &one[17][1], &one[37][1]] {
        let again = wt.psql(&format!(
            "select {COLUMNS} from trace({id}) order by span_order"
        ));
        assert_eq!(again, one, "trace({id})");
    }

    // 20 sequential requests → 20 separate complete traces.
    let from = sql_now();
    for _ in 0..20 {
        assert!(lab.request(), "a request failed{}", lab.logs());
    }
    wait_spans(&wt, &from, 20);
    let traces = traces_between(&wt, &from, &sql_now());
    assert_eq!(traces.len(), 20, "traces of 20 requests");
    for (uid, rows) in &traces {
        if let Err(e) = check(rows) {
            panic!("trace {uid}: {e}\n{rows:#?}");
        }
    }

    // 8 concurrent clients for 10 s → one correct trace per request.
    let from = sql_now();
    let done = AtomicUsize::new(0);
    let until = Instant::now() + Duration::from_secs(10);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                while Instant::now() < until {
                    if lab.request() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let requests = done.into_inner();
    wait_spans(&wt, &from, requests);
    let traces = traces_between(&wt, &from, &sql_now());
    let mut wrong = Vec::new();
    for (uid, rows) in &traces {
        if let Err(e) = check(rows) {
            wrong.push(format!("{uid}: {e}"));
        }
    }
    let correct = traces.len() - wrong.len();
    eprintln!(
        "bookinfo: 8 concurrent clients for 10 s: {requests} requests → {} traces, {correct} \
         complete and correct",
        traces.len()
    );
    assert!(
        wrong.is_empty() && correct == requests,
        "{requests} requests, {correct} correct traces; wrong: {wrong:#?}"
    );
}
