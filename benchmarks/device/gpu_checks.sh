#!/usr/bin/env bash
# The CUDA checks, as one call on a lent GPU machine (docs/results/generate.md, "Fair GPU baselines"):
#   here:  bash benchmarks/device/fetch_wheels.sh
#   there: bash benchmarks/device/gpu_checks.sh        (device call with carry [".whl"], timeout_s 600)
# 1. every test marked gpu (engine CUDA graphs vs eager, the model on CUDA, bf16 RL steps, checkpoints, batching);
# 2. generation: thinkrl (CUDA-graph decode) vs transformers' plain generate and its fastest setup (static cache,
#    which makes generate compile its forward: torch.compile "reduce-overhead"), on a 0.5B model and a small one.
# Results land in $OUT (the device tool brings them back); the exit status is 1 if a step failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/thinkrl-gpu-checks}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_checks: no wheels in .whl/ (run benchmarks/device/fetch_wheels.sh here and carry .whl)"; exit 1; }
export PYTHONPATH="$PWD/src:$PWD/benchmarks:/tmp/site" PYTHONUNBUFFERED=1
{ nvidia-smi -L; python3 -c "import sys, torch, transformers; print(sys.version.split()[0], torch.__version__,
transformers.__version__, torch.cuda.get_device_name())"; date -u; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
status=0
# only the modules with gpu tests: collecting the rest would import packages the image lacks (ray, openai)
timeout 240 python3 -m pytest -q -m gpu -p no:cacheprovider $(grep -rl "pytest.mark.gpu" tests) \
    > "$OUT/tests_gpu.log" 2>&1 || status=1
tail -n 15 "$OUT/tests_gpu.log"
timeout 300 python3 benchmarks/bench_generate.py --device cuda --models 0.5b,small --repeats 2 --skip-long-tail \
    --transformers-setups dynamic,static-compile > "$OUT/generate_gpu.json" 2> "$OUT/generate_gpu.err" || status=1
tail -c 3000 "$OUT/generate_gpu.json"; grep -v "Loading weights" "$OUT/generate_gpu.err" | tail -n 20
exit $status
