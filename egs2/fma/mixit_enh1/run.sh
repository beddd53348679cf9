#!/usr/bin/env bash
# FMA: MixIT pre-training of BS-Locoformer on unlabeled music (seeds/002, DESIGN.md 3),
# then head selection 12 -> 4 on the MUSDB18-HQ validation songs, ready for fine-tuning
# in the MUSDB18-HQ recipe (egs2/musdb18hq/enh1, run.sh --pretrained).
#   ./run.sh                         real data: FMA and MUSDB18HQ in db.sh (or the env)
#   ./run.sh --size large --subset large
#   ./run.sh --demo true             generated FMA-like and MUSDB18-HQ-like sets, a tiny
#                                    model, a short schedule: minutes on a CPU
#   ./run.sh --stage 4 --stop_stage 4   any range of stages
#
# Stages:
#   1 data: FMA segments -> data/fma/{train,valid}, MUSDB18-HQ -> data/musdb/*
#   2 statistics (collect_stats)              -> exp/enh_stats_<tag>
#   3 MixIT pre-training, 12 outputs          -> exp/enh_<tag>
#   4 head selection on data/musdb/valid      -> exp/enh_<tag>/heads/
#     (model.pth + config.yaml: a 4-output model; heads.json: votes and SNRs)
#   5 hand-off: prints the MUSDB18-HQ recipe commands that fine-tune from it
#
# Options (defaults below): --size, --subset, --demo, --stage, --stop_stage, --nj,
# --ngpu, --tag, --train_config, --finetune_config, --frozen_config, --train_args,
# --select_args, --local_data_opts, --expdir, --inference_model.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (run.sh:${BASH_LINENO[0]}) $*"; }

stage=1
stop_stage=5
demo=false
size=medium          # small | medium | large (conf/tuning/*_bs_locoformer_<size>.yaml)
subset=small         # FMA subset: small | medium | large | full
nj=4
ngpu=1
tag=""
train_config=""      # default: conf/tuning/train_mixit_bs_locoformer_<size>.yaml
finetune_config=""   # default: conf/tuning/finetune_enh_bs_locoformer_<size>.yaml
frozen_config=""     # default: conf/tuning/finetune_frozen_enh_bs_locoformer_<size>.*
train_args=""        # more options for espnet2_ext.bin.enh_train
select_args=""       # more options for espnet2_ext.bin.select_heads (--device cuda)
local_data_opts=""   # more options for local/data.sh
expdir=exp
inference_model=valid.loss.ave.pth
. utils/parse_options.sh
[ $# -eq 0 ] || { echo "$0: unexpected arguments: $*" >&2; exit 1; }

. ./path.sh
. ./db.sh

if [ "$demo" = true ]; then
  # Small generated data, tiny model, short schedule.
  data_opts="--demo true --subset $subset --nj $nj"
  [ -n "$train_config" ] || train_config=conf/train_mixit_demo.yaml
  [ -n "$finetune_config" ] || finetune_config=conf/finetune_enh_demo.yaml
  [ -n "$frozen_config" ] || frozen_config=conf/finetune_frozen_enh_demo.yaml
  [ -n "$tag" ] || tag=mixit_demo
  ngpu=0
else
  data_opts="--fma_root ${FMA} --subset $subset --musdb_root ${MUSDB18HQ} --nj $nj"
  [ -n "$train_config" ] ||
    train_config=conf/tuning/train_mixit_bs_locoformer_${size}.yaml
  [ -n "$finetune_config" ] ||
    finetune_config=conf/tuning/finetune_enh_bs_locoformer_${size}.yaml
  [ -n "$frozen_config" ] ||
    frozen_config=conf/tuning/finetune_frozen_enh_bs_locoformer_${size}.yaml
  [ -n "$tag" ] || tag=mixit_fma_${subset}_${size}
fi
enh_exp=$expdir/enh_$tag
heads_dir=$enh_exp/heads

# MixIT reads one unlabeled segment per item (segment_sound) as speech_ref1; the
# config's mixture_of_mixtures preprocessor adds the partner (speech_ref2) and the sum.
fma_train_opts="--train_data_path_and_name_and_type"
fma_train_opts+=" data/fma/train/mix_segments.scp,speech_ref1,segment_sound"
fma_valid_opts="--valid_data_path_and_name_and_type"
fma_valid_opts+=" data/fma/valid/mix_segments.scp,speech_ref1,segment_sound"
enh_opts=(
  --train_config "$train_config" --tag "$tag" --nj "$nj" --ngpu "$ngpu"
  --expdir "$expdir" --train_args "$train_args"
  --train_data_opts "$fma_train_opts" --valid_data_opts "$fma_valid_opts"
  --train_shape_file data/fma/train/speech_ref1_shape
  --valid_shape_file data/fma/valid/speech_ref1_shape
)

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "Stage 1: data preparation: local/data.sh $data_opts $local_data_opts"
  # shellcheck disable=SC2086
  local/data.sh $data_opts $local_data_opts
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "Stage 2: statistics of data/fma -> $expdir/enh_stats_$tag"
  ./music_enh.sh --stage 3 --stop_stage 3 "${enh_opts[@]}"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "Stage 3: MixIT pre-training with $train_config -> $enh_exp"
  ./music_enh.sh --stage 4 --stop_stage 4 "${enh_opts[@]}"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "Stage 4: head selection on data/musdb/valid -> $heads_dir"
  [ -f data/musdb/valid/wav.scp ] || {
    echo "$0: data/musdb/valid is missing: run stage 1 with MUSDB18-HQ (db.sh)" >&2
    exit 1
  }
  # shellcheck disable=SC2086
  $python -m espnet2_ext.bin.select_heads --train_config "$enh_exp/config.yaml" \
    --model_file "$enh_exp/$inference_model" --musdb_data data/musdb/valid \
    --finetune_config "$finetune_config" --out "$heads_dir" $select_args
  $python -c 'import json, sys; r = json.load(open(sys.argv[1]))
print("heads:", r["heads"]); [print("note:", n) for n in r["notes"]]' \
    "$heads_dir/heads.json"
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  here=$(pwd)
  musdb_demo=""
  [ "$demo" = false ] || musdb_demo="--demo true "
  log "Stage 5: fine-tune from $heads_dir/model.pth in the MUSDB18-HQ recipe:"
  echo "  cd ../../musdb18hq/enh1"
  echo "  # all parameters"
  echo "  ./run.sh ${musdb_demo}--train_config $here/$finetune_config \\"
  echo "    --pretrained $here/$heads_dir/model.pth --tag ${tag}_finetune"
  echo "  # encoder and decoder only, the TF-Locoformer blocks frozen"
  echo "  ./run.sh ${musdb_demo}--train_config $here/$frozen_config \\"
  echo "    --pretrained $here/$heads_dir/model.pth --tag ${tag}_frozen"
  echo "  # the same fine-tuning budget from scratch: drop --pretrained"
fi

log "Successfully finished stages $stage..$stop_stage"
