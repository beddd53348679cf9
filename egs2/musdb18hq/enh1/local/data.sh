#!/usr/bin/env bash
# Stage 1 of the MUSDB18-HQ recipe: Kaldi-style data/{train,valid,test} from a tree in
# the MUSDB18-HQ layout, <root>/{train,test}/<song>/mixture.wav and one <stem>.wav per
# stem: MUSDB18-HQ itself or songs of your own, any number, any stem names.
#   local/data.sh --musdb_root /path/to/musdb18hq
#   local/data.sh --musdb_root ~/my_songs --valid_list my_valid_songs.txt
#   local/data.sh --musdb_root ~/my_songs --stems "vocals bass"
#   local/data.sh --demo true      # generate the embedded MUSDB18-HQ-like set first
#       --demo_train N --demo_valid V --demo_test M --demo_duration S --demo_seed K
# Options:
#   --valid_list FILE  validation songs (folder names of <root>/train, one a line);
#                      default: <root>/valid_songs.txt, else MUSDB18's 14, else a
#                      deterministic 14 %. A name that is not a song is an error.
#   --stems "a b c"    stems to use, in output order (default: the stem files of the
#                      songs, read from the data; written to data/<set>/stems). Songs
#                      that disagree on their stems are an error naming both lists.
# Relative paths are relative to the recipe folder.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. ./path.sh

musdb_root=""
valid_list=""
stems=""
demo=false
demo_root=downloads/musdb18hq_demo
demo_train=12   # train songs, of which demo_valid are listed as validation songs
demo_valid=2
demo_test=4
demo_duration=30
demo_seed=0
nj=2
. utils/parse_options.sh

if [ "$demo" = true ]; then
  echo "local/data.sh: generating the embedded MUSDB18-HQ-like set in $demo_root"
  $python -m espnet2_ext.datagen.musdb_like --out "$demo_root" --jobs "$nj" \
    --num-train "$demo_train" --num-valid "$demo_valid" --num-test "$demo_test" \
    --duration "$demo_duration" --seed "$demo_seed"
  musdb_root=$demo_root
fi
if [ -z "$musdb_root" ]; then
  echo "local/data.sh: give --musdb_root (the folder with train/ and test/), set" \
    "MUSDB18HQ in db.sh, or use --demo true for the generated set" >&2
  exit 1
fi
opts=()
[ -z "$valid_list" ] || opts+=(--valid-list "$valid_list")
[ -z "$stems" ] || opts+=(--stems "$stems")
$python -m espnet2_ext.datasets.musdb18hq --root "$musdb_root" --out data --nj "$nj" \
  ${opts[@]+"${opts[@]}"}
