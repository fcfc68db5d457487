#!/usr/bin/env bash
# The cold start's validation curve and stopping rule (docs/results/agents.md, "v2"): every checkpoint of one SFT run
# (trainer.save_every=150) is exported and evaluated greedily with tools on 100 validation problems (never the test
# set); one JSON line per checkpoint goes to RUN/validation.jsonl. The cold start is the FIRST checkpoint whose
# accuracy is >= THRESHOLD (0.3: the rule fixed for whole-pipeline seeds in the earlier session); later checkpoints
# of the same run are the continued-SFT control. Checkpoints already in validation.jsonl are not evaluated again (a
# run extended with trainer.resume=true trainer.steps=MORE adds only its new ones).
#   recipes/agents/validation_curve.sh RUN [THRESHOLD]      (RUN: the SFT run's output_dir)
set -euo pipefail
run=$1
threshold=${2:-0.3}
python=${PYTHON:-python}
touch "$run/validation.jsonl"
for ckpt in "$run"/checkpoints/step-*; do
    step=$((10#${ckpt##*step-}))
    grep -q "\"step\": $step," "$run/validation.jsonl" && continue
    hf="$run/hf/step$step"
    [ -f "$hf/config.json" ] || "$python" -m thinkrl export "$ckpt" "$hf" > /dev/null
    acc=$("$python" -m thinkrl.rollout.agent_eval --model "$hf" --recipe recipes/agents/tool_dapo.yaml \
        --validation 100 --greedy-only | "$python" -c "import json, sys; print(json.load(sys.stdin)['tools']['greedy']['accuracy'])")
    echo "{\"step\": $step, \"model\": \"$hf\", \"validation_greedy\": $acc}" | tee -a "$run/validation.jsonl"
done
"$python" - "$run/validation.jsonl" "$threshold" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
stop = next((row for row in rows if row["validation_greedy"] >= float(sys.argv[2])), None)
print(json.dumps({"cold_start": stop}))
PY
