#!/usr/bin/env bash
# vigil bench: vigil-agent quote latency (median, p99) and memory at idle and at 10 quotes/s,
# on a fresh swtpm, all on 127.0.0.1. Usage: bench/agent.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
b="$top/$build"
work=$(mktemp -d)
agent_pid=
cleanup() {
        [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
        "$b/tests/swtpm-up" --stop "$work/tpm" >/dev/null 2>&1 || true
        rm -rf "$work"
}
trap cleanup EXIT
ninja -C "$b" bench/bench_quote src/agent/vigil-agent src/cli/vigil tests/swtpm-up >/dev/null
"$b/src/cli/vigil" ca init "$work/ca" >/dev/null
eval "$("$b/tests/swtpm-up" --dir "$work/tpm")"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cp "$top/../shared/data/ima/keylime-ima-log-sha256.ascii" "$work/ima.ascii"
VIGIL_CONF_DIR="$work/noconf" VIGIL_AGENT_TCTI="$VIGIL_SWTPM_TCTI" VIGIL_AGENT_DATA_DIR="$work/data" \
VIGIL_AGENT_PORT="$port" VIGIL_AGENT_TRUSTED_CLIENT_CA="$work/ca/cacert.crt" \
VIGIL_AGENT_IMA_ML_PATH="$work/ima.ascii" VIGIL_AGENT_REGISTRAR_PORT=1 \
        "$b/src/agent/vigil-agent" -f --log-level error >"$work/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 100); do [ -f "$work/data/server-cert.crt" ] && break; sleep 0.05; done
sleep 0.5
"$b/bench/bench_quote" "$port" "$agent_pid" "$work/data/server-cert.crt" "$work/ca"
