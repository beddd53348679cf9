# The Python environment: the repository's .venv when it exists (tools/setup_venv.sh),
# otherwise whatever python3 is on PATH (a user's own environment with espnet2_ext).
__root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
if [ -x "$__root/.venv/bin/python" ]; then
  export PATH="$__root/.venv/bin:$PATH"
fi
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
unset __root
