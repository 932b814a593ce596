#!/usr/bin/env bash
# Live benchmarks for netvigil, each reported against a peer or goal measured in the same go.
#
#  1. Socket-table snapshot with 10,000 sockets (5,000 loopback TCP connections):
#     `netvigil connections --bench BENCH_N` (one process, BENCH_N snapshots: the first cold,
#     the rest warm, as the monitor takes them every poll) vs `ss -tanpi`, run in turn REPEATS
#     times. Reported: median over the rounds of the cold time and of each round's warm median,
#     against the median `ss -tanpi` wall time. netvigil's times are measured inside the process
#     (no process start); the ss times are whole-process wall times.
#  2. Idle footprint of `netvigil run` with 1,000 idle loopback TCP connections over DURATION
#     seconds, under /usr/bin/time -v (CPU, peak RSS, voluntary context switches ~ wakeups):
#     a. capture on, --poll-ms POLL_MS (default: netvigil's own default, 5 s)
#     b. --no-capture, --poll-ms POLL_MS (default: netvigil's own, 2 s growing to 4 s when idle)
#     c. capture on, --poll-ms SLOW_POLL_MS (default 2000)
#
# Usage: scripts/bench-live.sh [BINARY]
#   env: DURATION=60  REPEATS=5  BENCH_N=21  SNAP_CONNS=5000  IDLE_CONNS=1000  POLL_MS=default  SLOW_POLL_MS=2000
#
# Needs root (AF_PACKET capture, process attribution of other processes' sockets), python3,
# ss (iproute2), /usr/bin/time. Traffic is loopback only; helper processes are killed on exit.
# Total time with the defaults: about 3 x DURATION plus a minute.
set -euo pipefail

BIN_SRC=${1:-target/release/netvigil}
DURATION=${DURATION:-60}
REPEATS=${REPEATS:-5}
BENCH_N=${BENCH_N:-21}
SNAP_CONNS=${SNAP_CONNS:-5000}
IDLE_CONNS=${IDLE_CONNS:-1000}
POLL_MS=${POLL_MS:-default}
SLOW_POLL_MS=${SLOW_POLL_MS:-2000}
HELPER_MAX_LIFE=$((DURATION * 4 + 600))   # helpers exit on their own after this, whatever happens

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

# Snapshot rounds: REPEATS times, `netvigil connections --bench BENCH_N` then `ss -tanpi` (wall
# time, stdout to /dev/null). Prints one line:
#   sockets cold_med cold_min cold_max warm_med warm_min warm_max ss_med ss_min ss_max
# cold_*: over the rounds' cold snapshots; warm_med: median of the rounds' warm medians;
# warm_min/max: extremes over every warm snapshot of every round.
snapshot_rounds() {
    python3 - "$REPEATS" "$BIN" "$BENCH_N" <<'EOF'
import re, statistics, subprocess, sys, time
reps, binary, n = int(sys.argv[1]), sys.argv[2], sys.argv[3]
pat = re.compile(r"snapshots: (\d+) of (\d+) sockets; cold ([\d.]+) ms; warm median ([\d.]+) ms \(min ([\d.]+), max ([\d.]+)\)")
cold, warm, wmin, wmax, ss, socks = [], [], [], [], [], []
for _ in range(reps):
    out = subprocess.run([binary, "connections", "--bench", n], capture_output=True, text=True, check=True).stdout
    m = pat.search(out)
    if not m:
        sys.exit(f"unexpected --bench output: {out!r}")
    socks.append(int(m.group(2)))
    cold.append(float(m.group(3))); warm.append(float(m.group(4)))
    wmin.append(float(m.group(5))); wmax.append(float(m.group(6)))
    t = time.perf_counter()
    subprocess.run(["ss", "-tanpi"], stdout=subprocess.DEVNULL, check=True)
    ss.append((time.perf_counter() - t) * 1000)
med = statistics.median
print(f"{min(socks)} {med(cold):.1f} {min(cold):.1f} {max(cold):.1f} {med(warm):.1f} {min(wmin):.1f} {max(wmax):.1f} "
      f"{med(ss):.1f} {min(ss):.1f} {max(ss):.1f}")
EOF
}

echo "netvigil live benchmark  $(date -u +%Y-%m-%dT%H:%MZ)  nproc=$(nproc)  kernel=$(uname -r)  load=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "binary: $BIN_SRC ($(stat -c %s "$BIN_SRC") bytes)"

# ---------------------------------------------------------------- 1. snapshot
echo "== 1. socket-table snapshot, $SNAP_CONNS connections, $REPEATS rounds of --bench $BENCH_N and ss -tanpi"
start_helpers "$SNAP_CONNS"
ss_lines=$(ss -tanH | wc -l)
read -r nv_socks cold_med cold_min cold_max warm_med warm_min warm_max ss_med ss_min ss_max < <(snapshot_rounds)
echo "   ss -tan lists $ss_lines TCP sockets; netvigil's snapshot holds $nv_socks sockets (TCP and UDP)"
stop_helpers

# ---------------------------------------------------------------- 2. idle footprint
idle_run() {  # $1 = label, $2 = poll ms, rest = extra args
    # prints "label cpu_s wall_s cpu_pct rss_mib user_s sys_s vcsw_per_s"
    local label=$1 poll=$2; shift 2
    /usr/bin/time -v -o "$WORK/time.$label" \
        "$BIN" run --events /dev/null --no-web --duration "$DURATION" \
        $([[ $poll == default ]] || echo "--poll-ms $poll") "$@" \
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
vcsw = int(f("Voluntary context switches"))
print(f"{label} {user + sys_:.2f} {wall_s:.1f} {100 * (user + sys_) / wall_s:.3f} {rss_mib:.1f} {user:.2f} {sys_:.2f} {vcsw / wall_s:.1f}")
EOF
}

start_helpers "$IDLE_CONNS"
declare -A CPU PCT RSS USR SYS VCSW
run_case() {  # $1 = label, $2 = poll ms, rest = extra args
    local label=$1 poll=$2 l cpu wall pct rss usr sys vcsw; shift 2
    echo "== 2. idle footprint, $IDLE_CONNS idle connections, ${DURATION}s: $label (--poll-ms $poll $*)"
    read -r l cpu wall pct rss usr sys vcsw < <(idle_run "$label" "$poll" "$@")
    CPU[$label]=$cpu PCT[$label]=$pct RSS[$label]=$rss USR[$label]=$usr SYS[$label]=$sys VCSW[$label]=$vcsw
    echo "   ${cpu} s CPU = ${pct}% of a core, peak RSS ${rss} MiB, ${vcsw} voluntary context switches/s"
}
run_case capture "$POLL_MS"
run_case nocapture "$POLL_MS" --no-capture
run_case capture_slow "$SLOW_POLL_MS"
stop_helpers

# ---------------------------------------------------------------- table
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
echo
echo "| measurement | netvigil | peer / goal | ratio |"
echo "|---|---|---|---|"
echo "| snapshot, $nv_socks sockets, warm (\`connections --bench $BENCH_N\`) | ${warm_med} ms (${warm_min}–${warm_max}) | \`ss -tanpi\` ${ss_med} ms (${ss_min}–${ss_max}) | **$(ratio "$warm_med" "$ss_med")** (goal ≤ 0.33) |"
echo "| snapshot, same, cold (first of the process) | ${cold_med} ms (${cold_min}–${cold_max}) | \`ss -tanpi\` ${ss_med} ms | $(ratio "$cold_med" "$ss_med") |"
row() {  # $1 = label, $2 = description
    local l=$1 d=$2
    echo "| idle \`run\`, $d, ${DURATION} s: CPU | ${CPU[$l]} s (user ${USR[$l]}, sys ${SYS[$l]}) = **${PCT[$l]} %** of a core; ${VCSW[$l]} wakeups/s | goal < 0.5 % | $(ratio "${PCT[$l]}" 0.5) of goal |"
    echo "| idle \`run\`, $d: peak RSS | **${RSS[$l]} MiB** | goal < 40 MiB | $(ratio "${RSS[$l]}" 40) |"
}
row capture "capture on, \`--poll-ms $POLL_MS\`"
row nocapture "\`--no-capture\`, \`--poll-ms $POLL_MS\`"
row capture_slow "capture on, \`--poll-ms $SLOW_POLL_MS\`"
echo "(snapshot: $REPEATS rounds in turn; netvigil times are in-process, per snapshot; ss times are whole-process wall times. wakeups/s: voluntary context switches from /usr/bin/time -v.)"
