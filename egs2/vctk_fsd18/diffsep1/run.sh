#!/usr/bin/env bash
# Unsupervised speech / sound-event separation with diffusion source priors (seeds/001):
# a speech prior and a sound-event prior are trained on single sources, then every test
# mixture (speech + events, 16 kHz, 4 s, sources at -25 ... -20 dBFS) is separated by
# guided reverse diffusion and scored by SI-SNR with permutation search.
#
# Usage: ./run.sh [--stage N] [--stop_stage M] [options]
#   --data embedded|real        embedded (default): espeak-ng speech and FluidSynth-rendered
#                               sound events, no download; real: VCTK + FSDKaggle2018 (db.sh)
#   --data_opts "..."           extra options of local/data_prep.py (sizes, seeds)
#   --num_test N                test mixtures (default 100)
#   --sfx_conditional BOOL      class-conditional sound-event prior (default true, as the
#                               paper's); with --oracle_categories true (the default here)
#                               the event prior is given the true event classes of each
#                               test mixture, as the authors' code does;
#                               --oracle_categories false is the label-free run ("no class")
#   and the options of the shared stages (diffsep.sh, listed below).
#
# Stages:
#   1 data preparation (local/data_prep.py)   -> data/{speech,sfx}_{train,valid}, data/test
#   2 speech and sound-event prior training   -> exp/prior_{speech,sfx}_<tag>
#   3 separation of the test mixtures         -> exp/separate_<tag>/<inference config>
#   4 scoring (SI-SNR, SI-SNRi)               -> exp/separate_<tag>[_oracle_labels]/RESULTS.md
# local/evidence.sh runs stages 3-4 with and without the oracle labels, side by side.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

data=embedded
data_opts=""
num_test=100
sfx_conditional=true

prepare_data() {
  log "Stage 1: data preparation ($data) -> $datadir"
  local opts="--num_test $num_test"
  if [ "$data" = real ]; then
    opts+=" --mode real --vctk_root $VCTK --fsd_root $FSD18"
  fi
  # shellcheck disable=SC2086
  ${python} local/data_prep.py --out "$datadir" $opts $data_opts
}

configure() {
  # source 1 is speech, every further source of a test mixture a sound event
  priors="speech sfx"
  if [ "$sfx_conditional" = true ]; then
    conditional_priors=sfx
  fi
  results_title="Diffusion-prior separation ($tag priors, $data data)"
}

. ./diffsep.sh --oracle_categories true "$@"
