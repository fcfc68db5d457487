#!/usr/bin/env bash
# Run here (a machine with PyPI): download the wheels that the lent GPU machine's image lacks into .whl/ (git-ignored;
# name it in the device call's `carry`). That image holds Python 3.12, CUDA PyTorch and transformers but not
# pydantic or the server's packages, and it cannot reach PyPI. Versions: those of this checkout's .venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    "pydantic==$(version pydantic)" "pydantic_core==$(version pydantic_core)" \
    "annotated-types==$(version annotated-types)" "typing-inspection==$(version typing-inspection)" \
    "fastapi==$(version fastapi)" "starlette==$(version starlette)" "uvicorn==$(version uvicorn)"
ls .whl
