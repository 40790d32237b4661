//! Offline ingest: capture files the test writes itself — one HTTP exchange inside each
//! encapsulation the lab cannot make live (IP-in-IP and IPv6-in-IPv4, GRE, GRE+TEB, Geneve with
//! options, VLAN, QinQ, VXLAN over an IPv6 underlay) — read by `wiretrace ingest pcap`, then
//! checked in SQL: the spans carry the inner tuple and sequence numbers, and `decap()` on the
//! stored headers agrees.
//! Broken files are reported and what they held before the break is kept.

use std::{net::IpAddr, path::Path, process::Command};

use wiretrace_packet::craft::{Encap, TcpSession, pcap_file, pcapng_file};

use crate::support::Wiretrace;

/// (name, encapsulation, expected tunnel_type, expected tunnel_id, inner IPv6).
const CASES: &[(&str, Encap, &str, &str, bool)] = &[
    ("ipip", Encap::IpIp, "ipip", "", false),
    ("ip6in4", Encap::IpIp, "ip6in4", "", true),
    ("gre", Encap::Gre(7), "gre", "7", false),
    ("gre-teb", Encap::GreTeb(8), "gre-teb", "8", false),
    ("geneve", GENEVE, "geneve", "9", true),
    ("vlan", Encap::Vlan(100), "", "", false),
    ("qinq", Encap::QinQ(200, 300), "", "", true),
    ("vxlan6", VXLAN6, "vxlan", "10", false),
];

const GENEVE: Encap = Encap::Geneve {
    vni: 9,
    opt_words: 3,
};

const VXLAN6: Encap = Encap::Vxlan {
    vni: 10,
    v6_underlay: true,
};

const RESPONSE: &[u8] = b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope";

/// A pcap record: unix µs and the frame.
type Record = (i64, Vec<u8>);

/// One exchange on its own connection, every packet wrapped by `encap`; returns the frames and
/// the (request, response) sequence numbers.
fn exchange(
    encap: Encap,
    client: (IpAddr, u16),
    server: (IpAddr, u16),
    path: &str,
    t0: i64,
) -> (Vec<Record>, (u32, u32)) {
    let isn = [
        0x1000_0000 + u32::from(client.1),
        0xfff0_0000 + u32::from(client.1),
    ];
    let mut s = TcpSession::new(client, server, isn);
    let mut packets = s.handshake();
    let seqs = (s.next_seq[0], s.next_seq[1]);
    packets.extend(s.send(
        true,
        format!("GET {path} HTTP/1.1\r\nHost: offline\r\n\r\n").as_bytes(),
        1400,
    ));
    packets.extend(s.send(false, RESPONSE, 1400));
    packets.extend(s.close());
    let frames = packets
        .iter()
        .enumerate()
        .map(|(i, p)| (t0 + i as i64 * 50, encap.wrap(p)))
        .collect();
    (frames, seqs)
}

fn ingest(data_dir: &Path, args: &[&str], files: &[&Path]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wiretrace"))
        .args(["ingest", "pcap", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .args(files)
        .output()
        .expect("running wiretrace ingest pcap")
}

#[test]
fn every_encapsulation_gives_inner_tuples_and_seqs_in_sql() {
    let wt = Wiretrace::serve();
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
    let mut frames = Vec::new();
    let mut want = Vec::new();
    for (i, (name, encap, _, _, v6)) in CASES.iter().enumerate() {
        let (c, s): (IpAddr, IpAddr) = if *v6 {
            ("fd00:1::5".parse().unwrap(), "fd00:2::7".parse().unwrap())
        } else {
            ("10.1.0.5".parse().unwrap(), "10.2.0.7".parse().unwrap())
        };
        let port = 41000 + i as u16;
        let (f, seqs) = exchange(
            *encap,
            (c, port),
            (s, 80),
            &format!("/{name}"),
            t0 + i as i64 * 1000,
        );
        frames.extend(f);
        want.push((name, port, c, s, seqs));
    }
    let file = dir.path().join("tunnels.pcap");
    std::fs::write(&file, pcap_file(&frames, 65535)).unwrap();
    let out = ingest(wt.data.path(), &[], &[&file]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{} frames", frames.len())),
        "{stderr}"
    );
    let n = CASES.len();
    assert!(
        stderr.contains(&format!("{n} spans, {n} flows")),
        "{stderr}"
    );

    for ((name, port, c, s, (req, resp)), (_, _, tunnel_type, tunnel_id, _)) in
        want.iter().zip(CASES)
    {
        let rows = wt.psql(&format!(
            "select ip_0, ip_1, server_port, req_tcp_seq, resp_tcp_seq, response_code, \
             observation_point, coalesce(tunnel_type, ''), coalesce(cast(tunnel_id as varchar), ''), \
             decap(captured_headers)['inner_src'], decap(captured_headers)['tcp_seq'], \
             decap(captured_headers)['tunnel_type'], netns \
             from l7_flow_log where client_port = {port}"
        ));
        assert_eq!(rows.len(), 1, "{name}: {rows:?}");
        let r: Vec<&str> = rows[0].iter().map(String::as_str).collect();
        assert_eq!(
            r,
            [
                c.to_string().as_str(),
                s.to_string().as_str(),
                "80",
                req.to_string().as_str(),
                resp.to_string().as_str(),
                "404",
                "rest",
                tunnel_type,
                tunnel_id,
                c.to_string().as_str(),
                req.to_string().as_str(),
                tunnel_type,
                "tunnels.pcap",
            ],
            "{name}"
        );
        let flow = wt.psql(&format!(
            "select close_type, packets_0, packets_1, bytes_1 from l4_flow_log where client_port = {port}"
        ));
        // SYN, ACK, request, FIN from the client (the ACK after both FINs opens nothing).
        assert_eq!(
            flow,
            [["fin", "4", "3", &RESPONSE.len().to_string()]],
            "{name}"
        );
    }
}

#[test]
fn pcapng_direction_flags_decide_observation_points() {
    let wt = Wiretrace::serve();
    let dir = tempfile::tempdir().unwrap();
    let c: IpAddr = "10.1.0.5".parse().unwrap();
    let s: IpAddr = "10.2.0.7".parse().unwrap();
    let (frames, (req, _)) = exchange(
        Encap::Vxlan {
            vni: 5,
            v6_underlay: false,
        },
        (c, 42000),
        (s, 80),
        "/ng",
        1_767_225_600_000_000,
    );
    // On node 1's NIC the client's packets leave; on node 2's they arrive.
    for (file, client_leaves) in [("node1.pcapng", true), ("node2.pcapng", false)] {
        let recs: Vec<(i64, Vec<u8>, bool)> = frames
            .iter()
            .map(|(t, f)| {
                let from_client = wiretrace_packet::decap(f).unwrap().inner.src == c;
                (*t, f.clone(), from_client == client_leaves)
            })
            .collect();
        let path = dir.path().join(file);
        std::fs::write(&path, pcapng_file("eth0", &recs)).unwrap();
        let out = ingest(wt.data.path(), &["--role", "node"], &[&path]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rows = wt.psql(
        "select netns, capture_nic, observation_point, req_tcp_seq from l7_flow_log \
         where request_resource = '/ng' order by netns",
    );
    assert_eq!(
        rows,
        [
            ["node1.pcapng", "eth0", "c-nd", &req.to_string()],
            ["node2.pcapng", "eth0", "s-nd", &req.to_string()],
        ]
    );
}

#[test]
fn truncated_and_garbage_files_are_reported_and_earlier_records_kept() {
    let wt = Wiretrace::serve();
    let dir = tempfile::tempdir().unwrap();
    let c: IpAddr = "10.1.0.5".parse().unwrap();
    let s: IpAddr = "10.2.0.7".parse().unwrap();
    let (mut frames, _) = exchange(
        Encap::Plain,
        (c, 43000),
        (s, 80),
        "/kept",
        1_767_225_600_000_000,
    );
    let (later, _) = exchange(
        Encap::Plain,
        (c, 43001),
        (s, 80),
        "/lost",
        1_767_225_601_000_000,
    );
    frames.extend(later);
    let mut bytes = pcap_file(&frames, 65535);
    bytes.truncate(bytes.len() - 30); // cut inside the last record
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes).unwrap();
    let garbage = dir.path().join("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture file at all").unwrap();

    let out = ingest(wt.data.path(), &[], &[&garbage, &cut]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "one file was readable: {stderr}");
    assert!(
        stderr.contains("garbage.pcap") && stderr.contains("not a pcap"),
        "{stderr}"
    );
    assert!(stderr.contains("cut.pcap: read up to an error"), "{stderr}");
    let rows = wt.psql("select request_resource from l7_flow_log order by start_time");
    assert_eq!(
        rows,
        [["/kept"], ["/lost"]],
        "the cut came after both responses"
    );

    let out = ingest(wt.data.path(), &[], &[&garbage]);
    assert!(!out.status.success(), "no readable file is an error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no file could be read"));
    assert_eq!(
        wt.psql("select count(*) from l7_flow_log"),
        [["2"]],
        "nothing lost"
    );
}
