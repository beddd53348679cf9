"""Atomic writers for separated audio and the Kaldi-style lists that point to it.

A separation run writes ``<out>/wavs/<n>/<key>.<fmt>`` per source n and then
``<out>/spk<n>.scp``. Each file goes to a hidden temporary name in its folder first and
is renamed into place when complete, so an interrupted run never leaves a truncated
WAV or a list that names files that do not exist.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf

PathLike = Union[str, os.PathLike]


def write_audio_atomic(
    path: PathLike,
    wav: np.ndarray,
    fs: int,
    fmt: str = "wav",
    subtype: Optional[str] = "FLOAT",
) -> Path:
    """Write ``wav`` ([T] or [T, C]) to ``path`` through a temporary file.

    Args:
        subtype: soundfile subtype; the default 32-bit float keeps estimates unclipped
            and unquantised for scoring. Only WAV files take a subtype here; other
            formats use soundfile's default.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        sf.write(
            tmp,
            wav,
            int(fs),
            format=fmt.upper(),
            subtype=subtype if fmt.lower() == "wav" else None,
        )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_scp_atomic(path: PathLike, entries: Iterable[Tuple[str, PathLike]]) -> Path:
    """Write ``<key> <path>`` lines, in the given order, through a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        tmp.write_text(
            "".join(f"{key} {value}\n" for key, value in entries), encoding="utf-8"
        )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def check_sound_scps(
    scps: Sequence[PathLike],
    rate: Optional[int],
    max_channels: Optional[int] = None,
    keys: Optional[Sequence[str]] = None,
) -> None:
    """Fail before any output is written when an input file does not fit the model.

    Reads the header of every file the ``wav.scp`` lists name (only the ``keys`` given,
    if any): one that cannot be read, is not at ``rate`` Hz (None: any rate) or has more
    than ``max_channels`` channels is reported, up to 20 in one message. Pipe commands
    (``... |``) cannot be checked before they run and are left to the reader.
    """
    wanted = None if keys is None else set(keys)
    bad: List[str] = []
    for scp in scps:
        for line in Path(scp).read_text(encoding="utf-8").splitlines():
            uid, _, wav = line.strip().partition(" ")
            wav = wav.strip()
            if (
                not wav
                or wav.endswith("|")
                or (wanted is not None and uid not in wanted)
            ):
                continue
            try:
                info = sf.info(wav)
            except Exception as e:
                bad.append(f"{uid}: cannot read {wav} ({e})")
                continue
            if rate is not None and info.samplerate != rate:
                bad.append(
                    f"{uid}: {wav} is {info.samplerate} Hz, the model needs {rate} Hz "
                    f"(resample with e.g. 'sox in.wav -r {rate} out.wav')"
                )
            if max_channels is not None and info.channels > max_channels:
                bad.append(
                    f"{uid}: {wav} has {info.channels} channels, the model takes "
                    f"{max_channels} (down-mix with e.g. 'sox in.wav out.wav remix -')"
                )
    if bad:
        raise ValueError(
            "input audio does not fit the model:\n  " + "\n  ".join(bad[:20])
        )
