#!/usr/bin/env bash
# The CUDA checks, as one call on a lent GPU machine (docs/results/generate.md, "Fair GPU baselines"):
#   here:  bash benchmarks/device/fetch_wheels.sh
#   there: bash benchmarks/device/gpu_checks.sh        (device call with carry [".whl"], timeout_s 600)
# 1. every test marked gpu (engine CUDA graphs vs eager, the model on CUDA, a bf16 training step, checkpoints,
#    batching), then `thinkrl sft` + `thinkrl train` in bf16 on the GPU for a few steps;
# 2. generation: thinkrl (CUDA-graph decode) vs transformers' plain generate and its fastest setup (static cache,
#    which makes generate compile its forward: torch.compile "reduce-overhead"), on a 0.5B model and a small one.
# Results land in $OUT (the device tool brings them back); the exit status is 1 if a step failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/thinkrl-gpu-checks}
source benchmarks/device/_setup.sh
status=0
# only the modules with gpu tests: collecting the rest would import packages the image lacks (ray, openai)
timeout 150 python3 -m pytest -q -m gpu -p no:cacheprovider $(grep -rl "pytest.mark.gpu" tests) \
    > "$OUT/tests_gpu.log" 2>&1 || status=1
tail -n 15 "$OUT/tests_gpu.log"
# a bf16 SFT then RL run end to end on the GPU (recipes/tiny_*.yaml, a few steps; metrics.jsonl comes back)
run=/tmp/thinkrl-bf16
timeout 120 bash -c "python3 -m thinkrl sft recipes/tiny_sft.yaml model.device=cuda model.dtype=bfloat16 \
    trainer.steps=30 trainer.output_dir=$run/sft && python3 -m thinkrl train recipes/tiny_dapo.yaml \
    model.path=$run/sft/final model.device=cuda model.dtype=bfloat16 trainer.steps=5 trainer.eval_every=0 \
    trainer.save_every=0 trainer.output_dir=$run/rl" > "$OUT/bf16_run.log" 2>&1 || status=1
tail -n 5 "$OUT/bf16_run.log"; cp "$run/rl/metrics.jsonl" "$OUT/bf16_rl_metrics.jsonl" 2>/dev/null
timeout 280 python3 benchmarks/bench_generate.py --device cuda --models 0.5b,small --repeats 2 --skip-long-tail \
    --transformers-setups dynamic,static-compile > "$OUT/generate_gpu.json" 2> "$OUT/generate_gpu.err" || status=1
tail -c 3000 "$OUT/generate_gpu.json"; grep -v "Loading weights" "$OUT/generate_gpu.err" | tail -n 20
exit $status
