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

Or, for the variants of ``python -m espnet2_ext.bin.multistep_evaluate`` on a fixed
chunk set (one folder of result files per model; means with their spread and paired
differences to one-step, :func:`espnet2_ext.reports.multistep_chunks.build_chunk_report`)::

    python -m espnet2_ext.bin.multistep_report --out_dir exp/multistep_subset \
        --chunk_runs demo=exp/enh_demo/multistep_subset \
        --chunk_runs demo_e30=exp/enh_demo_e30/multistep_subset
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from espnet2_ext.reports.multistep import build_report
from espnet2_ext.reports.multistep_chunks import build_chunk_report
from espnet2_ext.utils.cli import run_command


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet2_ext.bin.multistep_report",
        description="Side-by-side results of one-step, multi-step oracle and "
        "multi-step deployable separation runs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--one_step", default=None, help="run folder of one-step inference (scored)"
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
    parser.add_argument(
        "--chunk_runs",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a model's folder of multistep_evaluate results (repeatable; instead of "
        "--one_step)",
    )
    parser.add_argument(
        "--preamble",
        default=None,
        help="markdown file put after the title of a --chunk_runs report",
    )
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--title", default="multi-step inference")
    parser.add_argument("--log_level", default="INFO")
    return parser


def _report(
    out_dir: str,
    chunk_runs: Sequence[str],
    preamble: Optional[str],
    one_step: Optional[str],
    title: str,
    **options,
) -> None:
    if chunk_runs:
        if one_step or any(options.values()):
            raise ValueError(
                "--chunk_runs reports multistep_evaluate results: drop --one_step, "
                "--oracle, --schedule and --calibration"
            )
        runs = {}
        for spec in chunk_runs:
            name, sep, folder = spec.partition("=")
            if not sep or not name or not folder:
                raise ValueError(f"--chunk_runs takes NAME=DIR, got {spec!r}")
            runs[name] = folder
        text = None if preamble is None else Path(preamble).read_text(encoding="utf-8")
        build_chunk_report(runs, out_dir, title=title, preamble=text)
    else:
        if one_step is None:
            raise ValueError(
                "give --one_step (with --oracle/--schedule) or --chunk_runs"
            )
        if preamble is not None:
            raise ValueError("--preamble goes with --chunk_runs")
        build_report(one_step=one_step, out_dir=out_dir, title=title, **options)
    logging.info(f"wrote {Path(out_dir) / 'RESULTS.md'}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command("multistep_report", get_parser(), _report, argv)


if __name__ == "__main__":
    sys.exit(main())
