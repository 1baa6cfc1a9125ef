#!/bin/sh
# vigil bench: can one vigil-verifier hold AGENTS agents at a 2 s quote interval? Starts
# vigil-registrar, vigil-verifier and fleet_sim (the LOAD GENERATOR: simulated agents with
# software AKs) on 127.0.0.1, enrols every agent, measures SECONDS, stops what it started.
#
# usage: bench/verifier_scale.sh [BUILD_DIR] [AGENTS] [SECONDS]
#   environment: INTERVAL (verifier quote_interval, 2), BASE_PORT (20000), AK (ecdsa|rsa),
#   SHARD_MAX (agents per fleet_sim process, 5000: RLIMIT_NOFILE holds a listener and a
#   connection per agent), IMA_RATE (entries per agent per second, 0), KEEP=1 keeps the
#   work directory. Prints one JSON line; exit 0 when p99 <= 1.25 x INTERVAL and every agent
#   was enrolled and polled.
set -eu

BUILD=${1:-build}
AGENTS=${2:-10000}
SECONDS_=${3:-60}
INTERVAL=${INTERVAL:-2}
BASE_PORT=${BASE_PORT:-20000}
AK=${AK:-ecdsa}
SHARD_MAX=${SHARD_MAX:-5000}
IMA_RATE=${IMA_RATE:-0}

SIM=$BUILD/bench/fleet_sim
REG=$BUILD/src/registrar/vigil-registrar
VER=$BUILD/src/verifier/vigil-verifier
CLI=$BUILD/src/cli/vigil
for b in "$SIM" "$REG" "$VER"; do
        [ -x "$b" ] || { echo "verifier_scale: $b is not built (ninja -C $BUILD bench vigil-registrar vigil-verifier)" >&2; exit 2; }
done

T=$(mktemp -d /tmp/verifier-scale.XXXXXX)
PIDS=""
cleanup() {
        for p in $PIDS; do kill "$p" 2>/dev/null || true; done
        for p in $PIDS; do wait "$p" 2>/dev/null || true; done
        [ "${KEEP:-0}" = 1 ] && echo "verifier_scale: work directory kept: $T" >&2 || rm -rf "$T"
}
trap cleanup EXIT INT TERM

free_port() {
        /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# mTLS material: a `vigil ca init` directory (openssl when the CLI is not built).
if [ -x "$CLI" ] && "$CLI" ca init "$T/ca" --key-type ec:P-256 >/dev/null 2>&1; then :; else
        mkdir -p "$T/ca"
        (cd "$T/ca"
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca-private.pem \
                 -out cacert.crt -days 30 -subj "/CN=verifier_scale CA" \
                 -addext "basicConstraints=critical,CA:TRUE" \
                 -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
         for n in server client; do
                 eku=serverAuth; [ $n = client ] && eku=clientAuth
                 openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n-private.pem \
                         -out $n.csr -subj "/CN=$n" 2>/dev/null
                 printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n' $eku > $n.ext
                 openssl x509 -req -in $n.csr -CA cacert.crt -CAkey ca-private.pem -CAcreateserial \
                         -days 30 -extfile $n.ext -out $n-cert.crt 2>/dev/null
                 rm -f $n.csr $n.ext
         done)
fi
"$SIM" --ek-ca-only --ek-ca-dir "$T/ekca" >/dev/null

wait_ready() { # pid pidfile name log
        i=0
        while [ ! -s "$2" ]; do
                if ! kill -0 "$1" 2>/dev/null; then
                        echo "verifier_scale: $3 exited at start:" >&2; tail -20 "$4" >&2; return 1
                fi
                i=$((i + 1)); [ $i -gt 300 ] && { echo "verifier_scale: $3 not ready after 30 s" >&2; return 1; }
                sleep 0.1
        done
}

RPORT=$(free_port); RTLS=$(free_port); VPORT=$(free_port)
mkdir -p "$T/reg" "$T/ver"
VIGIL_CONF_DIR=$T/reg VIGIL_REGISTRAR_PORT=$RPORT VIGIL_REGISTRAR_TLS_PORT=$RTLS \
VIGIL_REGISTRAR_TLS_DIR=$T/ca VIGIL_REGISTRAR_DATA_DIR=$T/reg \
VIGIL_REGISTRAR_TPM_CERT_STORE=$T/ekca VIGIL_REGISTRAR_REQUIRE_EK_CERT=true \
        "$REG" -f --log-level warning --pid-file "$T/reg/pid" >"$T/reg/log" 2>&1 &
RPID=$!; PIDS="$PIDS $RPID"
wait_ready $RPID "$T/reg/pid" vigil-registrar "$T/reg/log"

VIGIL_CONF_DIR=$T/ver VIGIL_VERIFIER_PORT=$VPORT VIGIL_VERIFIER_TLS_DIR=$T/ca \
VIGIL_VERIFIER_DATA_DIR=$T/ver VIGIL_VERIFIER_QUOTE_INTERVAL=$INTERVAL \
VIGIL_VERIFIER_REGISTRAR_PORT=$RTLS \
        "$VER" -f --log-level "${VERIFIER_LOG_LEVEL:-warning}" --pid-file "$T/ver/pid" \
        >"$T/ver/log" 2>&1 &
VPID=$!; PIDS="$PIDS $VPID"
if ! wait_ready $VPID "$T/ver/pid" vigil-verifier "$T/ver/log"; then
        echo "{\"bench\":\"verifier_scale\",\"agents\":$AGENTS,\"error\":\"vigil-verifier is not functional (see above)\"}"
        exit 2
fi

# Shards: each fleet_sim holds at most SHARD_MAX agents on consecutive ports.
SHARDS=$(( (AGENTS + SHARD_MAX - 1) / SHARD_MAX ))
i=0; left=$AGENTS; port=$BASE_PORT; SIMPIDS=""
while [ $i -lt $SHARDS ]; do
        n=$(( left / (SHARDS - i) ))
        "$SIM" --agents $n --base-port $port --ak "$AK" --registrar "http://127.0.0.1:$RPORT" \
                --verifier "https://127.0.0.1:$VPORT" --tls-dir "$T/ca" --ek-ca-dir "$T/ekca" \
                --duration 86400 --ima-rate "$IMA_RATE" --report "$T/sim$i.json" \
                --intervals "$T/iv$i.txt" >"$T/sim$i.out" 2>"$T/sim$i.err" &
        p=$!; PIDS="$PIDS $p"; SIMPIDS="$SIMPIDS $p"
        left=$((left - n)); port=$((port + n)); i=$((i + 1))
done

# CPU time (ticks) of a process, and its RSS in KiB.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

# The window opens when every shard has enrolled its agents.
while :; do
        done_=0
        for i in $(seq 0 $((SHARDS - 1))); do
                grep -q "measuring for" "$T/sim$i.err" 2>/dev/null && done_=$((done_ + 1))
        done
        [ $done_ -eq $SHARDS ] && break
        for p in $SIMPIDS; do
                kill -0 "$p" 2>/dev/null || { echo "verifier_scale: a fleet_sim exited early:" >&2; cat "$T"/sim*.err >&2; exit 2; }
        done
        sleep 0.2
done
# One poll round after the last enrolment, then the window opens in every shard at once.
sleep "$INTERVAL"
for p in $SIMPIDS; do kill -USR1 "$p"; done
V0=$(ticks $VPID); R0=$(ticks $RPID); S0=0
for p in $SIMPIDS; do S0=$((S0 + $(ticks $p))); done
T0=$(date +%s.%N)
sleep "$SECONDS_"
V1=$(ticks $VPID); R1=$(ticks $RPID); S1=0
for p in $SIMPIDS; do S1=$((S1 + $(ticks $p))); done
T1=$(date +%s.%N)
VRSS=$(rss $VPID)
# The verdicts: every agent must be attesting, not merely polled.
STATUS=$(curl -s --max-time 60 --cacert "$T/ca/cacert.crt" --cert "$T/ca/client-cert.crt" \
        --key "$T/ca/client-private.pem" "https://127.0.0.1:$VPORT/v2.5/agents/?bulk=true" |
        /usr/bin/python3 -c '
import json, sys, collections
try:
    r = json.load(sys.stdin)["results"]
    c = collections.Counter(str(a.get("attestation_status")) for a in r.values())
    print(c.get("PASS", 0), c.get("FAIL", 0), sum(c.values()) - c.get("PASS", 0) - c.get("FAIL", 0))
except Exception:
    print("-1 -1 -1")')
set -- $STATUS
APASS=$1 AFAIL=$2 AOTHER=$3
for p in $SIMPIDS; do kill -TERM "$p"; done
for p in $SIMPIDS; do wait "$p" || true; done

cat "$T"/iv*.txt | sort -n >"$T/all.txt"
awk -v agents="$AGENTS" -v shards="$SHARDS" -v interval="$INTERVAL" -v secs="$SECONDS_" \
    -v vcpu=$(( V1 - V0 )) -v rcpu=$(( R1 - R0 )) -v scpu=$(( S1 - S0 )) -v hz="$HZ" \
    -v t0="$T0" -v t1="$T1" -v vrss="$VRSS" -v ak="$AK" \
    -v apass="$APASS" -v afail="$AFAIL" -v aother="$AOTHER" -v simfiles="$(cat "$T"/sim*.json | tr '\n' ' ')" '
function pct(q,   i) { i = int(q * n + 0.999999); if (i < 1) i = 1; return n ? v[i] : 0 }
{ v[++n] = $1 }
END {
        w = t1 - t0
        # Sum the shards counters out of their JSON lines.
        enrolled = 0; failed = 0; never = 0; fails = 0; reqs = 0; enrol_s = 0
        s = simfiles
        while (match(s, /"enrolled":[0-9]+/)) { enrolled += substr(s, RSTART + 11, RLENGTH - 11); s = substr(s, RSTART + RLENGTH) }
        s = simfiles
        while (match(s, /"enrol_failed":[0-9]+/)) { failed += substr(s, RSTART + 15, RLENGTH - 15); s = substr(s, RSTART + RLENGTH) }
        s = simfiles
        while (match(s, /"never_polled":[0-9]+/)) { never += substr(s, RSTART + 15, RLENGTH - 15); s = substr(s, RSTART + RLENGTH) }
        s = simfiles
        while (match(s, /"failures":[0-9]+/)) { fails += substr(s, RSTART + 11, RLENGTH - 11); s = substr(s, RSTART + RLENGTH) }
        s = simfiles
        while (match(s, /"requests":[0-9]+/)) { reqs += substr(s, RSTART + 11, RLENGTH - 11); s = substr(s, RSTART + RLENGTH) }
        s = simfiles
        while (match(s, /"enrol_s":[0-9.]+/)) { x = substr(s, RSTART + 10, RLENGTH - 10); if (x > enrol_s) enrol_s = x; s = substr(s, RSTART + RLENGTH) }
        p99 = pct(0.99)
        ok = (p99 <= interval * 1250 && enrolled == agents && never == 0 && n > 0 && apass == agents) ? "true" : "false"
        printf "{\"bench\":\"verifier_scale\",\"agents\":%d,\"ak\":\"%s\",\"shards\":%d,\"quote_interval_s\":%s,", agents, ak, shards, interval
        printf "\"enrolled\":%d,\"enrol_failed\":%d,\"enrol_s\":%s,\"window_s\":%.1f,\"requests\":%d,\"intervals\":%d,", enrolled, failed, enrol_s, w, reqs, n
        printf "\"interval_ms\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"max\":%.1f},", pct(0.5), pct(0.9), p99, n ? v[n] : 0
        printf "\"never_polled\":%d,\"sim_failures\":%d,", never, fails
        printf "\"attestation\":{\"pass\":%d,\"fail\":%d,\"other\":%d},", apass, afail, aother
        # CPU time per poll holds when the machine is shared; wall-clock intervals do not.
        printf "\"verifier_us_per_poll\":%.0f,\"sim_us_per_quote\":%.0f,", reqs ? 1e6 * vcpu / hz / reqs : 0, reqs ? 1e6 * scpu / hz / reqs : 0
        printf "\"verifier_cpu_pct\":%.1f,\"verifier_rss_kb\":%d,\"registrar_cpu_pct\":%.1f,\"sim_cpu_pct\":%.1f,", 100 * vcpu / hz / w, vrss, 100 * rcpu / hz / w, 100 * scpu / hz / w
        printf "\"pass\":%s}\n", ok
        exit (ok == "true" ? 0 : 1)
}' "$T/all.txt"
