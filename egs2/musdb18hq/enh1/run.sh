#!/usr/bin/env bash
# MUSDB18-HQ: BS-Locoformer trained with dynamic mixing, evaluated with uSDR/cSDR.
#   ./run.sh                         real data: set MUSDB18HQ in db.sh (or the environment)
#   ./run.sh --demo true             the embedded default: generated MUSDB18-HQ-like songs
#   ./run.sh --stage 5 --stop_stage 6   any range of stages (see music_enh.sh --help)
# Options not listed here go to music_enh.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

demo=false
size=medium  # small | medium | large: conf/tuning/train_enh_bs_locoformer_<size>.yaml
pretrained=""  # a pre-trained model (.pth) to fine-tune from (e.g. MixIT, head-selected)

opts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --demo) demo=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --pretrained) pretrained=$2; shift 2 ;;
    *) opts+=("$1"); shift ;;
  esac
done

. ./db.sh
if [ "$demo" = true ]; then
  # Small generated data, tiny model, short schedule: the whole recipe in minutes on a CPU.
  set -- --local_data_opts "--demo true" --train_config conf/train_enh_demo.yaml \
    --nj 2 --segment_size 6 --hop_size 3 --tag demo --test_sets test
else
  set -- --local_data_opts "--musdb_root ${MUSDB18HQ}" \
    --train_config "conf/tuning/train_enh_bs_locoformer_${size}.yaml"
fi
[ -z "$pretrained" ] || set -- "$@" --init_param "$pretrained"

./music_enh.sh "$@" ${opts[@]+"${opts[@]}"}
