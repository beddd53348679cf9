#!/usr/bin/env bash
# Diffusion-prior separation (seeds/001) of two synthetic classes that overlap in
# frequency and differ in structure: harmonic tones and noise bursts
# (espnet2_ext.datagen.tones_bursts, 8 kHz, 1 s, sources at -25 ... -20 dBFS). One prior
# per class is trained on single clips; each test mixture (one clip of each class) is
# separated by guided reverse diffusion. Output 1 is the tone prior's, output 2 the
# burst prior's, so scores pair reference n with estimate n (--permutation false; true
# gives the paper's permutation search).
#
# Usage: ./run.sh [--stage N] [--stop_stage M] [options]
#   --data_opts "..."           options of python -m espnet2_ext.datagen.tones_bursts
#                               (clip counts, --fs, --seconds, --seed)
#   --num_test N                test mixtures (default 10)
#   and the options of the shared stages (diffsep.sh, listed below).
#
# Stages:
#   1 data generation                        -> data/{tones,bursts}_{train,valid},
#                                               data/{valid_mix,test}
#   2 tone and burst prior training          -> exp/prior_{tones,bursts}_<tag>
#   3 separation of the test mixtures        -> exp/separate_<tag>/<inference config>
#   4 scoring (SI-SNR, SI-SNRi per class)    -> exp/separate_<tag>/RESULTS.md
# local/evidence.sh runs the issue-13 comparison (all samplers, bounds) after stage 2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

data_opts=""
num_test=10

prepare_data() {
  log "Stage 1: tones and noise bursts -> $datadir"
  # shellcheck disable=SC2086
  ${python} -m espnet2_ext.datagen.tones_bursts --out "$datadir" --num_test "$num_test" \
    $data_opts
}

configure() {
  priors="tones bursts"
  source_names="tones bursts"
  results_title="Diffusion-prior separation of tones and noise bursts ($tag priors, permutation search: $permutation)"
}

. ./diffsep.sh --prior_config conf/prior.yaml --permutation false "$@"
