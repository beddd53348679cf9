#!/usr/bin/env bash
# The README's test command: sets up .venv/ on a fresh machine (tools/setup_venv.sh; a
# no-op when it is up to date) and runs the test suite. Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash tools/setup_venv.sh
# Two worker processes (pytest-xdist; PYTEST_WORKERS=1: one process), a test file per
# worker at a time so that a file's module fixtures are built once, one thread each: the
# 2-core CI machine's cores.
workers=${PYTEST_WORKERS:-2}
if [ "$workers" -gt 1 ]; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  set -- -n "$workers" --dist loadfile "$@"
else
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
fi
exec .venv/bin/python -m pytest tests "$@"
