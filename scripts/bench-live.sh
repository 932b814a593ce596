#!/usr/bin/env bash
# Live benchmarks for netvigil, each reported against a peer run in the same go.
#
#  1. Socket-table snapshot with 10,000 sockets (5,000 loopback TCP connections):
#     `netvigil connections --json --all` (--all: loopback is hidden otherwise) vs `ss -tanpi` and `ss -tan` (median of N each, run in turn).
#     The fixed cost (process start, dpkg index, ...) is measured on an empty table first.
#  2. Idle footprint of `netvigil run` with 1,000 idle loopback TCP connections:
#     CPU time and peak RSS from /usr/bin/time -v over DURATION seconds.
#  3. The same with --no-capture (skip with --no-capture-run=0 / NO_CAPTURE_RUN=0).
#
# Usage: scripts/bench-live.sh [BINARY]
#   env: DURATION=60  REPEATS=5  SNAP_CONNS=5000  IDLE_CONNS=1000  NO_CAPTURE_RUN=1  POLL_MS=500
#
# Needs root (AF_PACKET capture, process attribution of other processes' sockets), python3,
# ss (iproute2), /usr/bin/time. Traffic is loopback only; helper processes are killed on exit.
set -euo pipefail

BIN_SRC=${1:-target/release/netvigil}
DURATION=${DURATION:-60}
REPEATS=${REPEATS:-5}
SNAP_CONNS=${SNAP_CONNS:-5000}
IDLE_CONNS=${IDLE_CONNS:-1000}
NO_CAPTURE_RUN=${NO_CAPTURE_RUN:-1}
POLL_MS=${POLL_MS:-500}
HELPER_MAX_LIFE=$((DURATION * 3 + 600))   # helpers exit on their own after this, whatever happens

[[ -x $BIN_SRC ]] || { echo "no binary at $BIN_SRC (cargo build --release)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "need /usr/bin/time (GNU time)" >&2; exit 1; }
command -v ss >/dev/null || { echo "need ss (iproute2)" >&2; exit 1; }

# Two helpers of 5,000 fds each plus slack: well under the hard limit of 20,000.
ulimit -n "$(( (SNAP_CONNS + 1000) < $(ulimit -Hn) ? SNAP_CONNS + 1000 : $(ulimit -Hn) ))"

WORK=$(mktemp -d /tmp/netvigil-bench.XXXXXX)
# Copy the binary so a concurrent `cargo build` cannot swap it mid-benchmark.
BIN=$WORK/netvigil
cp "$BIN_SRC" "$BIN"
SERVER_PID=""
CLIENT_PID=""
NETNS=""

stop_helpers() {
    local p
    for p in $CLIENT_PID $SERVER_PID; do
        kill "$p" 2>/dev/null || true
    done
    for p in $CLIENT_PID $SERVER_PID; do
        wait "$p" 2>/dev/null || true
    done
    CLIENT_PID=""
    SERVER_PID=""
}
cleanup() {
    stop_helpers
    [[ -n $NETNS ]] && ip netns delete "$NETNS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers
cat >"$WORK/helper.py" <<'EOF'
"""Hold N idle loopback TCP connections. Mode 'server': listen, accept N, write port file
before accepting. Mode 'client': connect N. Both write a ready file, then sleep until
killed or until MAX_LIFE seconds pass. No data is ever sent."""
import os, socket, sys, time
mode, n, portfile, readyfile, max_life = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
start = time.monotonic()
held = []
if mode == "server":
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(4096)
    ls.settimeout(60)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(ls.getsockname()[1]))
    os.rename(portfile + ".tmp", portfile)
    while len(held) < n and time.monotonic() - start < 120:
        c, _ = ls.accept()
        held.append(c)
    ls.close()
else:
    deadline = start + 60
    while not os.path.exists(portfile) and time.monotonic() < deadline:
        time.sleep(0.05)
    port = int(open(portfile).read())
    for _ in range(n):
        held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
if len(held) != n:
    sys.exit(f"{mode}: only {len(held)}/{n} connections")
open(readyfile, "w").close()
while time.monotonic() - start < max_life:
    time.sleep(1)
EOF

start_helpers() {  # $1 = number of connections
    local n=$1 i
    rm -f "$WORK/port" "$WORK"/ready.*
    python3 "$WORK/helper.py" server "$n" "$WORK/port" "$WORK/ready.server" "$HELPER_MAX_LIFE" &
    SERVER_PID=$!
    python3 "$WORK/helper.py" client "$n" "$WORK/port" "$WORK/ready.client" "$HELPER_MAX_LIFE" &
    CLIENT_PID=$!
    for ((i = 0; i < 1200; i++)); do   # at most 120 s
        [[ -e $WORK/ready.server && -e $WORK/ready.client ]] && break
        kill -0 "$SERVER_PID" 2>/dev/null && kill -0 "$CLIENT_PID" 2>/dev/null \
            || { echo "helper died" >&2; exit 1; }
        sleep 0.1
    done
    [[ -e $WORK/ready.server && -e $WORK/ready.client ]] || { echo "helpers not ready" >&2; exit 1; }
    sleep 1   # let the last handshakes settle
}

# Interleaved timing: run each labelled command once per round, REPEATS rounds; print medians (ms).
# Arguments: label=command ... (command run through bash -c, stdout to /dev/null).
time_medians() {
    python3 - "$REPEATS" "$@" <<'EOF'
import statistics, subprocess, sys, time
reps = int(sys.argv[1])
cmds = [a.split("=", 1) for a in sys.argv[2:]]
res = {label: [] for label, _ in cmds}
for _ in range(reps):
    for label, cmd in cmds:
        t = time.perf_counter()
        subprocess.run(["bash", "-c", cmd], stdout=subprocess.DEVNULL, check=True)
        res[label].append((time.perf_counter() - t) * 1000)
for label, _ in cmds:
    v = res[label]
    print(f"{label} {statistics.median(v):.1f} {min(v):.1f} {max(v):.1f}")
EOF
}

echo "netvigil live benchmark  $(date -u +%Y-%m-%dT%H:%MZ)  nproc=$(nproc)  kernel=$(uname -r)  load=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "binary: $BIN_SRC ($(stat -c %s "$BIN_SRC") bytes)"

# ---------------------------------------------------------------- 1. snapshot
echo "== 1. socket-table snapshot"
# Fixed cost: an empty socket table in a fresh network namespace (sock_diag is per netns;
# /proc attribution still walks this host's processes).
NETNS=nvbench$$
ip netns add "$NETNS"
{ read -r _ fixed_med _ _; read -r _ fixed_ss _ _; } < <(time_medians \
    "fixed=ip netns exec $NETNS $BIN connections --json --all" "fixed_ss=ip netns exec $NETNS ss -tanpi")
ip netns delete "$NETNS"; NETNS=""
echo "   empty table (fresh netns): netvigil ${fixed_med} ms, ss -tanpi ${fixed_ss} ms"

start_helpers "$SNAP_CONNS"
nv_lines=$("$BIN" connections --json --all | wc -l)
ss_lines=$(ss -tanH state established | wc -l)
echo "   $SNAP_CONNS connections up: ss sees $ss_lines established sockets, netvigil --all prints $nv_lines records"
declare -A MED MIN MAX
while read -r label med mn mx; do
    MED[$label]=$med MIN[$label]=$mn MAX[$label]=$mx
done < <(time_medians "netvigil_all=$BIN connections --json --all" "netvigil=$BIN connections --json" "ss_tanpi=ss -tanpi" "ss_tan=ss -tan")
stop_helpers

# ---------------------------------------------------------------- 2./3. idle footprint
idle_run() {  # $1 = label, rest = extra args; prints "label cpu_s wall_s cpu_pct rss_mib"
    local label=$1; shift
    /usr/bin/time -v -o "$WORK/time.$label" \
        "$BIN" run --events /dev/null --no-web --duration "$DURATION" --poll-ms "$POLL_MS" "$@" \
        >"$WORK/out.$label" 2>&1 || { echo "netvigil run failed:" >&2; tail "$WORK/out.$label" "$WORK/time.$label" >&2; exit 1; }
    python3 - "$label" "$WORK/time.$label" <<'EOF'
import re, sys
label, path = sys.argv[1], sys.argv[2]
t = open(path).read()
def f(key):
    return re.search(re.escape(key) + r":\s*(\S+)", t).group(1)
user, sys_ = float(f("User time (seconds)")), float(f("System time (seconds)"))
wall = f("Elapsed (wall clock) time (h:mm:ss or m:ss)")
parts = [float(p) for p in wall.split(":")]
wall_s = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
rss_mib = int(f("Maximum resident set size (kbytes)")) / 1024
print(f"{label} {user + sys_:.2f} {wall_s:.1f} {100 * (user + sys_) / wall_s:.3f} {rss_mib:.1f} {user:.2f} {sys_:.2f}")
EOF
}

start_helpers "$IDLE_CONNS"
echo "== 2. idle footprint, $IDLE_CONNS idle connections, ${DURATION}s, poll ${POLL_MS} ms (capture on)"
read -r _ cap_cpu cap_wall cap_pct cap_rss cap_user cap_sys < <(idle_run capture)
if [[ $NO_CAPTURE_RUN == 1 ]]; then
    echo "== 3. idle footprint, --no-capture"
    read -r _ noc_cpu noc_wall noc_pct noc_rss noc_user noc_sys < <(idle_run nocapture --no-capture)
fi
stop_helpers

# ---------------------------------------------------------------- table
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
echo
echo "| measurement | result | peer / goal | ratio |"
echo "|---|---|---|---|"
echo "| snapshot, empty table in a fresh netns (fixed cost, incl. ip netns exec) | ${fixed_med} ms | ss -tanpi ${fixed_ss} ms | $(ratio "$fixed_med" "$fixed_ss") |"
echo "| snapshot, $((2 * SNAP_CONNS)) sockets: netvigil connections --json --all | ${MED[netvigil_all]} ms (min ${MIN[netvigil_all]}, max ${MAX[netvigil_all]}) | ss -tanpi ${MED[ss_tanpi]} ms (min ${MIN[ss_tanpi]}, max ${MAX[ss_tanpi]}) | $(ratio "${MED[netvigil_all]}" "${MED[ss_tanpi]}") (goal ≤ 0.33) |"
echo "| snapshot, same: netvigil connections --json --all | ${MED[netvigil_all]} ms | ss -tan ${MED[ss_tan]} ms (min ${MIN[ss_tan]}, max ${MAX[ss_tan]}) | $(ratio "${MED[netvigil_all]}" "${MED[ss_tan]}") |"
echo "| snapshot, same: netvigil connections --json (loopback hidden, prints 0) | ${MED[netvigil]} ms (min ${MIN[netvigil]}, max ${MAX[netvigil]}) | ss -tanpi ${MED[ss_tanpi]} ms | $(ratio "${MED[netvigil]}" "${MED[ss_tanpi]}") |"
echo "| idle run, capture, ${DURATION}s: CPU | ${cap_cpu} s (user ${cap_user}, sys ${cap_sys}) = ${cap_pct}% of a core | goal < 0.5% | $(ratio "$cap_pct" 0.5) of goal |"
echo "| idle run, capture: peak RSS | ${cap_rss} MiB | goal < 40 MiB | $(ratio "$cap_rss" 40) of goal |"
if [[ $NO_CAPTURE_RUN == 1 ]]; then
echo "| idle run, --no-capture, ${DURATION}s: CPU | ${noc_cpu} s (user ${noc_user}, sys ${noc_sys}) = ${noc_pct}% of a core | goal < 0.5% | $(ratio "$noc_pct" 0.5) of goal |"
echo "| idle run, --no-capture: peak RSS | ${noc_rss} MiB | goal < 40 MiB | $(ratio "$noc_rss" 40) of goal |"
fi
echo "(snapshot: median of $REPEATS, commands run in turn; records printed by netvigil --all: $nv_lines)"
