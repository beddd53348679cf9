#!/usr/bin/env python3
"""One table for a comparison experiment: arms × seeds scored on the same songs.

::

    python -m espnet2_ext.bin.compare_report --out_dir exp/compare/report \\
        --run finetune 1 exp/enh_finetune_seed1/separate_test/scoring \\
        --run scratch 1 exp/enh_scratch_seed1/separate_test/scoring \\
        --pair finetune scratch --heads 1 ../fma/exp/enh_mixit_seed1/heads/heads.json \\
        --timings exp/compare/timings.tsv --setting "fine-tuning updates=200" \\
        --command "local/compare.sh ..."

Each ``--run`` folder is a scoring folder of ``python -m espnet2_ext.bin.music_score``
(``summary.json``, ``scores.csv``). Writes ``RESULTS.md``, ``summary.json`` and
``per_song.csv`` into ``--out_dir``: per arm mean ± sd over seeds of the recipe's
numbers, paired per-seed and per-song differences of each ``--pair`` with their
spread, the songs and seeds each number rests on, undefined (silent) pairs, head
selection, run times (:mod:`espnet2_ext.reports.compare`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from espnet2_ext.reports.compare import write_comparison
from espnet2_ext.utils.cli import run_command


def _setting(text: str) -> List[str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--setting is NAME=VALUE, got '{text}'")
    name, value = text.split("=", 1)
    return [name, value]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet2_ext.bin.compare_report",
        description="Mean ± sd over seeds and paired differences of scored runs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out_dir", required=True, type=Path)
    parser.add_argument(
        "--run",
        nargs=3,
        action="append",
        required=True,
        metavar=("ARM", "SEED", "SCORING_DIR"),
        help="a scored run (repeat)",
    )
    parser.add_argument(
        "--pair",
        nargs=2,
        action="append",
        default=[],
        metavar=("ARM_A", "ARM_B"),
        help="report A − B paired by seed and song (repeat)",
    )
    parser.add_argument(
        "--heads",
        nargs=2,
        action="append",
        default=[],
        metavar=("SEED", "HEADS_JSON"),
        help="heads.json of the head selection of a seed (repeat)",
    )
    parser.add_argument(
        "--setting",
        type=_setting,
        action="append",
        default=[],
        help="NAME=VALUE for the settings table (repeat, in order)",
    )
    parser.add_argument("--timings", type=Path, default=None, help="timings TSV")
    parser.add_argument("--command", default=None, help="the command that ran it")
    parser.add_argument("--title", default="Comparison")
    parser.add_argument("--log_level", default="INFO")
    return parser


def report(out_dir: Path, run, pair, heads, setting, timings, command, title) -> None:
    write_comparison(
        out_dir,
        runs=[(arm, seed, Path(path)) for arm, seed, path in run],
        pairs=[tuple(p) for p in pair],
        settings=[tuple(s) for s in setting],
        heads=[(seed, Path(path)) for seed, path in heads],
        timings=timings,
        command=command,
        title=title,
    )
    logging.info("wrote %s", out_dir / "RESULTS.md")


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command("compare_report", get_parser(), report, argv)


if __name__ == "__main__":
    sys.exit(main())
