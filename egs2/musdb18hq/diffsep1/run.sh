#!/usr/bin/env bash
# Music variant of unsupervised separation with diffusion source priors (seeds/001): one
# prior per MUSDB18-HQ stem (vocals, bass, drums, other) trained on single stems, then
# test mixtures of the stems (16 kHz mono, 4 s, each stem at -25 ... -20 dBFS) separated by
# guided reverse diffusion. Output n is stem n (the priors fix the order), so scores pair
# reference n with estimate n (--permutation false); set --permutation true for the
# paper's permutation search.
#
# Usage: ./run.sh [--stage N] [--stop_stage M] [options]
#   --data generated|real       generated (default): MUSDB18-HQ-like songs from
#                               espnet2_ext.datagen.musdb_like (FluidSynth, espeak-ng);
#                               real: MUSDB18-HQ (db.sh)
#   --gen_opts "..."            options of espnet2_ext.datagen.musdb_like
#   --data_opts "..."           extra options of local/data_prep.py
#   --stems "..."               stems to separate (default: vocals bass drums other)
#   --num_test N                test mixtures (default 100)
#   and the options of the shared stages (diffsep.sh, listed below).
#
# Stages:
#   1 data: generate songs (if --data generated), segment stems, make test mixtures
#   2 one prior per stem                     -> exp/prior_<stem>_<tag>
#   3 separation of the test mixtures        -> exp/separate_<tag>/<inference config>
#   4 scoring (SI-SNR, SI-SNRi per stem)     -> exp/separate_<tag>/RESULTS.md
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

data=generated
gen_opts="--num-train 12 --num-test 4 --duration 30 --seed 0"
data_opts=""
stems="vocals bass drums other"
num_test=100

prepare_data() {
  local root
  if [ "$data" = generated ]; then
    root=downloads/musdb_like
    log "Stage 1: generating MUSDB18-HQ-like songs -> $root"
    # shellcheck disable=SC2086
    ${python} -m espnet2_ext.datagen.musdb_like --out "$root" $gen_opts
  else
    root=$MUSDB18HQ
  fi
  log "Stage 1: stem segments and test mixtures ($stems) -> $datadir"
  # shellcheck disable=SC2086
  ${python} local/data_prep.py --musdb_root "$root" --out "$datadir" --stems $stems \
    --num_test "$num_test" $data_opts
}

configure() {
  priors=$stems
  source_names=$stems
  results_title="Diffusion-prior separation of music stems ($tag priors, $data data, permutation search: $permutation)"
}

. ./diffsep.sh --permutation false "$@"
