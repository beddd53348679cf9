#!/usr/bin/env bash
# Options of the stages shared by the diffusion-prior separation recipes (diffsep.sh):
#   --stage N / --stop_stage M  run stages N..M (default 1..4)
#   --prior_config FILE         training config of every prior (default conf/prior.yaml,
#                               the paper's size; conf/prior_tiny.yaml runs on a CPU)
#   --train_args "..."          extra options of espnet2_ext.bin.diffusion_prior_train
#                               (stage 2 appends to <exp>/train.log, so that a run
#                               resumed with "--resume true" keeps the earlier epochs)
#   --train_priors "..."        stage 2 trains only these priors (default: all of them)
#   --ngpu N                    GPUs for training (0: CPU)
#   --tag NAME                  experiment name (default: the prior config's file name)
#   --inference_model FILE      checkpoint to separate with (default valid.loss.best.pth)
#   --inference_configs "..."   sampler configs to run (default: the paper's method and
#                               the DPS, DSG and noise-initialisation baselines)
#   --inference_args "..."      extra options of espnet2_ext.bin.diffusion_separate
#   --oracle_categories BOOL    condition the class-conditional priors on the true
#                               classes of each test mixture ($datadir/test/utt2category),
#                               as the paper does; results go to exp/separate_<tag>_oracle_labels
#   --nj N                      parallel separation jobs (default 1)
#   --device cpu|cuda           device of the separation
#   --permutation BOOL          score with permutation search (default true)
#   --datadir DIR / --expdir DIR  data and experiment folders (default data, exp)
set -euo pipefail

# The stage driver of the diffusion-prior separation recipes (egs2/*/diffsep1). A
# recipe's run.sh declares its own options with their defaults, defines the hooks below
# and sources this file with its arguments (`. ./diffsep.sh "$@"`), so one parser takes
# the recipe's options and these.
#
# Shared stages:
#   1 data preparation (the recipe's prepare_data)
#   2 one prior per name in $priors           -> exp/prior_<name>_<tag>
#   3 separation of the test mixtures         -> exp/separate_<tag>/<inference config>
#   4 scoring (SI-SNR, SI-SNRi per source)    -> exp/separate_<tag>/RESULTS.md
#
# What a recipe provides:
#   prepare_data   stage 1: writes $datadir/<prior>_{train,valid}/ (wav.scp,
#                  speech_ref1_shape; utt2category and $datadir/<prior>_categories.txt
#                  for a conditional prior) and $datadir/test/ (wav.scp, spk<n>.scp)
#   configure      (optional) sets the recipe variables below from its options; called
#                  once the options are parsed
#   priors              the priors to train, e.g. "speech sfx"
#   source_priors       the prior of each source in output order; the last one also
#                       serves further sources of the test set (default: $priors)
#   conditional_priors  priors trained class-conditionally (default none)
#   source_names        column names of the per-source scores (default src1 ... srcN)
#   results_title       first line of RESULTS.md

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*"; }

stage=1
stop_stage=4
prior_config=conf/prior.yaml
train_args=""
train_priors=""
ngpu=0
tag=""
inference_model=valid.loss.best.pth
inference_configs="conf/separate_paper.yaml conf/separate_dps.yaml conf/separate_dsg.yaml conf/separate_noise_init.yaml"
inference_args=""
oracle_categories=false
nj=1
device=cpu
permutation=true
datadir=data
expdir=exp
priors=""
source_priors=""
conditional_priors=""
source_names=""
results_title="Diffusion-prior separation"

# --help prints the recipe's header, then this one; it is an option only where an
# option name is expected (`--train_args --help` passes --help to the training)
__i=1
while [ "$__i" -le $# ]; do
  case "${!__i}" in
    --help|-h)
      sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
      echo
      sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
      exit 0 ;;
    --*=*) __i=$((__i + 1)) ;;
    --*) __i=$((__i + 2)) ;;
    *) __i=$((__i + 1)) ;;
  esac
done
unset __i
# shellcheck source=utils/parse_options.sh
. ./utils/parse_options.sh
[ $# -eq 0 ] || { echo "$0: unexpected arguments: $*" >&2; exit 1; }

. ./path.sh
[ -f ./db.sh ] && . ./db.sh
[ -f ./cmd.sh ] && . ./cmd.sh
decode_cmd=${decode_cmd:-utils/run_local.sh}

[ -n "$tag" ] || tag=$(basename "${prior_config%.*}")
if declare -F configure >/dev/null; then configure; fi
[ -n "$priors" ] || { echo "$0: the recipe sets no priors" >&2; exit 1; }
[ -n "$source_priors" ] || source_priors=$priors
sep_exp=$expdir/separate_$tag
if [ "$oracle_categories" = true ] && [ -n "$conditional_priors" ]; then
  sep_exp=${sep_exp}_oracle_labels
fi

prior_exp() {  # $1 = prior name
  echo "$expdir/prior_${1}_$tag"
}

num_sources() {  # the reference lists of the test set
  ls "$datadir"/test/spk*.scp | wc -l
}

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  prepare_data
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  for name in ${train_priors:-$priors}; do
    if [[ " $priors " != *" $name "* ]]; then
      echo "$0: --train_priors $name: not a prior of this recipe ($priors)" >&2
      exit 1
    fi
    out=$(prior_exp "$name")
    log "Stage 2: $name prior training -> $out"
    extra=()
    if [[ " $conditional_priors " == *" $name "* ]]; then
      categories=$(paste -sd, "$datadir/${name}_categories.txt")
      num_classes=$(wc -l <"$datadir/${name}_categories.txt")
      extra=(--network_conf "num_classes=$num_classes"
             --preprocessor_conf "categories=[$categories]"
             --train_data_path_and_name_and_type "$datadir/${name}_train/utt2category,category,text"
             --valid_data_path_and_name_and_type "$datadir/${name}_valid/utt2category,category,text")
    fi
    mkdir -p "$out"
    # shellcheck disable=SC2086
    ${python} -m espnet2_ext.bin.diffusion_prior_train \
      --config "$prior_config" --ngpu "$ngpu" --output_dir "$out" \
      --train_data_path_and_name_and_type "$datadir/${name}_train/wav.scp,speech_ref1,sound" \
      --train_shape_file "$datadir/${name}_train/speech_ref1_shape" \
      --valid_data_path_and_name_and_type "$datadir/${name}_valid/wav.scp,speech_ref1,sound" \
      --valid_shape_file "$datadir/${name}_valid/speech_ref1_shape" \
      ${extra[@]+"${extra[@]}"} ${train_args} 2>&1 | tee -a "$out/train.log"
  done
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  num_src=$(num_sources)
  listed=($source_priors)
  if [ "${#listed[@]}" -gt "$num_src" ]; then
    echo "$0: ${#listed[@]} source priors ($source_priors) for $num_src sources in $datadir/test" >&2
    exit 1
  fi
  prior_opts=()
  for n in $(seq 1 "$num_src"); do
    name=${listed[$(( n <= ${#listed[@]} ? n - 1 : ${#listed[@]} - 1 ))]}
    prior_opts+=(--prior_train_config "$(prior_exp "$name")/config.yaml"
                 --prior_model_file "$(prior_exp "$name")/$inference_model")
  done
  if [ "$oracle_categories" = true ]; then
    # the true class of each source for its conditional prior, "none" for the others
    mkdir -p "$sep_exp"
    conditional=$(for n in $(seq 1 "$num_src"); do
      name=${listed[$(( n <= ${#listed[@]} ? n - 1 : ${#listed[@]} - 1 ))]}
      [[ " $conditional_priors " == *" $name "* ]] && echo -n "1 " || echo -n "0 "
    done)
    awk -v flags="$conditional" 'BEGIN { n = split(flags, c, " ") }
      { line = $1; for (i = 1; i <= n; i++) line = line " " (c[i] == 1 ? $(i + 1) : "none"); print line }' \
      "$datadir/test/utt2category" >"$sep_exp/oracle_categories"
    prior_opts+=(--categories_file "$sep_exp/oracle_categories")
  fi
  num_mix=$(wc -l <"$datadir/test/wav.scp")
  this_nj=$(( nj < num_mix ? nj : num_mix ))
  for config in $inference_configs; do
    name=$(basename "${config%.*}")
    out=$sep_exp/$name
    log "Stage 3: separation ($name, $num_src sources, $this_nj jobs) -> $out"
    rm -rf "$out/split" && mkdir -p "$out/split"
    # consecutive blocks of mixtures; the mixture on line i of wav.scp is sampled with
    # seed i in any job, so --nj does not change the results
    split -n "l/$this_nj" --numeric-suffixes=1 -a 3 "$datadir/test/wav.scp" "$out/split/block."
    for block in "$out"/split/block.*; do
      mv "$block" "$out/split/keys.$((10#${block##*.}))"
    done
    # shellcheck disable=SC2086
    $decode_cmd JOB=1:"$this_nj" "$out/split/separate.JOB.log" \
      ${python} -m espnet2_ext.bin.diffusion_separate --config "$config" \
        --data_path_and_name_and_type "$datadir/test/wav.scp,speech_mix,sound" \
        --key_file "$out/split/keys.JOB" --output_dir "$out/split/out.JOB" \
        --device "$device" "${prior_opts[@]}" ${inference_args}
    for n in $(seq 1 "$num_src"); do
      for job in $(seq 1 "$this_nj"); do cat "$out/split/out.$job/spk$n.scp"; done >"$out/spk$n.scp"
    done
    ${python} - "$out"/split/out.*/sampler_info.json >"$out/sampler_info.json" <<'EOF'
import json, sys
info = {}
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        info.update(json.load(f))
print(json.dumps(info, indent=1))
EOF
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  num_src=$(num_sources)
  names=($source_names)
  refs=$(for n in $(seq 1 "$num_src"); do echo -n "$datadir/test/spk$n.scp "; done)
  header="| method | steps | path scaling | mixtures | SI-SNR (dB) | SI-SNRi (dB) |"
  rule="|---|---|---|---|---|---|"
  for n in $(seq 1 "$num_src"); do
    header+=" SI-SNRi ${names[$((n - 1))]:-src$n} |"; rule+="---|"
  done
  {
    echo "# $results_title"
    echo
    echo "dB, mean ± sd over mixtures. Path scaling: the factor by which a respaced run's"
    echo "unscaled guidance path falls short of the full schedule's, when it is restored"
    echo "(×1.00: every step visited), 'off', or 'n/a' (a step rule without a"
    echo "schedule-set step)."
    echo
    echo "$header"
    echo "$rule"
  } >"$sep_exp/RESULTS.md"
  for config in $inference_configs; do
    name=$(basename "${config%.*}")
    out=$sep_exp/$name
    ests=$(for n in $(seq 1 "$num_src"); do echo -n "$out/spk$n.scp "; done)
    log "Stage 4: scoring $name"
    # shellcheck disable=SC2086
    ${python} pyscripts/score.py --mix "$datadir/test/wav.scp" --ref $refs --est $ests \
      --out "$out/scoring" --name "$name" --permutation "$permutation" \
      --sampler_info "$out/sampler_info.json" \
      | tee -a "$sep_exp/RESULTS.md"
  done
  log "Results: $sep_exp/RESULTS.md"
fi
