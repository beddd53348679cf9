#!/usr/bin/env bash
# The README's main-job command: sets up .venv/ (tools/setup_venv.sh), generates the
# embedded MUSDB18-HQ-like data set and runs the MUSDB18-HQ recipe end to end on it —
# data preparation, segmenting, statistics, training, whole-song inference, scoring and
# packing — then prints the results table. Extra arguments go to the recipe's run.sh
# (e.g. --stage 5 to re-run from inference).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/tools/setup_venv.sh"
cd "$root/egs2/musdb18hq/enh1"
start=$(date +%s)
./run.sh --demo true --stop_stage 7 "$@"
echo
echo "=== egs2/musdb18hq/enh1/exp/enh_demo/RESULTS.md ($(( $(date +%s) - start )) s) ==="
cat exp/enh_demo/RESULTS.md
