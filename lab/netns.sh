#!/usr/bin/env bash
# A two-node lab in network namespaces (root):
#
#   pods (PREFIX<name>, 10.244.1.x)               pods (PREFIX<name>, 10.244.2.x)
#        | eth0 ↔ vp<name>, on bridge cni0             | eth0 ↔ vp<name>, on bridge cni0
#   node 1 (PREFIXn1) ── eth0 ═ VXLAN 42 ═ eth0 ── node 2 (PREFIXn2)
#        192.168.77.1      (UDP 4789)      192.168.77.2
#
# A pod's node is its address's third octet: pod `pa:10.244.1.2` lives on node 1. Pods of one
# node share its bridge (10.244.N.1, their gateway); the nodes route each other's pod subnet
# through the tunnel. Every address lives inside the lab's namespaces; nothing routes out.
#
#   lab/netns.sh up PREFIX [NAME:ADDR ...]   build it (default pods: pa:10.244.1.2 pb:10.244.2.2),
#                                            replacing a leftover lab of the same PREFIX
#   lab/netns.sh down PREFIX                 delete its namespaces (and every link inside)
#
# Capture it with:  wiretrace up --capture 'node=PREFIXn*/eth0' --capture 'pod=PREFIXn*/vp*'
set -euo pipefail

usage="usage: netns.sh up|down PREFIX [NAME:ADDR ...]"
cmd=${1:?$usage}
p=${2:?$usage}
shift 2
VNI=42

down() {
    local ns
    for ns in $(ip netns list | awk '{print $1}'); do
        case "$ns" in "$p"[a-z]*) ip netns del "$ns" 2>/dev/null || true ;; esac
    done
}

case "$cmd" in
down) down ;;
up)
    [ $# -gt 0 ] || set -- pa:10.244.1.2 pb:10.244.2.2
    down
    for n in 1 2; do
        ip netns add "${p}n$n"
        ip -n "${p}n$n" link set lo up
    done
    ip -n "${p}n1" link add eth0 type veth peer name eth0 netns "${p}n2"
    for n in 1 2; do
        ns=${p}n$n peer=$((3 - n))
        ip -n "$ns" addr add "192.168.77.$n/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link add vx0 type vxlan id $VNI local "192.168.77.$n" remote "192.168.77.$peer" \
            dstport 4789 dev eth0
        ip -n "$ns" addr add "10.99.0.$n/24" dev vx0
        ip -n "$ns" link set vx0 up
        ip -n "$ns" link add cni0 type bridge
        ip -n "$ns" addr add "10.244.$n.1/24" dev cni0
        ip -n "$ns" link set cni0 up
        ip -n "$ns" route add "10.244.$peer.0/24" via "10.99.0.$peer"
        ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
    done
    for pod in "$@"; do
        name=${pod%%:*} addr=${pod#*:}
        n=$(cut -d. -f3 <<<"$addr")
        [ "$n" = 1 ] || [ "$n" = 2 ] || { echo "netns.sh: $pod: address must be 10.244.1.x or 10.244.2.x" >&2; exit 2; }
        ns=${p}n$n
        ip netns add "$p$name"
        ip -n "$p$name" link set lo up
        ip -n "$ns" link add "vp$name" type veth peer name eth0 netns "$p$name"
        ip -n "$ns" link set "vp$name" master cni0 up
        ip -n "$p$name" addr add "$addr/24" dev eth0
        # Below the tunnel's MTU, so no segment needs fragmenting on the way.
        ip -n "$p$name" link set eth0 up mtu 1400
        ip -n "$p$name" route add default via "10.244.$n.1"
    done
    ;;
*)
    echo "$usage" >&2
    exit 2
    ;;
esac
