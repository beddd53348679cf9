"""Songs of a MUSDB18-HQ style data folder (``wav.scp``, ``spk<n>.scp``) and their
fixed-length chunks, as head selection and multi-step calibration read them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Tuple, Union

import numpy as np
import soundfile as sf

from espnet2_ext.utils.scp import read_scp


@dataclass(frozen=True)
class Song:
    """One song of a data folder: its mixture and stem files."""

    uid: str
    mixture: str
    stems: Tuple[str, ...]


def read_songs(data_dir: Union[str, Path], num_stems: int) -> List[Song]:
    """The songs of a MUSDB18-HQ style data folder (``wav.scp``, ``spk<n>.scp``).

    Raises:
        ValueError: the stem lists and the mixture list name different songs, or the
            folder is empty.
    """
    data_dir = Path(data_dir)
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
