#!/usr/bin/env bash
# MUSDB18-HQ, or any song tree in its layout: BS-Locoformer trained with dynamic mixing,
# evaluated with uSDR/cSDR. Stages and options are ESPnet's enh.sh ones (music_enh.sh
# --help; README.md has the table).
#   ./run.sh                               real data (MUSDB18HQ in db.sh), medium model
#   ./run.sh --data demo --size tiny       the embedded default: generated songs, the demo
#                                          model, on the CPU in minutes
#   ./run.sh --data /my/songs --size small --valid_list my_valid.txt
#                                          your own tree: <root>/{train,test}/<song>/
#                                          {mixture,<any stems>}.wav
#   ./run.sh --stage 7 --stop_stage 8      any range of stages
#   ./run.sh --download_model user/name    evaluate a packed or hub model, no training
# Options of this script (the others go to music_enh.sh):
#   --data demo|real|DIR     the songs [real]: generated, MUSDB18HQ of db.sh, or DIR
#   --size tiny|small|medium|large   the model [medium]: tiny = conf/train_enh_demo.yaml
#                            (ngpu 0), the others conf/tuning/train_enh_bs_locoformer_*
#   --valid_list FILE        validation songs, one name a line (local/data.sh)
#   --stems "a b c"          the stems to use, given once (data preparation selects and
#                            orders them; training and scoring check them) [all the
#                            stems of the data]
#   --init_param PATH        fine-tune from a model (was --pretrained)
#   --demo true              old name of --data demo --size tiny
set -euo pipefail
called_from=$PWD
cd "$(dirname "${BASH_SOURCE[0]}")"
absolute() {  # a path given relative to where run.sh was called from
  case "$1" in /*|"") echo "$1" ;; *) echo "$called_from/$1" ;; esac
}
# shellcheck disable=SC1091
. ./path.sh

for link in music_enh.sh utils; do
  if [ ! -e "$link" ]; then
    echo "$0: $link is a broken link: this recipe was copied without the template it" \
      "links to. Copy it with its links resolved (cp -rL egs2/musdb18hq/enh1 DEST)," \
      "or link $link to egs2/TEMPLATE/enh1/$link of the repository" >&2
    exit 1
  fi
done

data=real
size=medium
valid_list=""
stems=""
local_data_opts=""
opts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    --data) data=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --valid_list) valid_list=$2; shift 2 ;;
    --stems) stems=$2; shift 2 ;;
    --local_data_opts) local_data_opts=$2; shift 2 ;;
    --demo)
      echo "run.sh: --demo is deprecated: it means --data demo --size tiny (two" \
        "independent options now)" >&2
      if [ "$2" = true ]; then data=demo; size=tiny; fi
      shift 2 ;;
    --pretrained)
      echo "run.sh: --pretrained is deprecated, use --init_param (ESPnet's name); it" \
        "works the same" >&2
      opts+=(--init_param "$2"); shift 2 ;;
    *) opts+=("$1"); shift ;;
  esac
done

. ./db.sh
defaults=()
case "$data" in
  demo)
    data_opts="--demo true"
    # 4 test songs; the 2 validation songs are for training only
    defaults+=(--nj 2 --test_sets test) ;;
  real) data_opts="--musdb_root ${MUSDB18HQ}" ;;
  *) data_opts="--musdb_root $(absolute "$data")" ;;
esac
[ -z "$valid_list" ] || data_opts+=" --valid_list $(absolute "$valid_list")"
case "$size" in
  tiny)
    # the demo model: trained on 3 s crops, separated in 6 s chunks; the CPU
    defaults+=(--enh_config conf/train_enh_demo.yaml --ngpu 0 --segment_size 6
      --hop_size 3)
    [ "$data" != demo ] || defaults+=(--enh_tag demo) ;;
  small|medium|large)
    defaults+=(--enh_config "conf/tuning/train_enh_bs_locoformer_${size}.yaml") ;;
  *) echo "$0: --size is tiny, small, medium or large, got '$size'" >&2; exit 1 ;;
esac
[ -z "$stems" ] || defaults+=(--stems "$stems")

./music_enh.sh "${defaults[@]}" --local_data_opts "$data_opts $local_data_opts" \
  ${opts[@]+"${opts[@]}"}
