//! Frames built here, layer by layer, for every encapsulation the parser knows; the inner tuple
//! and TCP sequence numbers must come out whatever wraps them. Property tests: arbitrary bytes
//! and every truncation of a valid frame return an error or a result, never a panic.

use std::net::IpAddr;

use etherparse::PacketBuilder;
use proptest::prelude::*;
use wiretrace_packet::{
    DecapError, L4, TunnelKind,
    craft::{eth, geneve, gre, ipv4, ipv6, udp, vlan_tags, vxlan},
    decap,
};

const SEQ: u32 = 0x1234_5678;
const ACK: u32 = 0x9abc_def0;

/// Inner IPv4 + TCP segment 10.0.0.1:40000 → 10.0.0.2:80 carrying `GET /`.
fn inner_ip4_tcp() -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 80, SEQ, 1024)
        .ack(ACK)
        .psh()
        .write(&mut v, b"GET / HTTP/1.1\r\n\r\n")
        .unwrap();
    v
}

/// Inner IPv6 + TCP segment fd00::1 → fd00::2.
fn inner_ip6_tcp() -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv6(
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        64,
    )
    .tcp(40000, 80, SEQ, 1024)
    .ack(ACK)
    .write(&mut v, b"GET / HTTP/1.1\r\n\r\n")
    .unwrap();
    v
}

const N1: [u8; 4] = [192, 168, 50, 1];
const N2: [u8; 4] = [192, 168, 50, 2];

fn assert_inner_tcp(frame: &[u8], v6: bool) -> wiretrace_packet::Decapsulated {
    let d = decap(frame).unwrap_or_else(|e| panic!("{e}"));
    let L4::Tcp(t) = d.inner.l4 else {
        panic!("not tcp: {d:?}")
    };
    assert_eq!((t.seq, t.ack), (SEQ, ACK));
    assert_eq!((d.inner.src_port, d.inner.dst_port), (40000, 80));
    let want: IpAddr = if v6 {
        "fd00::2".parse().unwrap()
    } else {
        "10.0.0.2".parse().unwrap()
    };
    assert_eq!(d.inner.dst, want);
    assert_eq!(&frame[d.payload_offset..], b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(d.payload_len(frame.len()), 18);
    d
}

#[test]
fn plain_ethernet_ipv4_tcp() {
    let d = assert_inner_tcp(&eth(0x0800, &inner_ip4_tcp()), false);
    assert!(d.tunnels.is_empty());
    // Link padding after the IP packet is not payload; a short capture does not shrink it.
    let mut padded = eth(0x0800, &inner_ip4_tcp());
    padded.extend_from_slice(&[0; 6]);
    let p = decap(&padded).unwrap();
    assert_eq!(p.payload_len(padded.len()), 18);
    assert_eq!(
        decap(&padded[..p.payload_offset])
            .unwrap()
            .payload_len(padded.len()),
        18
    );
}

#[test]
fn vlan_and_qinq() {
    let d = assert_inner_tcp(&vlan_tags(&[(0x8100, 42)], 0x0800, &inner_ip4_tcp()), false);
    assert_eq!(d.vlans[..], [42]);
    let d = assert_inner_tcp(
        &vlan_tags(&[(0x88a8, 100), (0x8100, 7)], 0x86dd, &inner_ip6_tcp()),
        true,
    );
    assert_eq!(d.vlans[..], [100, 7]);
}

#[test]
fn vxlan_on_both_ports_and_over_ipv6_underlay() {
    for port in [4789, 8472] {
        let frame = eth(
            0x0800,
            &ipv4(
                17,
                N1,
                N2,
                &udp(port, &vxlan(1042, &eth(0x0800, &inner_ip4_tcp()))),
            ),
        );
        let d = assert_inner_tcp(&frame, false);
        assert_eq!(d.tunnels.len(), 1);
        assert_eq!(
            (d.tunnels[0].kind, d.tunnels[0].id),
            (TunnelKind::Vxlan, Some(1042))
        );
        assert_eq!(d.tunnels[0].outer_src, IpAddr::from(N1));
    }
    let a6 = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let b6 = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let frame = eth(
        0x86dd,
        &ipv6(
            17,
            a6,
            b6,
            &udp(4789, &vxlan(7, &eth(0x0800, &inner_ip4_tcp()))),
        ),
    );
    let d = assert_inner_tcp(&frame, false);
    assert_eq!(
        d.tunnels[0].outer_dst,
        "2001:db8::2".parse::<IpAddr>().unwrap()
    );
}

#[test]
fn ipip_and_ipv6_in_ipv4() {
    let d = assert_inner_tcp(&eth(0x0800, &ipv4(4, N1, N2, &inner_ip4_tcp())), false);
    assert_eq!(d.tunnels[0].kind, TunnelKind::IpIp);
    let d = assert_inner_tcp(&eth(0x0800, &ipv4(41, N1, N2, &inner_ip6_tcp())), true);
    assert_eq!(d.tunnels[0].kind, TunnelKind::Ip6InIp);
}

#[test]
fn gre_with_every_flag_combination_and_teb() {
    for (c, k, s) in [
        (false, None, false),
        (true, Some(99), true),
        (false, Some(5), false),
        (true, None, true),
    ] {
        let frame = eth(
            0x0800,
            &ipv4(47, N1, N2, &gre(c, k, s, 0x0800, &inner_ip4_tcp())),
        );
        let d = assert_inner_tcp(&frame, false);
        assert_eq!((d.tunnels[0].kind, d.tunnels[0].id), (TunnelKind::Gre, k));
    }
    let frame = eth(
        0x0800,
        &ipv4(
            47,
            N1,
            N2,
            &gre(
                false,
                Some(3),
                false,
                0x6558,
                &eth(0x86dd, &inner_ip6_tcp()),
            ),
        ),
    );
    let d = assert_inner_tcp(&frame, true);
    assert_eq!(
        (d.tunnels[0].kind, d.tunnels[0].id),
        (TunnelKind::GreTeb, Some(3))
    );
}

#[test]
fn geneve_with_options() {
    for words in [0u8, 1, 3] {
        let frame = eth(
            0x0800,
            &ipv4(
                17,
                N1,
                N2,
                &udp(
                    6081,
                    &geneve(77, words, 0x6558, &eth(0x0800, &inner_ip4_tcp())),
                ),
            ),
        );
        let d = assert_inner_tcp(&frame, false);
        assert_eq!(
            (d.tunnels[0].kind, d.tunnels[0].id),
            (TunnelKind::Geneve, Some(77))
        );
    }
    let frame = eth(
        0x0800,
        &ipv4(
            17,
            N1,
            N2,
            &udp(6081, &geneve(8, 2, 0x86dd, &inner_ip6_tcp())),
        ),
    );
    assert_inner_tcp(&frame, true);
}

#[test]
fn two_tiers_and_no_more() {
    // VXLAN inside GRE: two tiers.
    let vx = eth(
        0x0800,
        &ipv4(
            17,
            [172, 16, 0, 1],
            [172, 16, 0, 2],
            &udp(4789, &vxlan(9, &eth(0x0800, &inner_ip4_tcp()))),
        ),
    );
    let frame = eth(
        0x0800,
        &ipv4(47, N1, N2, &gre(false, Some(1), false, 0x6558, &vx)),
    );
    let d = assert_inner_tcp(&frame, false);
    let kinds: Vec<_> = d.tunnels.iter().map(|t| t.kind).collect();
    assert_eq!(kinds, [TunnelKind::GreTeb, TunnelKind::Vxlan]);
    // A third tier is refused, not misread.
    let three = eth(0x0800, &ipv4(4, [1, 1, 1, 1], [2, 2, 2, 2], &frame[14..]));
    assert_eq!(decap(&three), Err(DecapError::TooDeep));
}

#[test]
fn udp_without_tunnel_is_the_inner_segment() {
    let frame = eth(0x0800, &ipv4(17, N1, N2, &udp(53, b"dns")));
    let d = decap(&frame).unwrap();
    assert_eq!(d.inner.l4, L4::Udp);
    assert_eq!(d.inner.dst_port, 53);
    assert_eq!(&frame[d.payload_offset..], b"dns");
}

fn sample_frames() -> Vec<Vec<u8>> {
    vec![
        eth(0x0800, &inner_ip4_tcp()),
        eth(
            0x0800,
            &ipv4(
                17,
                N1,
                N2,
                &udp(4789, &vxlan(1, &eth(0x0800, &inner_ip4_tcp()))),
            ),
        ),
        eth(
            0x0800,
            &ipv4(
                47,
                N1,
                N2,
                &gre(true, Some(2), true, 0x6558, &eth(0x86dd, &inner_ip6_tcp())),
            ),
        ),
        eth(
            0x0800,
            &ipv4(
                17,
                N1,
                N2,
                &udp(6081, &geneve(3, 2, 0x0800, &inner_ip4_tcp())),
            ),
        ),
        vlan_tags(
            &[(0x88a8, 1), (0x8100, 2)],
            0x0800,
            &ipv4(4, N1, N2, &inner_ip4_tcp()),
        ),
    ]
}

#[test]
fn every_truncation_of_valid_frames_is_an_error_not_a_panic() {
    for frame in sample_frames() {
        let full = decap(&frame).expect("whole frame decodes");
        for cut in 0..frame.len() {
            // A cut inside any header is an error; a cut in the payload decodes the same headers.
            if let Ok(d) = decap(&frame[..cut]) {
                assert!(
                    cut >= full.payload_offset,
                    "decoded a frame cut at {cut}: {d:?}"
                );
                assert_eq!((d.inner, d.tunnels), (full.inner, full.tunnels));
            }
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decap(&bytes);
    }

    #[test]
    fn corrupted_valid_frames_never_panic(i in 0usize..5, at in 0usize..200, byte in any::<u8>()) {
        let mut frame = sample_frames().swap_remove(i);
        let at = at % frame.len();
        frame[at] = byte;
        let _ = decap(&frame);
    }
}
