#!/usr/bin/env python3
"""One-step, multi-step oracle and multi-step deployable results side by side.

Reads the folders of separation runs of the same songs (``enh_inference`` outputs,
scored by ``python -m espnet2_ext.bin.music_score`` into ``<run>/scoring``) and writes
one report::

    python -m espnet2_ext.bin.multistep_report \\
        --one_step exp/enh_demo/separate_test \\
        --oracle exp/enh_demo/separate_test_multistep_oracle \\
        --schedule exp/enh_demo/separate_test_multistep_schedule \\
        --calibration exp/enh_demo/multistep_calibration.json \\
        --out_dir exp/enh_demo/multistep_test

Writes ``RESULTS.md``, ``summary.json`` and ``images/multistep_trace.png`` into
``--out_dir`` (:func:`espnet2_ext.reports.multistep.build_report`; where the numbers
come from: :mod:`espnet2_ext.reports.multistep_runs`). A run is only accepted as
``--oracle`` or ``--schedule`` if its own ``multistep_summary.json`` says it is one (a
deployable run passed as ``--oracle``, or the reverse, is an error).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from espnet2_ext.reports.multistep import build_report
from espnet2_ext.utils.cli import run_command


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet2_ext.bin.multistep_report",
        description="Side-by-side results of one-step, multi-step oracle and "
        "multi-step deployable separation runs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--one_step", required=True, help="run folder of one-step inference (scored)"
    )
    parser.add_argument(
        "--oracle",
        action="append",
        default=[],
        help="run folder of multi-step inference with an oracle metric (repeatable)",
    )
    parser.add_argument(
        "--schedule",
        action="append",
        default=[],
        help="run folder of multi-step inference with a schedule (repeatable)",
    )
    parser.add_argument(
        "--calibration",
        default=None,
        help="multistep_calibration.json of multistep_calibrate (schedule, traces)",
    )
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--title", default="multi-step inference")
    parser.add_argument("--log_level", default="INFO")
    return parser


def _report(out_dir: str, **options) -> None:
    build_report(out_dir=out_dir, **options)
    logging.info(f"wrote {Path(out_dir) / 'RESULTS.md'}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command("multistep_report", get_parser(), _report, argv)


if __name__ == "__main__":
    sys.exit(main())
