#!/usr/bin/env bash
# Creates (or completes) .venv/ in the repository root for this project's CPU machines:
# Python 3.11, the torch 2.13.0 CPU wheel that lies on disk, ESPnet 202611 and the pinned
# dependencies of requirements/cpu-py311.lock (with the formatters black and isort that
# .ci/run checks), a pure-Python torchaudio (see tools/make_pure_torchaudio_wheel.py), and
# espnet2_ext itself in editable mode.
# Also installs the Debian packages the project uses (ffmpeg for museval, fluidsynth and the
# GM soundfont for the embedded data, espeak-ng and sox) when they are missing.
#
# Idempotent: a finished venv is recognised by a stamp that holds the hash of the lock file,
# this script, setup.py and pyproject.toml.
# Never lets pip pull a CUDA torch: torch==2.13.0 is repeated in every pip command.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${ESPNET2_EXT_VENV:-$root/.venv}
python=${PYTHON:-python3.11}
torch_pin="torch==2.13.0"
espnet_pin="espnet==202611"
torchaudio_pin="torchaudio==2.11.0"
lock=$root/requirements/cpu-py311.lock

log() { echo "[setup_venv] $*"; }

# --- Debian packages -----------------------------------------------------------------------
apt_pkgs=()
command -v ffmpeg >/dev/null || apt_pkgs+=(ffmpeg)
command -v fluidsynth >/dev/null || apt_pkgs+=(fluidsynth)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || apt_pkgs+=(fluid-soundfont-gm)
[ -f /usr/share/sounds/sf2/TimGM6mb.sf2 ] || apt_pkgs+=(timgm6mb-soundfont)
command -v espeak-ng >/dev/null || apt_pkgs+=(espeak-ng)
command -v sox >/dev/null || apt_pkgs+=(sox)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian packages: ${apt_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
  else
    log "WARNING: missing system packages (${apt_pkgs[*]}); install them with your package manager"
  fi
fi

# --- the virtual environment ----------------------------------------------------------------
stamp_value=$(cat "$lock" "$0" "$root/setup.py" "$root/pyproject.toml" | sha256sum | cut -c1-16)
stamp=$venv/.espnet2_ext_setup
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_value" ] && [ -x "$venv/bin/python" ]; then
  log "$venv is up to date"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv with $python"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
export PIP_NO_WARN_SCRIPT_LOCATION=1

log "installing $torch_pin (CPU wheel)"
"${pip[@]}" install "$torch_pin"

log "installing $espnet_pin without its dependency resolution (it declares Python>=3.12)"
"${pip[@]}" install --no-deps --ignore-requires-python "$espnet_pin"

log "installing the pinned dependencies"
"${pip[@]}" install "$torch_pin" -r "$lock"

log "installing a pure-Python $torchaudio_pin"
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
"${pip[@]}" download --no-deps "$torchaudio_pin" -d "$wheels/src"
"$venv/bin/python" "$root/tools/make_pure_torchaudio_wheel.py" "$wheels"/src/torchaudio-*.whl "$wheels/out" >/dev/null
"${pip[@]}" install --no-deps --force-reinstall "$wheels"/out/torchaudio-*.whl

log "installing espnet2_ext (editable)"
"${pip[@]}" install --no-deps --no-build-isolation -e "$root"

"$venv/bin/python" -m pip check >/dev/null 2>&1 || { "$venv/bin/python" -m pip check; exit 1; }
"$venv/bin/python" - <<'PY'
import torch, torchaudio, espnet2.tasks.enh, espnet2_ext, black, isort  # noqa: F401
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert not torch.cuda.is_available() or True
PY
echo "$stamp_value" > "$stamp"
log "done: $venv"
