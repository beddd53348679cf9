"""Tiny training runs through our real entry point, for the training-side tests.

A 2-source stereo BS-Locoformer (1 block, D = 8) on 4 clips of 0.3 s: an epoch takes
about a second; the process start (imports) dominates.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import yaml

from conftest import tiny_config, write_stereo_set

#: what every run of these tests shares: no plots or tensorboard (seconds per epoch)
QUIET = dict(use_matplotlib=False, use_tensorboard=False, num_att_plot=0)


def training_config(**overrides) -> Dict:
    """The tiny model with the paper configs' loss: per-channel thresholded SNR."""
    config = tiny_config(criterion="thres_snr")
    config.update(
        multichannel_loss="per_channel",
        batch_type="unsorted",
        batch_size=2,
        max_epoch=2,
        num_workers=0,
        optim="adamw",
        optim_conf=dict(lr=1e-3, weight_decay=1e-2),
        grad_clip=5.0,
        best_model_criterion=[["valid", "loss", "min"]],
        keep_nbest_models=2,
        seed=0,
        **QUIET,
    )
    config.update(overrides)
    return config


def data_options(
    scps: Dict[str, Path], num_spk: int = 2, valid: Optional[Dict[str, Path]] = None
) -> list:
    """ESPnet's data options for train and valid (the same clips unless ``valid``
    replaces some of the scp files for validation)."""
    opts = []
    for kind in ("train", "valid"):
        scps = {**scps, **(valid or {})} if kind == "valid" else scps
        opts += [
            f"--{kind}_data_path_and_name_and_type",
            f"{scps['wav']},speech_mix,sound",
        ]
        for n in range(1, num_spk + 1):
            opts += [
                f"--{kind}_data_path_and_name_and_type",
                f"{scps[f'spk{n}']},speech_ref{n},sound",
            ]
        opts += [f"--{kind}_shape_file", str(scps["wav"])]
    return opts


def make_run(root: Path, **overrides) -> Dict[str, Path]:
    """Data and ``train.yaml`` under ``root``; returns the scp paths."""
    scps = write_stereo_set(root / "data", n_utts=4, seconds=0.3)
    (root / "train.yaml").write_text(yaml.safe_dump(training_config(**overrides)))
    return scps


def train_command(root: Path, scps, *extra: str, exp: str = "exp", valid=None) -> list:
    return [
        sys.executable,
        "-m",
        "espnet2_ext.bin.enh_train",
        "--config",
        str(root / "train.yaml"),
        *data_options(scps, valid=valid),
        "--output_dir",
        str(root / exp),
        "--ngpu",
        "0",
        *extra,
    ]


def train(
    root: Path,
    scps,
    *extra: str,
    exp: str = "exp",
    timeout: float = 300,
    env: Optional[Dict[str, str]] = None,
    valid: Optional[Dict[str, Path]] = None,
) -> subprocess.CompletedProcess:
    """Run the entry point to completion; stdout and stderr are returned."""
    return subprocess.run(
        train_command(root, scps, *extra, exp=exp, valid=valid),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def files(folder: Path) -> Sequence[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
