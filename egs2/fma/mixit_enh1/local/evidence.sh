#!/usr/bin/env bash
# The MixIT evidence of RESULTS_evidence.md (issue 13): local/compare.sh with the
# evidence's settings. Generated data (the recipes' embedded sets: 40 FMA-like MP3
# tracks for MixIT; MUSDB18-HQ-like songs, 12 train of which 2 validate, 8 test rendered
# with another soundfont), the tiny demo model, 3 seeds, 300 MixIT and 200 fine-tuning
# updates per run with the authors' released schedules shrunk to that budget; arms:
# fine-tuned, scratch, frozen, frozen-scratch, heads only.
#
#   nice -n 19 local/evidence.sh [--work /tmp/mixit_evidence] [--jobs 2]
#
# About 1 hour on the idle 2-core machine with 2 trainings at once (2026-12-07: 60 min
# wall, 114 CPU-min; RESULTS_evidence.md has the time of every run). Resumable: run it again after an interruption. The table:
# <work>/report/RESULTS.md; RESULTS_evidence.md is that table with a reading by hand.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

work=/tmp/mixit_evidence
jobs=2
. "$here/../utils/parse_options.sh"

exec "$here/compare.sh" --work "$work" --jobs "$jobs" --nj 2 \
  --songs demo --unlabeled demo --musdb_data_opts "--demo_test 8" \
  --size tiny --seeds "1 2 3" --mixit_steps 300 --finetune_steps 200 \
  --steps_per_epoch 20 --schedule released --scorer fast \
  --arms "finetune scratch frozen frozen_scratch heads"
