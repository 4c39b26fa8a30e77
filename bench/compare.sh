#!/bin/bash
# compare.sh - alternating rounds of aemp-bench and the Erlang/OTP counterpart, with the
# median and range of every figure.
#
# usage: bench/compare.sh [--rounds N] [--duration SECS] [--rates 1k,10k,100k]
#                         [--aemp LABEL=PATH]... [--no-erlang] [WORKLOAD...]
#
#   WORKLOAD   aemp-bench workloads to run in every round (default R5); the Erlang/OTP
#              counterpart (bench/erlang/run.sh) runs R5 in every round when R5 is among
#              them, after the aemp binaries.
#   --aemp     an aemp-bench binary under a label; repeatable, to compare builds (default
#              aemp=target/release/aemp-bench).  Each round runs them in the order given.
#   --rounds   rounds (default 3); --duration and --rates are passed on (R5 only).
#   --timeout  seconds one benchmark run may take before it is stopped (default 900).
#
# Prints every RESULT line as it comes (prefixed with the label and round) on stderr, and
# at the end one line per label and figure on stdout:
#   <label> <workload> <figure> median <m> min <a> max <b> n <rounds> <unit>
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=3
TIMEOUT=900
OPTS=()
BINS=()
ERLANG=1
WORKLOADS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --timeout) TIMEOUT="$2"; shift 2 ;;
        --duration|--rates) OPTS+=("$1" "$2"); shift 2 ;;
        --aemp) BINS+=("$2"); shift 2 ;;
        --no-erlang) ERLANG=0; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        -*) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
        *) WORKLOADS+=("$1"); shift ;;
    esac
done
[ ${#WORKLOADS[@]} -eq 0 ] && WORKLOADS=(R5)
[ ${#BINS[@]} -eq 0 ] && BINS=("aemp=$ROOT/target/release/aemp-bench")
RUN_ERLANG=0
if [ "$ERLANG" = 1 ]; then
    for w in "${WORKLOADS[@]}"; do [ "$w" = R5 ] && RUN_ERLANG=1; done
fi

OUT=$(mktemp -t aemp-compare.XXXXXX)
trap 'rm -f "$OUT"' EXIT

# run LABEL ROUND COMMAND... : runs one benchmark, keeps its RESULT lines
run() {
    local label=$1 round=$2
    shift 2
    local lines
    lines=$(timeout -k 10 "$TIMEOUT" "$@" 2>/dev/null | grep '^RESULT ')
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
        echo "compare.sh: $label failed in round $round (exit $rc)" >&2
        FAILED=1
    fi
    while read -r _ w fig val unit; do
        [ -n "${w:-}" ] || continue
        echo "$label round $round: $w $fig $val $unit" >&2
        echo "$label $w $fig $val $unit" >>"$OUT"
    done <<<"$lines"
}

FAILED=0
for r in $(seq "$ROUNDS"); do
    for b in "${BINS[@]}"; do
        run "${b%%=*}" "$r" "${b#*=}" "${WORKLOADS[@]}" "${OPTS[@]}"
    done
    if [ "$RUN_ERLANG" = 1 ]; then
        run erlang "$r" "$HERE/erlang/run.sh" R5 "${OPTS[@]}"
    fi
done

# median (lower middle of an even count), min, max per label, workload and figure
sort -k1,1 -k2,2 -k3,3 -k4,4g "$OUT" | awk '
    function flush() {
        if (n == 0) return
        printf "%s %s %s median %s min %s max %s n %d %s\n", key1, key2, key3,
               v[int((n + 1) / 2)], v[1], v[n], n, unit
    }
    { k = $1 " " $2 " " $3
      if (k != prev) { flush(); n = 0; prev = k; key1 = $1; key2 = $2; key3 = $3 }
      v[++n] = $4; unit = $5 }
    END { flush() }'
exit $FAILED
