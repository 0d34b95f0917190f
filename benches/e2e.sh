#!/usr/bin/env bash
# End to end: the same axum app with and without ResolveCustomerLayer on
# loopback, cache-hit path (one token for every request), loaded by wrk.
#
#   benches/e2e.sh [duration_seconds=5] [connections=32] [threads=1] [rounds=5]
#
# SERVER_THREADS=N gives each server N runtime worker threads (default: one
# per CPU).
#
# The three servers take turns, round after round, so a slow spell on a shared
# machine hits them alike; the figures reported are each server's median round.
# Installs Debian's wrk when it is missing. Prints requests/s and p50/p99 for
# the bare server, the server with the layer, and (for scale) the server with
# tower-http's RequestBodyLimitLayer, the server's CPU time per request, and the
# throughput ratios to bare.
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
server=target/release/examples/bench_server

# Server CPU time (user + system) in microseconds, from /proc.
cpu_us() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($14 + $15) * 1000000 / hz }' "/proc/$1/stat"; }

# One round against one server: "rps p50 p99 cpu_us_per_request".
run() {
  local port=$1; shift
  "$server" --port "$port" ${SERVER_THREADS:+--worker-threads "$SERVER_THREADS"} "$@" > /dev/null &
  local pid=$!
  for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" -H "x-amzn-marketplace-token: $token" && break
    sleep 0.1
  done
  local cpu_before cpu_after
  cpu_before=$(cpu_us "$pid")
  wrk -t"$threads" -c"$connections" -d"${duration}s" --latency \
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

declare -A results
for round in $(seq "$rounds"); do
  results[bare]+="$(run 18080)"$'\n'
  results[layered]+="$(run 18081 --layered)"$'\n'
  results[limit]+="$(run 18082 --body-limit)"$'\n'
done

# The round with the median requests/s: "rps p50 p99 cpu_per_request".
median() { printf '%s' "${results[$1]}" | sort -n | awk '{ line[NR] = $0 } END { print line[int((NR + 1) / 2)] }'; }

read -r bare_rps bare_p50 bare_p99 bare_cpu < <(median bare)
read -r layer_rps layer_p50 layer_p99 layer_cpu < <(median layered)
read -r limit_rps limit_p50 limit_p99 limit_cpu < <(median limit)
echo "wrk -t$threads -c$connections -d${duration}s, cache hit, token in a header, median of $rounds rounds"
for server in bare layered limit; do
  echo "$server rounds (requests/s p50 p99 server-CPU-per-request):"; printf '%s' "${results[$server]}" | sed 's/^/  /'
done
printf "%-8s %12s %10s %10s %12s\n" server "requests/s" p50 p99 "CPU/request"
printf "%-8s %12s %10s %10s %12s\n" bare "$bare_rps" "$bare_p50" "$bare_p99" "$bare_cpu"
printf "%-8s %12s %10s %10s %12s\n" layered "$layer_rps" "$layer_p50" "$layer_p99" "$layer_cpu"
printf "%-8s %12s %10s %10s %12s\n" limit "$limit_rps" "$limit_p50" "$limit_p99" "$limit_cpu"
awk -v l="$layer_rps" -v b="$bare_rps" 'BEGIN { printf "layered/bare throughput: %.3f\n", l / b }'
awk -v l="$limit_rps" -v b="$bare_rps" 'BEGIN { printf "limit/bare throughput:   %.3f\n", l / b }'
