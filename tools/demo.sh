#!/usr/bin/env bash
# The README's main-job command: sets up .venv/ (tools/setup_venv.sh), generates the
# embedded MUSDB18-HQ-like data set and runs the MUSDB18-HQ recipe end to end on it with
# the demo model (run.sh --data demo --size tiny) — ESPnet's stages 1 data preparation,
# 3-4 segmenting and validation crops, 5 statistics, 6 training (epochs, losses and time
# left on the console), 7 whole-song inference, 8 scoring and 11 packing — then prints
# the results table. Extra arguments go to the recipe's run.sh (e.g. --stage 7 to re-run
# from inference).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/tools/setup_venv.sh"
cd "$root/egs2/musdb18hq/enh1"
start=$(date +%s)
./run.sh --data demo --size tiny --stop_stage 11 "$@"
echo
echo "=== egs2/musdb18hq/enh1/exp/enh_demo/RESULTS.md ($(( $(date +%s) - start )) s) ==="
cat exp/enh_demo/RESULTS.md
