#!/usr/bin/env bash
# Training-free multi-step inference (seeds/000) on a trained model of this recipe:
# one-step, multi-step **oracle** and multi-step deployable results side by side.
#   local/multistep.sh --enh_tag demo --segment_size 6 --hop_size 3 --steps 5 --candidates 5
#   local/multistep.sh --enh_tag <tag> --stage 3 --stop_stage 4   any range of stages
#   local/multistep.sh --enh_tag demo --segment_size 6 --hop_size 3 --stage 5 \
#       --stop_stage 6 --subset_variants "onestep oracle blind schedule"
#                               every variant on a fixed chunk subset of the test songs
# Options (defaults in brackets):
#   --stage N / --stop_stage M  run stages N..M [1..4; 5-6 on request]
#   --enh_tag NAME              the experiment exp/enh_<tag> [demo] (was --tag)
#   --inference_model FILE      checkpoint in it [valid.loss.ave.pth]
#   --segment_size S --hop_size S  inference chunk and hop in seconds [12, 6]; use the
#                               values of the recipe's stage 7 (demo: 6 and 3)
#   --valid_set SET             songs the schedule is calibrated on [valid]
#   --test_sets "SETS"          songs to separate and score [test]
#   --steps T --candidates K    multi-step search [20, 10: the paper's defaults]
#   --grid uniform|narrowing    candidate mixture weights per step [uniform]
#   --metric snr|si_sdr         metric maximised (oracle on the test songs; on the
#                               validation chunks for the schedule) [snr]
#   --candidate_batch N         candidates per forward call (memory bound) [all K]
#   --calib_chunk_seconds S     validation chunk length [--segment_size]
#   --calib_max_chunks N        at most N validation chunks, evenly spaced [all]
#   --schedules "KINDS"         schedules calibrated in stage 1 [greedy]: greedy (a
#                               weight per step and stem, chosen step by step) ->
#                               multistep_schedule.yaml; shared (a weight per step for
#                               all stems), constant (one weight per stem held for a
#                               chosen number of steps) -> multistep_schedule_<kind>.yaml
#   --calib_args "..."          more options for espnet2_ext.bin.multistep_calibrate
#   --inference_args "..."      more options for espnet2_ext.bin.enh_inference (all runs)
#   --variants "..."            runs of stages 2-3 [onestep oracle schedule]
#   --stems "a b c"             stems to score [the model's, as in data/<set>/stems]
#   --nj N                      parallel inference/scoring jobs [1]
#   --subset_set SET            stage 5: the songs of the fixed chunk subset [test]
#   --subset_chunks N           stage 5: the first N chunks (--segment_size long, from
#                               0 s, not overlapping) of each song in which every stem
#                               is active (>= -60 dB re the mixture) [4]
#   --subset_variants "..."     stage 5: onestep, oracle (search, --metric), blind
#                               (search, --blind_metric), schedule[_<kind>] (a stage-1
#                               schedule) [onestep oracle schedule]
#   --blind_metric NAME         reference-free selection metric [mixture_consistency]
#   --probe_metrics "..."       stage 5, searches: metrics every step-1 candidate is
#                               scored with (measurement) [snr si_sdr mixture_consistency]
#   --eval_args "..."           more options for espnet2_ext.bin.multistep_evaluate
# Stages:
#   1 calibrate a schedule on data/<valid_set> chunks -> exp/enh_<tag>/multistep_schedule.yaml
#     (+ multistep_calibration.json: cost, per-step traces on valid and test chunks)
#   2 separate data/<set>: one-step -> exp/enh_<tag>/separate_<set>,
#     oracle -> separate_<set>_multistep_oracle, schedule -> separate_<set>_multistep_schedule
#   3 score every run (uSDR, cSDR)                -> <run>/scoring
#   4 side-by-side report                         -> exp/enh_<tag>/multistep_<set>/RESULTS.md
#   5 every --subset_variants variant on the fixed chunk subset of data/<subset_set>,
#     chunk by chunk, scored against the references (which only measure; the oracle
#     selects with them and is labelled so) -> exp/enh_<tag>/multistep_subset_<set>/
#     <variant>.json; a variant whose file exists is kept (a killed run resumes)
#   6 their report: mean ± sd over chunks, paired differences to one-step, traces
#                                                 -> .../multistep_subset_<set>/report/
set -euo pipefail
recipe=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*"; }

stage=1
stop_stage=4
nj=1
enh_tag=demo
expdir=exp
inference_model=valid.loss.ave.pth
segment_size=12
hop_size=6
valid_set=valid
test_sets=test
stems=""
fs=44100
steps=20
candidates=10
grid=uniform
metric=snr
candidate_batch=""
calib_chunk_seconds=""
calib_max_chunks=""
schedules=greedy
calib_args=""
inference_args=""
variants="onestep oracle schedule"
subset_set=test
subset_chunks=4
subset_variants="onestep oracle schedule"
blind_metric=mixture_consistency
probe_metrics="snr si_sdr mixture_consistency"
eval_args=""
# shellcheck disable=SC2034  # read by utils/parse_options.sh
declare -A option_aliases=([tag]=enh_tag)

. "$recipe/utils/parse_options.sh"
[ $# -eq 0 ] || { echo "$0: unexpected arguments: $*" >&2; exit 1; }
cd "$recipe"
. ./path.sh
. ./cmd.sh
decode_cmd=${decode_cmd:-utils/run_local.sh}

tag=$enh_tag
enh_exp=$expdir/enh_$tag
schedule=$enh_exp/multistep_schedule.yaml
calibration=$enh_exp/multistep_calibration.json
schedule_file() {  # $1 = kind: the schedule file of stage 1
  case "$1" in
    greedy) echo "$schedule" ;;
    shared|constant) echo "$enh_exp/multistep_schedule_$1.yaml" ;;
    *) echo "$0: unknown schedule kind $1 (greedy, shared, constant)" >&2; exit 1 ;;
  esac
}
schedule_opts() {  # $1 = kind: its multistep_calibrate options
  case "$1" in
    greedy) echo "--form greedy" ;;
    shared) echo "--form greedy --per_source false" ;;
    constant) echo "--form constant" ;;
  esac
}
# the model's stems, in output order (the data's spk<n>.scp follow data/<set>/stems)
model_stems=$($python utils/recipe_config.py model_stems "$enh_exp/config.yaml" 2>/dev/null ||
  true)
[ -n "$model_stems" ] || model_stems=$(echo $(cat "data/$valid_set/stems"))
[ -n "$stems" ] || stems=$model_stems
data_stems() { [ ! -f "data/$1/stems" ] && echo "$model_stems" || echo $(cat "data/$1/stems"); }
num_spk=$(echo "$model_stems" | wc -w)
[ -n "$calib_chunk_seconds" ] || calib_chunk_seconds=$segment_size
batch_opt=""
[ -z "$candidate_batch" ] || batch_opt="--multistep_candidate_batch $candidate_batch"
for f in "$enh_exp/config.yaml" "$enh_exp/$inference_model"; do
  [ -f "$f" ] || { echo "$0: $f not found: train the model first (run.sh)" >&2; exit 1; }
done

run_dir() {  # $1 = variant, $2 = set
  case "$1" in
    onestep) echo "$enh_exp/separate_$2" ;;
    oracle|schedule) echo "$enh_exp/separate_$2_multistep_$1" ;;
    *) echo "$0: unknown variant $1 (onestep, oracle, schedule)" >&2; exit 1 ;;
  esac
}

variant_args() {  # $1 = variant, $2 = set: the enh_inference options of the variant
  local n opts=""
  case "$1" in
    onestep) ;;
    oracle)
      opts="--multistep_enable true --multistep_steps $steps"
      opts+=" --multistep_candidates $candidates --multistep_grid $grid"
      opts+=" --multistep_metric $metric $batch_opt --allow_variable_data_keys true"
      for n in $(seq 1 "$num_spk"); do
        opts+=" --data_path_and_name_and_type data/$2/spk$n.scp,speech_ref$n,sound"
      done ;;
    schedule)
      opts="--multistep_enable true --multistep_schedule $schedule $batch_opt" ;;
  esac
  echo "$opts"
}

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  eval_opts=""
  for dset in $test_sets; do eval_opts+=" data/$dset"; done
  cal_batch=""
  [ -z "$candidate_batch" ] || cal_batch="--candidate_batch $candidate_batch"
  [ -z "$calib_max_chunks" ] || cal_batch+=" --max_chunks $calib_max_chunks"
  for kind in $schedules; do
    out=$(schedule_file "$kind")
    suffix=""
    [ "$kind" = greedy ] || suffix=_$kind
    log "Stage 1: calibrating the $kind schedule (T=$steps, K=$candidates, $grid," \
      "$metric) on ${calib_chunk_seconds} s chunks of data/$valid_set -> $out"
    # shellcheck disable=SC2046,SC2086
    $decode_cmd "$enh_exp/logs/multistep_calibrate$suffix.log" \
      $python -m espnet2_ext.bin.multistep_calibrate \
        --train_config "$enh_exp/config.yaml" --model_file "$enh_exp/$inference_model" \
        --data_dir "data/$valid_set" --chunk_seconds "$calib_chunk_seconds" \
        --steps "$steps" --candidates "$candidates" --grid "$grid" --metric "$metric" \
        --stems $stems $cal_batch --eval_data $eval_opts $(schedule_opts "$kind") \
        --output "$out" --report "$enh_exp/multistep_calibration$suffix.json" \
        $calib_args
    sed -n '/^validation .* after each step/,/^calibration cost/p' \
      "$enh_exp/logs/multistep_calibrate$suffix.log"
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  for dset in $test_sets; do
    for variant in $variants; do
      out=$(run_dir "$variant" "$dset")
      log "Stage 2: separating data/$dset ($variant, ${segment_size} s chunks," \
        "${hop_size} s hop) -> $out"
      n=$(wc -l <"data/$dset/wav.scp")
      this_nj=$(( nj < n ? nj : n ))
      rm -rf "$out/split" && mkdir -p "$out/split"
      split_files=()
      for j in $(seq 1 "$this_nj"); do split_files+=("$out/split/keys.$j"); done
      $python -m espnet2_ext.utils.split_scp "data/$dset/wav.scp" "${split_files[@]}"
      start=$(date +%s.%N)
      # shellcheck disable=SC2046,SC2086
      $decode_cmd JOB=1:"$this_nj" "$out/logs/separate.JOB.log" \
        $python -m espnet2_ext.bin.enh_inference --ngpu 0 --fs "$fs" \
          --data_path_and_name_and_type "data/$dset/wav.scp,speech_mix,sound" \
          --key_file "$out/split/keys.JOB" \
          --train_config "$enh_exp/config.yaml" --model_file "$enh_exp/$inference_model" \
          --segment_size "$segment_size" --hop_size "$hop_size" \
          --output_dir "$out/split/out.JOB" $(variant_args "$variant" "$dset") \
          $inference_args
      end=$(date +%s.%N)
      printf '{"wall_seconds": %s, "nj": %d}\n' \
        "$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')" \
        "$this_nj" >"$out/inference_time.json"
      # shellcheck disable=SC2086
      $python -m espnet2_ext.utils.merge_separated "$out"/split/out.* --out "$out" \
        --data "data/$dset" --model_stems $model_stems --ref_stems $(data_stems "$dset") \
        --stems $stems
    done
  done
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  for dset in $test_sets; do
    # every run links the same references; scoring them from one folder lets the
    # mixture baseline's cache (keyed by the reference folder) serve all runs
    refs=$(run_dir "${variants%% *}" "$dset")/refs
    for variant in $variants; do
      out=$(run_dir "$variant" "$dset")
      log "Stage 3: scoring $out (uSDR, cSDR) -> $out/scoring"
      # shellcheck disable=SC2086
      $decode_cmd --num_threads "$nj" "$out/scoring/logs/score.log" \
        $python -m espnet2_ext.bin.music_score --ref_dir "$refs" --est_dir "$out/stems" \
          --stems $stems --out_dir "$out/scoring" --nj "$nj" --tag "${tag}_$variant" \
          --baseline_cache "$expdir/mixture_baseline_$dset.json"
    done
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  for dset in $test_sets; do
    report=$enh_exp/multistep_$dset
    log "Stage 4: one-step, oracle and schedule side by side -> $report/RESULTS.md"
    opts=()
    for variant in oracle schedule; do
      out=$(run_dir "$variant" "$dset")
      [ ! -f "$out/scoring/summary.json" ] || opts+=("--$variant" "$out")
    done
    [ ! -f "$calibration" ] || opts+=(--calibration "$calibration")
    $python -m espnet2_ext.bin.multistep_report \
      --one_step "$(run_dir onestep "$dset")" "${opts[@]}" --out_dir "$report" \
      --title "$tag on $dset: one-step vs multi-step (T=$steps, K=$candidates)"
  done
fi

follow_chunks() {  # LOG PID: the per-chunk progress lines of LOG until PID ends
  tail -n 0 -F --pid="$2" "$1" 2>/dev/null | grep --line-buffered -o 'chunk [0-9].*' |
    sed -u 's/^/    /' || true
}

subset_dir=$enh_exp/multistep_subset_$subset_set
if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  for variant in $subset_variants; do
    out=$subset_dir/$variant.json
    if [ -f "$out" ]; then
      log "Stage 5: $out exists, kept (remove it to run $variant again)"
      continue
    fi
    case "$variant" in
      onestep) opts=(--steps 0) ;;
      oracle) opts=(--steps "$steps" --candidates "$candidates" --grid "$grid"
        --metric "$metric" --probe_metrics $probe_metrics) ;;
      blind) opts=(--steps "$steps" --candidates "$candidates" --grid "$grid"
        --metric "$blind_metric" --probe_metrics $probe_metrics) ;;
      schedule) opts=(--schedule "$schedule") ;;
      schedule_*) opts=(--schedule "$(schedule_file "${variant#schedule_}")") ;;
      *) echo "$0: unknown subset variant $variant (onestep, oracle, blind," \
        "schedule, schedule_<kind>)" >&2; exit 1 ;;
    esac
    [ -z "$candidate_batch" ] || opts+=(--candidate_batch "$candidate_batch")
    log "Stage 5: $variant on the first $subset_chunks active ${segment_size} s chunks" \
      "of every song of data/$subset_set -> $out"
    mkdir -p "$subset_dir/logs"
    # shellcheck disable=SC2086
    $decode_cmd --num_threads 1 "$subset_dir/logs/$variant.log" \
      $python -m espnet2_ext.bin.multistep_evaluate \
        --train_config "$enh_exp/config.yaml" --model_file "$enh_exp/$inference_model" \
        --data_dir "data/$subset_set" --stems $stems \
        --chunk_seconds "$segment_size" --chunks_per_song "$subset_chunks" \
        "${opts[@]}" --output "$out" $eval_args &
    job=$!
    follow_chunks "$subset_dir/logs/$variant.log" "$job" &
    follower=$!
    rc=0; wait "$job" || rc=$?
    wait "$follower" 2>/dev/null || true
    [ "$rc" -eq 0 ] || { tail -n 15 "$subset_dir/logs/$variant.log" >&2; exit "$rc"; }
  done
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  log "Stage 6: report of the subset variants -> $subset_dir/report/RESULTS.md"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  for variant in $subset_variants; do
    ln -s "$(cd "$subset_dir" && pwd)/$variant.json" "$tmp/$variant.json"
  done
  $python -m espnet2_ext.bin.multistep_report --chunk_runs "$tag=$tmp" \
    --out_dir "$subset_dir/report" \
    --title "$tag: one-step vs multi-step on a fixed chunk subset of $subset_set"
fi

log "Successfully finished stages $stage..$stop_stage"
