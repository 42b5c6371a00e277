#!/usr/bin/env bash
# One entry point that sets itself up: `bash run.sh demo` runs the main job, `bash run.sh test`
# the test suite, `bash run.sh lint` the linter. The first run creates .venv; a torch that is
# already installed is kept.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PYTHON=${PYTHON:-python3}

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    if "$PYTHON" -c "import torch" >/dev/null 2>&1; then
      # Reuse the torch this Python already has (e.g. a CUDA build) instead of replacing it.
      "$PYTHON" -m venv --system-site-packages "$VENV"
    else
      "$PYTHON" -m venv "$VENV"
    fi
  fi
  if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    "$VENV/bin/pip" install --quiet -c constraints.txt torch
  fi
  if ! "$VENV/bin/python" -c "import ganprior_core, numpy, PIL, safetensors, pytest, skimage, hypothesis" >/dev/null 2>&1 \
      || [ ! -x "$VENV/bin/ruff" ]; then
    "$VENV/bin/pip" install --quiet -c constraints.txt -e ".[test]"
  fi
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
  demo) setup; exec "$VENV/bin/python" -m ganprior_core demo "$@" ;;
  test) setup; [ $# -gt 0 ] || set -- tests; exec "$VENV/bin/python" -m pytest -q "$@" ;;
  lint) setup; exec "$VENV/bin/ruff" check . ;;
  *) echo "usage: bash run.sh demo [options] | bash run.sh test [test paths and pytest options; default: tests] | bash run.sh lint" >&2; exit 2 ;;
esac
