#!/usr/bin/env bash
# Engine benchmark, side by side in one interleaved run (the machine is noisy: read ratios):
#   1. `hostrt run --rm busybox true` vs `podman run --rm` of the same image (and runc/crun
#      running a bare bundle, for the floor);
#   2. 50 detached `sleep 1000` containers: wall time for hostrt vs crun, and the PSS of
#      hostrt's monitor per container (read from /proc/PID/smaps_rollup).
# Needs root, podman + conmon, and the shared timers (BENCH_DIR, default ../shared/bench).
# Usage: tests/bench/bench_engine.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-20}
bench=${BENCH_DIR:-$(cd .. && pwd)/shared/bench}
hostrt=${HOSTRT:-.venv/bin/hostrt}
work=$(mktemp -d /tmp/hostrt-bench.XXXXXX)
export HOSTRT_ROOT=$work/root
cleanup() {
  "$hostrt" rm -f $("$hostrt" ps -aq) >/dev/null 2>&1 || true
  podman --root "$work/podman" --runroot "$work/podman-run" rmi -af >/dev/null 2>&1 || true
  for m in $(grep -o "$work[^ ]*" /proc/self/mounts | sort -r); do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"$hostrt" image build images/busybox >/dev/null
# The same image for podman: our store is an OCI layout that skopeo reads.
export CONTAINERS_CONF=$bench/podman/containers.conf
podman_cmd="podman --root $work/podman --runroot $work/podman-run --storage-driver overlay"
skopeo copy -q "oci:$HOSTRT_ROOT/store:busybox:latest" "containers-storage:[overlay@$work/podman+$work/podman-run]docker.io/library/busybox:latest"
bash "$bench/mkbundle.sh" "$work/bundle" >/dev/null

echo "== run --rm busybox true ($rounds rounds, interleaved)"
python3 "$bench/bench_cmds.py" -n "$rounds" \
  "hostrt=$hostrt run --rm --pull never busybox true" \
  "podman=$podman_cmd run --rm --network none busybox true" \
  "runc-bundle=runc --root $work/runc run -b $work/bundle bench-runc" \
  "hostrt-runtime-bundle=$(dirname "$hostrt")/hostrt-runtime --root $work/hr run -b $work/bundle bench-hr"

echo "== 50 detached sleep 1000"
start=$(date +%s.%N)
for i in $(seq 50); do "$hostrt" run -d --pull never busybox sleep 1000 >/dev/null; done
end=$(date +%s.%N)
monitor=$(pgrep -f "hostrt.engine.monitor --socket $HOSTRT_ROOT")
pss=$(awk '/^Pss:/ {print $2}' "/proc/$monitor/smaps_rollup")
echo "hostrt: 50 run -d in $(echo "$end - $start" | bc) s; monitor PSS ${pss} kB = $(echo "scale=3; $pss / 50 / 1024" | bc) MB per container"
"$hostrt" rm -f $("$hostrt" ps -aq) >/dev/null
start=$(date +%s.%N)
for i in $(seq 50); do
  crun --root "$work/crun" run -d -b "$work/bundle" "c$i" >/dev/null 2>&1 || { echo "crun refused to run here (hybrid cgroups: see ../shared/bench/README.md)"; break; }
done
end=$(date +%s.%N)
echo "crun: 50 run -d in $(echo "$end - $start" | bc) s"
for i in $(seq 50); do crun --root "$work/crun" delete -f "c$i" >/dev/null 2>&1 || true; done
