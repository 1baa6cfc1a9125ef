#!/bin/sh
# vigil bench: the IMA burst (RHBZ#2138167 class) for longer than CI runs it: vigil-ima-sim
# appends >= 5000 allowed measurements/s (one PCR 10 extend each) while vigil-verifier polls
# the agent every 0.2 s; then a bad file slipped into a second burst must still be caught.
# It is test_runtime's burst part with a longer duration; the verdicts and figures are its TAP
# lines. Usage: bench/burst.sh [BUILD] [SECONDS]   (default: build 600)
set -eu
build=${1:-build}
seconds=${2:-600}
export VIGIL_RUNTIME_ONLY=burst VIGIL_BURST_SECONDS="$seconds"
exec meson test -C "$build" runtime --verbose --timeout-multiplier 4
