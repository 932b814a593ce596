#!/usr/bin/env bash
# Footprint of the whole monitor (`netvigil run`: capture, owners, judgement, history store,
# dashboard, alert delivery) under browsing-sized traffic: CAPTURE replayed by tcpreplay at
# MBPS Mbit/s, looping, for DURATION seconds, from one network namespace into a veth pair; netvigil
# captures on the other end. Both namespaces are made and removed here; nothing leaves them.
#
# Usage: scripts/bench-footprint.sh [BINARY]
#   env: CAPTURE=/tmp/big.pcap (../shared/bench/make-big-pcap.py makes it)  DURATION=600  MBPS=0.25
# Needs root, iproute2, tcpreplay, /usr/bin/time. Prints CPU (share of a core), peak RSS and what
# netvigil said it did. Goal (issue #8): mean CPU under 1 % of a core, RSS under 50 MiB.
set -euo pipefail
BIN_SRC=${1:-target/release/netvigil}
CAPTURE=${CAPTURE:-/tmp/big.pcap}
DURATION=${DURATION:-600}
MBPS=${MBPS:-0.25}
[[ -x $BIN_SRC ]] || { echo "no binary at $BIN_SRC (cargo build --release)" >&2; exit 1; }
[[ -r $CAPTURE ]] || { echo "no capture at $CAPTURE (python3 ../shared/bench/make-big-pcap.py $CAPTURE)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/netvigil-footprint.XXXXXX)
BIN=$WORK/netvigil
cp "$BIN_SRC" "$BIN"
A=nvfpA$$ B=nvfpB$$
cleanup() { ip netns del "$A" 2>/dev/null || true; ip netns del "$B" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$A"; ip netns add "$B"
ip link add vA netns "$A" type veth peer name vB netns "$B"
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set vA mtu 9000 up
ip -n "$B" link set vB mtu 9000 up
: > "$WORK/config.toml"
echo "netvigil footprint  $(date -u +%FT%TZ)  nproc=$(nproc)  load=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "capture: $CAPTURE looped at $MBPS Mbit/s for $DURATION s"
ip netns exec "$B" /usr/bin/time -v -o "$WORK/time" "$BIN" --config "$WORK/config.toml" run -i vB \
    --events /dev/null --data-dir "$WORK/data" --listen 127.0.0.1:18099 --no-rdns \
    --duration "$DURATION" 2> "$WORK/err" &
NV=$!
sleep 2
ip netns exec "$A" timeout "$((DURATION - 3))" tcpreplay -q -i vA --mbps "$MBPS" --loop 0 "$CAPTURE" \
    > "$WORK/replay" 2>&1 || true
# Where the memory is at the end of the traffic: anonymous (heap), file (the binary and
# libraries) and shared (the kernel's capture ring).
NVPID=$(pgrep -P "$NV" -f "$BIN" | head -n 1 || true)
[[ -n $NVPID ]] && grep -E "^(VmRSS|RssAnon|RssFile|RssShmem)" "/proc/$NVPID/status" | tr -s ' \t' ' ' | paste -sd ' ' || true
wait "$NV"
python3 - "$WORK/time" "$DURATION" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
f = lambda k: re.search(re.escape(k) + r":\s*(\S+)", t).group(1)
cpu = float(f("User time (seconds)")) + float(f("System time (seconds)"))
wall = sum(float(p) * 60 ** i for i, p in enumerate(reversed(f("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":"))))
rss = int(f("Maximum resident set size (kbytes)")) / 1024
print(f"netvigil: {cpu:.2f} s CPU in {wall:.0f} s = {100 * cpu / wall:.3f} % of a core; peak RSS {rss:.1f} MiB")
PY
grep -E "stopped|history:" "$WORK/err" || true
tail -n 3 "$WORK/replay" || true
du -sh "$WORK/data" | sed 's/^/history on disk: /'
rm -rf "$WORK"
