#!/usr/bin/env bash
# Issue #14's throughput target on a GPU, as one device call after gpu_checks.sh (docs/results/streaming.md, twelfth
# pass): on this 2-core CPU a decode step's cost grows with its rows, which bounds streaming below 2x the sync
# (the `bound` section of `bench streaming`); on a GPU a step of a small model costs about the same at 6 rows or
# 13. Same workload as the CPU runs; the engine replays CUDA graphs, so the _compiled modes are not needed.
#   here:  bash benchmarks/device/fetch_wheels.sh
#   there: bash benchmarks/device/gpu_streaming.sh      (device call with carry [".whl"], timeout_s 300; after
#          gpu_checks.sh on the same warm machine when status says >= 300 s of device time are left)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/thinkrl-gpu-streaming}
source benchmarks/device/_setup.sh
export OMP_NUM_THREADS=1
timeout 270 python3 benchmarks/bench_streaming.py --device cuda --short-len 32 --steps 20 --rounds 1 \
    --placements thread,process --modes sync,stream_eta1,stream_eta2,stream_eta2_2xslots \
    --out "$OUT/streaming_gpu.json" > "$OUT/streaming_gpu.out" 2> "$OUT/streaming_gpu.err"
status=$?
grep -v Warning "$OUT/streaming_gpu.err" | tail -n 30
python3 -c "import json; r = json.load(open('$OUT/streaming_gpu.json')); print(json.dumps({k: r[k] for k in
('best_sync', 'ratio_vs_best_sync', 'ratio_median_of_rounds')}, indent=1))" 2>/dev/null
exit $status
