#!/usr/bin/env bash
# vigil bench: decryption time of a tang pin and of an sss t=2 of 3 tang pins, `vigil pin
# decrypt` against `clevis decrypt` in the same run, same JWEs, same servers (vigil-tang, three
# instances on loopback), plus vg_pin_decrypt() in-process and the encryption cost of sss.
# Usage: bench/pin.sh [BUILD_DIR] [RUNS]        (RUNS >= 50 for the recorded figures; default 100)
# Needs clevis (Debian 19) and jose. Prints one JSON line per measurement; exit 0 when no run
# failed.
set -uo pipefail
build=${1:-build}
runs=${2:-100}
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

command -v clevis >/dev/null || { echo "pin.sh: clevis not found (apt-get install clevis)" >&2; exit 2; }
ninja -C "$build" bench/bench_pin src/cli/vigil src/tang/vigil-tang >/dev/null ||
        { echo "pin.sh: cannot build bench_pin, vigil, vigil-tang" >&2; exit 2; }
vigil=$build/src/cli/vigil
bench=$build/bench/bench_pin
printf '{"bench":"pin","machine":{"nproc":%s,"cpu":"%s","mem_kb":%s,"load":"%s"},"runs":%s}\n' \
        "$(nproc)" "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" \
        "$(awk '/MemTotal/ {print $2}' /proc/meminfo)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$runs"

export VIGIL_TANG_USER=${VIGIL_TANG_USER:-$(id -un)}
urls=()
for i in 0 1 2; do
        mkdir -p "$work/db$i"
        "$vigil" tang keygen "$work/db$i" >/dev/null || exit 2
        port=$(free_port)
        "$build/src/tang/vigil-tang" -f --jwkdir "$work/db$i" --listen "127.0.0.1:$port" \
                2>"$work/tang$i.log" &
        pids+=($!)
        wait_port "$port" || { echo "pin.sh: vigil-tang $i did not start" >&2; exit 2; }
        urls+=("http://127.0.0.1:$port")
done

tang_cfg="{\"url\":\"${urls[0]}\"}"
sss_cfg="{\"t\":2,\"pins\":{\"tang\":[{\"url\":\"${urls[0]}\"},{\"url\":\"${urls[1]}\"},{\"url\":\"${urls[2]}\"}]}}"
printf 'bench-secret' | clevis encrypt tang "$tang_cfg" -y >"$work/tang.jwe" || exit 2
printf 'bench-secret' | clevis encrypt sss "$sss_cfg" -y >"$work/sss.jwe" || exit 2

measure() { # label jwe mode...
        local label=$1 in=$2
        shift 2
        "$bench" --label "$label" --runs "$runs" --in "$in" --expect bench-secret "$@" || status=1
}
for kind in tang sss; do
        measure "$kind: vigil pin decrypt" "$work/$kind.jwe" -- "$vigil" pin decrypt
        measure "$kind: clevis decrypt" "$work/$kind.jwe" -- clevis decrypt
        measure "$kind: vg_pin_decrypt (in-process)" "$work/$kind.jwe" --lib
done

# Encryption: sss generates a fresh 256-bit safe prime each time, as clevis does.
enc() { # label pin cfg tool
        local t0 t1 n=$(( runs < 20 ? runs : 20 ))
        t0=$(date +%s%N)
        for _ in $(seq "$n"); do
                printf x | $4 encrypt "$2" "$3" -y >/dev/null || { status=1; break; }
        done
        t1=$(date +%s%N)
        printf '{"bench":"pin","label":"%s","runs":%d,"mean_ms":%.2f}\n' "$1" "$n" \
                "$(echo "($t1 - $t0) / 1000000 / $n" | bc -l)"
}
enc "sss t=2/3 encrypt: vigil pin" sss "$sss_cfg" "$vigil pin"
enc "sss t=2/3 encrypt: clevis" sss "$sss_cfg" clevis
enc "tang encrypt: vigil pin" tang "$tang_cfg" "$vigil pin"
enc "tang encrypt: clevis" tang "$tang_cfg" clevis
exit $status
