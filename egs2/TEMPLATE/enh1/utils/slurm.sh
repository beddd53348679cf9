#!/usr/bin/env bash
# Runs a command as a Slurm job (or an array of jobs) and waits for it to end:
#   utils/slurm.sh [options] [JOB=1:N] LOGFILE COMMAND ...
# The interface of utils/run_local.sh and of ESPnet's utils/slurm.pl, so cmd.sh can
# choose either. With JOB=1:N, an array of N jobs; "JOB" in LOGFILE and COMMAND becomes
# the job's index.
# Options:
#   --gpu N --mem M --time T --num_threads N --num_nodes N --name NAME, and any other
#       --key value: translated into sbatch options by the table in conf/slurm.conf
#       (ESPnet's format: "option gpu=* --gres=gpu:$0", "option gpu=0",
#       "default gpu=0", "command sbatch ..."); an option the table does not describe
#       is an error
#   --max_jobs_run N   at most N jobs of the array at a time (--array=1-N%M)
#   --config FILE      another table (default conf/slurm.conf; built-in one if absent)
# Each job runs `cd <this folder>; . ./path.sh; COMMAND` with its output in its log
# file; the job script is kept in <log folder>/q/. Submission uses `sbatch --wait`: the
# exit status is non-zero when sbatch refuses the job (its message is shown; nothing
# ran, nothing was written but the job script) or when a job fails (its log is named).
set -u

usage() {
  echo "usage: $0 [--gpu N] [--mem M] [--time T] [--num_threads N] [--num_nodes N]" \
    "[--max_jobs_run N] [--config FILE] [JOB=1:N] LOGFILE COMMAND ..." >&2
  exit 2
}

config=conf/slurm.conf
max_jobs_run=""
declare -A cli=()
while [ $# -gt 0 ]; do
  case "$1" in
    --config) [ $# -ge 2 ] || usage; config=$2; shift 2 ;;
    --max_jobs_run|--max-jobs-run) [ $# -ge 2 ] || usage; max_jobs_run=$2; shift 2 ;;
    --*)
      [ $# -ge 2 ] || usage
      key=${1#--}; cli[${key//-/_}]=$2; shift 2 ;;
    *) break ;;
  esac
done
range=""
if [[ ${1:-} == JOB=*:* ]]; then range=${1#JOB=}; shift; fi
[ $# -ge 2 ] || usage
log=$1; shift

# ------------------------------------------------------- the translation table
default_table='command sbatch --export=PATH --ntasks-per-node=1
option name=* --job-name $0
option time=* --time $0
option mem=* --mem $0
option mem=0
option num_threads=* --cpus-per-task $0
option num_nodes=* --nodes $0
default gpu=0
option gpu=0
option gpu=* --gres=gpu:$0'
if [ -f "$config" ]; then
  table=$(cat "$config")
elif [ "$config" = conf/slurm.conf ]; then
  table=$default_table; config="the built-in table of $0"
else
  echo "$0: config $config not found" >&2; exit 2
fi
submit=""
declare -A with_value=() fixed=() defaults=()
while IFS= read -r line || [ -n "$line" ]; do
  entry=${line%%#*}
  entry=$(echo "$entry" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
  [ -n "$entry" ] || continue
  case "$entry" in
    "command "*) submit=${entry#command } ;;
    "option "*)
      spec=${entry#option }; head=${spec%% *}; rest=""
      [ "$head" = "$spec" ] || rest=${spec#* }
      name=${head%%=*}; value=${head#*=}
      if [ "$value" = "*" ]; then with_value[$name]=$rest; else fixed[$name=$value]=$rest; fi ;;
    "default "*)
      spec=${entry#default }; defaults[${spec%%=*}]=${spec#*=} ;;
    *) echo "$0: cannot read the line '$line' of $config" >&2; exit 2 ;;
  esac
done <<<"$table"
[ -n "$submit" ] || { echo "$0: $config has no 'command sbatch ...' line" >&2; exit 2; }
for name in "${!defaults[@]}"; do
  [ -n "${cli[$name]+x}" ] || cli[$name]=${defaults[$name]}
done
opts=()
for name in "${!cli[@]}"; do
  value=${cli[$name]}
  if [ -n "${fixed[$name=$value]+x}" ]; then
    # shellcheck disable=SC2206
    opts+=(${fixed[$name=$value]})
  elif [ -n "${with_value[$name]+x}" ]; then
    # shellcheck disable=SC2206
    opts+=(${with_value[$name]//\$0/$value})
  else
    echo "$0: --${name} ${value} is not described in $config (add an 'option" \
      "${name}=* ...' line)" >&2
    exit 2
  fi
done

# ------------------------------------------------------------- the job script
logdir=$(dirname "$log")
qdir=$logdir/q
base=$(basename "$log"); base=${base//.JOB/}; base=${base//JOB/}; base=${base%.log}
mkdir -p "$qdir"
script=$(cd "$qdir" && pwd)/$base.sh
{
  echo "#!/usr/bin/env bash"
  echo "# written by $0 at $(date)"
  printf 'cd %q\n' "$PWD"
  echo '[ ! -f ./path.sh ] || . ./path.sh'
  echo 'job=${SLURM_ARRAY_TASK_ID:-1}'
  printf 'log=%q\n' "$log"
  echo 'log=${log//JOB/$job}'
  printf 'args=('; printf ' %q' "$@"; printf ' )\n'
  echo 'args=("${args[@]//JOB/$job}")'
  echo 'mkdir -p "$(dirname "$log")"'
  echo '{'
  echo '  echo "# ${args[*]}"'
  echo '  echo "# started at $(date) on $(hostname) (Slurm job ${SLURM_JOB_ID:-?}, task $job)"'
  echo '  "${args[@]}"'
  echo '  rc=$?'
  echo '  echo "# ended at $(date) with status $rc"'
  echo '} >"$log" 2>&1'
  echo 'exit $rc'
} >"$script.tmp"
mv "$script.tmp" "$script"
chmod +x "$script"

array=()
first=1; last=1
if [ -n "$range" ]; then
  first=${range%%:*}; last=${range##*:}
  spec="$first-$last"; [ -z "$max_jobs_run" ] || spec+="%$max_jobs_run"
  array=(--array="$spec")
  out="$qdir/$base.%a.out"
else
  out="$qdir/$base.out"
fi

# ------------------------------------------------------------------ submission
# shellcheck disable=SC2206
command=($submit "${opts[@]}" "${array[@]}" --output="$out" --wait "$script")
stdout=$(mktemp); stderr=$(mktemp)
cancel() {
  id=$(sed -n 's/^Submitted batch job \([0-9]*\).*/\1/p' "$stdout")
  [ -z "$id" ] || scancel "$id"
  echo "$0: interrupted; cancelled Slurm job ${id:-(none submitted)}" >&2
  rm -f "$stdout" "$stderr"
  exit 130
}
trap cancel INT TERM
"${command[@]}" >"$stdout" 2>"$stderr" &
wait $!
rc=$?
trap - INT TERM
submitted=$(sed -n 's/^Submitted batch job \([0-9]*\).*/\1/p' "$stdout")
if [ -z "$submitted" ]; then
  echo "$0: sbatch did not accept the job (status $rc): $(cat "$stderr")" >&2
  echo "$0: nothing ran. The submission was: ${command[*]}" >&2
  echo "$0: check the partition and resources in $config (or cmd.sh)" >&2
  rm -f "$stdout" "$stderr"
  exit 1
fi
rm -f "$stdout" "$stderr"
failed=0
for ((job = first; job <= last; job++)); do
  this_log=${log//JOB/$job}
  if [ ! -f "$this_log" ]; then
    echo "$0: Slurm job $submitted (task $job) wrote no log $this_log: see $qdir" >&2
    failed=1
  elif ! tail -n 1 "$this_log" | grep -q 'with status 0$'; then
    echo "$0: job failed, see $this_log; its last lines:" >&2
    tail -n 4 "$this_log" | sed 's/^/  /' >&2
    failed=1
  fi
done
[ "$failed" -eq 0 ] || exit 1
exit "$rc"
