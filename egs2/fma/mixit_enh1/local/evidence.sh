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
  (cd "$musdb" && timed "$tag" ./run.sh "${opts[@]}") \
    >"$musdb/exp/evidence_$tag.log" 2>&1
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
import csv
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

work = Path(sys.argv[1])
musdb, fma = work / "musdb", work / "fma"
stems = ["vocals", "bass", "drums", "other"]
runs = {
    "ev_finetune": "MixIT pre-trained, fine-tuned (all parameters)",
    "ev_scratch": "from scratch, same budget",
    "ev_frozen": "MixIT pre-trained, separator frozen",
    "ev_frozen_scratch": "random separator frozen",
    "ev_heads": "MixIT pre-trained, heads selected, no fine-tuning",
    "mixture": "the mixture as the estimate",
}


def fmt(x):
    return "n/a" if x is None else f"{x:.2f}"


def count(path):
    return len(path.read_text().splitlines())


def scoring(tag):
    return musdb / f"exp/enh_{tag}/separate_test/scoring"


def steps(conf):
    return conf["max_epoch"] * conf["num_iters_per_epoch"]


summaries = {
    tag: json.loads((scoring(tag) / "summary.json").read_text())
    for tag in runs
    if tag != "mixture"
}
scores = {tag: s["systems"][tag] for tag, s in summaries.items()}
scores["mixture"] = summaries["ev_finetune"]["systems"]["mixture"]
n_songs = summaries["ev_finetune"]["num_scored"]

lines = [
    "| system | " + " | ".join(f"uSDR {s}" for s in stems) + " | uSDR avg | cSDR avg |",
    "|---|" + "---|" * (len(stems) + 2),
]
for tag, what in runs.items():
    u, c = scores[tag]["uSDR"], scores[tag]["cSDR"]
    cells = [fmt(u[s]) for s in stems] + [fmt(u["average"]), fmt(c["average"])]
    lines.append(f"| `{tag}`: {what} | " + " | ".join(cells) + " |")
table = "\n".join(lines)
lines = ["| system | " + " | ".join(stems) + " |", "|---|" + "---|" * len(stems)]
for tag in runs:
    c = scores[tag]["cSDR"]
    lines.append(f"| `{tag}` | " + " | ".join(fmt(c[s]) for s in stems) + " |")
csdr_table = "\n".join(lines)


def per_pair(tag):
    """uSDR per (song, stem) of a run, from its scores.csv."""
    with open(scoring(tag) / "scores.csv", newline="") as f:
        return {
            (row["track"], row["stem"]): float(row["uSDR"])
            for row in csv.DictReader(f)
            if row["system"] == tag
        }


lines = [
    "| difference | mean uSDR | (song, stem) pairs better | per song (mean over "
    "stems) |",
    "|---|---|---|---|",
]
for a, b in (("ev_finetune", "ev_scratch"), ("ev_frozen", "ev_frozen_scratch")):
    x, y = per_pair(a), per_pair(b)
    diff = np.array([x[k] - y[k] for k in sorted(x)])
    tracks = sorted({k[0] for k in x})
    song_diff = [np.mean([x[(t, s)] - y[(t, s)] for s in stems]) for t in tracks]
    lines.append(
        f"| `{a}` - `{b}` | {diff.mean():+.2f} | {int((diff > 0).sum())} of "
        f"{diff.size} | " + ", ".join(f"{d:+.2f}" for d in song_diff) + " |"
    )
paired_table = "\n".join(lines)

# a reference point for the 12 outputs' own SNRs: the mixture with the best gain per
# chunk (an oracle too), on the same 6 s chunks, channel 0, active stems only
refs = musdb / "exp/enh_ev_finetune/separate_test/refs"
chunk = 6 * 44100
snr = {s: [] for s in stems}
for song in sorted(refs.iterdir()):
    mix = sf.read(song / "mixture.wav", dtype="float64")[0][:, 0]
    audio = {t: sf.read(song / f"{t}.wav", dtype="float64")[0][:, 0] for t in stems}
    total = sum(audio.values())
    for stem in stems:
        for start in range(0, len(mix) - chunk + 1, chunk):
            part = slice(start, start + chunk)
            x, s, t = mix[part], audio[stem][part], total[part]
            energy = float(s @ s)
            if energy == 0.0 or energy < 1e-6 * float(t @ t):
                continue  # inactive: the rule of the votes
            gain = float(x @ s) / float(x @ x)
            err = float((s - gain * x) @ (s - gain * x))
            snr[stem].append(10 * np.log10((energy + 1e-8) / (err + 1e-8)))
scaled_mixture = {s: float(np.mean(v)) if v else None for s, v in snr.items()}
num_scaled = len(snr["vocals"])

mixit_conf = yaml.safe_load((fma / "conf/train_mixit_demo.yaml").read_text())
ft_conf = yaml.safe_load((fma / "conf/finetune_enh_demo.yaml").read_text())
heads = json.loads((fma / "exp/enh_mixit_demo/heads/heads.json").read_text())
timings = dict(
    line.split("\t") for line in (work / "timings.tsv").read_text().splitlines()
)

test_key = next(iter(heads["eval_data"]))
lines = [
    "| songs | chunks | SNR of | " + " | ".join(stems) + " |",
    "|---|---|---|" + "---|" * len(stems),
]
for name, data in (
    ("valid", heads["vote_data"]),
    ("test", heads["eval_data"][test_key]),
):
    for key, label in (
        (
            "best_assignment_snr_db",
            "the best of the 12 outputs (oracle match per chunk)",
        ),
        ("selected_head_snr_db", "the 4 selected heads (fixed)"),
    ):
        lines.append(
            f"| {name} | {data['num_chunks']} | {label} | "
            + " | ".join(fmt(data[key][s]) for s in stems)
            + " |"
        )
lines.append(
    f"| test | {num_scaled} | the mixture, oracle gain per chunk | "
    + " | ".join(fmt(scaled_mixture[s]) for s in stems)
    + " |"
)
own_table = "\n".join(lines)
votes = "\n".join(
    f"- {s}: output {heads['heads'][s]} (votes per output: {heads['votes'][s]})"
    for s in stems
)
notes = "\n".join(f"- {n}" for n in heads["notes"]) or "- none (no collision)"
timing = "\n".join(f"| {k} | {int(v) / 60:.1f} |" for k, v in timings.items())
parallel = [f"ev_{r}" for r in ("finetune", "scratch", "frozen", "frozen_scratch")]
total = sum(int(v) for k, v in timings.items() if k not in parallel) + max(
    int(timings[k]) for k in parallel
)
fma_segments = {
    s: count(fma / f"data/fma/{s}/mix_segments.scp") for s in ("train", "valid")
}
fma_tracks = {
    s: len(set((fma / f"data/fma/{s}/utt2spk").read_text().split()[1::2]))
    for s in ("train", "valid")
}
songs = {s: count(musdb / f"data/{s}/wav.scp") for s in ("train", "valid", "test")}

text = f"""# Evidence: MixIT pre-training at small scale (generated data, CPU)

Produced by `egs2/fma/mixit_enh1/local/evidence.sh --work {work}`; every number below
was measured by that run. Data: the embedded generated sets. FMA-like (MixIT): 40 MP3
tracks of 30 s (8 planted for the filters), of which {fma_tracks['train']} train and
{fma_tracks['valid']} valid tracks were kept, cut into {fma_segments['train']} and
{fma_segments['valid']} segments of 10 s. MUSDB18-HQ-like: {songs['train']} train /
{songs['valid']} valid / {songs['test']} test songs of 30 s (the test songs rendered
with another soundfont). Model: the demo BS-Locoformer (1 block, D = 16, C = 32,
2 heads), stereo, 44.1 kHz.

Budgets (one seed per run):

- MixIT pre-training: {steps(mixit_conf)} steps, batch {mixit_conf['batch_size']}, \
{mixit_conf['preprocessor_conf']['segment_seconds']} s mixtures of mixtures;
- every MUSDB run: {steps(ft_conf)} steps, batch {ft_conf['batch_size']}, \
{ft_conf['preprocessor_conf']['segment_seconds']} s dynamic mixtures, then the \
checkpoint with the best validation loss. The pre-trained runs thus had \
{steps(mixit_conf)} MixIT updates on other data before the same MUSDB budget.

Scoring: `python -m espnet2_ext.bin.music_score` (stages 5-6 of the MUSDB18-HQ recipe:
6 s chunks, 3 s hop, overlap-add) on the {n_songs} generated test songs; uSDR = mean
over songs, cSDR = museval v4 median over songs, dB.

## Separation of the test songs

{table}

cSDR per stem:

{csdr_table}

Paired differences (uSDR, dB) on the same songs:

{paired_table}

## The MixIT model's own separation (heads.json)

SNR (dB, channel 0) on 6 s chunks where the stem is active, before any fine-tuning.
The last row is a reference point: the mixture itself with the best gain per chunk
(an oracle too).

{own_table}

Heads chosen on the validation songs:

{votes}

Collisions:

{notes}

## Wall time (minutes; shared, loaded 2-core CPU; the four runs of step 3 in parallel)

| step | minutes |
|---|---|
{timing}
| total (the four parallel runs counted once) | {total / 60:.1f} |
"""
(work / "RESULTS_evidence.md").write_text(text)
print(text)
EOF
if [ -n "$results" ]; then
  cp "$work/RESULTS_evidence.md" "$results"
fi
log "done"
