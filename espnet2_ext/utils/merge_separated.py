"""Merge the outputs of parallel inference jobs into one ESPnet-style output folder.

Each job folder holds ``spk1.scp`` … ``spkN.scp`` (``uid path`` lines). The merged folder
gets the concatenated, uid-sorted ``spk<n>.scp``; the audio files stay where the jobs wrote
them. A job folder without a complete set of scps means that job failed: it is an error.

With ``--data DIR --stems …`` it also lays out, as symbolic links, the song trees that
scoring reads (the MUSDB18-HQ layout, song folders named as in ``DIR/uid2song``):
``OUT/stems/<song>/<stem>.wav`` (the estimates) and ``OUT/refs/<song>/{mixture,<stem>}.wav``
(the references of ``DIR/wav.scp`` and ``DIR/spk<n>.scp``).

Usage: python -m espnet2_ext.utils.merge_separated --out DIR --num_spk N
           [--data DATA_DIR --stems vocals bass drums other] JOB_DIR [JOB_DIR …]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, Sequence

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


def _link(target: str, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path(target).resolve())


def link_song_trees(out: Path, data: Path, stems: Sequence[str]) -> int:
    """Symlink estimates and references into song folders; returns the song count."""
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
    for n, stem in enumerate(stems, start=1):
        refs = read_scp(data / f"spk{n}.scp")
        ests = read_scp(out / f"spk{n}.scp")
        for uid in mixtures:
            song = uid2song.get(uid, uid)
            _link(refs[uid], out / "refs" / song / f"{stem}.wav")
            if uid in ests:
                _link(ests[uid], out / "stems" / song / f"{stem}.wav")
    return len(mixtures)


def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--num_spk", type=int, required=True)
    parser.add_argument(
        "--data", type=Path, default=None, help="data folder of the set"
    )
    parser.add_argument("--stems", nargs="+", default=None, help="stem of spk1, spk2 …")
    parser.add_argument("job_dirs", type=Path, nargs="+")
    args = parser.parse_args(cmd)
    merge_separated(args.out, args.num_spk, args.job_dirs)
    if args.data is not None:
        stems = args.stems or [f"spk{n}" for n in range(1, args.num_spk + 1)]
        if len(stems) != args.num_spk:
            parser.error(
                f"--stems names {len(stems)} stems for --num_spk {args.num_spk}"
            )
        link_song_trees(args.out, args.data, stems)


if __name__ == "__main__":
    main()
