#!/usr/bin/env bash
# FMA (or any folder of unlabeled mixtures): MixIT pre-training of BS-Locoformer on
# unlabeled music (seeds/002, DESIGN.md 3), then head selection 12 -> one output per
# stem on the validation songs of a MUSDB18-HQ-layout tree, ready for fine-tuning in
# the MUSDB18-HQ recipe (egs2/musdb18hq/enh1, run.sh --init_param).
#   ./run.sh                              real data: FMA and MUSDB18HQ in db.sh
#   ./run.sh --size large --subset large  the paper's main setting
#   ./run.sh --data demo --size tiny      generated FMA-like and MUSDB18-HQ-like sets,
#                                         the demo model, minutes on a CPU
#   ./run.sh --data /my/mixtures --musdb /my/songs --size tiny
#                                         your own unlabeled folder and song tree
#   ./run.sh --stage 6 --stop_stage 6     any range of stages
#
# Stages (ESPnet's enh.sh numbers; README.md has the table):
#   1  data: unlabeled segments -> data/fma/{train,valid}, songs -> data/musdb/*
#   5  statistics (collect_stats)             -> exp/enh_stats_<hash>
#   6  MixIT pre-training, 12 outputs          -> exp/enh_<tag>
#   7  head selection on data/musdb/valid      -> exp/enh_<tag>/heads/
#      (model.pth + config.yaml: one output per stem; heads.json: votes and SNRs),
#      then the MUSDB18-HQ recipe commands that fine-tune from it
#   11 packing the pre-trained model           -> exp/enh_<tag>/packed.zip
#   13 upload to the Hugging Face hub          (--hf_repo USER/NAME)
#
# Options (defaults below; ESPnet's names, the old ones still work):
#   --data demo|real|DIR  the unlabeled mixtures: generated, FMA of db.sh (--subset),
#                         or a plain folder of audio files [real]
#   --musdb real|DIR      the songs that choose the heads [MUSDB18HQ of db.sh; the
#                         generated ones with --data demo]
#   --size tiny|small|medium|large   tiny = the demo configs (ngpu 0) [medium]
#   --subset, --valid_percent, --valid_list FILE (validation songs of the song tree),
#   --stems "a b c" (of the song tree; default: all, read from the data), --stage, --stop_stage, --skip_data_prep,
#   --skip_train, --skip_eval (stage 7), --skip_packing, --skip_upload_hf, --nj,
#   --ngpu, --num_nodes, --gpu_inference, --enh_tag (was --tag), --enh_config (was
#   --train_config), --enh_args (was --train_args), --finetune_config, --frozen_config,
#   --select_args, --local_data_opts, --expdir, --inference_model, --download_model
#   (head selection on a packed or hub MixIT model, no training), --seed, --hf_repo,
#   --demo true (old name of --data demo --size tiny).
set -euo pipefail
called_from=$PWD
cd "$(dirname "${BASH_SOURCE[0]}")"
absolute() {  # a path given relative to where run.sh was called from
  case "$1" in /*|"") echo "$1" ;; *) echo "$called_from/$1" ;; esac
}
# shellcheck disable=SC1091
. ./path.sh

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (run.sh:${BASH_LINENO[0]}) $*"; }

stage=1
stop_stage=13
skip_data_prep=false
skip_train=false
skip_eval=false
skip_packing=false
skip_upload_hf=""
data=real
musdb=""
size=medium          # tiny | small | medium | large (conf/tuning/*_bs_locoformer_<size>.yaml)
subset=large         # FMA subset: small | medium | large | full (the paper: large)
valid_percent=""     # % of the unlabeled files kept for validation (local/data.sh)
valid_list=""        # validation songs of the song tree, one name a line
stems=""
demo=""
nj=4
ngpu=""
num_nodes=1
gpu_inference=false
enh_tag=""
enh_config=""        # default: conf/tuning/train_mixit_bs_locoformer_<size>.yaml
finetune_config=""   # default: conf/tuning/finetune_enh_bs_locoformer_<size>.yaml
frozen_config=""     # default: conf/tuning/finetune_frozen_enh_bs_locoformer_<size>.*
enh_args=""          # more options for espnet2_ext.bin.enh_train
select_args=""       # more options for espnet2_ext.bin.select_heads
local_data_opts=""   # more options for local/data.sh
expdir=exp
inference_model=valid.loss.ave.pth
download_model=""
seed=""
hf_repo=""
hf_args=""
# shellcheck disable=SC2034  # read by utils/parse_options.sh
declare -A option_aliases=([train_config]=enh_config [train_args]=enh_args [tag]=enh_tag)
. utils/parse_options.sh
[ $# -eq 0 ] || { echo "$0: unexpected arguments: $*" >&2; exit 1; }
if [ -n "$demo" ]; then
  echo "run.sh: --demo is deprecated: it means --data demo --size tiny (two" \
    "independent options now)" >&2
  if [ "$demo" = true ]; then data=demo; size=tiny; fi
fi

. ./db.sh
. ./cmd.sh
die() { echo "$0: $*" >&2; exit 1; }
config_tool() { "$python" utils/recipe_config.py "$@"; }
wanted() {  # N: stage N is in --stage..--stop_stage and not skipped
  [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] || return 1
  case "$1" in
    1) ! "$skip_data_prep" ;;
    5|6) ! "$skip_train" && [ -z "$download_model" ] ;;
    7) ! "$skip_eval" ;;
    11) ! "$skip_packing" && [ -z "$download_model" ] ;;
    13) [ "${skip_upload_hf:-$([ -n "$hf_repo" ] && echo false || echo true)}" = false ] &&
      [ -z "$download_model" ] ;;
  esac
}

data_args=(--nj "$nj")
case "$data" in
  demo) data_args+=(--demo true --subset "$subset"); data_name=demo ;;
  real) data_args+=(--fma_root "$FMA" --subset "$subset"); data_name=fma_$subset ;;
  *) data_args+=(--unlabeled_dir "$(absolute "$data")"); data_name=$(basename "$data") ;;
esac
case "${musdb:-$([ "$data" = demo ] && echo demo || echo real)}" in
  demo) ;;  # generated by local/data.sh --demo true
  real) data_args+=(--musdb_root "$MUSDB18HQ") ;;
  *) data_args+=(--musdb_root "$(absolute "$musdb")") ;;
esac
[ -z "$valid_percent" ] || data_args+=(--valid_percent "$valid_percent")
[ -z "$valid_list" ] || data_args+=(--valid_list "$(absolute "$valid_list")")
[ -z "$stems" ] || data_args+=(--stems "$stems")
case "$size" in
  tiny)
    [ -n "$enh_config" ] || enh_config=conf/train_mixit_demo.yaml
    [ -n "$finetune_config" ] || finetune_config=conf/finetune_enh_demo.yaml
    [ -n "$frozen_config" ] || frozen_config=conf/finetune_frozen_enh_demo.yaml
    [ -n "$ngpu" ] || ngpu=0
    [ -n "$enh_tag" ] || enh_tag=mixit_${data_name}
    ;;
  small|medium|large)
    [ -n "$enh_config" ] || enh_config=conf/tuning/train_mixit_bs_locoformer_${size}.yaml
    [ -n "$finetune_config" ] ||
      finetune_config=conf/tuning/finetune_enh_bs_locoformer_${size}.yaml
    [ -n "$frozen_config" ] ||
      frozen_config=conf/tuning/finetune_frozen_enh_bs_locoformer_${size}.yaml
    [ -n "$ngpu" ] || ngpu=1
    [ -n "$enh_tag" ] || enh_tag=mixit_${data_name}_${size}
    ;;
  *) die "--size is tiny, small, medium or large, got '$size'" ;;
esac
[ -z "$seed" ] || enh_tag+="_seed$seed"
enh_exp=$expdir/enh_$enh_tag

# MixIT reads one unlabeled segment per item (segment_sound) as speech_ref1; the
# config's mixture_of_mixtures preprocessor adds the partner (speech_ref2) and the sum.
fma_train_opts="--train_data_path_and_name_and_type"
fma_train_opts+=" data/fma/train/mix_segments.scp,speech_ref1,segment_sound"
fma_valid_opts="--valid_data_path_and_name_and_type"
fma_valid_opts+=" data/fma/valid/mix_segments.scp,speech_ref1,segment_sound"
enh_opts=(
  --enh_config "$enh_config" --enh_tag "$enh_tag" --nj "$nj" --ngpu "$ngpu"
  --num_nodes "$num_nodes" --expdir "$expdir" --enh_args "$enh_args"
  --train_data_opts "$fma_train_opts" --valid_data_opts "$fma_valid_opts"
  --train_shape_file data/fma/train/speech_ref1_shape
  --valid_shape_file data/fma/valid/speech_ref1_shape
  --train_set fma/train --valid_set fma/valid --test_sets musdb/test
  --inference_model "$inference_model" --hf_repo "$hf_repo" --hf_args "$hf_args"
)
[ -z "$seed" ] || enh_opts+=(--seed "$seed")

if wanted 1; then
  log "Stage 1: data preparation: local/data.sh ${data_args[*]} $local_data_opts"
  # shellcheck disable=SC2206
  data_cmd=(local/data.sh "${data_args[@]}" $local_data_opts)
  case "$train_cmd" in
    *run_local.sh*) "${data_cmd[@]}" ;;  # this machine: its progress on the console
    *)
      # decoding and segmenting the unlabeled files: a job, not the login node
      log "as a job of train_cmd: dump/logs/data.log"
      $train_cmd --num_threads "$nj" dump/logs/data.log "${data_cmd[@]}" ;;
  esac
fi

if wanted 5; then
  log "Stage 5: statistics of data/fma"
  ./music_enh.sh --stage 5 --stop_stage 5 "${enh_opts[@]}"
fi

if wanted 6; then
  log "Stage 6: MixIT pre-training with $enh_config -> $enh_exp"
  ./music_enh.sh --stage 6 --stop_stage 6 "${enh_opts[@]}"
fi

if [ -n "$download_model" ] && wanted 7; then
  enh_exp=$expdir/download_$(basename "${download_model%.zip}")
  log "--download_model: $download_model -> $enh_exp"
  inference_model=$(config_tool download "$download_model" "$enh_exp")
fi
heads_dir=$enh_exp/heads

if wanted 7; then
  log "Stage 7: head selection on data/musdb/valid -> $heads_dir"
  [ -f data/musdb/valid/wav.scp ] || die "data/musdb/valid is missing: run stage 1" \
    "with a song tree (--musdb, or MUSDB18HQ in db.sh)"
  for f in "$enh_exp/config.yaml" "$enh_exp/$inference_model"; do
    [ -e "$f" ] || die "$f not found: pre-train first (stage 6) or give --download_model"
  done
  song_stems=$(cat data/musdb/valid/stems 2>/dev/null || echo vocals bass drums other)
  song_stems=$(echo $song_stems)
  if [ -n "$stems" ] && [ "$(echo $stems)" != "$song_stems" ]; then
    die "stems mismatch: --stems ($stems), data/musdb/valid/stems ($song_stems)"
  fi
  select_opts=(--stems $song_stems)
  n_stems=$(echo "$song_stems" | wc -w)
  if [ "$(config_tool get "$finetune_config" separator_conf.num_spk)" = "$n_stems" ]; then
    select_opts+=(--finetune_config "$finetune_config")
  else
    log "$finetune_config has another number of outputs than the $n_stems stems" \
      "($song_stems): the heads' config is the MixIT one with one output per stem"
  fi
  if [ -f data/musdb/test/wav.scp ]; then select_opts+=(--eval_data data/musdb/test); fi
  if "$gpu_inference"; then
    select_cmd="$cuda_cmd --gpu 1"; select_opts+=(--device cuda)
  else
    select_cmd=$decode_cmd
  fi
  # shellcheck disable=SC2086
  $select_cmd "$heads_dir/logs/select_heads.log" \
    "$python" -m espnet2_ext.bin.select_heads --train_config "$enh_exp/config.yaml" \
      --model_file "$enh_exp/$inference_model" --musdb_data data/musdb/valid \
      --out "$heads_dir" "${select_opts[@]}" $select_args
  "$python" -c 'import json, sys; r = json.load(open(sys.argv[1]))
print("heads:", r["heads"]); [print("note:", n) for n in r["notes"]]' \
    "$heads_dir/heads.json"
  here=$(pwd)
  log "fine-tune from $heads_dir/model.pth in the MUSDB18-HQ recipe:"
  songs_arg=${musdb:-$([ "$data" = demo ] && echo demo || echo real)}
  case "$songs_arg" in demo|real) ;; *) songs_arg=$(absolute "$songs_arg") ;; esac
  data_arg="--data $songs_arg"
  [ "$size" != tiny ] || data_arg+=" --size tiny"
  stems_arg=""
  [ -z "$stems" ] || stems_arg=" --stems \"$stems\""
  here_path() { case "$1" in /*) echo "$1" ;; *) echo "$here/$1" ;; esac; }
  echo "  cd ../../musdb18hq/enh1"
  echo "  # all parameters"
  echo "  ./run.sh $data_arg$stems_arg --enh_config $(here_path "$finetune_config") \\"
  echo "    --init_param $(here_path "$heads_dir")/model.pth --enh_tag ${enh_tag}_finetune"
  echo "  # encoder and decoder only, the TF-Locoformer blocks frozen"
  echo "  ./run.sh $data_arg$stems_arg --enh_config $(here_path "$frozen_config") \\"
  echo "    --init_param $(here_path "$heads_dir")/model.pth --enh_tag ${enh_tag}_frozen"
  echo "  # the same fine-tuning budget from scratch: drop --init_param"
fi

if wanted 11; then
  log "Stage 11: packing the pre-trained model"
  ./music_enh.sh --stage 11 --stop_stage 11 "${enh_opts[@]}"
fi

if wanted 13; then
  log "Stage 13: upload"
  ./music_enh.sh --stage 13 --stop_stage 13 --skip_upload_hf false "${enh_opts[@]}"
fi

log "Successfully finished stages $stage..$stop_stage"
