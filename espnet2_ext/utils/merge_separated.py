"""Merge the outputs of parallel inference jobs into one ESPnet-style output folder.

Each job folder holds ``spk1.scp`` … ``spkN.scp`` (``uid path`` lines). The merged folder
gets the concatenated, uid-sorted ``spk<n>.scp``; the audio files stay where the jobs wrote
them. A job folder without a complete set of scps means that job failed: it is an error.

With ``--data DIR`` it also lays out, as symbolic links, the song trees that scoring
reads (the MUSDB18-HQ layout, song folders named as in ``DIR/uid2song``):
``OUT/stems/<song>/<stem>.wav`` (the estimates) and ``OUT/refs/<song>/{mixture,<stem>}.wav``
(the references of ``DIR/wav.scp`` and ``DIR/spk<n>.scp``). Stems are matched **by
name**: output ``n`` of the model is ``--model_stems[n-1]``, reference ``spk<n>.scp`` of
the data is ``--ref_stems[n-1]``, and ``--stems`` (a subset of both, any order) are the
ones linked. A stem that the model or the data does not have is an error naming both
lists, never a silent relabelling of the first outputs.

Usage: python -m espnet2_ext.utils.merge_separated --out DIR JOB_DIR [JOB_DIR …]
           [--num_spk N] [--data DATA_DIR --model_stems S … --ref_stems S …
           --stems S …]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, Optional, Sequence

from espnet2_ext.utils.audio_io import write_scp_atomic
from espnet2_ext.utils.scp import read_scp


def merge_separated(
    out: Path, num_spk: int, job_dirs: Sequence[Path]
) -> Dict[int, int]:
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for n in range(1, num_spk + 1):
        entries = {}
        for job in job_dirs:
            scp = Path(job) / f"spk{n}.scp"
            if not scp.is_file():
                raise FileNotFoundError(
                    f"{scp} is missing: that inference job did not finish; see its log"
                )
            for uid, path in read_scp(scp).items():
                if uid in entries:
                    raise ValueError(f"{uid} was separated by two jobs")
                entries[uid] = path
        write_scp_atomic(
            out / f"spk{n}.scp", ((u, entries[u]) for u in sorted(entries))
        )
        counts[n] = len(entries)
    return counts


def check_stems(
    stems: Sequence[str], model_stems: Sequence[str], ref_stems: Sequence[str]
) -> None:
    """Every stem of ``stems`` is an output of the model and a reference of the data.

    Raises:
        ValueError: naming the stem and both lists.
    """
    for what, have in (("the model", model_stems), ("the data", ref_stems)):
        missing = [s for s in stems if s not in have]
        if missing:
            raise ValueError(
                f"stems mismatch: {', '.join(missing)} asked for (stems "
                f"{list(stems)}), but {what} has {list(have)} (the model separates "
                f"{list(model_stems)}, the data has {list(ref_stems)})"
            )
    for what, names in (
        ("--stems", stems),
        ("model", model_stems),
        ("data", ref_stems),
    ):
        if len(set(names)) != len(names):
            raise ValueError(f"{what} stems {list(names)} name a stem twice")


def _link(target: str, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path(target).resolve())


def link_song_trees(
    out: Path,
    data: Path,
    stems: Sequence[str],
    model_stems: Optional[Sequence[str]] = None,
    ref_stems: Optional[Sequence[str]] = None,
) -> int:
    """Symlink estimates and references into song folders; returns the song count.

    Args:
        out: the merged inference folder (``spk<n>.scp`` of the model's outputs).
        data: the data folder (``wav.scp``, ``spk<n>.scp``, optional ``uid2song``).
        stems: the stems to link.
        model_stems: the model's outputs in order (default: ``stems``).
        ref_stems: the data's ``spk<n>.scp`` in order (default: ``stems``).
    """
    model_stems = list(stems if model_stems is None else model_stems)
    ref_stems = list(stems if ref_stems is None else ref_stems)
    check_stems(stems, model_stems, ref_stems)
    uid2song = read_scp(data / "uid2song") if (data / "uid2song").exists() else {}
    mixtures = read_scp(data / "wav.scp")
    for tree in ("stems", "refs"):
        if (out / tree).exists():
            for link in (out / tree).rglob("*"):
                if link.is_symlink():
                    link.unlink()
    for uid, mixture in mixtures.items():
        song = uid2song.get(uid, uid)
        _link(mixture, out / "refs" / song / "mixture.wav")
    for stem in stems:
        refs = read_scp(data / f"spk{ref_stems.index(stem) + 1}.scp")
        ests = read_scp(out / f"spk{model_stems.index(stem) + 1}.scp")
        for uid in mixtures:
            song = uid2song.get(uid, uid)
            _link(refs[uid], out / "refs" / song / f"{stem}.wav")
            if uid in ests:
                _link(ests[uid], out / "stems" / song / f"{stem}.wav")
    return len(mixtures)


def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--num_spk",
        type=int,
        default=None,
        help="outputs of the model (default: the number of --model_stems)",
    )
    parser.add_argument(
        "--data", type=Path, default=None, help="data folder of the set"
    )
    parser.add_argument(
        "--stems", nargs="+", default=None, help="stems to link (default: all)"
    )
    parser.add_argument(
        "--model_stems", nargs="+", default=None, help="stem of output 1, 2 …"
    )
    parser.add_argument(
        "--ref_stems", nargs="+", default=None, help="stem of the data's spk1, spk2 …"
    )
    parser.add_argument("job_dirs", type=Path, nargs="+")
    args = parser.parse_args(cmd)
    model_stems = args.model_stems or args.stems
    num_spk = args.num_spk or (len(model_stems) if model_stems else None)
    if num_spk is None:
        parser.error("give --num_spk or --model_stems")
    if model_stems is not None and len(model_stems) != num_spk:
        parser.error(
            f"--model_stems names {len(model_stems)} stems for --num_spk {num_spk}"
        )
    if args.data is not None:
        model_stems = model_stems or [f"spk{n}" for n in range(1, num_spk + 1)]
        stems = args.stems or model_stems
        try:
            check_stems(stems, model_stems, args.ref_stems or stems)
        except ValueError as e:
            parser.error(str(e))
    merge_separated(args.out, num_spk, args.job_dirs)
    if args.data is not None:
        link_song_trees(args.out, args.data, stems, model_stems, args.ref_stems)


if __name__ == "__main__":
    main()
