#!/usr/bin/env bash
# Evidence for training-free multi-step inference (seeds/000, issue 13 item 2) at the
# paper's T = 20, K = 10, on the 2-core CPU: two models, a fixed chunk subset of the
# held-out test songs, oracle and deployable variants, one-step as the baseline.
#
#   nice -n 19 local/evidence_multistep.sh --work /tmp/evidence_multistep --jobs 2
#
# Runs in a copy of this recipe under --work (nothing in the repository's recipe folder
# is touched until the last step writes RESULTS_multistep.md and images/):
#   1. the demo model: ./run.sh --data demo --size tiny, stages 1-6 (tag demo);
#   2. more validation songs: 8 songs of the generator with seed 1 (the demo set is
#      seed 0; train soundfont and programs, as the validation songs), joined with the
#      demo's 2 validation songs into data/valid_more (never the test songs);
#   3. local/multistep.sh stage 1: the greedy schedules calibrated on data/valid_more
#      (a weight per step and stem; a weight per step shared by the stems);
#   4. local/multistep.sh stage 5: every variant on the fixed test subset: one-step,
#      oracle snr search, the schedules, the blind mixture-consistency search;
#   5. a stronger model: the same config trained 3x longer (tag demo_e30,
#      --enh_args "--max_epoch 30"), then 3-4 for it; then the constant schedules
#      (one weight per stem held for a chosen number of steps) of both models;
#   6. the report: RESULTS_multistep.md and images/multistep_trace.png, written into
#      --work and copied into the recipe folder (--results, default: this recipe).
# Budget (upper bounds, forward passes of a 6 s chunk, ~0.4 CPU s each, one thread): per
# model, oracle and blind search 16 x 721, each greedy calibration 20 x 882, constant
# calibration 12 x 802, a schedule on the subset 16 x 81; RESULTS_multistep.md lists
# them with what each step used.
# Every step is skipped when its output exists, so an interrupted run resumes. Each
# step's wall and CPU seconds go to --work/timings.tsv.
set -euo pipefail
# The whole script is one function, read before it runs, and the line that calls it
# also exits: editing this file while a run is under way does not change that run.
main() {
args="$*"   # recorded in RESULTS_multistep.md
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)   # egs2/musdb18hq/enh1
repo=$(cd "$here/../../.." && pwd)

work=/tmp/evidence_multistep
results=$here        # RESULTS_multistep.md and images/ are written here at the end
strong_epochs=30     # the stronger model: the demo config (10 epochs) trained 3x longer
                     # (0: no stronger model, the demo model's steps only)
valid_songs=8        # extra validation songs (generator seed 1)
calib_chunks=20      # validation chunks the greedy schedules are calibrated on (of ~50)
constant_chunks=12   # … the constant schedules (every weight for 20 steps: costlier;
                     # 0: none)
jobs=1               # 2: a model's calibrations and subset runs in two parallel queues
strong_schedules=true  # false: the stronger model gets the searches only (one-step,
                     # oracle, blind), not the calibrated schedules
subset_chunks=4      # test chunks per song in the fixed subset (4 songs: 16 chunks)
. "$here/utils/parse_options.sh"
[ $# -eq 0 ] || { echo "$0: unexpected arguments: $*" >&2; exit 1; }

[ -x "$repo/.venv/bin/python" ] && export PATH="$repo/.venv/bin:$PATH"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1   # one thread per process: a shared CPU
log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (evidence_multistep) $*"; }
timed() {  # name command...: run it; append name, wall s, CPU s (user+sys, children)
  # (this shell's own and its waited-for children's CPU ticks, fields 14-17 of stat;
  # BASHPID is read here, not inside $(...), which is a subshell of its own)
  local name=$1 start cpu0 cpu1 me=$BASHPID
  shift
  start=$(date +%s.%N)
  cpu0=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$me/stat")
  "$@"
  cpu1=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$me/stat")
  printf '%s\t%.1f\t%.1f\n' "$name" \
    "$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')" \
    "$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$(getconf CLK_TCK)" \
      'BEGIN { print (b - a) / hz }')" >>"$work/timings.tsv"
}

recipe=$work/enh1
mkdir -p "$work"
# the recipe's scripts and configs, links resolved, refreshed on every run (the outputs
# of earlier runs, data/, dump/, exp/ and downloads/, are kept)
log "copying the recipe's scripts and configs to $recipe"
mkdir -p "$recipe"
(cd "$here" && tar -ch --exclude=./data --exclude=./dump --exclude=./exp \
  --exclude=./downloads --exclude='./RESULTS*' --exclude=./images \
  --exclude=./conf/tuning .) | (cd "$recipe" && tar -x)
export ESPNET2_EXT_ROOT=$repo

# --------------------------------------------------------------- 1. the demo model
if [ ! -f "$recipe/exp/enh_demo/valid.loss.ave.pth" ]; then
  log "1. the demo model: ./run.sh --data demo --size tiny --stage 1 --stop_stage 6"
  (cd "$recipe" && timed train_demo ./run.sh --data demo --size tiny --nj 1 \
    --stage 1 --stop_stage 6)
fi

# ------------------------------------------------ 2. more validation songs (seed 1)
# The demo's data/valid holds its 2 validation songs (seed 0, train soundfont). Eight
# more come from the same generator with seed 1 (9 train songs, the last 8 listed as
# validation, and 1 test song that is not used: a split may not be empty); they are
# joined into data/valid_more, their uids prefixed with s1_. No test song is in it.
extra=$work/valid_songs_seed1
if [ ! -f "$recipe/data/valid_more/stems" ]; then
  log "2. $valid_songs more validation songs (generator seed 1) -> data/valid_more"
  timed valid_songs python -m espnet2_ext.datagen.musdb_like --out "$extra" \
    --num-train $((valid_songs + 1)) --num-valid "$valid_songs" --num-test 1 \
    --duration 30 --seed 1 --jobs 1
  python -m espnet2_ext.datasets.musdb18hq --root "$extra" --out "$extra/data" --nj 1
  rm -rf "$recipe/data/valid_more.tmp" && mkdir -p "$recipe/data/valid_more.tmp"
  cmp "$recipe/data/valid/stems" "$extra/data/valid/stems"
  cp "$recipe/data/valid/stems" "$recipe/data/valid_more.tmp/stems"
  for f in wav.scp spk1.scp spk2.scp spk3.scp spk4.scp uid2song; do
    { cat "$recipe/data/valid/$f"; sed 's/^/s1_/' "$extra/data/valid/$f"; } \
      >"$recipe/data/valid_more.tmp/$f"
  done
  if [ -n "$(cut -d' ' -f1 "$recipe/data/valid_more.tmp/wav.scp" | sort | uniq -d)" ]; then
    echo "$0: data/valid_more would name a song twice" >&2; exit 1
  fi
  mv "$recipe/data/valid_more.tmp" "$recipe/data/valid_more"
fi

# ------------------------------------------ 3-4. calibration and the subset variants
# local/multistep.sh per model: stage 1 calibrates on data/valid_more (never the test
# songs), stage 5 runs each variant on the fixed subset of data/test: the first
# $subset_chunks chunks of 6 s (at 0, 6, 12, … s) of every test song in which every stem
# is at least -60 dB re the mixture (a rule fixed before any result). Stage 5 keeps a
# variant whose result exists; stage 1 is run only when its schedule file is missing.
ms_opts=(--segment_size 6 --hop_size 3 --steps 20 --candidates 10 --grid uniform
  --metric snr --candidate_batch 1 --valid_set valid_more --test_sets ""
  --calib_chunk_seconds 6 --subset_set test --subset_chunks "$subset_chunks")
calibrate() {  # tag kind chunks
  local file=$recipe/exp/enh_$1/multistep_schedule.yaml
  [ "$2" = greedy ] || file=$recipe/exp/enh_$1/multistep_schedule_$2.yaml
  [ -f "$file" ] && return 0
  log "3. $1: calibrating the $2 schedule on $3 chunks of data/valid_more"
  (cd "$recipe" && timed "calibrate_$2_$1" local/multistep.sh --enh_tag "$1" \
    "${ms_opts[@]}" --schedules "$2" --calib_max_chunks "$3" --stage 1 --stop_stage 1)
}
subset() {  # tag variant
  [ -f "$recipe/exp/enh_$1/multistep_subset_test/$2.json" ] && return 0
  log "4. $1: $2 on the fixed test subset"
  (cd "$recipe" && timed "subset_$2_$1" local/multistep.sh --enh_tag "$1" \
    "${ms_opts[@]}" --subset_variants "$2" --stage 5 --stop_stage 5)
}
# the demo model's variants first (they meet the pipeline before the long training),
# then the stronger model's; the costly constant schedules last
# (--jobs 2: two queues, each in its order: the schedules, whose subset runs need their
# calibration, beside the searches; each step writes only its own files)
schedules() {  # tag
  calibrate "$1" greedy "$calib_chunks"
  subset "$1" schedule
  calibrate "$1" shared "$calib_chunks"
  subset "$1" schedule_shared
}
searches() {  # tag
  for variant in onestep oracle blind; do subset "$1" "$variant"; done
}
constant() {  # tag
  calibrate "$1" constant "$constant_chunks"
  subset "$1" schedule_constant
}
parallel() {  # "command tag" ...: with --jobs 2 at once (then waits for all), else in turn
  local pids=() rc=0 pid
  for task in "$@"; do
    if [ "$jobs" -ge 2 ]; then
      $task & pids+=($!)
    else
      $task
    fi
  done
  for pid in ${pids[@]+"${pids[@]}"}; do wait "$pid" || rc=$?; done
  [ "$rc" -eq 0 ] || { echo "$0: a step of ($*) failed (exit $rc)" >&2; exit "$rc"; }
}
evaluate() {  # tag
  parallel "schedules $1" "searches $1"
}

# ------------------------------------------------------------ 5. the stronger model
# (with --jobs 2 it trains beside the demo model's steps)
strong=demo_e$strong_epochs
train_strong() {
  [ ! -f "$recipe/exp/enh_$strong/valid.loss.ave.pth" ] || return 0
  log "5. the stronger model: the demo config, --max_epoch $strong_epochs (tag $strong)"
  (cd "$recipe" && timed "train_$strong" ./run.sh --data demo --size tiny --nj 1 \
    --stage 5 --stop_stage 6 --enh_tag "$strong" \
    --enh_args "--max_epoch $strong_epochs")
}
if [ "$strong_epochs" -gt 0 ]; then
  parallel "evaluate demo" train_strong
  if [ "$strong_schedules" = true ]; then evaluate "$strong"; else searches "$strong"; fi
else
  evaluate demo
fi
if [ "$constant_chunks" -gt 0 ]; then
  tasks=("constant demo")
  [ "$strong_epochs" -eq 0 ] || [ "$strong_schedules" != true ] || tasks+=("constant $strong")
  parallel "${tasks[@]}"
fi

# ------------------------------------------------------------------- 6. the report
log "6. report -> $work/report/RESULTS.md, then $results/RESULTS_multistep.md"
python - "$work" "$recipe" "$strong" "$strong_epochs" "$calib_chunks" \
  "$constant_chunks" "$subset_chunks" "$valid_songs" "$args" "$strong_schedules" <<'PY' >"$work/preamble.md"
import json
import re
import sys
from pathlib import Path

import yaml

work, recipe = Path(sys.argv[1]), Path(sys.argv[2])
strong, epochs = sys.argv[3], int(sys.argv[4])
calib_chunks, constant_chunks, per_song, valid_songs = map(int, sys.argv[5:9])
args = sys.argv[9]
strong_schedules = sys.argv[10] == "true"
T, K, N = 20, 10, 4
conf = yaml.safe_load((recipe / "conf/train_enh_demo.yaml").read_text())
subset = recipe / "exp/enh_demo/multistep_subset_test/onestep.json"
chunks = len(json.loads(subset.read_text())["records"])


def best_valid(tag):
    text = (recipe / f"exp/enh_{tag}/train.log").read_text()
    losses = [float(v) for v in re.findall(r"\[valid\].*?\bloss=([-0-9.e+]+)", text)]
    return f"{min(losses):.3f}" if losses else "n/a"


bounds = [
    ("one-step, per model", chunks),
    (f"oracle snr search, T={T}, K={K}, per model", chunks * (1 + T * (K - 1) * N)),
    (f"blind mixture_consistency search, T={T}, K={K}, per model",
     chunks * (1 + T * (K - 1) * N)),
    (f"greedy schedule calibration ({calib_chunks} validation chunks), per model "
     "and kind (per stem; shared)",
     calib_chunks * (1 + T * K * N) + calib_chunks * (1 + T * N)),
    (f"constant schedule calibration ({constant_chunks} validation chunks), per model",
     constant_chunks * (1 + T * (K - 1) * N) + constant_chunks * (1 + T * N)),
    ("a schedule on the subset, per model", chunks * (1 + T * N)),
]
if not constant_chunks:
    bounds = [b for b in bounds if not b[0].startswith("constant")]
rows = "\n".join(
    f"| {name} | {p} | {p * 0.4 / 60:.0f} |" for name, p in bounds
)
per_pass = []
for tag in ("demo", strong) if epochs else ("demo",):
    path = recipe / f"exp/enh_{tag}/multistep_subset_test/oracle.json"
    if path.is_file():
        cost = json.loads(path.read_text())["cost"]
        per_pass.append(
            f"{cost['separator_cpu_seconds'] / cost['forward_passes']:.2f} CPU s per "
            f"pass in `{tag}`'s oracle run ({cost['forward_passes']} passes)"
        )
measured = "; ".join(per_pass) or "n/a"
if epochs:
    strong_text = f"""; `{strong}`: the same config trained
  {epochs // conf['max_epoch']}× longer, `./run.sh --data demo --size tiny --stage 5
  --stop_stage 6 --enh_tag {strong} --enh_args "--max_epoch {epochs}"` (best validation
  loss {best_valid(strong)}). Both on the generated MUSDB18-HQ-like songs (seed 0)."""
    if not strong_schedules:
        strong_text += f"""
  `{strong}` ran the searches only (one-step, oracle, blind; `--strong_schedules
  false`): no schedule was calibrated for it."""
else:
    strong_text = """, on the generated MUSDB18-HQ-like songs (seed 0).
  **The stronger model was not run** (`--strong_epochs 0`)."""
constant_text = (
    f""" (b) *constant schedule*: one weight per
  stem held for a chosen number of steps (2 values per stem), on {constant_chunks} chunks
  of `data/valid_more`;"""
    if constant_chunks
    else " (b) *constant schedule*: not run (`--constant_chunks 0`);"
)
timing = []
path = work / "timings.tsv"
if path.is_file():
    for line in path.read_text().splitlines():
        name, wall, cpu = line.split("\t")
        cpu = f"{float(cpu) / 60:.1f}" if cpu.strip() != "nan" else "not recorded"
        timing.append(f"| `{name}` | {float(wall) / 60:.1f} | {cpu} |")
print(f"""# Evidence: multi-step inference (seeds/000) at the paper's T = 20, K = 10

Written by `local/evidence_multistep.sh` (re-runnable; every step is skipped when its
output exists):

```bash
cd egs2/musdb18hq/enh1
nice -n 19 local/evidence_multistep.sh {args}
```

on the 2-core CPU of this project's machine, one thread per process, niced, shared with
other jobs (so wall times are several times the CPU times below).

## Setup

- **Models.** `demo`: `./run.sh --data demo --size tiny` (the recipe's demo model,
  `conf/train_enh_demo.yaml`: {conf['max_epoch']} epochs × {conf['num_iters_per_epoch']}
  steps of {conf['batch_size']} crops of {conf['preprocessor_conf']['segment_seconds']} s,
  best validation loss {best_valid('demo')}){strong_text}
- **Test subset** (the rule was fixed before any result): from each of the 4 test songs
  (30 s, another soundfont and other programs than training), the first {per_song}
  chunks of 6 s, cut at 0, 6, 12, 18, 24 s, in which every stem is at least −60 dB re
  the mixture: {chunks} chunks. Every variant runs on these chunks (one chunk = one
  separator input, no overlap-add) and is scored on them.
- **Multi-step.** T = {T} steps, K = {K} candidates, the uniform grid (the authors'):
  mixture weights r ∈ {{1.0, 0.9, …, 0.1}} (estimate weight 0.1·k) at every step; stem n's
  candidate is output n of f(r·x + (1 − r)·y_n) (per-stem blends, {N} passes per weight);
  the previous estimate is always a candidate; selection per chunk, stem and channel.
  r = 1 reuses the one-step pass; a stem whose channels all kept at a step is not
  recomputed later (its candidates would repeat: exact, see the pass counts).
- **Variants.** one-step; **oracle**: search maximising snr against the chunk's own
  references (an upper bound); deployable, no reference on the test songs:
  (a) *greedy schedule*: a weight per step and stem, chosen step by step with oracle snr
  on {calib_chunks} chunks of `data/valid_more`; (a') *shared schedule*: the same with
  one weight per step for all stems;{constant_text} (c) *blind search* with the reference-free `mixture_consistency`
  (a stem's candidate scored by 10 log10(|x|²/|x − candidate − Σ other stems' current
  estimates|²); stems updated in turn).
- **Validation songs** (`data/valid_more`): the demo's 2 validation songs and
  {valid_songs} more from the generator with seed 1 (train soundfont), 6 s chunks, at
  most the number above, evenly spaced over those in which every stem is active. The
  test songs are never used to calibrate or choose.
- **Scores** per chunk: uSDR (SNR per channel, averaged over channels), cSDR (BSSEval v4,
  median of the chunk's 1 s windows), SI-SDR (zero-mean, averaged over channels); the
  tables average over the stems, then give mean ± sd over chunks, and the paired
  difference to one-step on the same chunks.

## CPU budget

Stated before the runs, in forward passes (a 6 s stereo chunk through the separator;
measured at ~0.4 CPU s each, one thread, before the runs): upper bounds.

| run | passes (at most) | CPU min (at 0.4 s per pass) |
|---|---:|---:|
{rows}

Measured in the runs: {measured}.

Used (`--work/timings.tsv`; CPU = user + system of the step's processes):

| step | wall min | CPU min |
|---|---:|---:|
""" + "\n".join(timing))
PY
runs=(--chunk_runs "demo (10 epochs)=$recipe/exp/enh_demo/multistep_subset_test")
[ "$strong_epochs" -eq 0 ] ||
  runs+=(--chunk_runs "$strong ($strong_epochs epochs)=$recipe/exp/enh_$strong/multistep_subset_test")
python -m espnet2_ext.bin.multistep_report --out_dir "$work/report" \
  --preamble "$work/preamble.md" \
  --title "one-step vs multi-step (T=20, K=10) on a fixed subset of the test songs" \
  "${runs[@]}"
mkdir -p "$results/images"
cp "$work/report/RESULTS.md" "$results/RESULTS_multistep.md"
cp "$work/report/images/multistep_trace.png" "$results/images/multistep_trace.png"
log "done: $results/RESULTS_multistep.md"
}

# one line: bash reads no further, so editing this file during a run is harmless
main "$@"; exit
