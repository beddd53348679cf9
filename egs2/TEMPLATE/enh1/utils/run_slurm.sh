#!/usr/bin/env bash
# Same interface as utils/run_local.sh, but each job is submitted to Slurm with sbatch and
# waited for (--wait). Extra sbatch options come from $SLURM_OPTS (e.g. "--gres=gpu:1
# --time=48:00:00 --partition=gpu"). Set train_cmd/decode_cmd in cmd.sh to use it.
set -u
range=""
if [[ ${1:-} == JOB=*:* ]]; then range=${1#JOB=}; shift; fi
if [ $# -lt 2 ]; then echo "usage: $0 [JOB=1:N] LOGFILE COMMAND ..." >&2; exit 2; fi
command -v sbatch >/dev/null || { echo "$0: sbatch not found; use utils/run_local.sh in cmd.sh" >&2; exit 1; }
log=$1; shift
first=1; last=1
if [ -n "$range" ]; then first=${range%%:*}; last=${range##*:}; fi
mkdir -p "$(dirname "${log//JOB/$first}")"
cmd=$(printf '%q ' "$@")
cmd=${cmd//JOB/\$SLURM_ARRAY_TASK_ID}
out=${log//JOB/%a}
# shellcheck disable=SC2086
exec sbatch --wait ${SLURM_OPTS:-} --array="$first-$last" --output="$out" \
  --job-name="$(basename "$(dirname "$log")")" --wrap="cd $(printf '%q' "$PWD") && $cmd"
