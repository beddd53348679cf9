#!/usr/bin/env bash
# Issue 13 evidence: a learned prior that separates. Trains the two priors (if not yet
# trained), separates the test mixtures with every sampler config, computes the
# reference separations and writes RESULTS.md (this folder) and images/loss_curve.png.
#
# Usage: local/evidence.sh [--stage N] [--stop_stage M] [--configs "..."] [--nj N]
#                          [--num_test N] [--train_seed N]
#   --num_test test mixtures (default 20); mixture i is the same for any count (every
#              clip is drawn from (class, seed, index)), so a larger count adds mixtures
#   --configs  sampler configs (default: the full method, DPS, DSG (authors'), noise
#              initialisation, no guidance, the full method at 20 steps with and without
#              path scaling, DSG (Yang et al.))
#   --run_opts options passed to every ./run.sh call (e.g. --data_opts, --train_args)
#   --train_seed  seed of the priors' training (ESPnet's --seed: initial weights and batch
#              order; default 0). Another seed trains its own priors on the same clips in
#              exp/train_seed<N>/ and writes RESULTS_train_seed<N>.md and
#              images/loss_curve_train_seed<N>.png; the test mixtures and every sampling
#              seed stay the same, so the two tables differ only by the priors' training
#
# Stages:
#   1 data (./run.sh stage 1), unless data/test holds --num_test mixtures (the training
#     clips are written again, identical: not while a prior trains)
#   2 priors (./run.sh stage 2, resumed from their checkpoints if any); with --nj 2 or
#     more both at once; CPU time >> <exp>/cpu_train_<prior>.txt (a line per run)
#   3 separation and scoring of each config (./run.sh stages 3-4); CPU >> <exp>/cpu_separate.txt
#   4 reference separations (oracle IRM, LTI Wiener filter, the mixture) and their scores
#   5 the loss curve and RESULTS.md
# Run it with OMP_NUM_THREADS=1 and nice -n 19 on a shared machine.
set -euo pipefail
# The whole script is one function, read before it runs, and the line that calls it
# also exits: editing this file while a run is under way does not change that run.
main() {
cd "$(dirname "${BASH_SOURCE[0]}")/.."

stage=1
stop_stage=5
configs="conf/separate_paper.yaml conf/separate_dps.yaml conf/separate_dsg.yaml conf/separate_noise_init.yaml conf/separate_none.yaml conf/separate_paper_k20.yaml conf/separate_paper_k20_noscale.yaml conf/separate_dsg_yang.yaml"
nj=1
num_test=20
train_seed=0
run_opts=""
. ./utils/parse_options.sh
. ./path.sh

if [ "$train_seed" = 0 ]; then
  expdir=exp suffix=""
else
  expdir=exp/train_seed$train_seed suffix=_train_seed$train_seed
fi
run_opts="--expdir $expdir $run_opts"

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (evidence.sh) $*"; }
sep=$expdir/separate_prior
priors="$expdir/prior_tones_prior $expdir/prior_bursts_prior"
cputime() {  # $1 = output file, $2 = label, then the command: appends the label and its
  local out=$1 label=$2; shift 2  # wall, user and system seconds (children included)
  /usr/bin/time -f "$label: wall %e s, user %U s, system %S s" -a -o "$out" "$@"
}

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  if [ -f data/test/wav.scp ] && [ "$(wc -l <data/test/wav.scp)" -eq "$num_test" ]; then
    log "Stage 1: data/test holds $num_test mixtures, not regenerated"
  else
    # shellcheck disable=SC2086
    ./run.sh --stage 1 --stop_stage 1 --num_test "$num_test" $run_opts
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  # --resume true: a prior trained before goes on from its checkpoint to the config's
  # max_epoch (the same steps as training it at once: warmuplr does not depend on
  # max_epoch and ESPnet seeds each epoch), and one already there returns at once
  mkdir -p "$expdir"
  pids=()
  for prior in tones bursts; do
    # shellcheck disable=SC2086
    cputime "$expdir/cpu_train_$prior.txt" "stage 2 ($prior)" ./run.sh --stage 2 --stop_stage 2 \
      --train_priors "$prior" --train_args "--seed $train_seed --resume true" $run_opts &
    pids+=($!)
    [ "$nj" -ge 2 ] || wait "${pids[-1]}"
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "Stage 3: separation with $configs"
  # shellcheck disable=SC2086
  cputime "$expdir/cpu_separate.txt" "$configs" ./run.sh --stage 3 --stop_stage 4 --nj "$nj" \
    --inference_configs "$configs" $run_opts
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "Stage 4: reference separations -> $sep/{oracle_irm,wiener_lti,mixture}"
  ${python} local/bounds.py --data data --out "$sep"
  for name in oracle_irm wiener_lti mixture; do
    ${python} pyscripts/score.py --mix data/test/wav.scp \
      --ref data/test/spk1.scp data/test/spk2.scp \
      --est "$sep/$name/spk1.scp" "$sep/$name/spk2.scp" \
      --out "$sep/$name/scoring" --name "$name" --permutation false
  done
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "Stage 5: loss curve and RESULTS.md"
  ${python} local/loss_curve.py --log "$expdir/prior_tones_prior/train.log" tones \
    --log "$expdir/prior_bursts_prior/train.log" bursts --out "images/loss_curve$suffix.png" \
    --json "$sep/loss_curve.json"
  notes=""
  for f in "$expdir"/cpu_train*.txt "$expdir/cpu_separate.txt"; do
    [ -f "$f" ] && notes+="- \`$f\` (a run per entry): $(paste -sd';' "$f" | sed 's/;/; /g')"$'\n'
  done
  # shellcheck disable=SC2086
  ${python} local/make_results.py --exp "$sep" --priors $priors --data data \
    --run "separate_paper:full method (hybrid + augmented mixture)" \
    --run "separate_dps:DPS (authors': x' − 1.5 g)" \
    --run "separate_dsg:DSG (authors': x' − √L·0.09·σ g/‖g‖)" \
    --run "separate_noise_init:noise initialisation (hybrid)" \
    --run "separate_none:no guidance (floor)" \
    --run "separate_paper_k20:full method, 20 steps, path scaling" \
    --run "separate_paper_k20_noscale:full method, 20 steps, no path scaling" \
    --run "separate_dsg_yang:DSG (Yang et al., rate 0.2)" \
    --run "oracle_irm:oracle ideal ratio mask (bound)" \
    --run "wiener_lti:ideal LTI Wiener filter (frequency only)" \
    --run "mixture:the mixture itself" \
    --command "OMP_NUM_THREADS=1 nice -n 19 local/evidence.sh --nj $nj --num_test $num_test --train_seed $train_seed" \
    --cpu_notes "CPU time measured (1 thread):"$'\n'"$notes" \
    --out "RESULTS$suffix.md"
fi
}
main "$@"; exit
