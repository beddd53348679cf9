#!/usr/bin/env bash
# The MixIT-MSS comparison (seeds/002, DESIGN.md 3-4) in one command: MixIT pre-training
# on unlabeled mixtures -> head selection (12 -> one output per stem) -> fine-tuning,
# against training from scratch with the same fine-tuning budget, and the
# frozen-separator variant against its random-separator control; over several seeds, on
# your songs and unlabeled mixtures (or the generated demo sets); one table at the end.
#
#   local/compare.sh --work ~/mixit_compare                        # demo data, tiny model
#   local/compare.sh --work ~/cmp --songs ~/my_songs --unlabeled ~/my_mixtures \
#       --valid_list ~/my_songs/valid.txt --seeds "1 2 3" --mixit_steps 300 \
#       --finetune_steps 200
#
# Runs in copies of this recipe and of egs2/musdb18hq/enh1 under --work (nothing in the
# repository's recipe folders is touched), with the recipes' own stages:
#   1. songs: MUSDB18-HQ recipe stages 1, 3, 4 (data, segments, checks);
#      unlabeled mixtures: this recipe's stage 1; statistics (stage 5) of each config;
#   2. per seed: MixIT pre-training and head selection (this recipe, stages 6-7);
#      each arm trained, separated and scored (MUSDB18-HQ recipe, stages 6-8):
#        finetune        all parameters, from the head-selected model
#        scratch         all parameters, random initialisation
#        frozen          separator blocks frozen, from the head-selected model
#        frozen_scratch  separator blocks frozen, random (the control of the paper's
#                        Table 2)
#        heads           the head-selected model as it is (stages 7-8 only)
#      every arm with the same number of updates; fine-tuned and scratch runs of a seed
#      share the training seed;
#   3. the table (python -m espnet2_ext.bin.compare_report): per arm mean ± sd over the
#      seeds per stem and average (uSDR, cSDR from the scoring stage), the paired
#      per-seed and per-song differences (finetune - scratch, frozen -
#      frozen_scratch) with their spread, the songs and seeds each number rests on,
#      the head selection, the time of every step, the command line:
#      <work>/report/RESULTS.md (and --results FILE).
# The budget: --mixit_steps and --finetune_steps updates, written into copies of the
# configs (max_epoch x num_iters_per_epoch, --steps_per_epoch per epoch) with the
# authors' released schedule (warmupstaircaselr) shrunk to that budget in shape
# (python -m espnet2_ext.bin.budget_config; --schedule config keeps the configs' own).
# At least 3 updates: the released warm-up gives the first two a learning rate of 0.
# Without an arm that starts from MixIT (--arms "scratch frozen_scratch") the unlabeled
# mixtures are not prepared (--unlabeled is not read) and nothing is pre-trained.
# Every step is skipped when its output exists: run the same command again to resume an
# interrupted run (a training resumes from its last epoch). A work folder made with
# other settings is refused. Progress lines on the console, each step's log under
# <work>/logs/. On a shared CPU: nice -n 19 local/compare.sh ... (one thread per process
# is set here).
#
# Options [defaults]:
#   --work DIR             the work folder (required)
#   --songs demo|real|DIR  the song tree (MUSDB18-HQ layout, any stems) [demo]
#   --unlabeled demo|real|DIR   unlabeled mixtures: generated FMA-like, FMA of db.sh,
#                          or a plain folder of audio files [demo]
#   --valid_list FILE      validation songs (validation loss, head selection)
#   --stems "a b c"        the stems [read from the songs]
#   --valid_percent P      unlabeled files kept for validation (this recipe's stage 1)
#   --size tiny|small|medium|large   the model [tiny: the demo configs, CPU]
#   --mixit_config, --finetune_config, --frozen_config FILE   configs to start from
#                          [this recipe's configs for --size]
#   --seeds "1 2 3"        training seeds [1 2 3]
#   --arms "..."           [finetune scratch frozen frozen_scratch heads]
#   --mixit_steps N        MixIT updates per seed [300]
#   --finetune_steps N     updates of every trained arm [200]
#   --steps_per_epoch N    updates per epoch: validation and a checkpoint each [20]
#   --schedule released|config   [released]: the paper configs' warmupstaircaselr
#                          shrunk to the budget; config: the configs' own schedule
#   --jobs N               trainings at once [1]
#   --nj N                 data, inference and scoring jobs [2]
#   --ngpu N               GPUs per training [the recipes': 0 for tiny, else 1]
#   --scorer fast|museval  the scoring stage's BSSEval v4 implementation [fast]
#   --musdb_data_opts "..."   more options of the MUSDB18-HQ recipe's local/data.sh
#                          (e.g. "--demo_test 8")
#   --fma_data_opts "..."  more options of this recipe's local/data.sh
#   --musdb_args "..."     more options of every MUSDB18-HQ recipe call (shell-quoted),
#                          e.g. "--segment_size 6 --hop_size 3 --segment_seconds 4"
#   --fma_args "..."       more options of every call of this recipe (shell-quoted)
#   --results FILE         also copy RESULTS.md here
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)   # egs2/fma/mixit_enh1
repo=$(cd "$here/../../.." && pwd)
called_from=$PWD
# the command as it was typed, after a cd to where it was typed (relative paths work)
command_line=$(printf '%q ' cd "$PWD")
command_line+="&& $(printf '%q ' "$0" "$@")"
command_line=${command_line% }

work=""
songs=demo
unlabeled=demo
valid_list=""
stems=""
valid_percent=""
size=tiny
mixit_config=""
finetune_config=""
frozen_config=""
seeds="1 2 3"
arms="finetune scratch frozen frozen_scratch heads"
mixit_steps=300
finetune_steps=200
steps_per_epoch=20
schedule=released
jobs=1
nj=2
ngpu=""
scorer=fast
musdb_data_opts=""
fma_data_opts=""
musdb_args=""
fma_args=""
results=""
. "$here/utils/parse_options.sh"
[ $# -eq 0 ] || { echo "$0: unexpected arguments: $*" >&2; exit 1; }

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (compare) $*"; }
die() { echo "$0: $*" >&2; exit 1; }
absolute() {  # a path given relative to where compare.sh was called from
  case "$1" in /*|"") echo "$1" ;; *) echo "$called_from/$1" ;; esac
}

# ------------------------------------------------------------------ the options
[ -n "$work" ] || die "give --work DIR (the work folder)"
work=$(absolute "$work")
case "$work/" in "$repo"/egs2/*) die "--work $work is inside the repository's recipes" ;; esac
case "$size" in tiny|small|medium|large) ;; *) die "--size is tiny, small, medium or large, got '$size'" ;; esac
case "$schedule" in released|config) ;; *) die "--schedule is released or config, got '$schedule'" ;; esac
case "$scorer" in fast|museval) ;; *) die "--scorer is fast or museval, got '$scorer'" ;; esac
for n in mixit_steps finetune_steps steps_per_epoch jobs nj; do
  [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "--$n is a positive integer, got '${!n}'"
done
for n in mixit_steps finetune_steps; do
  [ $(( ${!n} % steps_per_epoch )) -eq 0 ] ||
    die "--$n (${!n}) must be a multiple of --steps_per_epoch ($steps_per_epoch)"
done
seeds=$(echo $seeds); arms=$(echo $arms)
[ -n "$seeds" ] || die "give at least one seed (--seeds \"1 2 3\")"
for s in $seeds; do [[ $s =~ ^[0-9]+$ ]] || die "--seeds are integers, got '$s'"; done
for a in $arms; do
  case "$a" in finetune|scratch|frozen|frozen_scratch|heads) ;;
    *) die "--arms: unknown arm '$a' (finetune scratch frozen frozen_scratch heads)" ;;
  esac
done
has_arm() { [[ " $arms " == *" $1 "* ]]; }
# the unlabeled mixtures only for the arms that start from a MixIT model
needs_mixit=false
for a in finetune frozen heads; do ! has_arm "$a" || needs_mixit=true; done
for v in songs unlabeled; do
  [ "$v" = songs ] || "$needs_mixit" || continue
  case "${!v}" in demo|real) ;; *)
    p=$(absolute "${!v}"); [ -d "$p" ] || die "--$v $p: no such folder"
    printf -v "$v" '%s' "$p" ;;
  esac
done
if [ -n "$valid_list" ]; then
  valid_list=$(absolute "$valid_list")
  [ -f "$valid_list" ] || die "--valid_list $valid_list: no such file"
fi
if [ "$size" = tiny ]; then
  default_mixit=$here/conf/train_mixit_demo.yaml
  default_finetune=$here/conf/finetune_enh_demo.yaml
  default_frozen=$here/conf/finetune_frozen_enh_demo.yaml
  shape_size=small  # the released schedules' shape (the same for every size)
else
  default_mixit=$here/conf/tuning/train_mixit_bs_locoformer_${size}.yaml
  default_finetune=$here/conf/tuning/finetune_enh_bs_locoformer_${size}.yaml
  default_frozen=$here/conf/tuning/finetune_frozen_enh_bs_locoformer_${size}.yaml
  shape_size=$size
fi
mixit_config=$(absolute "${mixit_config:-$default_mixit}")
finetune_config=$(absolute "${finetune_config:-$default_finetune}")
frozen_config=$(absolute "${frozen_config:-$default_frozen}")
for f in "$mixit_config" "$finetune_config" "$frozen_config"; do
  [ -f "$f" ] || die "config $f not found"
done

# the project's Python (as the recipes' path.sh finds it), one thread per process
export ESPNET2_EXT_ROOT=${ESPNET2_EXT_ROOT:-$repo}
python=${PYTHON:-$ESPNET2_EXT_ROOT/.venv/bin/python}
[ -x "$python" ] || python=$(command -v python3)
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# a work folder belongs to one set of settings (the seeds and arms may grow)
mkdir -p "$work/logs" "$work/conf"
settings=$(cat <<EOF
songs=$songs
unlabeled=$unlabeled
valid_list=$valid_list
stems=$stems
valid_percent=$valid_percent
size=$size
mixit_config=$mixit_config $(sha256sum <"$mixit_config" | cut -c1-12)
finetune_config=$finetune_config $(sha256sum <"$finetune_config" | cut -c1-12)
frozen_config=$frozen_config $(sha256sum <"$frozen_config" | cut -c1-12)
mixit_steps=$mixit_steps
finetune_steps=$finetune_steps
steps_per_epoch=$steps_per_epoch
schedule=$schedule
ngpu=$ngpu
scorer=$scorer
musdb_data_opts=$musdb_data_opts
fma_data_opts=$fma_data_opts
musdb_args=$musdb_args
fma_args=$fma_args
EOF
)
if [ -f "$work/settings.txt" ]; then
  if [ "$(cat "$work/settings.txt")" != "$settings" ]; then
    diff <(cat "$work/settings.txt") <(echo "$settings") >&2 || true
    die "$work was made with other settings (above: < then, > now): its runs would" \
      "not be comparable. Use another --work, or the settings of $work/settings.txt"
  fi
else
  # a new work folder (or one whose first call stopped before its settings were
  # recorded): configs of an earlier attempt are not these settings'
  rm -f "$work/conf/mixit.yaml" "$work/conf/finetune.yaml" "$work/conf/frozen.yaml"
fi

# ------------------------------------------------------------- 1. budget configs
# before the settings are recorded: a budget budget_config refuses (e.g. too few
# updates to train anything) leaves the work folder free for a corrected call
conf=$work/conf
write_config() {  # IN OUT STEPS SHAPE
  local from=()
  [ "$schedule" = config ] || from=(--schedule_from "$4")
  "$python" -m espnet2_ext.bin.budget_config --config "$1" --out "$2" --steps "$3" \
    --steps_per_epoch "$steps_per_epoch" ${from[@]+"${from[@]}"} ||
    die "no config at this budget from $1 (the error above); nothing was recorded" \
      "in $work, so the same --work takes a corrected call"
}
tuning=$here/conf/tuning
[ -f "$conf/mixit.yaml" ] || write_config "$mixit_config" "$conf/mixit.yaml" \
  "$mixit_steps" "$tuning/train_mixit_bs_locoformer_${shape_size}.yaml"
[ -f "$conf/finetune.yaml" ] || write_config "$finetune_config" "$conf/finetune.yaml" \
  "$finetune_steps" "$tuning/finetune_enh_bs_locoformer_${shape_size}.yaml"
[ -f "$conf/frozen.yaml" ] || write_config "$frozen_config" "$conf/frozen.yaml" \
  "$finetune_steps" "$tuning/finetune_frozen_enh_bs_locoformer_${shape_size}.yaml"

[ -f "$work/settings.txt" ] || echo "$settings" >"$work/settings.txt"
echo "$command_line" >>"$work/commands.txt"
budget="$finetune_steps fine-tuning updates"
! "$needs_mixit" || budget="$mixit_steps MixIT + $budget"
log "work folder $work; seeds: $seeds; arms: $arms; budget: $budget; $jobs training(s) at once"

# -------------------------------------------------------------- recipe copies
fma=$work/fma
musdb=$work/musdb
copy_recipe() {  # SRC DST: the recipe without outputs, links resolved
  [ -d "$2" ] && return 0
  log "copying $1 -> $2"
  mkdir -p "$2.partial"
  (cd "$1" && tar -ch --exclude=./data --exclude=./dump --exclude=./exp \
    --exclude=./downloads --exclude='./RESULTS*' .) | (cd "$2.partial" && tar -x)
  mv "$2.partial" "$2"
}
copy_recipe "$here" "$fma"
copy_recipe "$repo/egs2/musdb18hq/enh1" "$musdb"

timed() {  # NAME CMD...: run CMD in a subshell; append NAME, wall, user, sys seconds
  local name=$1 start rc=0 t
  shift
  start=$(date +%s.%N)
  t=$(mktemp "$work/logs/.times.XXXXXX")
  ( set +e; "$@"; rc=$?; times >"$t"; exit "$rc" ) || rc=$?
  # `times`' second line: the children's user and system time, e.g. 1m2.500s 0m1.250s
  awk -v name="$name" -v start="$start" -v end="$(date +%s.%N)" '
    function sec(x) { split(x, p, "m"); sub("s", "", p[2]); return p[1] * 60 + p[2] }
    NR == 2 { printf "%s\t%.1f\t%.1f\t%.1f\n", name, end - start, sec($1), sec($2) }' \
    "$t" >>"$work/timings.tsv"
  rm -f "$t"
  return "$rc"
}
time_of() {  # NAME: "W min, CPU C min" of its last line in timings.tsv
  awk -F '\t' -v name="$1" '$1 == name { w = $2; c = $3 + $4 }
    END { printf "%.1f min, CPU %.1f min", w / 60, c / 60 }' "$work/timings.tsv"
}
mkdir -p "$work/done"
step() {  # NAME CMD...: run CMD once (log: logs/NAME.log; done: done/NAME)
  local name=$1
  shift
  if [ -e "$work/done/$name" ]; then
    log "$name: done before"
    return 0
  fi
  log "$name ... (log: $work/logs/$name.log)"
  if ! timed "$name" "$@" >"$work/logs/$name.log" 2>&1; then
    tail -n 20 "$work/logs/$name.log" >&2
    die "$name failed: $work/logs/$name.log"
  fi
  touch "$work/done/$name"
  log "$name: done ($(time_of "$name"))"
}

# ------------------------------------------------------------------- 2. data
musdb_common=(--data "$songs" --size "$size" --nj "$nj" --scorer "$scorer"
  --test_sets test --local_data_opts "$musdb_data_opts")
fma_common=(--data "$unlabeled" --size "$size" --nj "$nj"
  --local_data_opts "$fma_data_opts")
[ -z "$valid_list" ] || { musdb_common+=(--valid_list "$valid_list"); fma_common+=(--valid_list "$valid_list"); }
[ -z "$stems" ] || { musdb_common+=(--stems "$stems"); fma_common+=(--stems "$stems"); }
[ -z "$ngpu" ] || { musdb_common+=(--ngpu "$ngpu"); fma_common+=(--ngpu "$ngpu"); }
[ -z "$valid_percent" ] || fma_common+=(--valid_percent "$valid_percent")
eval "extra=($musdb_args)" && musdb_common+=(${extra[@]+"${extra[@]}"})
eval "extra=($fma_args)" && fma_common+=(${extra[@]+"${extra[@]}"})
musdb_run() { (cd "$musdb" && ./run.sh "${musdb_common[@]}" "$@"); }
fma_run() { (cd "$fma" && ./run.sh "${fma_common[@]}" "$@"); }

step songs musdb_run --stage 1 --stop_stage 4 --enh_config "$conf/finetune.yaml"
case "$songs" in
  demo) song_tree=$musdb/downloads/musdb18hq_demo ;;  # generated by the step above
  *) song_tree=$songs ;;
esac
fma_common+=(--musdb "$song_tree")
# statistics once per config (stage 5 is shared by every run of the same config)
if "$needs_mixit"; then
  step unlabeled fma_run --stage 1 --stop_stage 1
  step stats_mixit fma_run --stage 5 --stop_stage 5 --enh_config "$conf/mixit.yaml" \
    --enh_tag stats
fi
for c in finetune frozen; do
  case "$c" in finetune) uses="finetune scratch" ;; frozen) uses="frozen frozen_scratch" ;; esac
  used=false; for a in $uses; do ! has_arm "$a" || used=true; done
  ! "$used" || step "stats_$c" musdb_run --stage 5 --stop_stage 5 \
    --enh_config "$conf/$c.yaml" --enh_tag stats
done

# --------------------------------------------------------- 3. runs, in a pool
heads_dir() { echo "$fma/exp/enh_mixit_seed$1/heads"; }
scoring_dir() { echo "$musdb/exp/enh_$1_seed$2/separate_test/scoring"; }
run_mixit() {  # SEED
  local exp=$fma/exp/enh_mixit_seed$1 first=6
  [ ! -f "$exp/valid.loss.ave.pth" ] || first=7  # trained before: heads only
  fma_run --stage "$first" --stop_stage 7 --seed "$1" --enh_tag mixit \
    --enh_config "$conf/mixit.yaml" --finetune_config "$conf/finetune.yaml" \
    --frozen_config "$conf/frozen.yaml"
}
run_arm() {  # ARM SEED
  local arm=$1 seed=$2 exp=$musdb/exp/enh_$1_seed$2 first=6 opts=()
  case "$arm" in
    heads)
      musdb_run --stage 7 --stop_stage 8 --download_model "$(heads_dir "$seed")" \
        --enh_tag "heads_seed$seed"
      return ;;
    finetune|scratch) opts+=(--enh_config "$conf/finetune.yaml") ;;
    frozen|frozen_scratch) opts+=(--enh_config "$conf/frozen.yaml") ;;
  esac
  case "$arm" in finetune|frozen) opts+=(--init_param "$(heads_dir "$seed")/model.pth") ;; esac
  [ ! -f "$exp/valid.loss.ave.pth" ] || first=7  # trained before: separate and score
  musdb_run --stage "$first" --stop_stage 8 --seed "$seed" --enh_tag "${arm}_seed$seed" \
    "${opts[@]}"
}

# the tasks: name, what marks it done, what it needs done first, the command
tasks=() task_done=() task_needs=() task_cmd=()
add_task() {
  tasks+=("$1"); task_done+=("$2"); task_needs+=("$3"); task_cmd+=("$4")
}
for seed in $seeds; do
  if "$needs_mixit"; then
    add_task "mixit_seed$seed" "$(heads_dir "$seed")/heads.json" "" "run_mixit $seed"
  fi
done
# the runs that wait for a MixIT model come after the others of their seed
for arm in scratch frozen_scratch finetune frozen heads; do
  has_arm "$arm" || continue
  for seed in $seeds; do
    needs=""
    case "$arm" in finetune|frozen|heads) needs="$(heads_dir "$seed")/heads.json" ;; esac
    add_task "${arm}_seed$seed" "$(scoring_dir "$arm" "$seed")/summary.json" "$needs" \
      "run_arm $arm $seed"
  done
done

declare -A pid_of=() state=()
running=0 failed=()
last_status=""
status_line() {  # the running tasks with their last epoch line
  local n line out=""
  for n in "${!pid_of[@]}"; do
    line=$(grep -aoE "epoch [0-9]+/[0-9]+ (done|started)|Stage [0-9]+:" \
      "$work/logs/$n.log" 2>/dev/null | tail -n 1 || true)
    out+=" $n${line:+ ($line)};"
  done
  echo "${out% ;}"
}
for i in "${!tasks[@]}"; do
  if [ -e "${task_done[$i]}" ]; then
    state[$i]=done
    log "${tasks[$i]}: done before"
  else
    state[$i]=waiting
  fi
done
while :; do
  # finished tasks
  for n in "${!pid_of[@]}"; do
    pid=${pid_of[$n]}
    kill -0 "$pid" 2>/dev/null && continue
    rc=0; wait "$pid" || rc=$?
    unset "pid_of[$n]"; running=$((running - 1))
    for i in "${!tasks[@]}"; do [ "${tasks[$i]}" = "$n" ] && break; done
    if [ "$rc" -eq 0 ] && [ -e "${task_done[$i]}" ]; then
      state[$i]=done; log "$n: done ($(time_of "$n"))"
    else
      state[$i]=failed; failed+=("$n")
      log "$n FAILED (status $rc): $work/logs/$n.log"; tail -n 5 "$work/logs/$n.log" >&2
    fi
  done
  # start what can start
  pending=0
  for i in "${!tasks[@]}"; do
    [ "${state[$i]}" = waiting ] || continue
    needs=${task_needs[$i]}
    if [ -n "$needs" ] && [ ! -e "$needs" ]; then
      # its MixIT task failed: it cannot run
      for j in "${!tasks[@]}"; do
        if [ "${state[$j]}" = failed ] && [ "${task_done[$j]}" = "$needs" ]; then
          state[$i]=failed; failed+=("${tasks[$i]}")
          log "${tasks[$i]}: not run (${tasks[$j]} failed)"
        fi
      done
      [ "${state[$i]}" = waiting ] && pending=$((pending + 1))
      continue
    fi
    pending=$((pending + 1))
    [ "$running" -lt "$jobs" ] || continue
    n=${tasks[$i]}
    log "$n: started (log: $work/logs/$n.log)"
    # shellcheck disable=SC2086
    timed "$n" ${task_cmd[$i]} >"$work/logs/$n.log" 2>&1 &
    pid_of[$n]=$!; state[$i]=running; running=$((running + 1))
  done
  [ "$running" -gt 0 ] || [ "$pending" -gt 0 ] || break
  if [ "$running" -eq 0 ]; then
    die "tasks wait for outputs no task makes: ${tasks[*]}"
  fi
  now=$(status_line)
  if [ "$now" != "$last_status" ]; then
    log "running:$now"; last_status=$now
  fi
  sleep 5
done

# ---------------------------------------------------------------- 4. the table
report_args=()
for arm in $arms; do
  for seed in $seeds; do
    d=$(scoring_dir "$arm" "$seed")
    [ ! -f "$d/summary.json" ] || report_args+=(--run "$arm" "$seed" "$d")
  done
done
[ "${#report_args[@]}" -gt 0 ] || die "no run was scored: see $work/logs/"
for pair in "finetune scratch" "frozen frozen_scratch"; do
  set -- $pair
  ! has_arm "$1" || ! has_arm "$2" || report_args+=(--pair "$1" "$2")
done
for seed in $seeds; do
  h=$(heads_dir "$seed")/heads.json
  [ ! -f "$h" ] || report_args+=(--heads "$seed" "$h")
done
get() { "$python" "$musdb/utils/recipe_config.py" get "$@"; }
sched() {  # CONFIG: its scheduler in one line
  "$python" - "$1" <<'EOF'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
s, o = c.get("scheduler"), c.get("scheduler_conf") or {}
if s == "warmupstaircaselr":
    print(f"{s}: warm-up {o['warmup_steps']}, x{o['gamma']:.4g} every {o['step_size']} "
          f"from update {o['decay_start_step']} to {o['decay_stop_step']}")
else:
    print(s, o)
EOF
}
n_test=$(wc -l <"$musdb/data/test/wav.scp")
n_train=$(wc -l <"$musdb/data/train/wav.scp")
n_valid=$(wc -l <"$musdb/data/valid/wav.scp")
report_args+=(
  --setting "songs=$songs ($n_train train, $n_valid validation, $n_test test songs; stems: $(echo $(cat "$musdb/data/test/stems")))"
)
if "$needs_mixit"; then
  n_unl_train=$(wc -l <"$fma/data/fma/train/mix_segments.scp")
  n_unl_valid=$(wc -l <"$fma/data/fma/valid/mix_segments.scp")
  report_args+=(
    --setting "unlabeled mixtures=$unlabeled ($n_unl_train training and $n_unl_valid validation segments)"
  )
fi
report_args+=(
  --setting "model=--size $size"
  --setting "seeds=$seeds"
)
if "$needs_mixit"; then
  report_args+=(
    --setting "MixIT pre-training=$mixit_steps updates, batch $(get "$conf/mixit.yaml" batch_size), $(get "$conf/mixit.yaml" preprocessor_conf.segment_seconds) s crops; $(sched "$conf/mixit.yaml"); peak lr $(get "$conf/mixit.yaml" optim_conf.lr)"
  )
fi
report_args+=(
  --setting "fine-tuning and scratch=$finetune_steps updates, batch $(get "$conf/finetune.yaml" batch_size), $(get "$conf/finetune.yaml" preprocessor_conf.segment_seconds) s crops; $(sched "$conf/finetune.yaml"); peak lr $(get "$conf/finetune.yaml" optim_conf.lr)"
  --setting "frozen variants=$finetune_steps updates; frozen: $(get "$conf/frozen.yaml" freeze_param | tr -d '\n'); $(sched "$conf/frozen.yaml")"
  --setting "validation=every $steps_per_epoch updates; the separating model: the recipe's $(get "$conf/finetune.yaml" keep_nbest_models)-best-by-validation-loss average (valid.loss.ave.pth)"
  --setting "configs=$conf/{mixit,finetune,frozen}.yaml (from $mixit_config, $finetune_config, $frozen_config)"
  --setting "scorer=$scorer"
)
step_report() {
  "$python" -m espnet2_ext.bin.compare_report --out_dir "$work/report" \
    --title "MixIT pre-training vs. training from scratch" \
    --timings "$work/timings.tsv" --command "$command_line" "${report_args[@]}"
}
log "the table -> $work/report/RESULTS.md"
step_report
[ -z "$results" ] || cp "$work/report/RESULTS.md" "$(absolute "$results")"
if [ "${#failed[@]}" -gt 0 ]; then
  die "failed: ${failed[*]} (logs in $work/logs/); the table holds the other runs." \
    "Run the same command again to retry them"
fi
log "done: $work/report/RESULTS.md"
