#!/usr/bin/env bash
# Load test of the dashboard's GET /api/connections with 10,000 connections (issue #7: p99 under
# 50 ms), release build, with wrk (Debian package `wrk`) on loopback.
#
# The server is the ignored test `web::tests::bench_serve_10k` of the netvigil binary: a LiveView
# of 10,000 connections of 50 programs (4 byte samples each) served on a free loopback port. Two
# cases: a still view (the body is serialised once and shared, as between two changes) and a
# busy one (a connection changes every CHURN_MS ms, so most requests find a new generation and
# wait for one rebuild). Each case runs wrk at CONNS concurrent connections for DURATION s.
#
# Usage: scripts/bench-web.sh          env: DURATION=15 CONNS="1 4 16" THREADS=2 CHURN_MS=10
#        CARGO_TARGET_DIR as for cargo. Prints wrk's latency distribution and requests/s.
set -euo pipefail
DURATION=${DURATION:-15}
CONNS=${CONNS:-"1 4 16"}
THREADS=${THREADS:-2}
CHURN_MS=${CHURN_MS:-10}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl not found: apt-get install curl" >&2; exit 1; }
cd "$(dirname "$0")/.."
cargo test --release -p netvigil --bin netvigil --no-run 2>&1 | tail -1
WORK=$(mktemp -d /tmp/netvigil-bench-web.XXXXXX)
SERVER_PID=
cleanup() {
  rm -f "$WORK/addr"
  if [[ -n $SERVER_PID ]]; then wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
echo "netvigil bench-web  $(date -u +%FT%TZ)  commit=$(git rev-parse --short HEAD 2>/dev/null || echo ?)  nproc=$(nproc)  load=$(cut -d' ' -f1-3 /proc/loadavg)  $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"

run_case() { # name churn_ms
  local name=$1 churn=$2 n
  rm -f "$WORK/addr"
  local secs=$(( (DURATION + 5) * $(wc -w <<<"$CONNS") + 60 ))
  if [[ $churn == 0 ]]; then
    NETVIGIL_WEB_BENCH_ADDR=$WORK/addr NETVIGIL_WEB_BENCH_SECS=$secs \
      cargo test -q --release -p netvigil --bin netvigil web::tests::bench_serve_10k -- --ignored --exact --nocapture \
      >"$WORK/server-$name.log" 2>&1 &
  else
    NETVIGIL_WEB_BENCH_ADDR=$WORK/addr NETVIGIL_WEB_BENCH_SECS=$secs NETVIGIL_WEB_BENCH_CHURN_MS=$churn \
      cargo test -q --release -p netvigil --bin netvigil web::tests::bench_serve_10k -- --ignored --exact --nocapture \
      >"$WORK/server-$name.log" 2>&1 &
  fi
  SERVER_PID=$!
  for _ in $(seq 1 600); do [[ -s $WORK/addr ]] && break; sleep 0.2; done
  [[ -s $WORK/addr ]] || { echo "the bench server did not start:"; cat "$WORK/server-$name.log"; exit 1; }
  local addr url size
  addr=$(cat "$WORK/addr")
  url="http://$addr/api/connections"
  size=$(curl -s -o /dev/null -w '%{size_download}' "$url")
  n=$(curl -s "$url" | grep -o '"connections":[0-9]*' | head -1)
  echo
  echo "== $name (churn every ${churn} ms; 0 = still): $url  body $size bytes  totals $n"
  for c in $CONNS; do
    local t=$THREADS
    (( c < t )) && t=$c
    echo "-- wrk -t$t -c$c -d${DURATION}s --latency"
    wrk -t"$t" -c"$c" -d"${DURATION}s" --timeout 10s --latency "$url" \
      | grep -E 'Latency|50%|90%|99%|Requests/sec|Transfer/sec|requests in|Non-2xx|Socket errors'
  done
  rm -f "$WORK/addr"
  wait "$SERVER_PID" || true
  SERVER_PID=
  grep -h 'rebuild after one change' "$WORK/server-$name.log" || true
}
run_case still 0
run_case busy "$CHURN_MS"
