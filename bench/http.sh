#!/usr/bin/env bash
# vigil bench: requests/s and latency of the HTTP server (plain and mTLS) against Tornado
# (Keylime's server) serving the same reply, all measured by wrk on 127.0.0.1 in one run.
# Usage: bench/http.sh [BUILD_DIR] [SECONDS]. Needs wrk and python3-tornado (Debian packages).
set -euo pipefail
build=${1:-build}
secs=${2:-10}
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
        rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

run_wrk() { # name url [wrk args...]
        local name=$1 url=$2
        shift 2
        wrk -t1 -c32 -d"${secs}s" --latency "$@" "$url" >"$work/$name.txt"
        local rps p50 p99
        rps=$(awk '/Requests\/sec/ {print $2}' "$work/$name.txt")
        p50=$(awk '$1=="50%" {print $2}' "$work/$name.txt")
        p99=$(awk '$1=="99%" {print $2}' "$work/$name.txt")
        printf '{"bench":"http","server":"%s","connections":32,"requests_per_s":%s,"p50":"%s","p99":"%s"}\n' \
                "$name" "$rps" "$p50" "$p99"
}

ninja -C "$top/$build" bench/bench_http src/cli/vigil >/dev/null
"$top/$build/src/cli/vigil" ca init "$work/ca" --key-type ec:P-256 >/dev/null

p=$(free_port); "$top/$build/bench/bench_http" --port "$p" >/dev/null & pids+=($!)
wait_port "$p"; run_wrk vigil-plain "http://127.0.0.1:$p/v2.1/quotes/identity"

p=$(free_port); /usr/bin/python3 "$top/bench/bench_tornado.py" "$p" >/dev/null 2>&1 & pids+=($!)
wait_port "$p"; run_wrk tornado-plain "http://127.0.0.1:$p/v2.1/quotes/identity"

# TLS (server authentication only: wrk cannot present a client certificate). wrk keeps its
# connections, so this is the steady-state cost of encryption, not of handshakes.
p=$(free_port)
"$top/$build/bench/bench_http" --port "$p" --tls "$work/ca" >/dev/null & pids+=($!)
wait_port "$p"; run_wrk vigil-tls "https://127.0.0.1:$p/v2.1/quotes/identity"

p=$(free_port); /usr/bin/python3 "$top/bench/bench_tornado.py" "$p" "$work/ca" >/dev/null 2>&1 & pids+=($!)
wait_port "$p"; run_wrk tornado-tls "https://127.0.0.1:$p/v2.1/quotes/identity"
