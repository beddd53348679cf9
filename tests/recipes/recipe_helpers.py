"""Helpers of the recipe tests: copies of the recipes, tiny configs, stand-ins for
Slurm's commands, runs. (Song trees and unlabeled folders come from
espnet2_ext.datagen.own_data.)"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import yaml

ROOT = Path(__file__).resolve().parents[2]
MUSDB_RECIPE = ROOT / "egs2" / "musdb18hq" / "enh1"
FMA_RECIPE = ROOT / "egs2" / "fma" / "mixit_enh1"
TEMPLATE = ROOT / "egs2" / "TEMPLATE" / "enh1"
FS = 44100
#: what a recipe run writes into its folder (a developer's earlier run, not copied)
OUTPUTS = shutil.ignore_patterns("data", "dump", "exp", "downloads", "RESULTS*")

#: training options that make the demo configs a few seconds of CPU
TINY_TRAINING = dict(
    max_epoch=2,
    num_iters_per_epoch=2,
    batch_size=2,
    keep_nbest_models=2,
    num_workers=0,
    log_interval=1,
)


def copy_recipe(src: Path, dst: Path, links: bool = True) -> Path:
    """The recipe without outputs; ``links``: keep the template links (to the repo)."""
    shutil.copytree(src, dst, symlinks=links, ignore=OUTPUTS)
    if links:
        for name in ("utils", "music_enh.sh"):  # relative links: point them home
            (dst / name).unlink()
            (dst / name).symlink_to(src / name)
    tuning = dst / "conf" / "tuning"
    if tuning.is_symlink():
        tuning.unlink()
        tuning.symlink_to(ROOT / "conf" / "tuning")
    return dst


def tiny_config(src: Path, dst: Path, **changes) -> Path:
    """``src`` (a demo config) with :data:`TINY_TRAINING` and ``changes``."""
    config = yaml.safe_load(src.read_text())
    config.update(TINY_TRAINING)
    for key, value in changes.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    dst.write_text(yaml.safe_dump(config))
    return dst


def fake_slurm(bin_dir: Path, record: Path) -> Path:
    """Stand-ins for ``sbatch``, ``srun`` and ``scancel`` in ``bin_dir``.

    ``sbatch`` appends its arguments to ``record`` (one line per call, after
    ``sbatch``), then runs the job script here once per array index (or once) with
    Slurm's variables set, as ``sbatch --wait`` would, and exits with the highest
    status. With ``FAKE_SBATCH_ERROR`` set it refuses: that message on stderr, status
    1, nothing run. ``srun`` records its call and starts the command once per node of
    the job (``SLURM_JOB_NUM_NODES``) with the variables of a Slurm step.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    sbatch = f"""#!/usr/bin/env bash
echo "sbatch $*" >>{record}
if [ -n "${{FAKE_SBATCH_ERROR:-}}" ]; then
  echo "sbatch: error: $FAKE_SBATCH_ERROR" >&2; exit 1
fi
array="" nodes=1 script=""
for a in "$@"; do
  case "$a" in
    --array=*) array=${{a#--array=}}; array=${{array%%%*}} ;;
    --nodes=*) nodes=${{a#--nodes=}} ;;
  esac
done
prev=""
for a in "$@"; do
  [ "$prev" = --nodes ] && nodes=$a
  prev=$a
done
script=${{@: -1}}
echo "Submitted batch job 4242"
first=1; last=1
if [ -n "$array" ]; then first=${{array%-*}}; last=${{array#*-}}; fi
rc=0
for ((i = first; i <= last; i++)); do
  if [ -n "$array" ]; then export SLURM_ARRAY_TASK_ID=$i; fi
  SLURM_JOB_ID=4242 SLURM_JOB_NUM_NODES=$nodes SLURM_NNODES=$nodes bash "$script" || rc=$?
done
exit $rc
"""
    srun = f"""#!/usr/bin/env bash
echo "srun $*" >>{record}
while [[ ${{1:-}} == -* ]]; do shift; done
n=${{SLURM_JOB_NUM_NODES:-1}}
pids=()
for ((i = 0; i < n; i++)); do
  SLURM_PROCID=$i SLURM_NODEID=$i SLURM_LOCALID=0 SLURM_NTASKS=$n \\
    SLURM_STEP_NUM_NODES=$n SLURM_STEP_NODELIST=localhost "$@" &
  pids+=($!)
done
rc=0
for p in "${{pids[@]}}"; do wait "$p" || rc=$?; done
exit $rc
"""
    for name, text in (
        ("sbatch", sbatch),
        ("srun", srun),
        ("scancel", f'#!/bin/sh\necho "scancel $*" >>{record}\n'),
    ):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir


def recipe_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    for name in ("ESPNET2_EXT_PYTHON", "ESPNET2_EXT_ROOT", "PYTHON", "CMD_BACKEND"):
        if name not in extra:
            env.pop(name, None)
    return env


def run_recipe(
    recipe: Path,
    *args: str,
    check: bool = True,
    env: Optional[Dict[str, str]] = None,
    timeout: int = 900,
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["./run.sh", *args],
        cwd=recipe,
        env=env or recipe_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc
