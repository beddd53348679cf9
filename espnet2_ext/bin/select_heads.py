#!/usr/bin/env python3
"""Head selection 12 → 4: turn a MixIT pre-trained model into a 4-stem model.

seeds/002 §3 (DESIGN.md §3): the MixIT model has ``N`` (12) unlabelled outputs; the
MUSDB18-HQ validation songs are cut into 6 s chunks and separated; per chunk every
active stem is matched to a distinct output (best summed SNR on channel 0); each stem
keeps the output it was matched to most often; only those outputs' rows of the mask
decoder's last layer are kept. The algorithm lives in
:mod:`espnet2_ext.enh.head_selection`, running it on data folders in
:mod:`espnet2_ext.enh.head_selection_run`; this command writes a model that ESPnet can
fine-tune::

    python -m espnet2_ext.bin.select_heads \\
        --train_config exp/enh_mixit/config.yaml \\
        --model_file exp/enh_mixit/valid.loss.ave.pth \\
        --musdb_data data/musdb/valid \\
        --finetune_config conf/tuning/finetune_enh_bs_locoformer_small.yaml \\
        --out exp/enh_mixit/heads

``--musdb_data`` is a folder written by ``python -m espnet2_ext.datasets.musdb18hq``:
``wav.scp`` (mixtures) and ``spk1.scp`` … ``spk4.scp`` (stems in the order of
``--stems``, MUSDB order by default).

Writes into ``--out``: ``model.pth`` (the 4-output state dict, for ``--init_param`` or
the MUSDB18-HQ recipe's ``run.sh --pretrained``), ``config.yaml`` (the fine-tuning
config resolved with all defaults, so the pair is a complete model for
``espnet2_ext.bin.enh_inference`` too; checked to reproduce the chosen outputs of the
``N``-output model) and ``heads.json`` (the chosen output per stem, the votes,
collisions and how they were resolved, and SNRs on the voting songs and on every
``--eval_data`` set).

When two stems pick the same output, the stems get the distinct outputs with the most
votes in total (:func:`espnet2_ext.enh.head_selection.select_heads`); each move is
logged as a warning and listed under ``notes`` and ``moved``.

Without ``--finetune_config`` the written config is the MixIT config with the output
count set to the number of stems (its MixIT criterion left as it is).
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.enh.head_selection_run import run
from espnet2_ext.utils.cli import run_command


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet2_ext.bin.select_heads",
        description="Keep one output per stem of a MixIT pre-trained model (votes on "
        "MUSDB18-HQ validation chunks) and write a model to fine-tune.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--train_config", required=True, help="config.yaml of MixIT")
    parser.add_argument("--model_file", required=True, help="its .pth")
    parser.add_argument(
        "--musdb_data",
        required=True,
        help="folder with wav.scp and spk1..spkS.scp (the validation songs)",
    )
    parser.add_argument("--out", required=True, help="folder for the new model")
    parser.add_argument(
        "--finetune_config",
        default=None,
        help="training YAML the new model must load into (default: the MixIT "
        "config with one output per stem)",
    )
    parser.add_argument(
        "--eval_data",
        nargs="*",
        default=[],
        help="more data folders on which to report the SNRs (e.g. data/musdb/test)",
    )
    parser.add_argument("--stems", nargs="+", default=list(MUSDB_STEMS))
    parser.add_argument("--chunk_seconds", type=float, default=6.0)
    parser.add_argument("--batch_size", type=int, default=4, help="chunks per pass")
    parser.add_argument("--channel", type=int, default=0, help="channel of the SNRs")
    parser.add_argument("--inactive_threshold_db", type=float, default=-60.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command("select_heads", get_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
