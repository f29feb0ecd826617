#!/usr/bin/env bash
# hostrt-runtime beside runc and crun, in one interleaved run (the machine is noisy: read
# the pairwise ratios and minimums, and re-run when `uptime` shows a high load):
#   1. `RT run` of a busybox /bin/true bundle, and create / start / wait / delete phases
#      (the shared bench_runtime.py, under the cgroup view crun needs on a hybrid host);
#   2. pairwise-median ratios of run and of create+start+delete against runc and crun;
#   3. peak RSS of every invocation (the shared rt_mem.sh), hostrt-runtime against runc.
# Needs root, runc, crun, busybox-static and the shared timers: BENCH_DIR (default
# ../shared/bench). BASELINE=/path/to/bin/other-name adds another hostrt-runtime (an
# older build's launcher copied under another name in its own environment's bin/, as
# the table labels runtimes by file name).
# Usage: tests/bench/bench_runtime_peers.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-30}
bench=${BENCH_DIR:-$(cd .. && pwd)/shared/bench}
if [ ! -f "$bench/bench_runtime.py" ] || [ ! -f "$bench/rt_mem.sh" ]; then
  echo "bench_runtime_peers: no bench_runtime.py/rt_mem.sh in $bench; set BENCH_DIR to the shared bench directory" >&2
  exit 2
fi
hostrt=$(pwd)/.venv/bin/hostrt-runtime
runtimes=("$(command -v runc)" "$(command -v crun)" "$hostrt")
[ -n "${BASELINE:-}" ] && runtimes+=("$BASELINE")
work=$(mktemp -d /tmp/hostrt-rtbench.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "# $(date -u +%FT%TZ) $(uptime | sed 's/.*load/load/') rounds=$rounds"
python3 "$bench/bench_runtime.py" -n "$rounds" --legacy-cgroup-view --json "$work/times.json" "${runtimes[@]}"

python3 - "$work/times.json" "${runtimes[@]}" <<'EOF'
import json, os, statistics, sys

data = json.load(open(sys.argv[1]))
names = [os.path.basename(r) for r in sys.argv[2:]]


def per_round(name: str, what: str) -> list[float]:
    if what == "c+s+d":
        parts = [data[f"{name} {p}"]["raw"] for p in ("create", "start", "delete")]
        return [sum(x) for x in zip(*parts)]
    return data[f"{name} {what}"]["raw"]


print("\npairwise-median ratios (same round), and medians / minimums in ms")
for what in ("run", "c+s+d"):
    for name in names:
        xs = per_round(name, what)
        line = f"{name:>16} {what:6} median {statistics.median(xs):7.1f} min {min(xs):7.1f}"
        for peer in names[:2]:
            if peer != name:
                ratio = statistics.median(x / y for x, y in zip(xs, per_round(peer, what)))
                line += f"  /{peer} {ratio:4.2f}"
        print(line)
EOF

echo
for rt in "${runtimes[@]}"; do
  unshare -m --propagation private sh -c 'umount -l /sys/fs/cgroup/unified 2>/dev/null || true; exec sh "$0" "$1" 9' \
    "$bench/rt_mem.sh" "$rt"
done
