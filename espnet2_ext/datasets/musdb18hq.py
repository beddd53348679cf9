"""MUSDB18-HQ layout → Kaldi-style data folders (one utterance per song).

Reads any tree in the MUSDB18-HQ layout, ``<root>/{train,test}/<song>/mixture.wav``
plus one file per stem (``<stem>.wav``; FLAC files, ``<stem>.flac``, work as well), with
any number of songs and any stem names, and writes ``<out>/{train,valid,test}/`` with

* ``stems``: the stem names in output order, one a line;
* ``wav.scp`` (mixture) and ``spk1.scp`` … ``spk<N>.scp`` (the stems in that order),
  absolute paths (they may contain spaces);
* ``utt2spk``, ``spk2utt`` (every song is its own speaker), ``utt2num_samples``,
  ``utt2dur`` (seconds), ``uid2song`` (uid → original folder name);

and ``<out>/musdb18hq_prep_report.txt`` (the split, skipped songs and warnings).

Stems: read from the data (every audio file of a song folder but ``mixture``), the
four MUSDB18 stems first in their usual order (vocals, bass, drums, other), any others
after them in alphabetical order; or given with ``--stems`` (selects and orders them;
every song must have those files, other files are ignored). Every song of ``train/`` and
``test/`` must have the same stem files: songs that disagree are an error that names the
song and both lists, before anything is written. A stem that is silent in a song (no
vocals in an instrumental) is valid data: the file exists and holds zeros.

Song names contain spaces, commas and ampersands, so uids are made from them by
replacing every run of other characters than ``[A-Za-z0-9._-]`` with ``_`` (made unique
with a ``_2`` … suffix when needed); ``uid2song`` keeps the names.

Split: ``test/`` → test; ``train/`` → train and valid, the valid songs taken from, in
this order: ``--valid-list FILE``; ``<root>/valid_songs.txt``; the 14 standard MUSDB18
validation songs when they are present (real MUSDB18-HQ gives 86 / 14 / 50); otherwise
a deterministic 14 % of the usable training songs (smallest SHA-1 of their
name), reported as such.

Checks, before anything is written: the root exists and has ``train/`` and ``test/``;
the songs agree on their stems; a valid list names only songs of ``train/``; every song
has its mixture and stem files, readable as audio, at ``--sample-rate`` (44100), with
``--channels`` (2) channels and equal lengths. A song that fails is named with its
problem and skipped, the others are prepared. A silent file (peak below one 16-bit step)
is allowed and reported as a warning. The folders are written to a temporary folder
first and moved into place at the end, so an error leaves no half-written folder.

Usage::

    python -m espnet2_ext.datasets.musdb18hq --root /data/musdb18hq --out data
    python -m espnet2_ext.datasets.musdb18hq --root ~/my_songs --out data \\
        --valid-list my_valid_songs.txt --stems "lead keys beat"
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from tqdm import tqdm

from espnet2_ext.constants import MUSDB_STEMS, MUSIC_SAMPLE_RATE
from espnet2_ext.datasets.songs import write_stems

#: The 14 validation songs of the usual MUSDB18 split (``musdb/configs/mus.yaml``).
STANDARD_VALID_SONGS = (
    "Actions - One Minute Smile",
    "Clara Berry And Wooldog - Waltz For My Victims",
    "Johnny Lokke - Promises & Lies",
    "Patrick Talbot - A Reason To Leave",
    "Triviul - Angelsaint",
    "Alexander Ross - Goodbye Bolero",
    "Fergessen - Nos Palpitants",
    "Leaf - Summerghost",
    "Skelpolu - Human Mistakes",
    "Young Griffo - Pennies",
    "ANiMAL - Rockshow",
    "James May - On The Line",
    "Meaxic - Take A Step",
    "Traffic Experiment - Sirens",
)

#: Name of the valid list a generator may write into the root of a generated tree.
VALID_LIST_NAME = "valid_songs.txt"

#: Share of training songs used for validation when there is no list (14 of 100).
DEFAULT_VALID_FRACTION = 0.14

#: A file whose peak is below one step of 16-bit PCM is called silent.
SILENCE_PEAK = 2.0**-15

SPLITS = ("train", "valid", "test")
REPORT_NAME = "musdb18hq_prep_report.txt"

#: The mixture's file name (without extension) in a song folder.
MIXTURE = "mixture"

#: Extensions of the song files (libsndfile formats with sample-exact seeking).
SONG_FILE_EXTENSIONS = (".wav", ".flac")


class MusdbLayoutError(ValueError):
    """The root folder is not a MUSDB18-HQ tree (nothing has been written)."""


@dataclass
class SongInfo:
    """A song that passed the checks."""

    name: str
    folder: str
    num_samples: int
    sample_rate: int
    files: Dict[str, str]  # "mixture" and every stem -> path
    warnings: List[str] = field(default_factory=list)


@dataclass
class PrepReport:
    """What :func:`prepare_musdb18hq` did."""

    splits: Dict[str, List[str]]  # split -> uids
    uid2song: Dict[str, str]
    stems: Tuple[str, ...]  # output order: spk1.scp is stems[0]
    stems_source: str
    skipped: List[Tuple[str, str]]  # (song folder, problem)
    warnings: List[Tuple[str, str]]  # (song folder, message)
    valid_source: str


def check_root(root: str) -> Path:
    """Return ``root`` as a path if it looks like a MUSDB18-HQ tree, else raise."""
    path = Path(root)
    if not path.exists():
        raise MusdbLayoutError(
            f"MUSDB18-HQ root {root!r} does not exist (expected "
            "<root>/{train,test}/<song>/mixture.wav …); pass --root correctly"
        )
    if not path.is_dir():
        raise MusdbLayoutError(f"MUSDB18-HQ root {root!r} is not a folder")
    missing = [name for name in ("train", "test") if not (path / name).is_dir()]
    if missing:
        raise MusdbLayoutError(
            f"MUSDB18-HQ root {root!r} has no {' or '.join(missing)}/ folder; the "
            "layout is <root>/{train,test}/<song>/mixture.wav and one <stem>.wav per "
            "stem (is --root one level too high or too low?)"
        )
    return path


def safe_uid(name: str) -> str:
    """A whitespace-free id made from a song name (not yet made unique)."""
    uid = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
    return uid or "song"


def song_files(folder: str) -> Dict[str, List[str]]:
    """``{name: [paths]}`` of the song files (``<name>.wav``/``.flac``) in ``folder``.

    More than one path for a name (``vocals.wav`` and ``vocals.flac``) is the caller's
    error to report; other files (notes, cover images) are ignored.
    """
    files: Dict[str, List[str]] = {}
    for entry in sorted(os.listdir(folder)):
        base, ext = os.path.splitext(entry)
        path = os.path.join(folder, entry)
        if ext.lower() in SONG_FILE_EXTENSIONS and base and os.path.isfile(path):
            files.setdefault(base, []).append(path)
    return files


def order_stems(names: Sequence[str]) -> Tuple[str, ...]:
    """The MUSDB18 stems first in their usual order, then the others alphabetically."""
    known = [stem for stem in MUSDB_STEMS if stem in names]
    return tuple(known + sorted(set(names) - set(known)))


def parse_stems(stems: Optional[Sequence[str]]) -> Optional[Tuple[str, ...]]:
    """``--stems`` as given (``["a b", "c"]`` or ``["a", "b", "c"]``) → names.

    Raises:
        ValueError: an empty list, a repeated name, ``mixture`` or a name that cannot
            be a file name.
    """
    if stems is None:
        return None
    names = tuple(name for item in stems for name in item.split())
    if not names:
        raise ValueError("--stems is empty: name at least one stem, or leave it out")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"--stems names {repeated} more than once")
    bad = [n for n in names if n == MIXTURE or "/" in n or n.startswith(".")]
    if bad:
        raise ValueError(
            f"--stems {bad}: a stem is a file name without extension in a song folder "
            f"and cannot be {MIXTURE!r}"
        )
    return names


def resolve_stems(
    folders: Sequence[str], root: Path, stems: Optional[Sequence[str]]
) -> Tuple[Tuple[str, ...], str]:
    """The stems of the tree: ``stems`` checked against every song, or read from them.

    Args:
        folders: every song folder of ``train/`` and ``test/``.
        root: the root (for names in messages).
        stems: ``--stems`` (None: read from the data).

    Returns:
        (stem names in output order, where they came from)

    Raises:
        ValueError: songs that disagree on their stems, a song without one of
            ``stems``, a stem in two formats, or no stem at all (nothing is written).
    """
    listed = {}
    for folder in folders:
        files = song_files(folder)
        label = os.path.relpath(folder, root)
        twice = {n: p for n, p in files.items() if len(p) > 1}
        if twice:
            name, paths = next(iter(twice.items()))
            raise ValueError(
                f"song {label!r} has {name!r} in two files "
                f"{[os.path.basename(p) for p in paths]}: keep one"
            )
        listed[folder] = sorted(n for n in files if n != MIXTURE)
    if not listed:
        raise ValueError(f"{root} has no song folder under train/ or test/")
    if stems is not None:
        for folder, names in listed.items():
            missing = [n for n in stems if n not in names]
            if missing:
                raise ValueError(
                    f"song {os.path.relpath(folder, root)!r} has no "
                    f"{', '.join(missing)} file: its stems are {names}, --stems asks "
                    f"for {list(stems)}; every song needs every stem (a silent stem is "
                    "a file of zeros)"
                )
        return tuple(stems), "--stems"
    first, first_names = next(iter(listed.items()))
    for folder, names in listed.items():
        if names != first_names:
            raise ValueError(
                f"songs disagree on their stems: {os.path.relpath(folder, root)!r} has "
                f"{names}, {os.path.relpath(first, root)!r} has {first_names}. Give "
                "every song the same stem files (a silent stem is a file of zeros) or "
                "choose the stems every song has with --stems"
            )
    if not first_names:
        raise ValueError(
            f"the songs of {root} have no stem file besides {MIXTURE}: nothing to "
            "separate into"
        )
    return order_stems(first_names), "read from the data"


def inspect_song(
    folder: str,
    stems: Sequence[str] = MUSDB_STEMS,
    sample_rate: int = MUSIC_SAMPLE_RATE,
    channels: int = 2,
    check_silence: bool = True,
) -> Tuple[Optional[SongInfo], List[str]]:
    """Check one song folder: its mixture and the files of ``stems``.

    Returns:
        (info, problems): ``info`` is None when the song must be skipped, and
        ``problems`` says why; ``info.warnings`` holds what is allowed but odd.
    """
    name = os.path.basename(folder)
    found = song_files(folder)
    wanted = (MIXTURE,) + tuple(stems)
    missing = [f"{n}.wav" for n in wanted if n not in found]
    if missing:
        return None, [f"missing {', '.join(missing)}"]
    files = {n: found[n][0] for n in wanted}
    problems: List[str] = []
    infos = {}
    for stem, path in files.items():
        base = os.path.basename(path)
        try:
            infos[stem] = sf.info(path)
        except Exception as err:  # libsndfile raises several types for bad files
            problems.append(f"{base} is not readable audio ({err})")
    if problems:
        return None, problems
    for stem, info in infos.items():
        base = os.path.basename(files[stem])
        if info.samplerate != sample_rate:
            problems.append(
                f"{base} is sampled at {info.samplerate} Hz, expected {sample_rate}"
            )
        if info.channels != channels:
            problems.append(
                f"{base} has {info.channels} channel(s), expected {channels}"
                + (" (a mono stem in a stereo set)" if info.channels == 1 else "")
            )
    lengths = {stem: info.frames for stem, info in infos.items()}
    if len(set(lengths.values())) != 1:
        problems.append(
            "files of different lengths: "
            + ", ".join(
                f"{os.path.basename(files[stem])} {n} samples"
                for stem, n in lengths.items()
            )
        )
    if lengths[MIXTURE] == 0:
        problems.append("the files are empty")
    if problems:
        return None, problems
    song = SongInfo(
        name=name,
        folder=folder,
        num_samples=lengths[MIXTURE],
        sample_rate=sample_rate,
        files=files,
    )
    if check_silence:
        for stem, path in files.items():
            base = os.path.basename(path)
            try:
                peak = _peak(path)
            except Exception as err:
                return None, [f"{base} could not be decoded ({err})"]
            if peak < SILENCE_PEAK:
                song.warnings.append(f"{base} is silent (peak {peak:.2e})")
    return song, []


def _peak(path: str, block: int = 1 << 18) -> float:
    peak = 0.0
    for chunk in sf.blocks(path, blocksize=block, dtype="float32", always_2d=True):
        if chunk.size:
            peak = max(peak, float(np.max(np.abs(chunk))))
    return peak


def read_song_list(path: str) -> List[str]:
    """Song names, one a line; blank lines and ``#`` comments ignored."""
    names = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                names.append(line)
    return names


def valid_list_file(root: Path, valid_list: Optional[str]) -> Optional[str]:
    """The valid list in use: ``valid_list``, else ``<root>/valid_songs.txt`` if any."""
    if valid_list is not None:
        return valid_list
    if (root / VALID_LIST_NAME).is_file():
        return str(root / VALID_LIST_NAME)
    return None


def check_valid_list(list_file: str, folder_names: Sequence[str], root: Path) -> None:
    """Raise ``ValueError`` if ``list_file`` names songs that are not training folders."""
    available = set(folder_names)
    unknown = [n for n in read_song_list(list_file) if n not in available]
    if unknown:
        raise ValueError(
            f"valid list {list_file} names songs that are not folders of "
            f"{root / 'train'}: {unknown}"
        )


def resolve_valid_songs(
    good_names: Sequence[str], root: Path, valid_list: Optional[str]
) -> Tuple[List[str], str, List[str]]:
    """Choose the validation songs among the usable songs of ``<root>/train``.

    Args:
        good_names: folder names of ``<root>/train`` that passed the checks.
        root: the MUSDB18-HQ root.
        valid_list: ``--valid-list`` (None: ``<root>/valid_songs.txt`` if present).

    Returns:
        (valid song names, where the choice came from, warnings)
    """
    warnings: List[str] = []
    list_file = valid_list_file(root, valid_list)
    available = set(good_names)
    if list_file is not None:
        names = sorted(set(read_song_list(list_file)))
        unusable = [n for n in names if n not in available]
        if unusable:
            warnings.append(f"valid songs {unusable} were skipped (see above)")
        return [n for n in names if n in available], f"list {list_file}", warnings
    standard = [n for n in STANDARD_VALID_SONGS if n in available]
    if len(standard) == len(STANDARD_VALID_SONGS):
        return sorted(standard), "the 14 standard MUSDB18 validation songs", warnings
    if standard:
        warnings.append(
            f"only {len(standard)} of the 14 standard validation songs are usable; "
            "using those"
        )
        return (
            sorted(standard),
            "the standard MUSDB18 validation songs present",
            warnings,
        )
    if len(good_names) < 2:
        raise ValueError(
            f"{root / 'train'} has {len(good_names)} usable song(s): at least 2 are "
            "needed to split train and valid; nothing was written"
        )
    count = max(1, int(round(DEFAULT_VALID_FRACTION * len(good_names))))
    ranked = sorted(
        good_names, key=lambda n: hashlib.sha1(n.encode("utf-8")).hexdigest()
    )
    chosen = sorted(ranked[:count])
    warnings.append(
        f"no valid list ({VALID_LIST_NAME} in the root or --valid-list) and not the "
        f"real MUSDB18 songs: took {count} of {len(good_names)} usable training "
        f"songs, those first in SHA-1 order of their names: {chosen}"
    )
    return chosen, "a deterministic subset (SHA-1 order)", warnings


def _song_folders(split_dir: Path) -> Tuple[List[str], List[str]]:
    folders, strays = [], []
    for entry in sorted(os.listdir(split_dir)):
        path = split_dir / entry
        if path.is_dir():
            folders.append(str(path))
        elif not entry.startswith("."):
            strays.append(entry)
    return folders, strays


def _inspect_star(args):
    return inspect_song(*args)


def _write_split(
    folder: Path, songs: List[Tuple[str, SongInfo]], stems: Sequence[str]
) -> None:
    folder.mkdir(parents=True)
    songs = sorted(songs, key=lambda item: item[0])
    write_stems(folder, stems)
    names = ["wav.scp"] + [f"spk{i}.scp" for i in range(1, len(stems) + 1)]
    for stem, name in zip((MIXTURE,) + tuple(stems), names):
        with open(folder / name, "w", encoding="utf-8") as f:
            for uid, song in songs:
                f.write(f"{uid} {os.path.abspath(song.files[stem])}\n")
    with open(folder / "utt2spk", "w", encoding="utf-8") as f:
        f.writelines(f"{uid} {uid}\n" for uid, _ in songs)
    with open(folder / "spk2utt", "w", encoding="utf-8") as f:
        f.writelines(f"{uid} {uid}\n" for uid, _ in songs)
    with open(folder / "utt2num_samples", "w", encoding="utf-8") as f:
        f.writelines(f"{uid} {song.num_samples}\n" for uid, song in songs)
    with open(folder / "utt2dur", "w", encoding="utf-8") as f:
        f.writelines(
            f"{uid} {song.num_samples / song.sample_rate:.4f}\n" for uid, song in songs
        )
    with open(folder / "uid2song", "w", encoding="utf-8") as f:
        f.writelines(f"{uid} {song.name}\n" for uid, song in songs)


def prepare_musdb18hq(
    root: str,
    out: str,
    valid_list: Optional[str] = None,
    stems: Optional[Sequence[str]] = None,
    sample_rate: int = MUSIC_SAMPLE_RATE,
    channels: int = 2,
    check_silence: bool = True,
    nj: int = 1,
) -> PrepReport:
    """Write ``<out>/{train,valid,test}`` from the MUSDB18-HQ tree at ``root``.

    Args:
        root: the tree (``train/``, ``test/``).
        out: the data folder to write.
        valid_list: file of validation song names (see the module docstring).
        stems: stems to use, in output order (None: read from the data).
        sample_rate, channels: what every file must have.
        check_silence: read every file to report silent ones.
        nj: parallel jobs for the checks.

    Raises:
        MusdbLayoutError: ``root`` is missing or lacks ``train/``/``test/``.
        ValueError: songs that disagree on their stems, a split would be empty, or
            the valid list names unknown songs. (In every case nothing is written.)
    """
    root_path = check_root(root)
    stems = parse_stems(stems)
    skipped, warnings = [], []
    folders_by_dir = {}
    for split_dir in ("train", "test"):
        folders, strays = _song_folders(root_path / split_dir)
        for stray in strays:
            warnings.append((f"{split_dir}/{stray}", "not a song folder, ignored"))
        folders_by_dir[split_dir] = folders
    # fail before the (slow) checks of the songs
    all_folders = folders_by_dir["train"] + folders_by_dir["test"]
    stems, stems_source = resolve_stems(all_folders, root_path, stems)
    list_file = valid_list_file(root_path, valid_list)
    if list_file is not None:
        train_names = [os.path.basename(f) for f in folders_by_dir["train"]]
        check_valid_list(list_file, train_names, root_path)
    logging.info(f"stems ({stems_source}): {' '.join(stems)}")
    jobs = [
        (folder, stems, sample_rate, channels, check_silence) for folder in all_folders
    ]

    if nj > 1:
        with multiprocessing.Pool(nj) as pool:
            results = list(
                tqdm(pool.imap(_inspect_star, jobs), total=len(jobs), desc="songs")
            )
    else:
        results = [_inspect_star(job) for job in tqdm(jobs, desc="songs")]
    info_by_folder = {}
    for (folder, *_), (info, problems) in zip(jobs, results):
        label = os.path.relpath(folder, root_path)
        if info is None:
            skipped.append((label, "; ".join(problems)))
            logging.warning(f"skipping song {label!r}: {'; '.join(problems)}")
            continue
        for message in info.warnings:
            warnings.append((label, message))
            logging.warning(f"song {label!r}: {message}")
        info_by_folder[folder] = info

    good_names = [
        info_by_folder[f].name for f in folders_by_dir["train"] if f in info_by_folder
    ]
    valid_names, valid_source, valid_warnings = resolve_valid_songs(
        good_names, root_path, valid_list
    )
    for message in valid_warnings:
        warnings.append(("(split)", message))
        logging.warning(message)
    valid_set = set(valid_names)

    used_uids: Dict[str, str] = {}
    splits: Dict[str, List[Tuple[str, SongInfo]]] = {name: [] for name in SPLITS}
    for split_dir in ("train", "test"):
        for folder in folders_by_dir[split_dir]:
            info = info_by_folder.get(folder)
            if info is None:
                continue
            if split_dir == "test":
                split = "test"
            else:
                split = "valid" if info.name in valid_set else "train"
            uid = base = safe_uid(info.name)
            suffix = 2
            while uid in used_uids:
                uid = f"{base}_{suffix}"
                suffix += 1
            used_uids[uid] = info.name
            splits[split].append((uid, info))
    empty = [name for name, songs in splits.items() if not songs]
    if empty:
        raise ValueError(
            f"no usable song for split(s) {empty} in {root} (skipped: "
            f"{[s for s, _ in skipped]}); nothing was written"
        )

    out_path = Path(out)
    out_path.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".musdb18hq_tmp_", dir=out_path))
    try:
        for split, songs in splits.items():
            _write_split(tmp / split, songs, stems)
        with open(tmp / REPORT_NAME, "w", encoding="utf-8") as f:
            f.write(
                f"root: {os.path.abspath(root)}\nvalid songs from: {valid_source}\n"
                f"stems ({stems_source}): {' '.join(stems)}\n"
            )
            for split in SPLITS:
                f.write(f"{split}: {len(splits[split])} songs\n")
            for label, problem in skipped:
                f.write(f"skipped\t{label}\t{problem}\n")
            for label, message in warnings:
                f.write(f"warning\t{label}\t{message}\n")
        for name in SPLITS + (REPORT_NAME,):
            target = out_path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            os.replace(tmp / name, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    counts = " / ".join(f"{len(splits[s])} {s}" for s in SPLITS)
    logging.info(f"wrote {out}/{{train,valid,test}}: {counts} (valid: {valid_source})")
    return PrepReport(
        splits={s: [uid for uid, _ in sorted(songs)] for s, songs in splits.items()},
        uid2song=used_uids,
        stems=stems,
        stems_source=stems_source,
        skipped=skipped,
        warnings=warnings,
        valid_source=valid_source,
    )


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Prepare Kaldi-style data folders from a MUSDB18-HQ tree.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--root", required=True, help="folder with train/ and test/")
    parser.add_argument("--out", required=True, help="writes OUT/{train,valid,test}")
    parser.add_argument(
        "--valid-list",
        default=None,
        help=f"song names for valid, one a line (default: ROOT/{VALID_LIST_NAME}, "
        "else the standard 14, else a deterministic subset)",
    )
    parser.add_argument(
        "--stems",
        nargs="+",
        default=None,
        help="stems in output order, e.g. --stems vocals bass or --stems 'vocals "
        "bass' (default: every stem file the songs have)",
    )
    parser.add_argument("--sample-rate", type=int, default=MUSIC_SAMPLE_RATE)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument(
        "--no-silence-check",
        action="store_true",
        help="do not read the files to report silent stems",
    )
    parser.add_argument("--nj", type=int, default=1, help="parallel jobs")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        report = prepare_musdb18hq(
            args.root,
            args.out,
            valid_list=args.valid_list,
            stems=args.stems,
            sample_rate=args.sample_rate,
            channels=args.channels,
            check_silence=not args.no_silence_check,
            nj=args.nj,
        )
    except (ValueError, OSError) as err:
        logging.error(str(err))
        return 1
    if report.skipped:
        logging.warning(
            f"{len(report.skipped)} song(s) skipped, see {args.out}/{REPORT_NAME}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
