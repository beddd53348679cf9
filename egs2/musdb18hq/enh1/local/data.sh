#!/usr/bin/env bash
# Stage 1 of the MUSDB18-HQ recipe: Kaldi-style data/{train,valid,test} from a MUSDB18-HQ
# tree (<root>/{train,test}/<song>/{mixture,vocals,bass,drums,other}.wav).
#   local/data.sh --musdb_root /path/to/musdb18hq
#   local/data.sh --demo true      # generate the embedded MUSDB18-HQ-like set first
#       --demo_train N --demo_valid V --demo_test M --demo_duration S --demo_seed K
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. ./path.sh

musdb_root=""
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
$python -m espnet2_ext.datasets.musdb18hq --root "$musdb_root" --out data --nj "$nj"
