"""Songs of a MUSDB18-HQ style data folder (``wav.scp``, ``spk<n>.scp``, ``stems``) and
their fixed-length chunks, as head selection and multi-step calibration read them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf

from espnet2_ext.utils.scp import read_scp

#: File of a data folder that names its stems in output order (``spk<n>.scp`` is the
#: n-th line), one a line.
STEMS_FILE = "stems"


def write_stems(data_dir: Union[str, Path], stems: Sequence[str]) -> None:
    """Write ``<data_dir>/stems`` (the folder exists)."""
    with open(Path(data_dir) / STEMS_FILE, "w", encoding="utf-8") as f:
        f.writelines(f"{stem}\n" for stem in stems)


def read_stems(data_dir: Union[str, Path]) -> Tuple[str, ...]:
    """The stem names of a data folder, in output order (``<data_dir>/stems``).

    Raises:
        FileNotFoundError: the folder has no ``stems`` file (written by the data
            preparation since stems are read from the data).
        ValueError: the file is empty or names a stem twice.
    """
    path = Path(data_dir) / STEMS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: re-run the data preparation (python -m "
            "espnet2_ext.datasets.musdb18hq), which writes the stem names there"
        )
    stems = tuple(line.strip() for line in path.read_text("utf-8").splitlines())
    stems = tuple(stem for stem in stems if stem)
    if not stems or len(set(stems)) != len(stems):
        raise ValueError(f"{path} must name distinct stems, one a line; got {stems}")
    return stems


@dataclass(frozen=True)
class Song:
    """One song of a data folder: its mixture and stem files."""

    uid: str
    mixture: str
    stems: Tuple[str, ...]


def read_songs(
    data_dir: Union[str, Path], num_stems: Optional[int] = None
) -> List[Song]:
    """The songs of a MUSDB18-HQ style data folder (``wav.scp``, ``spk<n>.scp``).

    Args:
        data_dir: the folder.
        num_stems: how many ``spk<n>.scp`` to read (default: as many as the folder's
            ``stems`` file names).

    Raises:
        ValueError: the stem lists and the mixture list name different songs, or the
            folder is empty.
    """
    data_dir = Path(data_dir)
    if num_stems is None:
        num_stems = len(read_stems(data_dir))
    mixtures = read_scp(data_dir / "wav.scp")
    stems = [read_scp(data_dir / f"spk{n}.scp") for n in range(1, num_stems + 1)]
    for n, table in enumerate(stems, 1):
        if set(table) != set(mixtures):
            diff = sorted(set(table) ^ set(mixtures))
            raise ValueError(
                f"{data_dir}/spk{n}.scp and wav.scp list different songs ({diff[:3]}"
                "…); re-run the data preparation (python -m "
                "espnet2_ext.datasets.musdb18hq)"
            )
    if not mixtures:
        raise ValueError(f"{data_dir}/wav.scp lists no songs")
    return [
        Song(uid, mixtures[uid], tuple(table[uid] for table in stems))
        for uid in sorted(mixtures)
    ]


def _read_audio(path: str, sample_rate: int) -> np.ndarray:
    """A file as ``[C, T]`` float32, checked against the model's rate."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)  # [T, C]
    if rate != sample_rate:
        raise ValueError(
            f"{path} is sampled at {rate} Hz, the model at {sample_rate} Hz"
        )
    return np.ascontiguousarray(audio.T)


def song_chunks(
    song: Song, chunk_samples: int, sample_rate: int
) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Non-overlapping chunks of a song: ``(mixture [C, L], stems [S, C, L])``.

    Complete chunks only, from the start (the paper's 6 s chunks with a 6 s shift); a
    song shorter than one chunk gives one chunk of its own length.
    """
    mixture = _read_audio(song.mixture, sample_rate)
    stems = np.stack([_read_audio(p, sample_rate) for p in song.stems])  # [S, C, T]
    if stems.shape[1:] != mixture.shape:
        raise ValueError(
            f"{song.uid}: stems {stems.shape[1:]} and mixture {mixture.shape} differ "
            "in channels or length"
        )
    length = mixture.shape[-1]
    if length <= chunk_samples:
        yield mixture, stems
        return
    for start in range(0, length - chunk_samples + 1, chunk_samples):
        yield (
            mixture[:, start : start + chunk_samples],
            stems[..., start : start + chunk_samples],
        )
