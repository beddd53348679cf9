#!/usr/bin/env bash
# Stage 1 of the FMA MixIT recipe:
#   data/fma/{train,valid}           10 s segments (5 s hop) of the usable unlabeled
#                                    files (python -m espnet2_ext.datasets.fma: drops
#                                    mono and < 44.1 kHz files, resamples higher rates,
#                                    the authors' silence rules, reports unreadable files)
#   data/musdb/{train,valid,test}    MUSDB18-HQ-layout songs; the validation songs choose
#                                    the outputs kept for fine-tuning (head selection)
#
#   local/data.sh --fma_root /data/fma --subset large --musdb_root /data/musdb18hq
#   local/data.sh --unlabeled_dir ~/my_mixtures --musdb_root ~/my_songs \
#       --valid_list my_valid_songs.txt
#   local/data.sh --demo true     # generate the embedded FMA-like and MUSDB18-HQ-like
#                                 # sets first (--musdb_root reuses an existing one)
#       --demo_tracks N --demo_duration S --demo_seed K      (FMA-like)
#       --demo_musdb_train N --demo_musdb_valid V --demo_musdb_test M
#       --demo_musdb_duration S                             (MUSDB18-HQ-like)
# Options:
#   --subset S          FMA subset: small | medium | large (the paper's main results) | full
#   --unlabeled_dir D   a plain folder of mixtures (wav, flac, mp3, ogg, m4a …) instead of
#                       FMA; needs at least 4 usable files (2 training, 2 validation)
#   --valid_percent P   unlabeled files without an FMA split sent to validation (5; at
#                       least 2 files whatever P)
#   --fma_opts "..."    more options for espnet2_ext.datasets.fma, e.g. our segmenting
#                       rules: "--last-segment complete --silence below_db
#                       --silent-segment drop_segment", or "--cache-all"
#   --valid_list FILE   validation songs of the MUSDB18-HQ-layout tree (see
#                       ../../musdb18hq/enh1/local/data.sh)
#   --stems "a b c"     stems of that tree (default: read from the data)
# Relative paths are relative to the recipe folder.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. ./path.sh

fma_root=""
subset=large          # FMA subset: small | medium | large | full
unlabeled_dir=""
musdb_root=""
valid_list=""
stems=""
demo=false
demo_fma_root=downloads/fma_demo
demo_tracks=40        # MP3 files, 8 of them planted for the filters
demo_duration=30      # seconds per track
demo_musdb_root=downloads/musdb18hq_demo
# the defaults give the embedded set of the MUSDB18-HQ recipe (its local/data.sh)
demo_musdb_train=12   # train songs, of which demo_musdb_valid are validation songs
demo_musdb_valid=2
demo_musdb_test=4
demo_musdb_duration=30
demo_seed=0
valid_percent=""      # unlabeled files without a split of their own: % sent to valid
fma_opts=""
cache=dump/fma_decoded
nj=2
. utils/parse_options.sh

if [ "$demo" = true ]; then
  echo "local/data.sh: generating the embedded FMA-like set in $demo_fma_root"
  $python -m espnet2_ext.datagen.fma_like --out "$demo_fma_root" --subset "$subset" \
    --num-tracks "$demo_tracks" --duration "$demo_duration" --seed "$demo_seed" \
    --jobs "$nj"
  fma_root=$demo_fma_root
  if [ -z "$musdb_root" ]; then
    echo "local/data.sh: generating the embedded MUSDB18-HQ-like set in" \
      "$demo_musdb_root"
    $python -m espnet2_ext.datagen.musdb_like --out "$demo_musdb_root" --jobs "$nj" \
      --num-train "$demo_musdb_train" --num-valid "$demo_musdb_valid" \
      --num-test "$demo_musdb_test" --duration "$demo_musdb_duration" \
      --seed "$demo_seed"
    musdb_root=$demo_musdb_root
  fi
fi

opts=()
[ -z "$valid_percent" ] || opts+=(--valid-percent "$valid_percent")
# shellcheck disable=SC2206
[ -z "$fma_opts" ] || opts+=($fma_opts)
if [ -n "$unlabeled_dir" ]; then
  $python -m espnet2_ext.datasets.fma --unlabeled-dir "$unlabeled_dir" \
    --out data/fma --cache "$cache" --nj "$nj" ${opts[@]+"${opts[@]}"}
elif [ -n "$fma_root" ]; then
  $python -m espnet2_ext.datasets.fma --root "$fma_root" --subset "$subset" \
    --out data/fma --cache "$cache" --nj "$nj" ${opts[@]+"${opts[@]}"}
else
  echo "local/data.sh: give --fma_root (the folder with fma_${subset}/) or" \
    "--unlabeled_dir (a folder of mixtures), set FMA in db.sh, or use --demo true for" \
    "the generated set" >&2
  exit 1
fi

if [ -n "$musdb_root" ] && [ -d "$musdb_root" ]; then
  musdb_opts=()
  [ -z "$valid_list" ] || musdb_opts+=(--valid-list "$valid_list")
  [ -z "$stems" ] || musdb_opts+=(--stems "$stems")
  $python -m espnet2_ext.datasets.musdb18hq --root "$musdb_root" --out data/musdb \
    --nj "$nj" ${musdb_opts[@]+"${musdb_opts[@]}"}
else
  echo "local/data.sh: WARNING: no MUSDB18-HQ-layout tree at '$musdb_root' (set" \
    "MUSDB18HQ in db.sh or give --musdb_root): pre-training can run, head selection" \
    "(stage 4) cannot" >&2
fi
