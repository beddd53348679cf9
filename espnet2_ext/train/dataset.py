"""The ``segment_sound`` data type: a slice of an audio file per scp line.

Whole songs are minutes long and training reads seconds of them, so the scp names the
slice and the loader reads only that part of the file::

    uid_a /data/musdb18hq/train/Song A/vocals.wav 441000 705600
    uid_b /data/fma_large/000/000002.mp3 0 441000

Columns: utterance id (no whitespace), file path (may contain spaces, not tabs or
newlines), first sample, end sample (exclusive), both in samples of the file's own rate.
The loader returns ``[T, C]`` arrays (``T = end - start``; always 2-D, also for mono).

Why the name is ``segment_sound`` and not ``sound_segment``: ESPnet picks a loader with
``re.match(key, type)`` over ``espnet2.train.dataset.DATA_TYPES`` in insertion order, so a
type called ``sound_segment`` would be claimed by the ``sound`` entry (``re.match("sound",
"sound_segment")`` matches) and read with the wrong loader.

Seeking: WAV/FLAC/AIFF-like files are read with a seek to ``start``. libsndfile (1.2.2)
is not sample-exact in MP3 files, neither when seeking nor across consecutive reads
whose lengths are not multiples of the MP3 frame (measured on a 3 s MP3 of sines: a
seek to sample 20000, or reads of 20000 then 10000 samples, returned other samples than
one full decode; a single read from the start matches it). MP3 and other formats are
therefore decoded with one read from the first sample to ``end`` and sliced: exact, at
the cost of decoding (and holding) the prefix, about 20 ms for 30 s of MP3 here.
"""

from __future__ import annotations

import collections.abc
import os
import re
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import soundfile as sf

#: The data-type name to use in ``--*_data_path_and_name_and_type path,name,TYPE``.
SEGMENT_SOUND = "segment_sound"

#: libsndfile major formats whose seek is sample-exact.
EXACT_SEEK_FORMATS = frozenset(
    {"WAV", "WAVEX", "W64", "RF64", "AIFF", "AU", "CAF", "FLAC", "RAW", "NIST", "IRCAM"}
)


@dataclass(frozen=True)
class SoundSegment:
    """Samples ``[start, end)`` of the audio file ``path``."""

    path: str
    start: int
    end: int

    @property
    def num_samples(self) -> int:
        return self.end - self.start


def check_uid(uid: str) -> None:
    """Raise ``ValueError`` unless ``uid`` can be a key of an scp file."""
    if not uid or any(ch.isspace() for ch in uid):
        raise ValueError(
            f"utterance id {uid!r} is empty or contains whitespace; Kaldi-style scp "
            "files split on whitespace, so ids must be single tokens"
        )


def format_segment_line(uid: str, segment: SoundSegment) -> str:
    """One scp line (with newline) for ``segment``; validates the fields."""
    check_uid(uid)
    if "\n" in segment.path or "\r" in segment.path or "\t" in segment.path:
        raise ValueError(f"path {segment.path!r} contains a tab or newline")
    if not 0 <= segment.start < segment.end:
        raise ValueError(
            f"{uid}: segment [{segment.start}, {segment.end}) is empty or negative"
        )
    return f"{uid} {segment.path} {segment.start} {segment.end}\n"


def parse_segment_line(line: str, where: str = "") -> Tuple[str, SoundSegment]:
    """Parse ``uid path start end`` (the path may contain spaces).

    Args:
        line: one line of a segment scp.
        where: ``file:line`` for error messages.
    """
    parts = line.strip().split(maxsplit=1)
    if len(parts) == 2:
        rest = parts[1].rsplit(maxsplit=2)
    else:
        rest = []
    if len(rest) != 3:
        raise ValueError(
            f"{where}: expected 'uid path start end', got {line.rstrip()!r}"
        )
    uid, (path, start, end) = parts[0], rest
    try:
        start_i, end_i = int(start), int(end)
    except ValueError:
        raise ValueError(
            f"{where}: start and end must be integer sample indices, got "
            f"{start!r} and {end!r}"
        ) from None
    if not 0 <= start_i < end_i:
        raise ValueError(f"{where}: segment [{start_i}, {end_i}) is empty or negative")
    return uid, SoundSegment(path=path, start=start_i, end=end_i)


def read_segment_scp(path: str) -> Dict[str, SoundSegment]:
    """Read a segment scp into an ordered ``{uid: SoundSegment}``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a malformed line or a repeated uid.
    """
    table: Dict[str, SoundSegment] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            uid, segment = parse_segment_line(line, where=f"{path}:{lineno}")
            if uid in table:
                raise ValueError(f"{path}:{lineno}: utterance id {uid!r} is repeated")
            table[uid] = segment
    return table


def write_segment_scp(path: str, entries: Iterable[Tuple[str, SoundSegment]]) -> int:
    """Write ``(uid, SoundSegment)`` pairs as a segment scp; returns the line count."""
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        for uid, segment in entries:
            f.write(format_segment_line(uid, segment))
            count += 1
    return count


def read_sound_segment(
    path: str, start: int, end: int, dtype: str = "float32"
) -> Tuple[np.ndarray, int]:
    """Read samples ``[start, end)`` of ``path`` without loading the rest.

    Returns:
        (array ``[end - start, C]`` of ``dtype``, sampling rate)

    Raises:
        ValueError: the slice is empty or runs past the end of the file.
    """
    if not 0 <= start < end:
        raise ValueError(f"{path}: segment [{start}, {end}) is empty or negative")
    # soundfile reads float32/float64/int16/int32; other float types are cast after.
    read_dtype = (
        dtype if dtype in ("float32", "float64", "int16", "int32") else "float32"
    )
    with sf.SoundFile(path) as f:
        if f.frames > 0 and end > f.frames:
            raise ValueError(
                f"{path}: segment [{start}, {end}) runs past the end of the file "
                f"({f.frames} samples); was the scp written for another version "
                "of the file?"
            )
        if f.format in EXACT_SEEK_FORMATS:
            f.seek(start)
            array = f.read(end - start, dtype=read_dtype, always_2d=True)
        else:
            # One read from the first sample: see the module docstring.
            array = f.read(end, dtype=read_dtype, always_2d=True)[start:].copy()
        rate = f.samplerate
    if array.shape[0] != end - start:
        raise ValueError(
            f"{path}: asked for samples [{start}, {end}) but the file ended after "
            f"{start + array.shape[0]}"
        )
    if array.dtype != np.dtype(dtype):
        array = array.astype(dtype)
    return array, rate


class SegmentSoundScpReader(collections.abc.Mapping):
    """``{uid: [T, C] array}`` view of a segment scp; each access reads one slice.

    Args:
        fname: the segment scp.
        dtype: dtype of the returned arrays (ESPnet passes its ``float_dtype``).
        allow_multi_rates: accept files of different sampling rates (otherwise a
            change of rate between two reads raises, as ESPnet's ``sound`` type does).
    """

    def __init__(
        self,
        fname: str,
        dtype: Optional[str] = None,
        allow_multi_rates: bool = False,
    ):
        self.fname = fname
        self.dtype = dtype or "float32"
        self.allow_multi_rates = allow_multi_rates
        self.rate: Optional[int] = None
        self.segments = read_segment_scp(fname)

    def __getitem__(self, uid: str) -> np.ndarray:
        segment = self.segments[uid]
        array, rate = read_sound_segment(
            segment.path, segment.start, segment.end, dtype=self.dtype
        )
        if not self.allow_multi_rates and self.rate is not None and rate != self.rate:
            raise RuntimeError(
                f"{self.fname}: {uid} is sampled at {rate} Hz, earlier entries at "
                f"{self.rate} Hz (set --allow_multi_rates true if that is intended)"
            )
        self.rate = rate
        return array

    def __len__(self) -> int:
        return len(self.segments)

    def __iter__(self) -> Iterator[str]:
        return iter(self.segments)

    def keys(self):
        return self.segments.keys()


def segment_sound_loader(
    path: str, float_dtype: Optional[str] = None, allow_multi_rates: bool = False
) -> SegmentSoundScpReader:
    """Loader function for ESPnet's ``DATA_TYPES`` (same keywords as ``sound``)."""
    return SegmentSoundScpReader(
        path, dtype=float_dtype, allow_multi_rates=allow_multi_rates
    )


#: Entry for ``espnet2.train.dataset.DATA_TYPES[SEGMENT_SOUND]`` (ESPnet's dict shape).
SEGMENT_SOUND_DATA_TYPE = dict(
    func=segment_sound_loader,
    kwargs=["float_dtype", "allow_multi_rates"],
    help="A slice of an audio file per line, read without loading the whole file "
    "(start inclusive, end exclusive, in samples); returns [T, C] arrays."
    "\n\n"
    "   utterance_id_a /some/where/a.wav 0 264600\n"
    "   utterance_id_b /some/where/b.mp3 220500 485100\n"
    "   ...",
)


def shadowing_data_types(name: str, data_types: Dict[str, dict]) -> List[str]:
    """Keys of ``data_types`` inserted before ``name`` that ESPnet would use for it.

    ESPnet resolves a data type with ``re.match(key, type)`` in insertion order; a
    non-empty answer means ``name`` can never reach its own loader.
    """
    found = []
    for key in data_types:
        if key == name:
            break
        if re.match(key, name):
            found.append(key)
    return found


def segment_shape_line(uid: str, num_samples: int, num_channels: int) -> str:
    """A line of an ESPnet shape file (``uid T,C``) for a ``[T, C]`` item."""
    return f"{uid} {num_samples},{num_channels}\n"


# ---------------------------------------------------------------------------------------
# Per-stem index of active segments (written by espnet2_ext.datasets.activity, read by
# espnet2_ext.train.preprocessor.MusicDynamicMixing).
# ---------------------------------------------------------------------------------------

#: Header of an active-segment index; one row per kept segment follows.
ACTIVE_INDEX_HEADER = "song\tpath\tstart\tend"


def active_index_path(index_dir: str, stem: str) -> str:
    """Where the index of ``stem``'s active segments lives in ``index_dir``."""
    return os.path.join(index_dir, f"active_{stem}.tsv")


def write_active_index(path: str, entries: Iterable[Tuple[str, SoundSegment]]) -> int:
    """Write ``(song_uid, SoundSegment)`` rows (tab separated, with header)."""
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write(ACTIVE_INDEX_HEADER + "\n")
        for song, segment in entries:
            format_segment_line(song, segment)  # validates the fields
            f.write(f"{song}\t{segment.path}\t{segment.start}\t{segment.end}\n")
            count += 1
    return count


def read_active_index(path: str) -> List[Tuple[str, SoundSegment]]:
    """Read an index written by :func:`write_active_index`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: wrong header or a malformed row.
    """
    rows: List[Tuple[str, SoundSegment]] = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n")
        if header != ACTIVE_INDEX_HEADER:
            raise ValueError(
                f"{path}: not an active-segment index (header {header!r}, expected "
                f"{ACTIVE_INDEX_HEADER!r})"
            )
        for lineno, line in enumerate(f, 2):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 4:
                raise ValueError(f"{path}:{lineno}: expected 4 tab-separated fields")
            song, seg_path, start, end = fields
            try:
                segment = SoundSegment(seg_path, int(start), int(end))
            except ValueError:
                raise ValueError(
                    f"{path}:{lineno}: start/end are not integers"
                ) from None
            if not 0 <= segment.start < segment.end:
                raise ValueError(f"{path}:{lineno}: empty or negative segment")
            rows.append((song, segment))
    return rows
