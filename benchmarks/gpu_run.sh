#!/usr/bin/env bash
# The one command for a lent GPU machine (docs/benchmarks.md, "The first GPU run"): installs the wheels made by
# benchmarks/gpu_wheels.sh, then runs gpu_smoke.py under a time limit that leaves the device call its margin.
# Everything lands in $OUT: smoke/smoke.json, smoke/smoke.md, smoke.log, nvidia-smi.txt. Extra arguments go
# to gpu_smoke.py (e.g. --skip-compile when inductor's compile times would not fit).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || { echo "installing .whl failed"; exit 1; }
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
timeout "${SMOKE_SECONDS:-520}" python3 benchmarks/gpu_smoke.py --out "$OUT/smoke" "$@" 2>&1 | tee "$OUT/smoke.log" \
    | grep -v -i warn
status=${PIPESTATUS[0]}
[ "$status" = 124 ] && echo "gpu_smoke.py stopped at ${SMOKE_SECONDS:-520} s: smoke.json holds the sections done"
exit "$status"
