#!/usr/bin/env bash
# Evidence at small scale (generated data, tiny model, CPU): does MixIT pre-training on
# FMA-like mixtures help the MUSDB18-HQ-like fine-tuning? (seeds/002, issue 4)
#
#   local/evidence.sh --work /tmp/fma_mixit_evidence [--jobs 4]
#
# Runs, in copies of the two recipes under --work (so nothing in the repository's recipe
# folders is touched):
#   1. MUSDB18-HQ recipe, stages 1-2: the generated MUSDB18-HQ-like songs, segments;
#   2. FMA recipe (--demo true), stages 1-4: the generated FMA-like tracks, MixIT
#      pre-training of the demo model (conf/train_mixit_demo.yaml, 12 outputs), head
#      selection on the MUSDB-like validation songs, with the 12 outputs' own
#      separation measured on the test songs (heads.json);
#   3. MUSDB18-HQ recipe, stages 3-6, each with the same budget
#      (conf/finetune_enh_demo.yaml or conf/finetune_frozen_enh_demo.yaml):
#        finetune        all parameters, from the head-selected model
#        scratch         all parameters, from a random initialisation
#        frozen          TF-Locoformer blocks frozen, from the head-selected model
#        frozen_scratch  TF-Locoformer blocks frozen, random (the control of Table 2)
#      and stages 5-6 for the head-selected model as it is (no fine-tuning);
#   4. a summary: --work/RESULTS_evidence.md (copied to --results when given).
# Every step is skipped when its output exists, so an interrupted run can be resumed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)   # egs2/fma/mixit_enh1
repo=$(cd "$here/../../.." && pwd)

work=/tmp/fma_mixit_evidence
jobs=4             # trainings run at the same time in step 3
results=""         # also write the summary here
reuse_fma=""       # an already generated FMA-like tree (same generator parameters)
reuse_musdb=""     # an already generated MUSDB18-HQ-like tree (same parameters)
. "$here/utils/parse_options.sh"

[ -x "$repo/.venv/bin/python" ] && export PATH="$repo/.venv/bin:$PATH"
export OMP_NUM_THREADS=1   # one thread per process: the runs share a small CPU
log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (evidence) $*"; }
timed() {  # name command...: run, append the wall time to $work/timings.tsv
  local name=$1 start end; shift
  start=$(date +%s)
  "$@"
  end=$(date +%s)
  printf '%s\t%d\n' "$name" $(( end - start )) >>"$work/timings.tsv"
}

fma=$work/fma
musdb=$work/musdb
mkdir -p "$work"
copy_recipe() {  # src dst: the recipe without outputs, symbolic links resolved
  [ -d "$2" ] && return 0
  mkdir -p "$2"
  # conf/tuning (the paper configs) is not needed by the demo runs
  (cd "$1" && tar -ch --exclude=./data --exclude=./dump --exclude=./exp \
    --exclude=./downloads --exclude='./RESULTS*' --exclude=./conf/tuning .) |
    (cd "$2" && tar -x)
}
copy_recipe "$here" "$fma"
copy_recipe "$repo/egs2/musdb18hq/enh1" "$musdb"
if [ -n "$reuse_fma" ] && [ ! -d "$fma/downloads/fma_demo" ]; then
  mkdir -p "$fma/downloads" && cp -r "$reuse_fma" "$fma/downloads/fma_demo"
fi
if [ -n "$reuse_musdb" ] && [ ! -d "$musdb/downloads/musdb18hq_demo" ]; then
  mkdir -p "$musdb/downloads" && cp -r "$reuse_musdb" "$musdb/downloads/musdb18hq_demo"
fi

# ---------------------------------------------------------------- 1. MUSDB-like data
if [ ! -f "$musdb/dump/segments/valid/mix_segments.scp" ]; then
  log "1. MUSDB18-HQ-like data and segments in $musdb"
  (cd "$musdb" && timed musdb_data ./run.sh --demo true --stage 1 --stop_stage 2 --nj 2)
fi

# ------------------------------------------------- 2. MixIT pre-training and heads
heads=$fma/exp/enh_mixit_demo/heads
if [ ! -f "$heads/heads.json" ]; then
  log "2. FMA-like data, MixIT pre-training, head selection in $fma"
  (cd "$fma" && timed fma_data ./run.sh --demo true --stage 1 --stop_stage 1 --nj 2 \
    --local_data_opts "--musdb_root $musdb/downloads/musdb18hq_demo")
  (cd "$fma" && timed mixit_train ./run.sh --demo true --stage 2 --stop_stage 3 --nj 1)
  (cd "$fma" && timed select_heads ./run.sh --demo true --stage 4 --stop_stage 4 \
    --select_args "--eval_data data/musdb/test")
fi

# ------------------------------------------------------- 3. fine-tuning vs scratch
finetune_conf=$fma/conf/finetune_enh_demo.yaml
frozen_conf=$fma/conf/finetune_frozen_enh_demo.yaml
run_musdb() {  # tag config [pretrained]
  local tag=$1 config=$2 pretrained=${3:-}
  [ -f "$musdb/exp/enh_$tag/separate_test/scoring/summary.json" ] && return 0
  local opts=(--demo true --stage 3 --stop_stage 6 --nj 1 --test_sets test
    --train_config "$config" --tag "$tag")
  [ -z "$pretrained" ] || opts+=(--pretrained "$pretrained")
  mkdir -p "$musdb/exp"
  (cd "$musdb" && timed "$tag" ./run.sh "${opts[@]}") >"$musdb/exp/evidence_$tag.log" 2>&1
}
log "3. fine-tuning, from scratch and frozen-separator runs in $musdb ($jobs at a time)"
runs=(
  "ev_finetune $finetune_conf $heads/model.pth"
  "ev_scratch $finetune_conf"
  "ev_frozen $frozen_conf $heads/model.pth"
  "ev_frozen_scratch $frozen_conf"
)
pids=()
for spec in "${runs[@]}"; do
  # shellcheck disable=SC2086
  run_musdb $spec &
  pids+=($!)
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 5; done
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[ "$failed" -eq 0 ] || { log "a run failed: see $musdb/exp/evidence_*.log"; exit 1; }

# the head-selected model without any fine-tuning (stages 5-6 only)
if [ ! -f "$musdb/exp/enh_ev_heads/separate_test/scoring/summary.json" ]; then
  mkdir -p "$musdb/exp/enh_ev_heads"
  cp "$heads/config.yaml" "$heads/model.pth" "$musdb/exp/enh_ev_heads/"
  (cd "$musdb" && timed ev_heads ./run.sh --demo true --stage 5 --stop_stage 6 --nj 1 \
    --test_sets test --tag ev_heads --inference_model model.pth) \
    >"$musdb/exp/evidence_ev_heads.log" 2>&1
fi

# --------------------------------------------------------------------- 4. summary
log "4. summary -> $work/RESULTS_evidence.md"
python - "$work" <<'EOF'
import json
import sys
from pathlib import Path

import yaml

work = Path(sys.argv[1])
musdb, fma = work / "musdb", work / "fma"
stems = ["vocals", "bass", "drums", "other"]
runs = [
    ("ev_finetune", "MixIT pre-trained, heads selected, fine-tuned (all parameters)"),
    ("ev_scratch", "from scratch, same budget"),
    ("ev_frozen", "MixIT pre-trained, separator frozen (encoder/decoder trained)"),
    ("ev_frozen_scratch", "random separator frozen (encoder/decoder trained)"),
    ("ev_heads", "MixIT pre-trained, heads selected, no fine-tuning"),
]


def fmt(x):
    return "n/a" if x is None else f"{x:.2f}"


lines = []
rows = {}
mixture = None
for tag, what in runs:
    summary = json.loads(
        (musdb / f"exp/enh_{tag}/separate_test/scoring/summary.json").read_text()
    )
    rows[tag] = (what, summary["systems"][tag], summary["num_scored"])
    mixture = summary["systems"]["mixture"]
n_songs = rows["ev_finetune"][2]

mixit_conf = yaml.safe_load((fma / "conf/train_mixit_demo.yaml").read_text())
ft_conf = yaml.safe_load((fma / "conf/finetune_enh_demo.yaml").read_text())
heads = json.loads((fma / "exp/enh_mixit_demo/heads/heads.json").read_text())
timings = dict(
    line.split("\t") for line in (work / "timings.tsv").read_text().splitlines()
)


def steps(conf):
    return conf["max_epoch"] * conf["num_iters_per_epoch"]


lines += [
    "| system | metric | " + " | ".join(stems) + " | average |",
    "|---|---|" + "---|" * (len(stems) + 1),
]
for tag, (what, scores, _) in [*rows.items(), ("mixture", ("mixture as the estimate", mixture, 0))]:
    for metric in ("uSDR", "cSDR"):
        values = [scores[metric][s] for s in stems] + [scores[metric]["average"]]
        lines.append(
            f"| {tag}: {what} | {metric} | " + " | ".join(fmt(v) for v in values) + " |"
        )
table = "\n".join(lines)

test_key = next(iter(heads["eval_data"]))
own = heads["eval_data"][test_key]
vote = heads["vote_data"]
own_lines = [
    "| songs | chunks | SNR | " + " | ".join(stems) + " |",
    "|---|---|---|" + "---|" * len(stems),
]
for name, data in (("valid (votes)", vote), ("test", own)):
    for key, label in (
        ("best_assignment_snr_db", "best assignment of the 12 outputs (oracle per chunk)"),
        ("selected_head_snr_db", "the 4 selected heads (fixed)"),
    ):
        own_lines.append(
            f"| {name} | {data['num_chunks']} | {label} | "
            + " | ".join(fmt(data[key][s]) for s in stems)
            + " |"
        )
own_table = "\n".join(own_lines)
votes = "\n".join(
    f"- {s}: output {heads['heads'][s]} (votes per output: {heads['votes'][s]})"
    for s in stems
)
notes = "\n".join(f"- {n}" for n in heads["notes"]) or "- none (no collision)"
timing = "\n".join(f"| {k} | {int(v) / 60:.1f} |" for k, v in timings.items())

def count(path):
    return len(path.read_text().splitlines())


fma_segments = {s: count(fma / f"data/fma/{s}/mix_segments.scp") for s in ("train", "valid")}
fma_tracks = {
    s: len(set((fma / f"data/fma/{s}/utt2spk").read_text().split()[1::2]))
    for s in ("train", "valid")
}
songs = {s: count(musdb / f"data/{s}/wav.scp") for s in ("train", "valid", "test")}

text = f"""# Evidence: MixIT pre-training at small scale (generated data, CPU)

Produced by `egs2/fma/mixit_enh1/local/evidence.sh --work {work}`; everything below was
measured by that run. Data: the embedded generated sets. FMA-like (MixIT): 40 MP3
tracks of 30 s (8 planted for the filters), of which {fma_tracks['train']} train and
{fma_tracks['valid']} valid tracks were kept, cut into {fma_segments['train']} and
{fma_segments['valid']} segments of 10 s. MUSDB18-HQ-like: {songs['train']} train /
{songs['valid']} valid / {songs['test']} test songs of 30 s (the test songs rendered
with another soundfont). Model: the demo BS-Locoformer (1 block, D = 16, C = 32,
2 heads), stereo, 44.1 kHz.

Budgets: MixIT pre-training {steps(mixit_conf)} steps of batch {mixit_conf['batch_size']}
({mixit_conf['preprocessor_conf']['segment_seconds']} s mixtures of mixtures);
every MUSDB run {steps(ft_conf)} steps of batch {ft_conf['batch_size']}
({ft_conf['preprocessor_conf']['segment_seconds']} s dynamic mixtures), the checkpoint
with the best validation loss. Scoring: `python -m espnet2_ext.bin.music_score`
(stages 5-6 of the MUSDB18-HQ recipe: 6 s chunks, 3 s hop, overlap-add) on the
{n_songs} generated test songs; uSDR = mean over songs, cSDR = museval v4 median of
medians, dB.

## Separation of the test songs

{table}

## The MixIT model's own separation (heads.json)

SNR (dB, channel 0) of the 12-output model on 6 s chunks where the stem is active,
before any fine-tuning:

{own_table}

Heads chosen on the validation songs:

{votes}

Collisions:

{notes}

## Wall time (minutes, shared 2-core CPU, runs of step 3 in parallel)

| step | minutes |
|---|---|
{timing}
"""
(work / "RESULTS_evidence.md").write_text(text)
print(text)
EOF
if [ -n "$results" ]; then
  cp "$work/RESULTS_evidence.md" "$results"
fi
log "done"
