#!/usr/bin/env bash
# Install fbad (and, with `dev`, its test tools) into the current Python environment.
# Where a CPU build of torch lies on this machine's disk (pip's find-links), take it first so pip
# does not pull a multi-GB CUDA build; elsewhere torch comes from the index as usual (not capped).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extra=""
[ "${1:-}" = "dev" ] && extra="[dev]"
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0+cpu" 2>/dev/null \
    || echo "install.sh: no CPU torch wheel on disk; torch will come from the package index"
fi
"$PY" -m pip install -q -e ".${extra}"
