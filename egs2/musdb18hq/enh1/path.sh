# The Python environment of this recipe, found once per run and named on the console
# (stderr) with the reason. In order:
#   1. PYTHON=/path/to/python: that interpreter (it must import espnet2_ext);
#   2. ESPNET2_EXT_ROOT=/path/to/the/repository: its .venv (tools/setup_venv.sh);
#   3. the repository this recipe folder is in (found by walking up from it, or from
#      where its music_enh.sh link points): its .venv;
#   4. python3 on PATH, when it imports espnet2_ext (an environment with espnet2_ext
#      installed by pip).
# None of these: an error that says what to set. A recipe copied out of the repository
# (cp -rL egs2/<corpus>/<recipe> ~/my_exp) thus finds the project through 2 or 4, never
# silently through an unrelated python3.
if [ -z "${ESPNET2_EXT_PYTHON:-}" ]; then
  __recipe=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  __python="" __why="" __root=""
  __repo_of() {  # the first folder at or above $1 holding espnet2_ext/ and .venv/
    local d=$1
    while [ -n "$d" ] && [ "$d" != / ]; do
      if [ -f "$d/espnet2_ext/__init__.py" ] && [ -x "$d/.venv/bin/python" ]; then
        echo "$d"; return 0
      fi
      d=$(dirname "$d")
    done
    return 1
  }
  __has_ext() {  # $1 finds the espnet2_ext package (without importing it)
    "$1" -c 'import importlib.util as u, sys
sys.exit(u.find_spec("espnet2_ext") is None)' >/dev/null 2>&1
  }
  if [ -n "${PYTHON:-}" ]; then
    __python=$PYTHON; __why="PYTHON is set"
  elif [ -n "${ESPNET2_EXT_ROOT:-}" ]; then
    if [ ! -x "$ESPNET2_EXT_ROOT/.venv/bin/python" ]; then
      echo "path.sh: ESPNET2_EXT_ROOT=$ESPNET2_EXT_ROOT has no .venv/bin/python" \
        "(run tools/setup_venv.sh there), or set PYTHON to a Python with" \
        "espnet2_ext installed" >&2
      return 1
    fi
    __root=$ESPNET2_EXT_ROOT
    __python=$__root/.venv/bin/python; __why="ESPNET2_EXT_ROOT=$__root"
  elif __root=$(__repo_of "$__recipe"); then
    __python=$__root/.venv/bin/python
    __why="the repository this recipe is in"
  elif [ -L "$__recipe/music_enh.sh" ] &&
    __root=$(__repo_of "$(dirname "$(readlink -f "$__recipe/music_enh.sh")")"); then
    __python=$__root/.venv/bin/python
    __why="the repository music_enh.sh links to"
  elif command -v python3 >/dev/null &&
    __has_ext python3; then
    __python=$(command -v python3)
    __why="python3 on PATH imports espnet2_ext; this recipe is outside the repository"
  else
    echo "path.sh: no Python with espnet2_ext for the recipe in $__recipe: it is not" \
      "inside the espnet2_ext repository, and python3 on PATH" \
      "($(command -v python3 || echo none)) cannot import espnet2_ext. Set" \
      "ESPNET2_EXT_ROOT=/path/to/espnet2_ext (the repository, with its .venv) or" \
      "PYTHON=/path/to/python (an environment with espnet2_ext installed)" >&2
    return 1
  fi
  if ! __has_ext "$__python"; then
    echo "path.sh: $__python ($__why) cannot import espnet2_ext" >&2
    return 1
  fi
  export ESPNET2_EXT_PYTHON=$__python
  [ -z "$__root" ] || export ESPNET2_EXT_ROOT=$__root
  echo "path.sh: Python $__python ($__why)" >&2
  unset -f __repo_of __has_ext
  unset __recipe __python __why __root
fi
python=$ESPNET2_EXT_PYTHON
# `python` in scripts and jobs finds the same interpreter
PATH="$(dirname "$python"):$PATH"
export PATH
export PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
