#!/usr/bin/env python3
"""Separate songs into stems with a trained model (``espnet2-ext-separate``).

Inputs are audio files (anything libsndfile or ffmpeg decodes: WAV, FLAC, MP3, M4A/AAC,
OGG, Opus …) or folders; the model is a pack, a folder or a Hugging Face hub id. The
work is done by :mod:`espnet2_ext.separation` (the same
:class:`~espnet2_ext.separation.Separator` as the Python API).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from espnet2_ext.constants import WINDOWS
from espnet2_ext.separation import tracks as T
from espnet2_ext.separation.config import AUTO, ChunkingConfig, MultiStepConfig
from espnet2_ext.utils.atomic import terminate_raises
from espnet2_ext.utils.audio_io import AUDIO_FORMATS

EXAMPLES = """\
examples:
  espnet2-ext-separate -m exp/enh_x/packed.zip song.mp3
      -> separated/<model>/song/{vocals,bass,drums,other}.wav
  espnet2-ext-separate -m user/bs-locoformer-musdb --format mp3 -o stems album/
  espnet2-ext-separate -m exp/enh_x --two-stems vocals --format flac a.m4a
      -> separated/enh_x/a/{vocals,no_vocals}.flac
  espnet2-ext-separate -m exp/enh_x --device cuda --bf16 --segment 12 a.wav

<model> is the hub repository's name, or the name the pack records (the recipe's
experiment folder), or the pack's file name or the folder's name.
"""


def _seconds_or_auto(value: str):
    return AUTO if value == AUTO else float(value)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="espnet2-ext-separate",
        description="Separate songs into stems with an espnet2_ext model.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        help="audio files (any format libsndfile or ffmpeg decodes) and/or folders",
    )
    parser.add_argument(
        "-m",
        "--model",
        required=True,
        help="packed zip, model folder, or Hugging Face hub id (user/name[@revision], "
        "hf://user/name); a value that looks like a path is never looked up on the hub",
    )
    parser.add_argument(
        "-o",
        "--out",
        default="separated",
        help="output folder; stems go to OUT/<model>/<track>/ (default: separated)",
    )
    parser.add_argument(
        "--model_file", default=None, help="the .pth to use in a folder with several"
    )
    group = parser.add_argument_group("output files")
    group.add_argument(
        "--format",
        choices=AUDIO_FORMATS,
        default="wav",
        help="stem file format (default: wav); mp3 is 320 kbit/s",
    )
    group.add_argument(
        "--bits",
        choices=sorted(T.FORMAT_BITS["wav"]),
        default=None,
        help="samples of WAV (16, 24, float) and FLAC (16, 24) files (default: 24)",
    )
    group.add_argument(
        "--two-stems",
        "--two_stems",
        dest="two_stems",
        metavar="STEM",
        default=None,
        help="write STEM and no_STEM (the mixture minus STEM) only",
    )
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing stem files (default: skip tracks that have some)",
    )
    group = parser.add_argument_group("inference")
    group.add_argument(
        "--segment",
        type=_seconds_or_auto,
        default=AUTO,
        help="chunk length in seconds, 0 for the whole song at once (default: the "
        "setting the pack records, else 12)",
    )
    group.add_argument(
        "--overlap",
        type=_seconds_or_auto,
        default=AUTO,
        help="overlap of consecutive chunks as a fraction of a chunk (default: the "
        "pack's, else 0.5)",
    )
    group.add_argument(
        "--window",
        choices=(AUTO,) + WINDOWS,
        default=AUTO,
        help="cross-fade window of the overlap-add (default: the pack's, else hann)",
    )
    group.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps "
        "(default: auto)",
    )
    group.add_argument(
        "--bf16", action="store_true", help="bf16 autocast for the network (CUDA only)"
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
    """Run the command; returns the exit status (0: all done, 1: some input failed,
    130/143: interrupted by SIGINT/SIGTERM)."""
    parser = get_parser()
    args = parser.parse_args(argv)
    options = vars(args)
    try:
        multistep = MultiStepConfig.pop_arguments(options)
        chunking = ChunkingConfig.resolve(
            None, segment=args.segment, overlap=args.overlap, window=args.window
        )
        output = T.OutputConfig(
            format=args.format,
            bits=args.bits,
            two_stems=args.two_stems,
            overwrite=args.overwrite,
        )
    except ValueError as e:
        parser.error(str(e))
    del chunking  # validated here; the pack's setting fills what was not given
    from espnet2_ext.separation.separator import check_device, resolve_device

    device = resolve_device(args.device)
    try:
        check_device(device, args.bf16)
    except ValueError as e:
        parser.error(f"--device {args.device}: {e}")
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    out = Path(args.out)
    try:
        tracks, outcomes = T.collect_tracks(args.inputs, out)
    except ValueError as e:
        parser.error(str(e))
    for outcome in outcomes:
        log = T.logger.error if outcome.status == "failed" else T.logger.warning
        log("%s: %s: %s", outcome.track.path, outcome.status, outcome.message)

    from espnet2_ext.separation import load_model

    with terminate_raises():
        try:
            start = time.perf_counter()
            try:
                separator = load_model(
                    args.model,
                    model_file=args.model_file,
                    device=device,
                    segment=args.segment,
                    overlap=args.overlap,
                    window=args.window,
                    bf16=args.bf16,
                    cache_dir=args.cache_dir,
                    hub_cache_dir=args.hub_cache_dir,
                    revision=args.revision,
                    local_files_only=args.offline,
                    multistep=multistep,
                )
            except (OSError, ValueError, RuntimeError) as e:
                print(
                    f"espnet2-ext-separate: cannot load the model: {e}",
                    file=sys.stderr,
                )
                return 1
            try:
                output.stem_names(separator.stems)
            except ValueError as e:
                print(f"espnet2-ext-separate: {e}", file=sys.stderr)
                return 2
            load_seconds = time.perf_counter() - start
            T.logger.info("model %s on %s: %r", separator.name, device, separator)
            if separator.multistep is None:
                T.logger.info(
                    "multi-step refinement: off (--multistep_schedule to turn it on)"
                )
            outcomes += T.separate_tracks(
                separator, tracks, out, output, progress=not args.quiet
            )
        except KeyboardInterrupt as e:
            signum = getattr(e, "signum", 2)
            print(
                f"espnet2-ext-separate: interrupted (signal {signum}); finished tracks "
                "are complete, no partial file was kept",
                file=sys.stderr,
            )
            return 128 + signum
    print(T.summarize(outcomes, load_seconds))
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
