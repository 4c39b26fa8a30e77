#!/bin/bash
# run.sh - the Erlang/OTP counterpart of aemp-bench's R5 workload (see README.md).
#
# usage: bench/erlang/run.sh [R5] [--duration SECS] [--rates 1k,10k,100k]
#
# Compiles aemp_rate.erl into a temporary directory, starts epmd on 127.0.0.1 unless one
# is running already (and then stops it at the end), and two nodes with a random cookie,
# their distribution bound to 127.0.0.1: node B in the background, node A in the
# foreground.  A prints the RESULT lines on stdout.  Both nodes run with the default
# scheduler settings of the installed Erlang/OTP.  Every process started here is stopped
# on exit, also on failure or Ctrl-C.  Needs erl, erlc and epmd (Debian: erlang-nox).
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        R5|r5) shift ;;
        --duration|--rates)
            [ $# -ge 2 ] || { echo "run.sh: $1 needs a value" >&2; exit 2; }
            ARGS+=("$1" "$2"); shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (only R5 is implemented here)" >&2; exit 2 ;;
    esac
done

for t in erl erlc epmd getconf; do
    command -v "$t" >/dev/null || { echo "run.sh: $t not found (apt-get install erlang-nox)" >&2; exit 2; }
done

TMP=$(mktemp -d -t aemp-rate-erl.XXXXXX)
OWN_EPMD=0
B=""
NAME_B="aemp_rate_b_$$@127.0.0.1"
NAME_A="aemp_rate_a_$$@127.0.0.1"
COOKIE="aemp_rate_$$_$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"

stop() {
    if [ -n "$B" ] && kill -0 "$B" 2>/dev/null; then
        kill "$B" 2>/dev/null
        for _ in $(seq 30); do kill -0 "$B" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$B" 2>/dev/null
        wait "$B" 2>/dev/null
    fi
    [ "$OWN_EPMD" = 1 ] && epmd -kill >/dev/null 2>&1
    rm -rf "$TMP"
}
trap stop EXIT
trap 'exit 130' INT TERM

erlc -o "$TMP" "$HERE/aemp_rate.erl" || exit 2

export ERL_EPMD_ADDRESS=127.0.0.1
if ! epmd -names >/dev/null 2>&1; then
    epmd -daemon -address 127.0.0.1 || { echo "run.sh: epmd did not start" >&2; exit 2; }
    OWN_EPMD=1
    for _ in $(seq 50); do epmd -names >/dev/null 2>&1 && break; sleep 0.1; done
fi

COMMON=(-noshell -noinput -setcookie "$COOKIE"
        -kernel inet_dist_use_interface '{127,0,0,1}'
        -pa "$TMP")

# erl execs the emulator, so $B is node B's beam process; it also halts by itself once
# node A is gone.
erl -name "$NAME_B" "${COMMON[@]}" -s aemp_rate serve >"$TMP/b.out" 2>"$TMP/b.err" &
B=$!
for _ in $(seq 100); do grep -q '^READY' "$TMP/b.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^READY' "$TMP/b.out" || { echo "run.sh: node B did not start:" >&2; cat "$TMP/b.err" >&2; exit 1; }

erl -name "$NAME_A" "${COMMON[@]}" -s aemp_rate main -extra --peer "$NAME_B" "${ARGS[@]}"
RC=$?
cat "$TMP/b.err" >&2
[ $RC -eq 0 ] || echo "run.sh: R5 failed (exit $RC)" >&2
exit $RC
