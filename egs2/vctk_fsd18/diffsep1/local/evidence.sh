#!/usr/bin/env bash
# Issue 13: the event recipe with the true event classes given to the class-conditional
# sound-event prior (the default, as the authors' code does) and the label-free run
# ("no class") beside it, same priors, same sampler configs, same seeds. Writes
# RESULTS_labels.md (this folder; under --expdir when one is given) from the two
# RESULTS.md of stage 4.
#
# Usage: local/evidence.sh [options of run.sh]   (stages 3-4 are run twice)
# Needs the priors of stage 2 trained with --sfx_conditional true (the default), e.g.
#   ./run.sh --stop_stage 2 --prior_config conf/prior_tiny.yaml
#   local/evidence.sh --prior_config conf/prior_tiny.yaml
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tag=""
prior_config=conf/prior.yaml
expdir=exp
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do  # the experiment tag, as diffsep.sh derives it
  case "${args[$i]}" in
    --tag) tag=${args[$((i + 1))]} ;;
    --prior_config) prior_config=${args[$((i + 1))]} ;;
    --expdir) expdir=${args[$((i + 1))]} ;;
  esac
done
[ -n "$tag" ] || tag=$(basename "${prior_config%.*}")
# the recipe's table only from the recipe's own experiments
out=RESULTS_labels.md
[ "$expdir" = exp ] || out=$expdir/RESULTS_labels.md

./run.sh --stage 3 --stop_stage 4 --oracle_categories true "$@"
./run.sh --stage 3 --stop_stage 4 --oracle_categories false "$@"

{
  echo "# Oracle event labels vs. no labels ($tag priors)"
  echo
  echo "Produced by \`local/evidence.sh $*\`."
  echo
  echo "## True event classes given to the sound-event prior (the authors' protocol)"
  echo
  tail -n +2 "$expdir/separate_${tag}_oracle_labels/RESULTS.md"
  echo
  echo "## No labels (the event prior's \"no class\" input)"
  echo
  tail -n +2 "$expdir/separate_${tag}/RESULTS.md"
} >"$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
