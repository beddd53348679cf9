#!/usr/bin/env python3
"""Calibrate a ratio schedule for deployable multi-step inference (seeds/000).

Cuts the validation songs into chunks, chooses the mixture weight of every step and stem
on them and writes the schedule that ``enh_inference --multistep_schedule FILE`` applies
to new songs, plus a report (cost, per-step traces on the validation chunks and on every
``--eval_data`` set); the per-step validation metric is printed as a table. The work is
:func:`espnet2_ext.enh.inference.multistep.song_calibration.run_calibration`::

    python -m espnet2_ext.bin.multistep_calibrate \\
        --train_config exp/enh_demo/config.yaml \\
        --model_file exp/enh_demo/valid.loss.ave.pth \\
        --data_dir data/valid --chunk_seconds 6 --steps 20 --candidates 10 \\
        --output exp/enh_demo/multistep_schedule.yaml

``--form constant`` chooses one weight per stem held for a chosen number of steps
instead of a weight per step and stem.

``--data_dir`` is a folder of ``python -m espnet2_ext.datasets.musdb18hq``. Use the
inference ``--segment_size`` as ``--chunk_seconds`` (the schedule is applied per chunk
there). Chunks in which a stem is below ``--inactive_threshold_db`` re the mixture are
left out: the SNR of a silent reference is meaningless and would dominate the mean.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence

from espnet2.utils.types import float_or_none, int_or_none, str2bool

from espnet2_ext.enh.inference.metrics_registry import available_metrics
from espnet2_ext.enh.inference.multistep import GRIDS
from espnet2_ext.enh.inference.multistep.calibration import FORMS
from espnet2_ext.enh.inference.multistep.song_calibration import (
    REPORT_NAME,
    run_calibration,
)
from espnet2_ext.utils.cli import run_command


def ratio_list(text: str) -> List[float]:
    """``"1.0 0.8, 0.6"`` → ``[1.0, 0.8, 0.6]`` (an argparse type)."""
    return [float(v) for v in text.replace(",", " ").split()]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet2_ext.bin.multistep_calibrate",
        description="Choose the mixture weights of deployable multi-step inference "
        "on validation songs and write the schedule file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--train_config", required=True, help="config.yaml of the model"
    )
    parser.add_argument("--model_file", required=True, help="its .pth")
    parser.add_argument(
        "--data_dir", required=True, help="validation folder: wav.scp, spk<n>.scp"
    )
    parser.add_argument(
        "--output", required=True, help="schedule file (.yaml, .yml or .json)"
    )
    parser.add_argument(
        "--report",
        default=None,
        help=f"report JSON (default: {REPORT_NAME} beside --output)",
    )
    parser.add_argument(
        "--stems", nargs="+", default=None, help="output names (default: MUSDB stems)"
    )
    parser.add_argument(
        "--steps", type=int_or_none, default=None, help="T (default 20)"
    )
    parser.add_argument(
        "--candidates", type=int_or_none, default=None, help="K (default 10)"
    )
    parser.add_argument("--grid", default="uniform", choices=GRIDS)
    parser.add_argument(
        "--ratios",
        type=ratio_list,
        default=None,
        help="explicit mixture weights tried at every step, e.g. '1.0 0.8 0.6'",
    )
    parser.add_argument(
        "--metric",
        default="snr",
        help="metric maximised on the validation chunks: "
        + ", ".join(available_metrics()),
    )
    parser.add_argument(
        "--per_source",
        type=str2bool,
        default=True,
        help="a weight per stem (else shared)",
    )
    parser.add_argument(
        "--form",
        default="greedy",
        choices=FORMS,
        help="greedy: a weight per step (and stem), chosen step by step; constant: one "
        "weight per stem held for a chosen number of steps",
    )
    parser.add_argument(
        "--candidate_batch",
        type=int_or_none,
        default=None,
        help="candidates per separator call (None: all K; bounds memory)",
    )
    parser.add_argument("--chunk_seconds", type=float, default=6.0)
    parser.add_argument("--batch_chunks", type=int, default=1, help="chunks per item")
    parser.add_argument(
        "--max_chunks",
        type=int_or_none,
        default=None,
        help="at most this many validation chunks, evenly spaced (memory bound)",
    )
    parser.add_argument(
        "--chunks_per_song",
        type=int_or_none,
        default=None,
        help="the first this many active chunks of every song (before --max_chunks)",
    )
    parser.add_argument(
        "--inactive_threshold_db",
        type=float_or_none,
        default=-60.0,
        help="leave out chunks where a stem is below this level re the mixture "
        "(none: keep all)",
    )
    parser.add_argument(
        "--trace_metrics",
        nargs="*",
        default=["snr", "si_sdr"],
        help="metrics traced along the schedule's steps (nothing: no traces)",
    )
    parser.add_argument(
        "--eval_data",
        nargs="*",
        default=[],
        help="more data folders on which to trace the fixed schedule (e.g. data/test)",
    )
    parser.add_argument(
        "--trace_validation",
        type=str2bool,
        default=True,
        help="trace the schedule on the validation chunks too (a replay: T*N passes "
        "per chunk at most)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command("multistep_calibrate", get_parser(), run_calibration, argv)


if __name__ == "__main__":
    sys.exit(main())
