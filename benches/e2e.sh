#!/usr/bin/env bash
# End to end: the same axum app with and without ResolveCustomerLayer on
# loopback, cache-hit path (one token for every request), loaded by wrk.
#
#   benches/e2e.sh [duration_seconds=10] [connections=32] [threads=1]
#
# Installs Debian's wrk when it is missing. Prints requests/s and p50/p99 for
# the bare server, the server with the layer, and (for scale) the server with
# tower-http's RequestBodyLimitLayer, and the throughput ratios to bare.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
connections=${2:-32}
threads=${3:-1}
token="+tFn41ejk5vVEuXXa2T2mLcwLL5tFz5iUaR4fHV0oR8y6t2UhvTBYZlBKw8hz2LO4b/abcdEFGHijklMNOPqrstUVWXyz0123456789+/ABCDefghIJKLmnopQRSTuvwxYZ01234567890abcdefghijklmnopqrstuvwxyzABCDEFGHIJ=="

if ! command -v wrk >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk
fi
cargo build --release --quiet --example bench_server
server=target/release/examples/bench_server

run() {
  local port=$1; shift
  "$server" --port "$port" "$@" > /dev/null &
  local pid=$!
  for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" -H "x-amzn-marketplace-token: $token" && break
    sleep 0.1
  done
  wrk -t"$threads" -c"$connections" -d"${duration}s" --latency \
    -H "x-amzn-marketplace-token: $token" "http://127.0.0.1:$port/" > "/tmp/e2e-$port.txt"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "/tmp/e2e-$port.txt")
  p50=$(awk '$1 == "50%" {print $2}' "/tmp/e2e-$port.txt")
  p99=$(awk '$1 == "99%" {print $2}' "/tmp/e2e-$port.txt")
  echo "$rps $p50 $p99"
}

read -r bare_rps bare_p50 bare_p99 < <(run 18080)
read -r layer_rps layer_p50 layer_p99 < <(run 18081 --layered)
read -r limit_rps limit_p50 limit_p99 < <(run 18082 --body-limit)
echo "wrk -t$threads -c$connections -d${duration}s, cache hit, token in a header"
printf "%-8s %12s %10s %10s\n" server "requests/s" p50 p99
printf "%-8s %12s %10s %10s\n" bare "$bare_rps" "$bare_p50" "$bare_p99"
printf "%-8s %12s %10s %10s\n" layered "$layer_rps" "$layer_p50" "$layer_p99"
printf "%-8s %12s %10s %10s\n" limit "$limit_rps" "$limit_p50" "$limit_p99"
awk -v l="$layer_rps" -v b="$bare_rps" 'BEGIN { printf "layered/bare throughput: %.3f\n", l / b }'
awk -v l="$limit_rps" -v b="$bare_rps" 'BEGIN { printf "limit/bare throughput:   %.3f\n", l / b }'
