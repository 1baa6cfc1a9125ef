#!/usr/bin/env bash
# vigil bench: Tang recoveries per second, vigil-tang against tangd (under socat, as Debian runs
# it without systemd), same key directory, same load generator (bench_tang), one run, loopback.
# Usage: bench/tang.sh [BUILD_DIR] [SECONDS]      (SOAK=600 adds a 10-minute vigil-tang soak)
# Env: SOAK=S (0), SOAK_CLIENTS=N (64), WARMUP=S (1), TANGD=/usr/libexec/tangd.
# Needs the Debian packages tang (tangd, tangd-keygen) and socat.
# Prints one JSON line per measurement; exits 0 when every run it could do had no errors.
set -uo pipefail
build=${1:-build}
secs=${2:-10}
soak=${SOAK:-0}
soak_clients=${SOAK_CLIENTS:-64}
warmup=${WARMUP:-1}
tangd=${TANGD:-/usr/libexec/tangd}
keygen=$(dirname "$tangd")/tangd-keygen
top=$(cd "$(dirname "$0")/.." && pwd)
case $build in /*) ;; *) build=$top/$build ;; esac
work=$(mktemp -d)
pids=()
status=0
cleanup() {
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
        for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
        rm -rf "$work"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
note() { printf '{"bench":"tang","note":"%s"}\n' "$*"; }

for f in "$tangd" "$keygen"; do
        [ -x "$f" ] || { echo "tang.sh: $f not found (apt-get install tang)" >&2; exit 2; }
done
command -v socat >/dev/null || { echo "tang.sh: socat not found (apt-get install socat)" >&2; exit 2; }
ninja -C "$build" bench/bench_tang >/dev/null || { echo "tang.sh: cannot build bench_tang" >&2; exit 2; }
bench=$build/bench/bench_tang
vigil_built=1
ninja -C "$build" src/tang/vigil-tang >"$work/vigil-build.log" 2>&1 || vigil_built=0

mkdir -p "$work/db"
"$keygen" "$work/db" >/dev/null 2>&1 || true # "Unable to change owner" is expected as non-root
[ "$(ls "$work/db"/*.jwk 2>/dev/null | wc -l)" -ge 2 ] || { echo "tang.sh: tangd-keygen made no keys" >&2; exit 2; }
printf '{"bench":"tang","machine":{"nproc":%s,"cpu":"%s","mem_kb":%s},"seconds":%s}\n' "$(nproc)" \
        "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" \
        "$(awk '/MemTotal/ {print $2}' /proc/meminfo)" "$secs"

run() { # label url clients keepalive-flag
        local out
        out=$("$bench" --url "$2" --clients "$3" "$4" --duration "$secs" --warmup "$warmup" --label "$1")
        local rc=$?
        [ -n "$out" ] && echo "$out"
        [ $rc -eq 0 ] || { status=1; note "$1 -c $3: bench_tang exited $rc"; }
        return $rc
}

# tangd: one process per connection (socat forks and execs tangd for each), as Debian runs it
# without systemd: no keep-alive. Then tangd's best case: it does loop over keep-alive requests
# on its connection, and with TCP_NODELAY (socat nodelay) it escapes the Nagle x delayed-ACK
# stall of its two writes per reply; this is the figure vigil-tang's 5x target is set against.
tangd_run() { # label socat-extra-options keepalive-flag clients...
        local label=$1 opts=$2 ka=$3 port socat_pid
        shift 3
        port=$(free_port)
        socat TCP-LISTEN:"$port",bind=127.0.0.1,reuseaddr,fork$opts EXEC:"$tangd $work/db" 2>>"$work/tangd.log" &
        socat_pid=$!
        pids+=("$socat_pid")
        if wait_port "$port"; then
                for c in "$@"; do run "$label" "http://127.0.0.1:$port" "$c" "$ka"; done
        else
                status=1
                note "tangd under socat did not listen on 127.0.0.1:$port"
        fi
        kill "$socat_pid" 2>/dev/null
        wait "$socat_pid" 2>/dev/null
}
tangd_run tangd "" --no-keepalive 1 16
tangd_run tangd-keepalive-nodelay ",nodelay" --keepalive 1 16

# vigil-tang: one event loop, keep-alive clients.
vt=$build/src/tang/vigil-tang
if [ $vigil_built -eq 0 ]; then
        status=1
        note "vigil-tang does not build yet: $(grep -m1 -E 'error|FAILED' "$work/vigil-build.log" | tr -d '"\\' | cut -c1-200)"
        exit $status
fi
port=$(free_port)
"$vt" --jwkdir "$work/db" --listen "127.0.0.1:$port" -f >"$work/vigil-tang.log" 2>&1 &
vt_pid=$!
pids+=("$vt_pid")
if ! wait_port "$port" || ! kill -0 "$vt_pid" 2>/dev/null; then
        status=1
        note "vigil-tang does not work yet (did not listen on 127.0.0.1:$port): $(tail -n1 "$work/vigil-tang.log" | tr -d '"\\' | cut -c1-200)"
        exit $status
fi
for c in 1 16 64; do
        run vigil-tang "http://127.0.0.1:$port" "$c" --keepalive
done

if [ "$soak" -gt 0 ]; then
        # Full load for SOAK seconds; vigil-tang's RSS every 10 s.
        "$bench" --url "http://127.0.0.1:$port" --clients "$soak_clients" --keepalive --warmup 0 \
                --duration "$soak" --label vigil-tang-soak >"$work/soak.json" &
        bench_pid=$!
        pids+=("$bench_pid")
        rss=()
        t=0
        while kill -0 "$bench_pid" 2>/dev/null; do
                r=$(awk '/^VmRSS/ {print $2}' "/proc/$vt_pid/status" 2>/dev/null)
                [ -n "$r" ] || { note "vigil-tang exited during the soak"; status=1; break; }
                rss+=("$r")
                printf '{"bench":"tang","soak_t_s":%s,"vigil_tang_rss_kb":%s}\n' "$t" "$r"
                sleep 10
                t=$((t + 10))
        done
        wait "$bench_pid"
        [ $? -eq 0 ] || status=1
        cat "$work/soak.json"
        if [ ${#rss[@]} -ge 2 ]; then
                printf '{"bench":"tang","soak_rss_kb":{"first":%s,"after_60s":%s,"last":%s,"max":%s}}\n' \
                        "${rss[0]}" "${rss[$((${#rss[@]} > 6 ? 6 : ${#rss[@]} - 1))]}" "${rss[-1]}" \
                        "$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)"
        fi
fi
exit $status
