#!/usr/bin/env python3
"""Write a training config at a budget of updates, its schedule scaled in shape.

::

    python -m espnet2_ext.bin.budget_config --config conf/finetune_enh_demo.yaml \\
        --out exp/compare/finetune.yaml --steps 200 --steps_per_epoch 20 \\
        --schedule_from conf/tuning/finetune_enh_bs_locoformer_small.yaml

``max_epoch × num_iters_per_epoch`` becomes ``--steps``; the learning-rate schedule is
the ``warmupstaircaselr`` of ``--schedule_from`` (or of ``--config``) shrunk to
``--steps`` with the same factor at every fraction of training, at the peak learning
rate of ``--config`` (:mod:`espnet2_ext.train.budget`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from espnet2_ext.train.budget import write_budget_config
from espnet2_ext.utils.cli import run_command, str_or_none


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet2_ext.bin.budget_config",
        description="A training config at a budget of updates (schedule scaled).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="the training YAML")
    parser.add_argument("--out", required=True, help="the YAML to write")
    parser.add_argument("--steps", type=int, required=True, help="optimizer updates")
    parser.add_argument(
        "--steps_per_epoch",
        type=int,
        required=True,
        help="updates per epoch (validation and a checkpoint after each)",
    )
    parser.add_argument(
        "--schedule_from",
        type=str_or_none,
        default=None,
        help="a config whose warmupstaircaselr schedule is scaled (default: --config's "
        "own, when it is one; another scheduler is kept as it is)",
    )
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command("budget_config", get_parser(), write_budget_config, argv)


if __name__ == "__main__":
    sys.exit(main())
