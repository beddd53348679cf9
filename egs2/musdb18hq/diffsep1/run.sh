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
#   --prior_config FILE         training config of every prior (default conf/prior.yaml)
#   --train_args "..."          extra options of espnet2_ext.bin.diffusion_prior_train
#   --ngpu N                    GPUs for training
#   --inference_model FILE      checkpoint to separate with (default valid.loss.best.pth)
#   --inference_configs "..."   sampler configs (default: paper, DPS, DSG, noise init)
#   --inference_args "..."      extra options of espnet2_ext.bin.diffusion_separate
#   --permutation BOOL          score with permutation search (default false)
#   --device cpu|cuda           device of the separation
#
# Stages:
#   1 data: generate songs (if --data generated), segment stems, make test mixtures
#   2 one prior per stem                     -> exp/prior_<stem>_<tag>
#   3 separation of the test mixtures        -> exp/separate_<tag>/<inference config>
#   4 scoring (SI-SNR, SI-SNRi per stem)     -> exp/separate_<tag>/RESULTS.md
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (run.sh:${BASH_LINENO[0]}) $*"; }

stage=1
stop_stage=4
data=generated
gen_opts="--num-train 12 --num-test 4 --duration 30 --seed 0"
data_opts=""
stems="vocals bass drums other"
num_test=100
prior_config=conf/prior.yaml
train_args=""
ngpu=0
tag=""
inference_model=valid.loss.best.pth
inference_configs="conf/separate_paper.yaml conf/separate_dps.yaml conf/separate_dsg.yaml conf/separate_noise_init.yaml"
inference_args=""
permutation=false
device=cpu
datadir=data
expdir=exp

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    --*)
      name=${1#--}; name=${name//-/_}
      if ! declare -p "$name" >/dev/null 2>&1 || [ $# -lt 2 ]; then
        echo "$0: unknown option or missing value: $1 (see --help)" >&2; exit 1
      fi
      printf -v "$name" '%s' "$2"; shift 2 ;;
    *) echo "$0: unexpected argument $1" >&2; exit 1 ;;
  esac
done

. ./path.sh
. ./db.sh
[ -n "$tag" ] || tag=$(basename "${prior_config%.*}")
sep_exp=$expdir/separate_$tag

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
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
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  for stem in $stems; do
    out=$expdir/prior_${stem}_$tag
    log "Stage 2: $stem prior training -> $out"
    mkdir -p "$out"
    # shellcheck disable=SC2086
    ${python} -m espnet2_ext.bin.diffusion_prior_train \
      --config "$prior_config" --ngpu "$ngpu" --output_dir "$out" \
      --train_data_path_and_name_and_type "$datadir/${stem}_train/wav.scp,speech_ref1,sound" \
      --train_shape_file "$datadir/${stem}_train/speech_ref1_shape" \
      --valid_data_path_and_name_and_type "$datadir/${stem}_valid/wav.scp,speech_ref1,sound" \
      --valid_shape_file "$datadir/${stem}_valid/speech_ref1_shape" \
      ${train_args} 2>&1 | tee "$out/train.log"
  done
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  priors=()
  for stem in $stems; do
    priors+=(--prior_train_config "$expdir/prior_${stem}_$tag/config.yaml"
             --prior_model_file "$expdir/prior_${stem}_$tag/$inference_model")
  done
  for config in $inference_configs; do
    name=$(basename "${config%.*}")
    log "Stage 3: separation ($name) -> $sep_exp/$name"
    mkdir -p "$sep_exp/$name"
    # shellcheck disable=SC2086
    ${python} -m espnet2_ext.bin.diffusion_separate --config "$config" \
      --data_path_and_name_and_type "$datadir/test/wav.scp,speech_mix,sound" \
      --output_dir "$sep_exp/$name" --device "$device" "${priors[@]}" ${inference_args} \
      >"$sep_exp/$name/separate.log" 2>&1 \
      || { echo "$0: separation failed, see $sep_exp/$name/separate.log" >&2; exit 1; }
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  num_src=$(echo "$stems" | wc -w)
  refs=$(for n in $(seq 1 "$num_src"); do echo -n "$datadir/test/spk$n.scp "; done)
  header="| method | mixtures | SI-SNR (dB) | SI-SNRi (dB) |"
  rule="|---|---|---|---|"
  for stem in $stems; do header+=" SI-SNRi $stem |"; rule+="---|"; done
  {
    echo "# Diffusion-prior separation of music stems ($tag priors, $data data, permutation search: $permutation)"
    echo
    echo "$header"
    echo "$rule"
  } >"$sep_exp/RESULTS.md"
  for config in $inference_configs; do
    name=$(basename "${config%.*}")
    ests=$(for n in $(seq 1 "$num_src"); do echo -n "$sep_exp/$name/spk$n.scp "; done)
    log "Stage 4: scoring $name"
    # shellcheck disable=SC2086
    ${python} local/score.py --mix "$datadir/test/wav.scp" --ref $refs --est $ests \
      --out "$sep_exp/$name/scoring" --name "$name" --permutation "$permutation" \
      | tee -a "$sep_exp/RESULTS.md"
  done
  log "Results: $sep_exp/RESULTS.md"
fi
