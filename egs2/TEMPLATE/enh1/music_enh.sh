#!/usr/bin/env bash
# Music source separation recipe driver of espnet2_ext, with the stage numbers and the
# option names of ESPnet's egs2/TEMPLATE/enh1/enh.sh (which is not in ESPnet's pip
# package); normally called by a recipe's run.sh.
#
# Stages (ESPnet's numbers; 2, 9, 10 and 12 are not used):
#   1  data preparation (local/data.sh)             -> data/{train,valid,test}
#   3  segments and source-activity filtering      -> dump/segments/train
#   4  validation crops and data checks (stems)    -> dump/segments/valid
#   5  statistics (ESPnet collect_stats), shared by every experiment with the same data
#      and the same statistics-relevant config keys -> exp/enh_stats_<hash>
#   6  training (ESPnet's trainer, --resume true)   -> exp/enh_<tag> (console: epochs,
#      losses and time left; the full log: exp/enh_<tag>/train.log)
#   7  whole-song inference, overlap-add           -> exp/enh_<tag>/separate_<set>
#   8  scoring: uSDR, cSDR, mixture baseline       -> exp/enh_<tag>/separate_<set>/scoring
#   11 packing (ESPnet model-zoo zip)              -> exp/enh_<tag>/packed.zip
#   13 upload to the Hugging Face hub              (--hf_repo USER/NAME)
#
# Options (ESPnet's names; defaults in brackets):
#   --stage N --stop_stage M      stages N..M [1, 13]
#   --skip_data_prep BOOL         skip stages 1-4 [false]
#   --skip_train BOOL             skip stages 5-6 [false]
#   --skip_eval BOOL              skip stages 7-8 [false]
#   --skip_packing BOOL           skip stage 11 [false]
#   --skip_upload_hf BOOL         skip stage 13 [true, false when --hf_repo is given]
#   --ngpu N                      GPUs per node for training [1]; 0 trains on the CPU
#   --num_nodes N                 nodes for training [1]; > 1 needs Slurm (cmd.sh)
#   --nj N                        parallel jobs: segmenting, scoring [4]
#   --inference_nj N              parallel inference jobs [--nj]
#   --gpu_inference BOOL          inference on a GPU (cuda_cmd --gpu 1) [false]
#   --local_data_opts "..."       options of local/data.sh
#   --train_set, --valid_set      data/<set> names [train, valid]
#   --test_sets "valid test"      sets to separate and score
#   --enh_config FILE             training config (was --train_config)
#   --enh_args "..."              more options of espnet2_ext.bin.enh_train (was
#                                 --train_args); they override the config
#   --enh_tag NAME                experiment name (was --tag) [config's file name]
#   --init_param PATH             start from a pre-trained model (ESPnet's --init_param)
#   --seed N                      training seed (ESPnet's --seed) [the config's]
#   --stems "a b c"               the stems, given once [read from data/<set>/stems,
#                                 else the config's]: carried into the training config,
#                                 checked against the model at inference and scoring
#   --inference_model FILE        checkpoint in exp/enh_<tag> [valid.loss.ave.pth]
#   --inference_args "..."        more options of espnet2_ext.bin.enh_inference
#   --segment_size S --hop_size S inference chunk and hop in seconds [12, 6]
#   --download_model SRC          evaluate a pack (.zip), a model folder or a hub id
#                                 without training: unpacked into exp/<name>, then
#                                 stages 7-8 (stages 3-6, 11 and 13 are skipped)
#   --scorer fast|museval         BSSEval v4 implementation of stage 8 [fast]
#   --hf_repo USER/NAME --hf_args "..."   stage 13
#   --train_data_opts "..." --valid_data_opts "..." --train_shape_file F
#   --valid_shape_file F          data of stages 5-6 instead of the segments of 3-4
#                                 (e.g. one speech_ref1 list for MixIT on FMA)
#   --python PATH                 the Python to run [found by path.sh]
# Jobs run through cmd.sh (train_cmd, cuda_cmd, decode_cmd): utils/run_local.sh on this
# machine or utils/slurm.sh (conf/slurm.conf) on a Slurm cluster.
set -euo pipefail

log() {
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*"
}
log_up() {  # as log, with the line of the caller's caller
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[2]##*/}:${BASH_LINENO[1]}) $*"
}
SECONDS=0

stage=1
stop_stage=13
skip_data_prep=false
skip_train=false
skip_eval=false
skip_packing=false
skip_upload_hf=""
ngpu=1
num_nodes=1
nj=4
inference_nj=""
gpu_inference=false
dumpdir=dump
expdir=exp
python=""
local_data_opts=""
train_set=train
valid_set=valid
test_sets="valid test"
enh_config=""
enh_args=""
enh_tag=""
init_param=""
seed=""
stems=""
inference_model=valid.loss.ave.pth
inference_args=""
segment_size=12
hop_size=6
download_model=""
scorer=fast
hf_repo=""
hf_args=""
segment_seconds=8
activity_args=""
fs=44100
train_data_opts=""
valid_data_opts=""
train_shape_file=""
valid_shape_file=""
# shellcheck disable=SC2034  # read by utils/parse_options.sh
declare -A option_aliases=([train_config]=enh_config [train_args]=enh_args [tag]=enh_tag)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
utils=$here/utils
# shellcheck source=utils/parse_options.sh
. "$utils/parse_options.sh"
[ $# -eq 0 ] || { echo "$0: unexpected arguments: $*" >&2; exit 1; }

python_opt=$python
# shellcheck disable=SC1091
[ ! -f ./path.sh ] || . ./path.sh
[ -z "$python_opt" ] || python=$python_opt
[ -n "$python" ] || python=python3
# shellcheck disable=SC1091
[ ! -f ./cmd.sh ] || . ./cmd.sh
train_cmd=${train_cmd:-$utils/run_local.sh}
cuda_cmd=${cuda_cmd:-$train_cmd}
decode_cmd=${decode_cmd:-$train_cmd}

die() { echo "$0: $*" >&2; exit 1; }
for flag in skip_data_prep skip_train skip_eval skip_packing gpu_inference; do
  case "${!flag}" in true|false) ;; *) die "--$flag is true or false, got '${!flag}'" ;; esac
done
case "$skip_upload_hf" in
  "") if [ -n "$hf_repo" ]; then skip_upload_hf=false; else skip_upload_hf=true; fi ;;
  true|false) ;;
  *) die "--skip_upload_hf is true or false, got '$skip_upload_hf'" ;;
esac
case "$scorer" in fast|museval) ;; *) die "--scorer is fast or museval, got '$scorer'" ;; esac
[ -n "$inference_nj" ] || inference_nj=$nj
config_tool() { "$python" "$utils/recipe_config.py" "$@"; }
min() { local a=$1 b; for b in "$@"; do [ "$b" -ge "$a" ] || a=$b; done; echo "$a"; }
words() { echo $*; }  # normalised list: single spaces, no ends

# ------------------------------------------------------------------------ stages
begin() {  # N text: log the stage and start its clock
  __stage=$1; __start=$SECONDS; shift
  log_up "Stage $__stage: $*"
}
finish() {  # log the stage's time
  local t=$((SECONDS - __start))
  log_up "Stage $__stage done in $((t / 60)) min $((t % 60)) s"
}
wanted() {  # N: stage N is in --stage..--stop_stage and not skipped
  local n=$1
  [ "$stage" -le "$n" ] && [ "$stop_stage" -ge "$n" ] || return 1
  case "$n" in
    1|3|4) ! "$skip_data_prep" && { [ "$n" -eq 1 ] || [ -z "$download_model" ]; } ;;
    5|6) ! "$skip_train" && [ -z "$download_model" ] ;;
    7|8) ! "$skip_eval" ;;
    11) ! "$skip_packing" && [ -z "$download_model" ] ;;
    13) ! "$skip_upload_hf" && [ -z "$download_model" ] ;;
  esac
}

# ------------------------------------------------------------------ the stems
data_stems() {  # SET: data/SET/stems as one line (empty when the file is missing)
  [ ! -f "data/$1/stems" ] || words $(cat "data/$1/stems")
}
model_stems=""
[ -z "$enh_config" ] || [ ! -f "$enh_config" ] ||
  model_stems=$(config_tool model_stems "$enh_config")
stems=$(words $stems)
train_stems=$(data_stems "$train_set")
if [ -z "$train_stems" ]; then
  # data preparation that writes no stems file: the ones given, else the config's
  train_stems=${stems:-$model_stems}
fi

# what the model must separate, and the stems of each set, agree; a mismatch names both
check_stems() {  # WHAT_A "A" WHAT_B "B": same names in the same order
  [ "$(words $2)" = "$(words $4)" ] ||
    die "stems mismatch: $1 has ($2), $3 has ($4). Prepare the data and the" \
      "model with the same stems (--stems \"...\" selects them in stage 1)"
}
check_subset() {  # WHAT "WANTED" WHERE "HAVE": every wanted stem is there
  local s
  for s in $2; do
    [[ " $4 " == *" $s "* ]] ||
      die "stems mismatch: $1 has ($2), $3 has ($4): '$s' is not there." \
        "Give --stems with stems both have"
  done
}

# the data of stages 5-6: fixed crops of the songs (segment_sound: "uid path start
# end"). In training, the dynamic-mixing preprocessor of the config replaces each item
# by a fresh mixture of random active segments; validation uses the crops as they are.
data_opts() {  # train|valid DIR
  local kind=$1 dir=$2 opts n
  opts="--${kind}_data_path_and_name_and_type $dir/mix_segments.scp,speech_mix,segment_sound"
  for n in $(seq 1 "$(words $train_stems | wc -w)"); do
    opts+=" --${kind}_data_path_and_name_and_type"
    opts+=" $dir/spk${n}_segments.scp,speech_ref$n,segment_sound"
  done
  echo "$opts"
}
# ------------------------------------------------------------- the experiment
if [ -n "$download_model" ]; then
  if [ -n "$enh_tag" ]; then
    enh_exp=$expdir/enh_$enh_tag
  elif [ -e "$download_model" ]; then
    # a pack or a folder: exp/download_<its name> (packed.zip: with its folder's name)
    name=$(basename "${download_model%.zip}")
    case "$name" in
      packed|model) name=$(basename "$(dirname "$(readlink -f "$download_model")")")_$name ;;
    esac
    enh_exp=$expdir/download_$name
  else
    enh_exp=$expdir/$download_model  # a hub id: exp/user/name, as ESPnet's enh.sh
  fi
  enh_tag=${enh_tag:-$(basename "$enh_exp")}
else
  [ -n "$enh_config" ] || die "give --enh_config FILE (the training config)"
  if { wanted 5 || wanted 6; } && [ ! -f "$enh_config" ]; then
    die "training config $enh_config not found"
  fi
  if [ -z "$enh_tag" ]; then
    enh_tag=$(basename "${enh_config%.*}")
    [ -z "$seed" ] || enh_tag+="_seed$seed"
  fi
  enh_exp=$expdir/enh_$enh_tag
fi

# the statistics folder: keyed by what collect_stats depends on (issue: it ran again
# for every experiment name, with identical data and config)
stats_dir=""
stats_files=()
stats_folder() {  # sets stats_dir and stats_files
  local tok
  stats_files=()
  for tok in $train_data_opts $valid_data_opts; do
    case "$tok" in *,*) stats_files+=("${tok%%,*}") ;; esac
  done
  stats_files+=("$train_shape_file" "$valid_shape_file")
  stats_dir=$expdir/enh_stats_$(config_tool stats_key --config "$enh_config" \
    --args "$train_extra $enh_args" "${stats_files[@]}")
}

gpus_here() {  # GPUs PyTorch sees on this machine
  "$python" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0
}
check_gpus() {  # N WHAT: a local run needs N GPUs here
  local need=$1 have
  [ "$need" -gt 0 ] || return 0
  case "$2" in *run_local.sh*) ;; *) return 0 ;; esac  # a scheduler's node has them
  have=$(gpus_here)
  if [ "$have" -lt "$need" ]; then
    die "$3 needs $need GPU(s), this machine has $have" \
      "(CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}). Use --ngpu $have" \
      "(0: the CPU), or run the jobs through Slurm (cmd.sh: CMD_BACKEND=slurm)." \
      "Nothing was changed."
  fi
}

# no GPU where one is asked for: stop before any stage runs
! wanted 6 || check_gpus "$ngpu" "$cuda_cmd" "--ngpu $ngpu"
! wanted 7 || ! "$gpu_inference" || check_gpus 1 "$cuda_cmd" "--gpu_inference true"

# ============================================================= data (stages 1-4)
if wanted 1; then
  begin 1 "data preparation: local/data.sh $local_data_opts${stems:+ --stems \"$stems\"}"
  # shellcheck disable=SC2206
  data_cmd=(local/data.sh $local_data_opts ${stems:+--stems "$stems"})
  case "$train_cmd" in
    *run_local.sh*) "${data_cmd[@]}" ;;  # this machine: its progress on the console
    *)
      log "as a job of train_cmd: $dumpdir/logs/data.log"
      $train_cmd --num_threads "$nj" "$dumpdir/logs/data.log" "${data_cmd[@]}" ;;
  esac
  finish
fi
if [ "$(data_stems "$train_set")" != "" ]; then
  train_stems=$(data_stems "$train_set")
  # training separates the data's stems: --stems chose them in stage 1 (a subset to
  # score is fine in stages 7-8)
  if [ -n "$stems" ] && { wanted 3 || wanted 4 || wanted 5 || wanted 6; }; then
    check_stems "--stems" "$stems" "data/$train_set/stems" "$train_stems"
  fi
fi

# the data of stages 3-6 and the stems training separates, now that data/ exists
user_train_data_opts=$train_data_opts
if [ -z "$train_data_opts" ] && [ -z "$train_stems" ] &&
  { wanted 3 || wanted 4 || wanted 5 || wanted 6; }; then
  die "no stem names: data/$train_set/stems is missing (run stage 1) and" \
    "${enh_config:-the config} names none; give --stems \"vocals bass drums other\""
fi
[ -n "$user_train_data_opts" ] || train_data_opts=$(data_opts train "$dumpdir/segments/train")
[ -n "$valid_data_opts" ] || valid_data_opts=$(data_opts valid "$dumpdir/segments/valid")
[ -n "$train_shape_file" ] || train_shape_file=$dumpdir/segments/train/mix_segments.scp
[ -n "$valid_shape_file" ] || valid_shape_file=$dumpdir/segments/valid/mix_segments.scp

# the options that carry the stems into the training config, and the seed
train_extra=""
if [ -n "$train_stems" ] && [ -n "$enh_config" ] && [ -f "$enh_config" ] &&
  [ -z "$download_model" ]; then
  if [ -n "$model_stems" ] && [ "$model_stems" != "$train_stems" ]; then
    log "the config names the stems ($model_stems), the data has ($train_stems):" \
      "training separates the data's"
  fi
  train_extra=$(config_tool stems_args "$enh_config" $train_stems)
fi
[ -z "$seed" ] || train_extra+=" --seed $seed"

if wanted 3; then
  begin 3 "${segment_seconds} s segments and source-activity filtering of" \
    "data/$train_set ($train_stems) -> $dumpdir/segments/train"
  # the per-stem index of active segments that dynamic mixing draws from, and the
  # fixed crops that define an epoch's items
  # shellcheck disable=SC2086
  $train_cmd --num_threads "$nj" "$dumpdir/segments/logs/train.log" \
    "$python" -m espnet2_ext.datasets.activity --data "data/$train_set" \
      --out "$dumpdir/segments/train" --segment-seconds "$segment_seconds" \
      --stems $train_stems --nj "$nj" $activity_args
  finish
fi

if wanted 4; then
  begin 4 "validation crops of data/$valid_set and data checks -> $dumpdir/segments/valid"
  for dset in "$valid_set" $test_sets; do
    [ -f "data/$dset/wav.scp" ] || die "data/$dset/wav.scp is missing: run stage 1"
    set_stems=$(data_stems "$dset")
    [ -z "$set_stems" ] ||
      check_stems "data/$train_set/stems" "$train_stems" "data/$dset/stems" "$set_stems"
  done
  # shellcheck disable=SC2086
  $train_cmd --num_threads "$nj" "$dumpdir/segments/logs/valid.log" \
    "$python" -m espnet2_ext.datasets.activity --data "data/$valid_set" \
      --out "$dumpdir/segments/valid" --no-index --stems $train_stems --nj "$nj" \
      $activity_args
  finish
fi

# ========================================================= training (stages 5-6)
if wanted 5; then
  stats_folder
  if [ -f "$stats_dir/.done" ]; then
    begin 5 "statistics: $stats_dir already holds them for this data and config"
  else
    begin 5 "statistics (collect_stats) -> $stats_dir"
    mkdir -p "$stats_dir"
    # what the statistics were keyed by, for the curious
    config_tool stats_key --config "$enh_config" --args "$train_extra $enh_args" \
      --write "$stats_dir/key.json" "${stats_files[@]}" >/dev/null
    # shellcheck disable=SC2086
    $train_cmd "$stats_dir/logs/stats.log" \
      "$python" -m espnet2_ext.bin.enh_train --collect_stats true --ngpu 0 \
        --config "$enh_config" --num_workers 0 \
        $train_data_opts $valid_data_opts \
        --train_shape_file "$train_shape_file" --valid_shape_file "$valid_shape_file" \
        --output_dir "$stats_dir" $train_extra $enh_args
    touch "$stats_dir/.done"
  fi
  finish
fi

follow_training() {  # LOG PID: ESPnet's per-epoch lines of LOG, short, until PID ends
  local line max=? re_start re_res part
  re_start='([0-9]+)/([0-9]+)epoch started(\. Estimated time to finish: (.*))?$'
  re_res='([0-9]+)epoch results: \[train\] (.*)'
  tail -n +1 -F --pid="$2" "$1" 2>/dev/null | while IFS= read -r line; do
    if [[ $line =~ $re_start ]]; then
      max=${BASH_REMATCH[2]}
      if [ -n "${BASH_REMATCH[4]}" ]; then
        echo "  epoch ${BASH_REMATCH[1]}/$max started; about ${BASH_REMATCH[4]} left"
      else
        echo "  epoch ${BASH_REMATCH[1]}/$max started"
      fi
    elif [[ $line =~ $re_res ]]; then
      local epoch=${BASH_REMATCH[1]} train=${BASH_REMATCH[2]} valid="" msg
      if [[ $train == *"[valid] "* ]]; then
        valid=${train#*\[valid\] }; train=${train%%\[valid\] *}
      fi
      valid=${valid%%\[*}
      msg="  epoch $epoch/$max done:"
      for part in train valid; do
        local stats=" ${!part}" loss="" time=""
        [[ $stats =~ [\ ,]loss=([^,]*) ]] && loss=${BASH_REMATCH[1]}
        [[ $stats =~ [\ ,]time=([^,]*) ]] && time=${BASH_REMATCH[1]}
        [ -z "$loss" ] || msg+=" $part loss $loss ($time)"
      done
      echo "$msg"
    elif [[ $line == *"The training was resumed"* ]] ||
      [[ $line == *"The training was finished"* ]] ||
      [[ $line == *"There are no improvements"* ]]; then
      echo "  ${line#*INFO: }"
    fi
  done
}

if wanted 6; then
  if [ "$ngpu" -eq 0 ]; then
    big=$(config_tool paper_size "$enh_config" --args "$enh_args")
    if [ -n "$big" ]; then
      log "WARNING: $enh_config is a paper-size run ($big) and --ngpu 0 trains it" \
        "on the CPU: expect days to weeks. Use --ngpu 1 on a GPU machine, or" \
        "--size tiny (the demo config) to try the recipe"
    fi
  fi
  stats_folder
  [ -f "$stats_dir/.done" ] || die "no statistics for this data and config in" \
    "$stats_dir: run stage 5 first"
  begin 6 "training with $enh_config -> $enh_exp (ngpu=$ngpu, num_nodes=$num_nodes;" \
    "the full log: $enh_exp/train.log)"
  mkdir -p "$enh_exp"
  # keep the log of an earlier (interrupted) run: train.log -> train.1.log -> ...
  if [ -f "$enh_exp/train.log" ]; then
    n=1; while [ -e "$enh_exp/train.$n.log" ]; do n=$((n + 1)); done
    for ((i = n; i > 1; i--)); do mv "$enh_exp/train.$((i - 1)).log" "$enh_exp/train.$i.log"; done
    mv "$enh_exp/train.log" "$enh_exp/train.1.log"
  fi
  # collect_stats names its shape files after the first data name (speech_mix, or
  # speech_ref1 for MixIT on unlabeled mixtures)
  shape_name=$(echo "$train_data_opts" | awk '{split($2, a, ","); print a[2]}')
  train_opts=(
    $train_data_opts $valid_data_opts
    --train_shape_file "$stats_dir/train/${shape_name}_shape"
    --valid_shape_file "$stats_dir/valid/${shape_name}_shape"
    --resume true --output_dir "$enh_exp" --config "$enh_config"
  )
  [ -z "$init_param" ] || train_opts+=(--init_param "$init_param")
  # shellcheck disable=SC2206
  train_opts+=($train_extra $enh_args --ngpu "$ngpu")
  if [ "$num_nodes" -gt 1 ]; then
    # one task per node (srun), each spawning one process per GPU: the command ESPnet's
    # espnet2/bin/launch.py builds for Slurm, with a shared-file rendezvous
    init_file=$(pwd)/$enh_exp/.dist_init_$(date +%s%N)
    train_opts+=(--multiprocessing_distributed true --dist_launcher slurm
      --dist_init_method "file://$init_file")
    [ "$ngpu" -gt 0 ] || train_opts+=(--dist_backend gloo)
    launch=($cuda_cmd --gpu "$ngpu" --num_nodes "$num_nodes" "$enh_exp/train.log"
      srun --export=ALL
      "$python" -m espnet2_ext.bin.enh_train "${train_opts[@]}")
  else
    # one node: ESPnet's own launcher in enh_train spawns one process per GPU
    [ "$ngpu" -le 1 ] || train_opts+=(--multiprocessing_distributed true)
    launch=($cuda_cmd --gpu "$ngpu" "$enh_exp/train.log"
      "$python" -m espnet2_ext.bin.enh_train "${train_opts[@]}")
  fi
  "${launch[@]}" &
  train_pid=$!
  # a background job ignores Ctrl-C: pass it on (the runner stops its jobs; training
  # resumes from its last epoch when the stage runs again)
  trap 'kill -TERM "$train_pid" 2>/dev/null; wait "$train_pid"; exit 130' INT TERM
  follow_training "$enh_exp/train.log" "$train_pid" &
  follower=$!
  rc=0; wait "$train_pid" || rc=$?
  trap - INT TERM
  wait "$follower" 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    if [ -f "$enh_exp/train.log" ]; then
      echo "$0: training failed (status $rc); the end of $enh_exp/train.log:" >&2
      tail -n 15 "$enh_exp/train.log" >&2
    fi
    exit "$rc"
  fi
  log "averaged model: $enh_exp/$inference_model"
  finish
fi

# ========================================================= evaluation (7-8)
if [ -n "$download_model" ] && { wanted 7 || wanted 8; }; then
  log "--download_model: $download_model -> $enh_exp"
  inference_model=$(config_tool download "$download_model" "$enh_exp")
fi
model_config=$enh_exp/config.yaml
eval_stems() {  # SET: the checked stems of SET to separate and score
  local dset=$1 have want model what
  for f in "$model_config" "$enh_exp/$inference_model"; do
    [ -e "$f" ] || die "$f not found: train the model first (stage 6) or give" \
      "--download_model"
  done
  model=$(config_tool model_stems "$model_config")
  have=$(data_stems "$dset")
  what="data/$dset/stems"
  [ -n "$have" ] || { have=$train_stems; what="data/$train_set/stems"; }
  want=${stems:-$have}
  [ -n "$want" ] || want=$model
  [ -n "$want" ] || die "no stem names for data/$dset: give --stems"
  if [ -n "$model" ]; then
    # without --stems: the model's stems are the data's, in any order
    [ -n "$stems" ] || [ -z "$have" ] ||
      [ "$(words $(printf '%s\n' $model | sort))" = "$(words $(printf '%s\n' $have | sort))" ] ||
      die "stems mismatch: the model ($model_config) has ($model), $what has" \
        "($have). Score the stems both have with --stems \"...\", or prepare the" \
        "data with the model's stems"
    check_subset "--stems" "$want" "the model ($model_config)" "$model"
  fi
  [ -z "$have" ] || check_subset "--stems" "$want" "$what" "$have"
  echo "$want"
}

if wanted 7; then
  for dset in $test_sets; do
    out=$enh_exp/separate_${dset//\//_}
    want=$(eval_stems "$dset")
    model=$(config_tool model_stems "$model_config")
    have=$(data_stems "$dset"); [ -n "$have" ] || have=$train_stems
    [ -n "$model" ] || model=$have
    if "$gpu_inference"; then
      infer_cmd="$cuda_cmd --gpu 1"; infer_ngpu=1
    else
      infer_cmd=$decode_cmd; infer_ngpu=0
    fi
    begin 7 "separating data/$dset ($want) in ${segment_size} s chunks," \
      "${hop_size} s hop -> $out"
    n=$(wc -l <"data/$dset/wav.scp")
    this_nj=$(min "$inference_nj" "$n")
    rm -rf "$out/split" && mkdir -p "$out/split"
    split_files=()
    for j in $(seq 1 "$this_nj"); do split_files+=("$out/split/keys.$j"); done
    "$python" -m espnet2_ext.utils.split_scp "data/$dset/wav.scp" "${split_files[@]}"
    # shellcheck disable=SC2086
    $infer_cmd JOB=1:"$this_nj" "$out/logs/separate.JOB.log" \
      "$python" -m espnet2_ext.bin.enh_inference --ngpu "$infer_ngpu" --fs "$fs" \
        --data_path_and_name_and_type "data/$dset/wav.scp,speech_mix,sound" \
        --key_file "$out/split/keys.JOB" \
        --train_config "$model_config" --model_file "$enh_exp/$inference_model" \
        --segment_size "$segment_size" --hop_size "$hop_size" \
        --output_dir "$out/split/out.JOB" $inference_args
    # shellcheck disable=SC2086
    "$python" -m espnet2_ext.utils.merge_separated "$out"/split/out.* --out "$out" \
      --data "data/$dset" --model_stems $model --ref_stems $have --stems $want
    finish
  done
fi

if wanted 8; then
  for dset in $test_sets; do
    out=$enh_exp/separate_${dset//\//_}
    scoring=$out/scoring
    want=$(eval_stems "$dset")
    [ -d "$out/refs" ] || die "$out/refs not found: run stage 7 first"
    # one baseline cache for every system scored on this set, keyed by the content of
    # the references: the mixture's scores are computed once per reference set
    score_opts=(--ref_dir "$out/refs" --est_dir "$out/stems" --stems $want
      --out_dir "$scoring" --tag "$enh_tag" --scorer "$scorer"
      --baseline_cache "$expdir/mixture_baseline_${dset//\//_}.json")
    n=$(find "$out/stems" -mindepth 1 -maxdepth 1 | wc -l)
    this_nj=$(min "$nj" "$n")
    begin 8 "scoring $out ($want; uSDR, cSDR with the $scorer scorer, $this_nj" \
      "job(s)) -> $scoring"
    # every job scores every N-th song into $scoring/songs/; the merge writes the tables
    $decode_cmd JOB=1:"$this_nj" "$scoring/logs/score.JOB.log" \
      "$python" -m espnet2_ext.bin.music_score "${score_opts[@]}" --job "JOB/$this_nj"
    $decode_cmd "$scoring/logs/merge.log" \
      "$python" -m espnet2_ext.bin.music_score "${score_opts[@]}" --merge
    log "results: $scoring/RESULTS.md"
    finish
  done
fi

# ============================================================ sharing (11, 13)
if wanted 11; then
  begin 11 "packing $enh_exp -> $enh_exp/packed.zip"
  options=()
  last_set=${test_sets##* }
  scoring=$enh_exp/separate_${last_set//\//_}/scoring
  if [ -f "$scoring/RESULTS.md" ]; then
    cp "$scoring/RESULTS.md" "$enh_exp/RESULTS.md"
    if [ -d "$scoring/images" ]; then
      # ESPnet's images/ (training curves) stays; our plots go beside them
      mkdir -p "$enh_exp/images"
      rm -rf "$enh_exp/images/scoring"
      cp -r "$scoring/images" "$enh_exp/images/scoring"
    fi
  fi
  [ ! -f "$enh_exp/RESULTS.md" ] || options+=(--option "$enh_exp/RESULTS.md")
  [ ! -d "$enh_exp/images" ] || options+=(--option "$enh_exp/images")
  # the pack records the chunking stage 7 used, so that the model's users get it too
  "$python" -m espnet2_ext.bin.pack --train_config "$enh_exp/config.yaml" \
    --model_file "$enh_exp/$inference_model" "${options[@]}" \
    --segment_size "$segment_size" --hop_size "$hop_size" \
    --outpath "$enh_exp/packed.zip"
  finish
fi

if wanted 13; then
  [ -n "$hf_repo" ] || die "stage 13 uploads to --hf_repo USER/NAME: give it, or" \
    "--skip_upload_hf true"
  begin 13 "uploading $enh_exp/packed.zip to the Hugging Face hub: $hf_repo"
  # shellcheck disable=SC2086
  "$python" -m espnet2_ext.bin.hf_upload --packed "$enh_exp/packed.zip" \
    --repo "$hf_repo" $hf_args
  finish
fi

log "Successfully finished stages $stage..$stop_stage [elapsed=${SECONDS}s]"
