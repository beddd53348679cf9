#!/usr/bin/env python3
"""Separate songs into stems with a trained model (``espnet2-ext-separate``).

Examples::

    espnet2-ext-separate -m exp/enh_x/packed.zip song.mp3
    espnet2-ext-separate -m user/bs-locoformer-musdb --format flac -o stems album/
    espnet2-ext-separate -m exp/enh_x --device cuda --bf16 --segment 12 a.wav

Inputs are audio files (WAV, FLAC, MP3, OGG …) or folders (searched recursively for
those extensions). The model is a pack (zip of ``espnet2_ext.bin.pack``), a folder
(unpacked pack, or ``config.yaml`` with one ``.pth``), or a Hugging Face hub id.

Each input ``<track>`` gives ``<out>/<track>/<stem>.<ext>`` for every stem of the
model (names from the model's config, MUSDB order ``vocals bass drums other`` for
4-stem models, else ``spk1`` …); a file inside a folder argument keeps its path
relative to that folder as its track name. Stems are at the model's sampling rate with
its number of channels; inputs at other rates or channel counts are converted first,
as the log says.

A file that cannot be decoded is reported and the others are separated; the exit
status is then 1. Existing outputs are kept unless ``--overwrite`` is given. The stems
of a track are written under temporary names and renamed only when all are complete,
so an interrupted run never leaves a truncated file under a stem's name.

The command uses the Python API (:func:`espnet2_ext.api.load_model`), so
``separator.separate_file(path)`` gives the same stems.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from espnet2_ext.api import DEFAULT_OVERLAP, DEFAULT_SEGMENT

#: Extensions searched for in folder arguments.
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aif", ".aiff")

#: ``--bits`` → soundfile subtype.
SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}
FORMATS = ("wav", "flac")

logger = logging.getLogger("espnet2_ext.separate")


@dataclass
class Track:
    """One input: its file and the folder its stems go to."""

    path: Path
    name: str
    out_dir: Path


@dataclass
class Outcome:
    """What happened to one track (for the summary)."""

    track: Track
    status: str  # "ok", "skipped" or "failed"
    message: str = ""
    audio_seconds: float = 0.0
    seconds: float = 0.0


# --------------------------------------------------------------------------- inputs
def collect_tracks(
    inputs: Sequence[str], out: Path
) -> Tuple[List[Track], List[Tuple[Path, str]]]:
    """Expand files and folders into tracks; returns (tracks, [(path, problem)]).

    A missing path is a problem (reported, the others still run). Two inputs whose
    stems would go to the same folder are an error.
    """
    tracks: List[Track] = []
    problems: List[Tuple[Path, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
            )
            if not found:
                problems.append(
                    (path, f"no audio files ({', '.join(AUDIO_EXTENSIONS)})")
                )
            for p in found:
                name = p.relative_to(path).with_suffix("").as_posix()
                tracks.append(Track(p, name, out / name))
        elif path.is_file():
            tracks.append(Track(path, path.stem, out / path.stem))
        else:
            problems.append((path, "no such file or folder"))
    seen: Dict[Path, Track] = {}
    clashes = []
    for track in tracks:
        other = seen.setdefault(track.out_dir, track)
        if other is not track:
            clashes.append(f"{other.path} and {track.path} -> {track.out_dir}")
    if clashes:
        raise ValueError(
            "several inputs would write the same stems (same track name):\n  "
            + "\n  ".join(clashes)
            + "\nrename them, or give their parent folder so that the relative paths "
            "tell them apart"
        )
    return tracks, problems


# --------------------------------------------------------------------------- outputs
def stem_paths(track: Track, stems: Sequence[str], fmt: str) -> Dict[str, Path]:
    return {stem: track.out_dir / f"{stem}.{fmt}" for stem in stems}


def _to_frames(wave: torch.Tensor, bits: str, where: str) -> np.ndarray:
    """[C, T] float → [T, C] numpy for soundfile; PCM outputs clipped to [-1, 1]."""
    data = wave.detach().cpu().float().numpy().T
    if bits != "float":
        over = int(np.count_nonzero(np.abs(data) > 1.0))
        if over:
            logger.warning(
                "%s: %d samples beyond full scale clipped (%s-bit output; use --bits "
                "float to keep them)",
                where,
                over,
                bits,
            )
            data = np.clip(data, -1.0, 1.0)
    return np.ascontiguousarray(data)


def write_stems(
    stems: Dict[str, torch.Tensor],
    paths: Dict[str, Path],
    sample_rate: int,
    *,
    fmt: str,
    bits: str,
) -> None:
    """Write all stems of a track: temporary files first, renamed when all exist.

    An exception (or Ctrl-C) on the way removes the temporary files; no stem path ever
    holds a partly written file.
    """
    import soundfile as sf

    temps: List[Tuple[Path, Path]] = []
    try:
        for stem, wave in stems.items():
            final = paths[stem]
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{final.name}.{os.getpid()}.partial")
            temps.append((tmp, final))
            sf.write(
                str(tmp),
                _to_frames(wave, bits, str(final)),
                sample_rate,
                format=fmt.upper(),
                subtype=SUBTYPES[bits],
            )
        for tmp, final in temps:
            os.replace(tmp, final)
    finally:
        for tmp, _ in temps:
            if tmp.exists():
                tmp.unlink()


# --------------------------------------------------------------------------- CLI
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
    group.add_argument("--format", choices=FORMATS, default="wav")
    group.add_argument(
        "--bits",
        choices=sorted(SUBTYPES),
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
        choices=("hann", "triangular", "rectangular"),
        default="hann",
        help="cross-fade window of the overlap-add",
    )
    group.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    group.add_argument(
        "--bf16", action="store_true", help="bf16 autocast for the network (GPU only)"
    )
    group = parser.add_argument_group("multi-step refinement (optional)")
    group.add_argument(
        "--multistep_schedule",
        default=None,
        help="ratio schedule file (.json/.yaml) from calibrate_schedule: deployable "
        "multi-step inference",
    )
    group.add_argument(
        "--multistep_metric",
        default=None,
        help="registered non-intrusive metric that selects candidates at each step",
    )
    group.add_argument("--multistep_steps", type=int, default=None)
    group.add_argument("--multistep_candidates", type=int, default=None)
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


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.format == "flac" and args.bits == "float":
        parser.error("FLAC stores integers only: use --bits 16 or 24, or --format wav")
    if args.segment < 0:
        parser.error(f"--segment must be >= 0 seconds, got {args.segment}")
    if not 0.0 <= args.overlap < 1.0:
        parser.error(f"--overlap must be in [0, 1), got {args.overlap}")
    if args.bf16 and not args.device.startswith("cuda"):
        parser.error("--bf16 is for GPUs: add --device cuda")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here")


def _summary(outcomes: List[Outcome], load_seconds: float) -> str:
    done = [o for o in outcomes if o.status == "ok"]
    skipped = [o for o in outcomes if o.status == "skipped"]
    failed = [o for o in outcomes if o.status == "failed"]
    lines = [
        f"Summary: {len(done)} separated, {len(skipped)} skipped, {len(failed)} failed "
        f"(model loaded in {load_seconds:.1f} s)"
    ]
    for o in outcomes:
        if o.status == "ok":
            speed = o.seconds / o.audio_seconds if o.audio_seconds else float("nan")
            detail = (
                f"{o.audio_seconds:.1f} s of audio in {o.seconds:.1f} s "
                f"({speed:.2f} s per second of audio) -> {o.track.out_dir}"
            )
        else:
            detail = o.message
        lines.append(f"  {o.status:<8} {o.track.name}: {detail}")
    if done:
        audio = sum(o.audio_seconds for o in done)
        spent = sum(o.seconds for o in done)
        lines.append(f"Total: {audio:.1f} s of audio separated in {spent:.1f} s")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; returns the exit status (0: all done, 1: some input failed)."""
    parser = get_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    out = Path(args.out)
    try:
        tracks, problems = collect_tracks(args.inputs, out)
    except ValueError as e:
        parser.error(str(e))
    outcomes: List[Outcome] = []
    for path, problem in problems:
        logger.error("%s: %s", path, problem)
        outcomes.append(Outcome(Track(path, str(path), out), "failed", problem))

    from espnet2_ext.api import load_model

    start = time.perf_counter()
    try:
        separator = load_model(
            args.model,
            model_file=args.model_file,
            device=args.device,
            segment=args.segment or None,
            overlap=args.overlap,
            window=args.window,
            bf16=args.bf16,
            cache_dir=args.cache_dir,
            hub_cache_dir=args.hub_cache_dir,
            revision=args.revision,
            local_files_only=args.offline,
            multistep_schedule=args.multistep_schedule,
            multistep_metric=args.multistep_metric,
            multistep_steps=args.multistep_steps,
            multistep_candidates=args.multistep_candidates,
        )
    except (OSError, ValueError, RuntimeError) as e:
        print(f"espnet2-ext-separate: cannot load the model: {e}", file=sys.stderr)
        return 1
    load_seconds = time.perf_counter() - start
    if args.multistep_schedule is None and args.multistep_metric is None:
        logger.info("multi-step refinement: off (--multistep_schedule to turn it on)")

    for index, track in enumerate(tracks):
        paths = stem_paths(track, separator.stems, args.format)
        existing = [p for p in paths.values() if p.exists()]
        if existing and not args.overwrite:
            message = (
                f"{len(existing)} stem file(s) exist (e.g. {existing[0]}); "
                "--overwrite replaces them"
            )
            logger.warning(
                "[%d/%d] %s: skipped, %s", index + 1, len(tracks), track.name, message
            )
            outcomes.append(Outcome(track, "skipped", message))
            continue
        logger.info("[%d/%d] %s (%s)", index + 1, len(tracks), track.name, track.path)
        begin = time.perf_counter()
        try:
            stems = separator.separate_file(track.path, progress=not args.quiet)
            write_stems(
                stems, paths, separator.sample_rate, fmt=args.format, bits=args.bits
            )
        except KeyboardInterrupt:
            logger.error(
                "interrupted while separating %s; no partial file kept", track.path
            )
            raise
        except Exception as e:  # report, go on with the other files
            logger.error(
                "[%d/%d] %s: failed: %s", index + 1, len(tracks), track.name, e
            )
            outcomes.append(Outcome(track, "failed", f"{type(e).__name__}: {e}"))
            continue
        audio_seconds = next(iter(stems.values())).shape[-1] / separator.sample_rate
        outcomes.append(
            Outcome(
                track,
                "ok",
                audio_seconds=audio_seconds,
                seconds=time.perf_counter() - begin,
            )
        )
    print(_summary(outcomes, load_seconds))
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
