#!/usr/bin/env bash
# End to end: the same axum app with and without ResolveCustomerLayer on
# loopback, cache-hit path (one token for every request), loaded by wrk.
#
#   benches/e2e.sh [duration_seconds=5] [connections=32] [threads=1] [rounds=5]
#
# SERVER_THREADS=N gives each server N runtime worker threads (default: one
# per CPU). PIN_SERVER and PIN_WRK pin the server and wrk to CPUs (taskset
# lists, e.g. PIN_SERVER=1 PIN_WRK=0 with SERVER_THREADS=1).
#
# The three servers take turns, round after round, so a slow spell on a shared
# machine hits them alike; the figures reported are each server's median round.
# Installs Debian's wrk when it is missing. Prints requests/s and p50/p99 for
# the bare server, the server with the layer, for scale the server with
# tower-http's RequestBodyLimitLayer, and the two floors (the least any layer
# can do on this path, with and without the `Redemption` extension); the
# server's CPU time per request; and the throughput ratios to bare.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-5}
connections=${2:-32}
threads=${3:-1}
rounds=${4:-5}
token="+tFn41ejk5vVEuXXa2T2mLcwLL5tFz5iUaR4fHV0oR8y6t2UhvTBYZlBKw8hz2LO4b/abcdEFGHijklMNOPqrstUVWXyz0123456789+/ABCDefghIJKLmnopQRSTuvwxYZ01234567890abcdefghijklmnopqrstuvwxyzABCDEFGHIJ=="

if ! command -v wrk >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk
fi
cargo build --release --quiet --example bench_server
export E2E_TOKEN="$token" # the floor servers' one cached token
server=target/release/examples/bench_server

# Server CPU time (user + system) in microseconds, from /proc.
cpu_us() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($14 + $15) * 1000000 / hz }' "/proc/$1/stat"; }

# One round against one server: "rps p50 p99 cpu_us_per_request".
run() {
  local port=$1; shift
  ${PIN_SERVER:+taskset -c "$PIN_SERVER"} "$server" --port "$port" \
    ${SERVER_THREADS:+--worker-threads "$SERVER_THREADS"} "$@" > /dev/null &
  local pid=$!
  for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" -H "x-amzn-marketplace-token: $token" && break
    sleep 0.1
  done
  local cpu_before cpu_after
  cpu_before=$(cpu_us "$pid")
  ${PIN_WRK:+taskset -c "$PIN_WRK"} wrk -t"$threads" -c"$connections" -d"${duration}s" --latency \
    -H "x-amzn-marketplace-token: $token" "http://127.0.0.1:$port/" > "/tmp/e2e-$port.txt"
  cpu_after=$(cpu_us "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local rps p50 p99 requests
  rps=$(awk '/Requests\/sec/ {print $2}' "/tmp/e2e-$port.txt")
  p50=$(awk '$1 == "50%" {print $2}' "/tmp/e2e-$port.txt")
  p99=$(awk '$1 == "99%" {print $2}' "/tmp/e2e-$port.txt")
  requests=$(awk '/requests in/ {print $1}' "/tmp/e2e-$port.txt")
  awk -v r="$rps" -v a="$p50" -v b="$p99" -v c=$((cpu_after - cpu_before)) -v n="$requests" \
    'BEGIN { printf "%s %s %s %.2fus\n", r, a, b, c / n }'
}

# Each server's name and flags; the floors are hand-written middlewares that
# do only what any layer must do on this path (see examples/bench_server.rs).
servers=(bare layered limit floor floor1)
declare -A flags=([bare]="" [layered]="--layered" [limit]="--body-limit" [floor]="--floor" [floor1]="--floor-one-extension")
declare -A results
for round in $(seq "$rounds"); do
  port=18080
  for name in "${servers[@]}"; do
    # shellcheck disable=SC2086 # the flags are words
    results[$name]+="$(run "$port" ${flags[$name]})"$'\n'
    port=$((port + 1))
  done
done

# The round with the median requests/s: "rps p50 p99 cpu_per_request".
median() { printf '%s' "${results[$1]}" | sort -n | awk '{ line[NR] = $0 } END { print line[int((NR + 1) / 2)] }'; }

echo "wrk -t$threads -c$connections -d${duration}s, cache hit, token in a header, median of $rounds rounds"
for name in "${servers[@]}"; do
  echo "$name rounds (requests/s p50 p99 server-CPU-per-request):"; printf '%s' "${results[$name]}" | sed 's/^/  /'
done
# And the best round: on a shared VM slow spells only ever take throughput
# away, so each server's fastest round is its least disturbed one.
best() { printf '%s' "${results[$1]}" | sort -n | tail -1 | cut -d' ' -f1; }
# And the ratio to bare within each round, the servers' runs seconds apart:
# its median over the rounds, and the middle half ("q1..q3"). A slow spell
# that covers a whole round cancels out of its ratios.
paired() {
  paste -d' ' <(printf '%s' "${results[$1]}" | cut -d' ' -f1) <(printf '%s' "${results[bare]}" | cut -d' ' -f1) |
    awk '{ print $1 / $2 }' | sort -g |
    awk '{ r[NR] = $1 } END { printf "%.3f %.3f..%.3f", r[int((NR + 1) / 2)], r[int((NR + 3) / 4)], r[int((3 * NR + 3) / 4)] }'
}
printf "%-8s %12s %10s %10s %12s %9s %12s %9s %15s\n" server "requests/s" p50 p99 "CPU/request" "/bare" "best round" "/bare" "round /bare"
read -r bare_rps _ < <(median bare)
bare_best=$(best bare)
for name in "${servers[@]}"; do
  read -r rps p50 p99 cpu < <(median "$name")
  top=$(best "$name")
  printf "%-8s %12s %10s %10s %12s %9s %12s %9s %s\n" "$name" "$rps" "$p50" "$p99" "$cpu" \
    "$(awk -v r="$rps" -v b="$bare_rps" 'BEGIN { printf "%.3f", r / b }')" \
    "$top" "$(awk -v r="$top" -v b="$bare_best" 'BEGIN { printf "%.3f", r / b }')" \
    "$(paired "$name")"
done
