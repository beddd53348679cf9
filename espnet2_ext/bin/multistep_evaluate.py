#!/usr/bin/env python3
"""Evaluate one multi-step variant (seeds/000) on a fixed set of chunks of held-out songs.

One-step inference, the oracle search, a blind (reference-free) search or a calibrated
schedule, run chunk by chunk and measured against the references: per chunk the final
uSDR, cSDR and SI-SDR per stem and the metrics after every step. The references only
measure, except for an oracle metric (whose results are labelled oracle). Every variant
of the same chunks can then be compared pairwise
(``python -m espnet2_ext.bin.multistep_report --chunk_runs DIR``)::

    python -m espnet2_ext.bin.multistep_evaluate \\
        --train_config exp/enh_demo/config.yaml \\
        --model_file exp/enh_demo/valid.loss.ave.pth \\
        --data_dir data/test --chunk_seconds 6 --chunks_per_song 4 \\
        --steps 20 --candidates 10 --metric snr --output exp/enh_demo/subset/oracle.json

``--steps 0`` is one-step inference; ``--metric mixture_consistency`` the blind search;
``--schedule FILE`` the deployable schedule. The work is
:func:`espnet2_ext.enh.inference.multistep.evaluation.run_evaluation`; a killed run
continues from ``<output>.partial``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from espnet2.utils.types import float_or_none, int_or_none, str2bool, str_or_none

from espnet2_ext.enh.inference.metrics_registry import available_metrics
from espnet2_ext.enh.inference.multistep import GRIDS
from espnet2_ext.enh.inference.multistep.evaluation import run_evaluation
from espnet2_ext.utils.cli import run_command


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet2_ext.bin.multistep_evaluate",
        description="Run one multi-step variant on a fixed chunk set of held-out "
        "songs and measure it against the references.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--train_config", required=True)
    parser.add_argument("--model_file", required=True)
    parser.add_argument("--data_dir", required=True, help="wav.scp, spk<n>.scp")
    parser.add_argument("--output", required=True, help="result JSON")
    parser.add_argument("--stems", nargs="+", default=None)
    parser.add_argument(
        "--steps", type=int_or_none, default=None, help="T (0: one-step; default 20)"
    )
    parser.add_argument(
        "--candidates", type=int_or_none, default=None, help="K (default 10)"
    )
    parser.add_argument("--grid", default="uniform", choices=GRIDS)
    parser.add_argument(
        "--metric",
        default="snr",
        help="selection metric of the search: " + ", ".join(available_metrics()),
    )
    parser.add_argument(
        "--schedule", type=str_or_none, default=None, help="deployable: schedule file"
    )
    parser.add_argument("--candidate_batch", type=int_or_none, default=None)
    parser.add_argument(
        "--skip_converged",
        type=str2bool,
        default=True,
        help="do not recompute candidates that can no longer change",
    )
    parser.add_argument("--trace_metrics", nargs="*", default=["snr", "si_sdr"])
    parser.add_argument(
        "--probe_metrics",
        nargs="*",
        default=[],
        help="metrics scored on every candidate of step 1 (search variants)",
    )
    parser.add_argument("--chunk_seconds", type=float, default=6.0)
    parser.add_argument(
        "--chunks_per_song",
        type=int_or_none,
        default=None,
        help="the first this many chunks of every song in which every stem is active",
    )
    parser.add_argument("--max_chunks", type=int_or_none, default=None)
    parser.add_argument("--inactive_threshold_db", type=float_or_none, default=-60.0)
    parser.add_argument(
        "--compute_csdr", type=str2bool, default=True, help="score cSDR too"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command("multistep_evaluate", get_parser(), run_evaluation, argv)


if __name__ == "__main__":
    sys.exit(main())
