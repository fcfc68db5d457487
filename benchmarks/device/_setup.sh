# Sourced by the device scripts (gpu_checks.sh, gpu_streaming.sh): from the repository root, install the wheels
# carried in .whl/ (benchmarks/device/fetch_wheels.sh), put src/ and benchmarks/ on the path and record the machine
# in "$OUT/machine.txt". Needs OUT set; exits 1 when the wheels are missing.
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "$(basename "$0"): no wheels in .whl/ (run benchmarks/device/fetch_wheels.sh here and carry .whl)"; exit 1; }
export PYTHONPATH="$PWD/src:$PWD/benchmarks:/tmp/site" PYTHONUNBUFFERED=1
{ nvidia-smi -L; python3 -c "import sys, torch, transformers; print(sys.version.split()[0], torch.__version__,
transformers.__version__, torch.cuda.get_device_name())"; date -u; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
