#!/usr/bin/env bash
# Music source separation recipe driver of espnet2_ext (ESPnet enh-style stages).
#
# Usage: ./music_enh.sh [options] (normally called by a recipe's run.sh)
#   --stage N / --stop_stage M   run stages N..M (default 1..8)
#   --nj N                      parallel jobs for data preparation, inference, scoring
#   --ngpu N                    GPUs for training (N > 1: ESPnet's distributed training)
#   --local_data_opts "..."     options for local/data.sh
#   --train_config FILE         training config (default conf/train.yaml)
#   --train_args "..."          extra options for espnet2_ext.bin.enh_train
#   --init_param PATH           start from a pre-trained model (ESPnet's --init_param)
#   --tag NAME                  experiment name (default: the config's file name)
#   --inference_model FILE      checkpoint to separate with (default valid.loss.ave.pth)
#   --segment_size S            inference chunk in seconds (default 12)
#   --hop_size S                inference hop in seconds (default 6)
#   --inference_args "..."      extra options for espnet2_ext.bin.enh_inference
#   --test_sets "valid test"    sets to separate and score
#   --hf_repo USER/NAME         Hugging Face repository for stage 8
#   --train_data_opts "..."     data options of stages 3-4 instead of the MUSDB18-HQ ones
#   --valid_data_opts "..."     (e.g. one speech_ref1 list for MixIT on FMA), with
#   --train_shape_file F        --valid_shape_file F (key lists for collect_stats)
#
# Stages:
#   1 data preparation (local/data.sh)       -> data/{train,valid,test}
#   2 segmenting and source-activity filter  -> dump/segments/{train,valid}
#   3 statistics (ESPnet collect_stats)      -> exp/enh_stats_<tag>
#   4 training                               -> exp/enh_<tag>
#   5 inference on whole songs (overlap-add) -> exp/enh_<tag>/separate_<set>
#   6 scoring (uSDR, cSDR)                   -> exp/enh_<tag>/separate_<set>/scoring
#   7 packing (ESPnet model-zoo zip)         -> exp/enh_<tag>/packed.zip
#   8 upload to the Hugging Face hub
set -euo pipefail

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*"; }

stage=1
stop_stage=8
nj=4
ngpu=0
python=${PYTHON:-python3}
local_data_opts=""
train_config=conf/train.yaml
train_args=""
init_param=""
tag=""
inference_model=valid.loss.ave.pth
segment_size=12
hop_size=6
inference_args=""
test_sets="valid test"
hf_repo=""
hf_args=""
stems="vocals bass drums other"
segment_seconds=8
activity_args=""
fs=44100
train_data_opts=""
valid_data_opts=""
train_shape_file=""
valid_shape_file=""
dumpdir=dump
expdir=exp

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=utils/parse_options.sh
. "$here/utils/parse_options.sh"
[ $# -eq 0 ] || { echo "$0: unexpected arguments: $*" >&2; exit 1; }

[ -f ./path.sh ] && . ./path.sh
[ -f ./cmd.sh ] && . ./cmd.sh
train_cmd=${train_cmd:-$here/utils/run_local.sh}
cuda_cmd=${cuda_cmd:-$train_cmd}
decode_cmd=${decode_cmd:-$train_cmd}

[ -f "$train_config" ] || { echo "$0: training config $train_config not found" >&2; exit 1; }
[ -n "$tag" ] || tag=$(basename "${train_config%.*}")
enh_exp=$expdir/enh_$tag
stats_dir=$expdir/enh_stats_$tag
num_spk=$(echo "$stems" | wc -w)

# The data options shared by collect_stats and training: both read fixed crops of the
# songs (segment_sound: "uid path start end"). In training, the dynamic-mixing
# preprocessor of the config replaces each item by a fresh mixture of random active
# segments; validation uses the crops as they are.
data_opts() {  # $1 = train|valid, $2 = dir
  local kind=$1 dir=$2 opts n
  opts="--${kind}_data_path_and_name_and_type $dir/mix_segments.scp,speech_mix,segment_sound"
  for n in $(seq 1 "$num_spk"); do
    opts+=" --${kind}_data_path_and_name_and_type"
    opts+=" $dir/spk${n}_segments.scp,speech_ref$n,segment_sound"
  done
  echo "$opts"
}
[ -n "$train_data_opts" ] || train_data_opts=$(data_opts train "$dumpdir/segments/train")
[ -n "$valid_data_opts" ] || valid_data_opts=$(data_opts valid "$dumpdir/segments/valid")
[ -n "$train_shape_file" ] || train_shape_file=$dumpdir/segments/train/mix_segments.scp
[ -n "$valid_shape_file" ] || valid_shape_file=$dumpdir/segments/valid/mix_segments.scp

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "Stage 1: data preparation: local/data.sh $local_data_opts"
  # shellcheck disable=SC2086
  local/data.sh $local_data_opts
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "Stage 2: ${segment_seconds} s segments and source-activity filtering -> $dumpdir/segments"
  # train: the per-stem index of active segments that dynamic mixing draws from, and
  # 6 s crops that define an epoch's items; valid: fixed 6 s crops only.
  # shellcheck disable=SC2086
  $python -m espnet2_ext.datasets.activity --data data/train \
    --out "$dumpdir/segments/train" --segment-seconds "$segment_seconds" \
    --nj "$nj" $activity_args
  # shellcheck disable=SC2086
  $python -m espnet2_ext.datasets.activity --data data/valid \
    --out "$dumpdir/segments/valid" --no-index --nj "$nj" $activity_args
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "Stage 3: statistics (collect_stats) -> $stats_dir"
  # shellcheck disable=SC2086
  $train_cmd "$stats_dir/logs/stats.log" \
    $python -m espnet2_ext.bin.enh_train --collect_stats true --ngpu 0 \
      --config "$train_config" --num_workers 0 \
      $train_data_opts $valid_data_opts \
      --train_shape_file "$train_shape_file" --valid_shape_file "$valid_shape_file" \
      --output_dir "$stats_dir" $train_args
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "Stage 4: training with $train_config -> $enh_exp (ngpu=$ngpu)"
  mkdir -p "$enh_exp"
  init_opt=""
  [ -z "$init_param" ] || init_opt="--init_param $init_param"
  dist_opt=""
  [ "$ngpu" -le 1 ] || dist_opt="--multiprocessing_distributed true --dist_launcher local"
  # collect_stats names its shape files after the first data name (speech_mix, or
  # speech_ref1 for MixIT on unlabeled mixtures)
  shape_name=$(echo "$train_data_opts" | awk '{split($2, a, ","); print a[2]}')
  # shellcheck disable=SC2086
  $cuda_cmd "$enh_exp/train.log" \
    $python -m espnet2_ext.bin.enh_train --ngpu "$ngpu" --config "$train_config" \
      $train_data_opts $valid_data_opts \
      --train_shape_file "$stats_dir/train/${shape_name}_shape" \
      --valid_shape_file "$stats_dir/valid/${shape_name}_shape" \
      --output_dir "$enh_exp" $init_opt $dist_opt $train_args
  log "training done; averaged model: $enh_exp/$inference_model"
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  for dset in $test_sets; do
    out=$enh_exp/separate_$dset
    log "Stage 5: separating data/$dset in ${segment_size} s chunks, ${hop_size} s hop -> $out"
    n=$(wc -l <"data/$dset/wav.scp")
    this_nj=$(( nj < n ? nj : n ))
    rm -rf "$out/split" && mkdir -p "$out/split"
    split_files=()
    for j in $(seq 1 "$this_nj"); do split_files+=("$out/split/keys.$j"); done
    $python -m espnet2_ext.utils.split_scp "data/$dset/wav.scp" "${split_files[@]}"
    # shellcheck disable=SC2086
    $decode_cmd JOB=1:"$this_nj" "$out/logs/separate.JOB.log" \
      $python -m espnet2_ext.bin.enh_inference --ngpu 0 --fs "$fs" \
        --data_path_and_name_and_type "data/$dset/wav.scp,speech_mix,sound" \
        --key_file "$out/split/keys.JOB" \
        --train_config "$enh_exp/config.yaml" --model_file "$enh_exp/$inference_model" \
        --segment_size "$segment_size" --hop_size "$hop_size" \
        --output_dir "$out/split/out.JOB" $inference_args
    # shellcheck disable=SC2086
    $python -m espnet2_ext.utils.merge_separated "$out"/split/out.* --out "$out" \
      --num_spk "$num_spk" --data "data/$dset" --stems $stems
  done
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  for dset in $test_sets; do
    out=$enh_exp/separate_$dset
    log "Stage 6: scoring $out (uSDR, cSDR with museval) -> $out/scoring"
    # shellcheck disable=SC2086
    $python -m espnet2_ext.bin.music_score --ref_dir "$out/refs" --est_dir "$out/stems" \
      --stems $stems --out_dir "$out/scoring" --nj "$nj" --tag "$tag" \
      --baseline_cache "$expdir/mixture_baseline_$dset.json"
  done
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  log "Stage 7: packing $enh_exp -> $enh_exp/packed.zip"
  results=()
  last_set=${test_sets##* }
  if [ -f "$enh_exp/separate_$last_set/scoring/RESULTS.md" ]; then
    cp "$enh_exp/separate_$last_set/scoring/RESULTS.md" "$enh_exp/RESULTS.md"
    rm -rf "$enh_exp/images"
    cp -r "$enh_exp/separate_$last_set/scoring/images" "$enh_exp/images"
    results=(--option "$enh_exp/RESULTS.md" --option "$enh_exp/images")
  fi
  $python -m espnet2_ext.bin.pack --train_config "$enh_exp/config.yaml" \
    --model_file "$enh_exp/$inference_model" "${results[@]}" \
    --outpath "$enh_exp/packed.zip"
fi

if [ "$stage" -le 8 ] && [ "$stop_stage" -ge 8 ]; then
  if [ -z "$hf_repo" ]; then
    log "Stage 8: skipped (no --hf_repo USER/NAME given)"
  else
    log "Stage 8: uploading $enh_exp/packed.zip to the Hugging Face hub: $hf_repo"
    # shellcheck disable=SC2086
    $python -m espnet2_ext.bin.hf_upload --packed "$enh_exp/packed.zip" \
      --repo "$hf_repo" $hf_args
  fi
fi

log "Successfully finished stages $stage..$stop_stage"
