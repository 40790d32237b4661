#!/usr/bin/env bash
# A two-node lab in network namespaces (root):
#
#   pod A (PREFIXpa, 10.244.1.2)          pod B (PREFIXpb, 10.244.2.2)
#        | eth0 ↔ vpa                          | eth0 ↔ vpb
#   node 1 (PREFIXn1) ── eth0 ═ VXLAN 42 ═ eth0 ── node 2 (PREFIXn2)
#        192.168.77.1      (UDP 4789)      192.168.77.2
#
# Every address lives inside the lab's namespaces; nothing routes out of them.
#
#   scripts/lab.sh up PREFIX     build it (replacing a leftover lab of the same PREFIX)
#   scripts/lab.sh down PREFIX   delete its namespaces (and with them every link inside)
#
# Capture it with:  wiretrace up --capture 'node=PREFIXn*/eth0' --capture 'pod=PREFIXn*/vp*'
set -euo pipefail

cmd=${1:?usage: lab.sh up|down PREFIX}
p=${2:?usage: lab.sh up|down PREFIX}
VNI=42

down() {
    for n in pa pb n1 n2; do
        ip netns del "$p$n" 2>/dev/null || true
    done
}

case "$cmd" in
down) down ;;
up)
    down
    for n in n1 n2 pa pb; do
        ip netns add "$p$n"
        ip -n "$p$n" link set lo up
    done
    ip -n "${p}n1" link add eth0 type veth peer name eth0 netns "${p}n2"
    node() { # node-ns my-underlay peer-underlay vxlan-addr pod-subnet pod-ns host-end
        local n=$1 me=$2 peer=$3 vx=$4 sub=$5 pod=$6 host=$7
        ip -n "$n" addr add "$me/24" dev eth0
        ip -n "$n" link set eth0 up
        ip -n "$n" link add vx0 type vxlan id $VNI local "$me" remote "$peer" dstport 4789 dev eth0
        ip -n "$n" addr add "$vx/24" dev vx0
        ip -n "$n" link set vx0 up
        ip -n "$n" link add "$host" type veth peer name eth0 netns "$pod"
        ip -n "$n" addr add "$sub.1/24" dev "$host"
        ip -n "$n" link set "$host" up
        ip -n "$pod" addr add "$sub.2/24" dev eth0
        # Below the tunnel's MTU, so no segment needs fragmenting on the way.
        ip -n "$pod" link set eth0 up mtu 1400
        ip -n "$pod" route add default via "$sub.1"
        ip netns exec "$n" sysctl -qw net.ipv4.ip_forward=1
    }
    node "${p}n1" 192.168.77.1 192.168.77.2 10.99.0.1 10.244.1 "${p}pa" vpa
    node "${p}n2" 192.168.77.2 192.168.77.1 10.99.0.2 10.244.2 "${p}pb" vpb
    ip -n "${p}n1" route add 10.244.2.0/24 via 10.99.0.2
    ip -n "${p}n2" route add 10.244.1.0/24 via 10.99.0.1
    ;;
*)
    echo "usage: lab.sh up|down PREFIX" >&2
    exit 2
    ;;
esac
