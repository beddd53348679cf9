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
#   --prior_config FILE         training config of both priors (default conf/prior.yaml,
#                               the paper's size; conf/prior_tiny.yaml runs on a CPU)
#   --sfx_conditional BOOL      class-conditional sound-event prior (default false)
#   --oracle_categories BOOL    condition the event prior on the true event classes of each
#                               test mixture, as the paper does (needs --sfx_conditional true)
#   --train_args "..."          extra options of espnet2_ext.bin.diffusion_prior_train
#   --ngpu N                    GPUs for training (0: CPU)
#   --inference_model FILE      checkpoint to separate with (default valid.loss.best.pth)
#   --inference_configs "..."   sampler configs to run (default: the paper's method and
#                               the DPS, DSG and noise-initialisation baselines)
#   --inference_args "..."      extra options of espnet2_ext.bin.diffusion_separate
#   --nj N                      parallel separation jobs (default 1)
#   --device cpu|cuda           device of the separation
#
# Stages:
#   1 data preparation (local/data_prep.py)   -> data/{speech,sfx}_{train,valid}, data/test
#   2 speech prior training                   -> exp/prior_speech_<tag>
#   3 sound-event prior training              -> exp/prior_sfx_<tag>
#   4 separation of the test mixtures         -> exp/separate_<tag>/<inference config>
#   5 scoring (SI-SNR, SI-SNRi)               -> exp/separate_<tag>/RESULTS.md
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (run.sh:${BASH_LINENO[0]}) $*"; }

stage=1
stop_stage=5
data=embedded
data_opts=""
num_test=100
prior_config=conf/prior.yaml
sfx_conditional=false
oracle_categories=false
train_args=""
ngpu=0
tag=""
inference_model=valid.loss.best.pth
inference_configs="conf/separate_paper.yaml conf/separate_dps.yaml conf/separate_dsg.yaml conf/separate_noise_init.yaml"
inference_args=""
nj=1
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
speech_exp=$expdir/prior_speech_$tag
sfx_exp=$expdir/prior_sfx_$tag
sep_exp=$expdir/separate_$tag

train_prior() {  # $1 = data name (speech|sfx), $2 = exp dir, $3... = extra options
  local name=$1 out=$2; shift 2
  local train=$datadir/${name}_train valid=$datadir/${name}_valid
  mkdir -p "$out"
  ${python} -m espnet2_ext.bin.diffusion_prior_train \
    --config "$prior_config" --ngpu "$ngpu" --output_dir "$out" \
    --train_data_path_and_name_and_type "$train/wav.scp,speech_ref1,sound" \
    --train_shape_file "$train/speech_ref1_shape" \
    --valid_data_path_and_name_and_type "$valid/wav.scp,speech_ref1,sound" \
    --valid_shape_file "$valid/speech_ref1_shape" \
    "$@" ${train_args} 2>&1 | tee "$out/train.log"
}

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "Stage 1: data preparation ($data) -> $datadir"
  opts="--num_test $num_test"
  if [ "$data" = real ]; then
    opts+=" --mode real --vctk_root $VCTK --fsd_root $FSD18"
  fi
  # shellcheck disable=SC2086
  ${python} local/data_prep.py --out "$datadir" $opts $data_opts
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "Stage 2: speech prior training -> $speech_exp"
  train_prior speech "$speech_exp"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "Stage 3: sound-event prior training -> $sfx_exp"
  extra=()
  if [ "$sfx_conditional" = true ]; then
    categories=$(paste -sd, "$datadir/sfx_categories.txt")
    num_classes=$(wc -l <"$datadir/sfx_categories.txt")
    extra=(--network_conf "num_classes=$num_classes"
           --preprocessor_conf "categories=[$categories]"
           --train_data_path_and_name_and_type "$datadir/sfx_train/utt2category,category,text"
           --valid_data_path_and_name_and_type "$datadir/sfx_valid/utt2category,category,text")
  fi
  train_prior sfx "$sfx_exp" ${extra[@]+"${extra[@]}"}
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  num_src=$(ls "$datadir"/test/spk*.scp | wc -l)
  priors=(--prior_train_config "$speech_exp/config.yaml"
          --prior_model_file "$speech_exp/$inference_model")
  for _ in $(seq 2 "$num_src"); do
    priors+=(--prior_train_config "$sfx_exp/config.yaml"
             --prior_model_file "$sfx_exp/$inference_model")
  done
  if [ "$oracle_categories" = true ]; then
    priors+=(--categories_file "$datadir/test/utt2category")
  fi
  for config in $inference_configs; do
    name=$(basename "${config%.*}")
    out=$sep_exp/$name
    log "Stage 4: separation ($name, $num_src sources, $nj jobs) -> $out"
    mkdir -p "$out/split"
    split -n "l/$nj" -d -a 3 "$datadir/test/wav.scp" "$out/split/keys."
    pids=()
    for keys in "$out"/split/keys.*; do
      job=${keys##*.}
      ${python} -m espnet2_ext.bin.diffusion_separate --config "$config" \
        --data_path_and_name_and_type "$datadir/test/wav.scp,speech_mix,sound" \
        --key_file "$keys" --output_dir "$out/split/out.$job" --device "$device" \
        "${priors[@]}" ${inference_args} >"$out/split/separate.$job.log" 2>&1 &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do
      wait "$pid" || { echo "$0: a separation job failed, see $out/split/separate.*.log" >&2; exit 1; }
    done
    for n in $(seq 1 "$num_src"); do
      cat "$out"/split/out.*/spk"$n".scp >"$out/spk$n.scp"
    done
  done
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  num_src=$(ls "$datadir"/test/spk*.scp | wc -l)
  refs=$(for n in $(seq 1 "$num_src"); do echo -n "$datadir/test/spk$n.scp "; done)
  header="| method | mixtures | SI-SNR (dB) | SI-SNRi (dB) |"
  rule="|---|---|---|---|"
  for n in $(seq 1 "$num_src"); do header+=" SI-SNRi src$n |"; rule+="---|"; done
  {
    echo "# Diffusion-prior separation ($tag priors, $data data)"
    echo
    echo "$header"
    echo "$rule"
  } >"$sep_exp/RESULTS.md"
  for config in $inference_configs; do
    name=$(basename "${config%.*}")
    out=$sep_exp/$name
    ests=$(for n in $(seq 1 "$num_src"); do echo -n "$out/spk$n.scp "; done)
    log "Stage 5: scoring $name"
    # shellcheck disable=SC2086
    ${python} local/score.py --mix "$datadir/test/wav.scp" --ref $refs --est $ests \
      --out "$out/scoring" --name "$name" | tee -a "$sep_exp/RESULTS.md"
  done
  log "Results: $sep_exp/RESULTS.md"
fi
