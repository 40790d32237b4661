#!/usr/bin/env bash
# Bookinfo in the two-node lab (root): loadgenerator (curl), productpage (Python), details (Ruby),
# reviews (Java), ratings (Node.js), each pod with an nginx sidecar. Apps listen on 127.0.0.1:9081
# in their pod and reach other services only through their own sidecar (explicit loopback ports);
# inbound traffic enters through the sidecar on the pod's address, port 9080. No app carries
# tracing code or propagates headers; the sidecars behave like Envoy's: each generates an
# X-Request-ID when a request has none, passes it on, and returns it in the response.
#
#   node 2: lg 10.244.2.2, pp 10.244.2.3, ra 10.244.2.4      node 1: de 10.244.1.2, rv 10.244.1.3
#
#   bookinfo.sh up PREFIX DIR     build the lab (../netns.sh, or netns.sh beside this script)
#                                 and start every process; logs and pid files go to DIR
#   bookinfo.sh down PREFIX DIR   stop the processes DIR records (by pid), delete the namespaces
#   bookinfo.sh request PREFIX    one request from the loadgenerator (curl); prints the answer
set -euo pipefail

usage="usage: bookinfo.sh up|down PREFIX DIR | request PREFIX"
cmd=${1:?$usage}
p=${2:?$usage}
here=$(cd "$(dirname "$0")" && pwd)
netns=$here/../netns.sh
[ -x "$netns" ] || netns=$here/netns.sh

PODS="lg:10.244.2.2 pp:10.244.2.3 ra:10.244.2.4 de:10.244.1.2 rv:10.244.1.3"
APP_PORT=9081
# Egress ports on every sidecar: 15000 productpage, 15001 details, 15002 reviews, 15003 ratings.
EGRESS="15000:10.244.2.3 15001:10.244.1.2 15002:10.244.1.3 15003:10.244.2.4"

sidecar_conf() { # pod-address dir name
    local addr=$1 dir=$2 name=$3 e
    cat <<CONF
worker_processes 1;
daemon off;
pid $dir/$name.nginx.pid;
error_log $dir/$name.nginx.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/$name;
    proxy_temp_path $dir/tmp/$name;
    map \$http_x_request_id \$rid { "" \$request_id; default \$http_x_request_id; }
    proxy_set_header X-Request-ID \$rid;
    add_header X-Request-ID \$rid always;
    # inbound
    server { listen $addr:9080; location / { proxy_pass http://127.0.0.1:$APP_PORT; } }
CONF
    for e in $EGRESS; do
        echo "    server { listen 127.0.0.1:${e%%:*}; location / { proxy_pass http://${e#*:}:9080; } }"
    done
    echo "}"
}

start() { # dir name pod program args...
    local dir=$1 name=$2 pod=$3
    shift 3
    ip netns exec "$p$pod" setsid "$@" >"$dir/$name.log" 2>&1 </dev/null &
    echo $! >"$dir/$name.pid"
}

wait_ok() { # what pod url
    local i
    for i in $(seq 1 300); do
        ip netns exec "$p$2" curl -sf -o /dev/null --max-time 2 "$3" && return 0
        sleep 0.2
    done
    echo "bookinfo.sh: $1 never answered $3; see its log in $dir" >&2
    return 1
}

stop() { # dir
    local f pid i
    for f in "$1"/*.pid; do
        [ -e "$f" ] || continue
        case "$f" in *.nginx.pid) continue ;; esac
        pid=$(cat "$f")
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$f"
    done
}

case "$cmd" in
up)
    dir=${3:?$usage}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    stop "$dir"
    # shellcheck disable=SC2086
    "$netns" up "$p" $PODS
    for pod in $PODS; do
        name=${pod%%:*}
        mkdir -p "$dir/tmp/$name"
        sidecar_conf "${pod#*:}" "$dir" "$name" >"$dir/$name.nginx.conf"
        start "$dir" "$name-sidecar" "$name" nginx -c "$dir/$name.nginx.conf" -p "$dir"
    done
    start "$dir" productpage pp python3 "$here/productpage.py" $APP_PORT \
        http://127.0.0.1:15001/details/0 http://127.0.0.1:15002/reviews/0
    start "$dir" details de ruby "$here/details.rb" $APP_PORT
    start "$dir" reviews rv java -Xshare:auto -XX:TieredStopAtLevel=1 "$here/Reviews.java" $APP_PORT \
        http://127.0.0.1:15003/ratings/0
    start "$dir" ratings ra node "$here/ratings.js" $APP_PORT
    wait_ok ratings ra http://127.0.0.1:15003/ratings/0
    wait_ok details de http://127.0.0.1:15001/details/0
    wait_ok reviews rv http://127.0.0.1:15002/reviews/0
    wait_ok productpage lg http://127.0.0.1:15000/productpage
    ;;
down)
    dir=${3:?$usage}
    [ -d "$dir" ] && stop "$dir"
    "$netns" down "$p"
    ;;
request)
    ip netns exec "${p}lg" curl -sf --max-time 10 http://127.0.0.1:15000/productpage
    ;;
*)
    echo "$usage" >&2
    exit 2
    ;;
esac
