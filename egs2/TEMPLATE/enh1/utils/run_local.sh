#!/usr/bin/env bash
# Runs a command on this machine, as one job or an array of jobs in parallel:
#   utils/run_local.sh [options] [JOB=1:N] LOGFILE COMMAND ...
# The interface of Kaldi's and ESPnet's run.pl/slurm.pl, so that cmd.sh can swap it for
# utils/slurm.sh. With JOB=1:N, every "JOB" in LOGFILE and COMMAND is replaced by the job
# number. Each job's output goes to its log file (created with its folder); the exit
# code is non-zero when any job failed, and the failing logs are named.
# Options (those of slurm.sh; resources are not reserved on a workstation):
#   --gpu N           accepted (the command's own --ngpu chooses the devices)
#   --mem M --time T  accepted and ignored
#   --num_threads N   threads per job (default: this machine's cores / parallel jobs)
#   --max_jobs_run N  at most N jobs at a time
#   --num_nodes N     only 1: several nodes need utils/slurm.sh (cmd.sh)
#   --name NAME --config FILE   accepted and ignored
# Parallel jobs share the machine's cores: each gets at most nproc / N threads
# (OMP_NUM_THREADS, which torch follows), so N jobs never oversubscribe the CPU.
set -u
num_threads=""
max_jobs_run=""
num_nodes=1
while [ $# -gt 0 ]; do
  case "$1" in
    --gpu|--mem|--time|--name|--config) shift 2 ;;
    --num_threads|--num-threads) num_threads=$2; shift 2 ;;
    --max_jobs_run|--max-jobs-run) max_jobs_run=$2; shift 2 ;;
    --num_nodes|--num-nodes) num_nodes=$2; shift 2 ;;
    --*) echo "$0: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ "$num_nodes" -gt 1 ]; then
  echo "$0: --num_nodes $num_nodes: this runner uses one machine; set the Slurm" \
    "backend in cmd.sh (utils/slurm.sh) to train on several nodes" >&2
  exit 2
fi
range=""
if [[ ${1:-} == JOB=*:* ]]; then range=${1#JOB=}; shift; fi
if [ $# -lt 2 ]; then
  echo "usage: $0 [options] [JOB=1:N] LOGFILE COMMAND ..." >&2
  exit 2
fi
log=$1; shift
first=1; last=1
if [ -n "$range" ]; then first=${range%%:*}; last=${range##*:}; fi
njobs=$((last - first + 1))
parallel=$njobs
[ -z "$max_jobs_run" ] || [ "$max_jobs_run" -ge "$parallel" ] || parallel=$max_jobs_run
per_job=$(( $(nproc) / parallel )); [ "$per_job" -ge 1 ] || per_job=1
threads=${num_threads:-${OMP_NUM_THREADS:-$per_job}}
[ "$threads" -le "$per_job" ] || threads=$per_job
pids=(); logs=(); failed=0
# each job in a process group of its own, so that an interrupted runner (Ctrl-C, or
# TERM from the recipe driver) ends its jobs with it
set -m
stop() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
  echo "$0: interrupted; stopped ${#pids[@]} job(s)" >&2
  exit 143
}
trap stop INT TERM
for ((job = first; job <= last; job++)); do
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do sleep 0.2; done
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
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "$0: job failed, see ${logs[$i]}; its last lines:" >&2
    tail -n 4 "${logs[$i]}" | sed 's/^/  /' >&2
    failed=1
  fi
done
exit $failed
