#!/usr/bin/env bash
# The README's test command: sets up .venv/ on a fresh machine (tools/setup_venv.sh; a
# no-op when it is up to date) and runs the test suite. Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash tools/setup_venv.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python -m pytest tests "$@"
