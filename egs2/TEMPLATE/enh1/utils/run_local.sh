#!/usr/bin/env bash
# Runs a command on this machine, as one job or an array of jobs in parallel:
#   utils/run_local.sh [JOB=1:N] LOGFILE COMMAND ...
# With JOB=1:N, every "JOB" in LOGFILE and COMMAND is replaced by the job number. Each
# job's output goes to its log file (created with its folder); the exit code is non-zero
# when any job failed, and the failing logs are named. This is what cmd.sh uses as
# train_cmd/decode_cmd on a workstation (utils/run_slurm.sh on a Slurm cluster).
# Parallel jobs share the machine's cores: each gets at most nproc / N threads
# (OMP_NUM_THREADS, which torch follows), so N jobs never oversubscribe the CPU.
set -u
range=""
if [[ ${1:-} == JOB=*:* ]]; then range=${1#JOB=}; shift; fi
if [ $# -lt 2 ]; then echo "usage: $0 [JOB=1:N] LOGFILE COMMAND ..." >&2; exit 2; fi
log=$1; shift
first=1; last=1
if [ -n "$range" ]; then first=${range%%:*}; last=${range##*:}; fi
njobs=$((last - first + 1))
per_job=$(( $(nproc) / njobs )); [ "$per_job" -ge 1 ] || per_job=1
threads=${OMP_NUM_THREADS:-$per_job}
[ "$threads" -le "$per_job" ] || threads=$per_job
pids=(); logs=()
for ((job = first; job <= last; job++)); do
  this_log=${log//JOB/$job}
  args=(); for a in "$@"; do args+=("${a//JOB/$job}"); done
  mkdir -p "$(dirname "$this_log")"
  (
    echo "# ${args[*]}"
    echo "# started at $(date) with OMP_NUM_THREADS=$threads"
    OMP_NUM_THREADS=$threads "${args[@]}"
    rc=$?
    echo "# ended at $(date) with status $rc"
    exit $rc
  ) >"$this_log" 2>&1 &
  pids+=($!); logs+=("$this_log")
done
failed=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "$0: job failed, see ${logs[$i]}" >&2
    failed=1
  fi
done
exit $failed
