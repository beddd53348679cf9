#!/usr/bin/env python3
"""Separate songs into stems with a trained model (``espnet2-ext-separate``).

Examples::

    espnet2-ext-separate -m exp/enh_x/packed.zip song.mp3
    espnet2-ext-separate -m user/bs-locoformer-musdb --format flac -o stems album/
    espnet2-ext-separate -m exp/enh_x --device cuda --bf16 --segment 12 a.wav

Inputs are audio files or folders; the model is a pack, a folder or a Hugging Face hub
id. The work is done by :mod:`espnet2_ext.separation` (the same
:class:`~espnet2_ext.separation.Separator` as the Python API).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from espnet2_ext.constants import WINDOWS
from espnet2_ext.separation import tracks as T
from espnet2_ext.separation.config import (
    DEFAULT_OVERLAP,
    DEFAULT_SEGMENT,
    ChunkingConfig,
    MultiStepConfig,
)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="espnet2-ext-separate",
        description="Separate songs into stems with an espnet2_ext model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", help="audio files and/or folders")
    parser.add_argument(
        "-m",
        "--model",
        required=True,
        help="packed zip, model folder, or Hugging Face hub id (user/name[@revision])",
    )
    parser.add_argument("-o", "--out", default="separated", help="output folder")
    parser.add_argument(
        "--model_file", default=None, help="the .pth to use in a folder with several"
    )
    group = parser.add_argument_group("output files")
    group.add_argument("--format", choices=T.FORMATS, default="wav")
    group.add_argument(
        "--bits",
        choices=sorted(T.SUBTYPES),
        default="24",
        help="16- or 24-bit PCM, or 32-bit float (WAV only)",
    )
    group.add_argument(
        "--overwrite", action="store_true", help="replace existing stem files"
    )
    group = parser.add_argument_group("inference")
    group.add_argument(
        "--segment",
        type=float,
        default=DEFAULT_SEGMENT,
        help="chunk length in seconds (0: the whole song at once)",
    )
    group.add_argument(
        "--overlap",
        type=float,
        default=DEFAULT_OVERLAP,
        help="overlap of consecutive chunks, as a fraction of a chunk",
    )
    group.add_argument(
        "--window",
        choices=WINDOWS,
        default=WINDOWS[0],
        help="cross-fade window of the overlap-add",
    )
    group.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    group.add_argument(
        "--bf16", action="store_true", help="bf16 autocast for the network (GPU only)"
    )
    MultiStepConfig.add_arguments(parser)
    group = parser.add_argument_group("model sources")
    group.add_argument(
        "--cache_dir",
        default=None,
        help="where packs are unpacked (default: $ESPNET2_EXT_CACHE or "
        "~/.cache/espnet2_ext)",
    )
    group.add_argument(
        "--hub_cache_dir",
        default=None,
        help="the Hugging Face hub cache (default: its own, under $HF_HOME)",
    )
    group.add_argument("--revision", default=None, help="hub branch, tag or commit")
    group.add_argument(
        "--offline",
        action="store_true",
        help="use only the hub cache, never the network (like HF_HUB_OFFLINE=1)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars, warnings only"
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; returns the exit status (0: all done, 1: some input failed)."""
    parser = get_parser()
    args = parser.parse_args(argv)
    options = vars(args)
    try:
        multistep = MultiStepConfig.pop_arguments(options)
        chunking = ChunkingConfig.from_overlap(args.segment, args.overlap, args.window)
    except ValueError as e:
        parser.error(str(e))
    if args.format == "flac" and args.bits == "float":
        parser.error("FLAC stores integers only: use --bits 16 or 24, or --format wav")
    if args.bf16 and not args.device.startswith("cuda"):
        parser.error("--bf16 is for GPUs: add --device cuda")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here")
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    out = Path(args.out)
    try:
        tracks, problems = T.collect_tracks(args.inputs, out)
    except ValueError as e:
        parser.error(str(e))
    outcomes = []
    for path, problem in problems:
        T.logger.error("%s: %s", path, problem)
        outcomes.append(T.Outcome(T.Track(path, str(path), out), "failed", problem))

    from espnet2_ext.separation import load_model

    start = time.perf_counter()
    try:
        separator = load_model(
            args.model,
            model_file=args.model_file,
            device=args.device,
            chunking=chunking,
            bf16=args.bf16,
            cache_dir=args.cache_dir,
            hub_cache_dir=args.hub_cache_dir,
            revision=args.revision,
            local_files_only=args.offline,
            multistep=multistep,
        )
    except (OSError, ValueError, RuntimeError) as e:
        print(f"espnet2-ext-separate: cannot load the model: {e}", file=sys.stderr)
        return 1
    load_seconds = time.perf_counter() - start
    if separator.multistep is None:
        T.logger.info("multi-step refinement: off (--multistep_schedule to turn it on)")
    outcomes += T.separate_tracks(
        separator,
        tracks,
        fmt=args.format,
        bits=args.bits,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(T.summarize(outcomes, load_seconds))
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
