"""Preprocessors that build training examples for music separation.

Both are ESPnet :class:`~espnet2.train.preprocessor.AbsPreprocessor` subclasses, built as
``cls(train=..., **preprocessor_conf)`` and called as ``preprocessor(uid, data) -> data``
by ESPnet's dataset; waveforms are numpy ``[T, C]`` (samples, channels) float32.

* :class:`MusicDynamicMixing` (``--preprocessor music_dynamic_mixing``): supervised
  MUSDB18-HQ training, a new random mixture of random stems each time (DESIGN.md §4).
* :class:`MixtureOfMixtures` (``--preprocessor mixture_of_mixtures``): MixIT pre-training
  on unlabeled segments, two mixtures and their sum (DESIGN.md §3).

Randomness and reproducibility. Training draws come from a ``numpy.random.Generator``
made per example from two numbers: one draw of numpy's *global* RNG, and a CRC-32 of the
utterance id. ESPnet seeds the global RNG with ``seed + epoch`` in the trainer at every
epoch, and with ``seed + epoch + worker_id`` in each DataLoader worker (its
``worker_init_fn``), so a run is reproducible for a given ``--seed``, epoch, number of
workers and batch order; the uid term keeps data-parallel ranks, whose workers get the
same global seeds, from drawing the same examples. Validation draws (``train=False``)
depend on the uid alone, so a validation set stays the same at every epoch.
"""

from __future__ import annotations

import logging
import os
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from espnet2.train.preprocessor import AbsPreprocessor

from espnet2_ext.constants import MUSDB_STEMS, MUSIC_SAMPLE_RATE
from espnet2_ext.train.dataset import (
    SoundSegment,
    active_index_path,
    read_active_index,
    read_segment_scp,
    read_sound_segment,
)

#: Mean square below which a crop counts as silent (−80 dBFS).
SILENT_POWER = 1e-8

#: How many times a silent crop is redrawn before giving up on it.
MAX_DRAWS = 10

#: Level measures of :class:`MusicDynamicMixing` (``level_measure``).
LEVEL_MEASURES = ("mean_abs", "rms")


def _uid_seed(uid: str) -> int:
    return zlib.crc32(uid.encode("utf-8"))


def _training_rng(uid: str) -> np.random.Generator:
    """Per-example generator: numpy's global RNG (seeded by ESPnet) and the uid."""
    return np.random.default_rng([np.random.randint(0, 2**31 - 1), _uid_seed(uid)])


def _power(x: np.ndarray) -> float:
    """Mean square over all samples and channels, in float64."""
    return float(np.mean(np.square(x, dtype=np.float64)))


def _level(x: np.ndarray, measure: str) -> float:
    """``x``'s level: mean absolute value or RMS over all samples and channels."""
    if measure == "mean_abs":
        return float(np.mean(np.abs(x), dtype=np.float64))
    return float(np.sqrt(_power(x)))


class MusicDynamicMixing(AbsPreprocessor):
    """Dynamic mixing of activity-filtered stems (BSRNN-style, seeds/002 §3.2).

    In training mode every call ignores the loaded audio and builds a new example: for
    each stem, a random active segment of that stem (from the index of
    :mod:`espnet2_ext.datasets.activity`), a random ``segment_seconds`` crop inside the
    segment, normalised to the level ``level_db`` of ``level_measure`` and scaled by a
    gain uniform in ``[min_gain_db, max_gain_db]`` dB; each stem is then replaced by
    silence with probability ``drop_prob`` (redrawn until at least one stem stays); the
    mixture is the sum of the stems. Stems come from different songs, so the mixtures
    are not musically coherent, which is the point of dynamic mixing (more
    combinations).

    Two rules differ between the authors' released code (``mixit_mss/common/datasets/
    hdf5_wav_dataset_dm.py``, the default here) and the paper's wording / our first
    version (options):

    * the level: the authors' "RMS normalisation" divides by ``sqrt(x**2).mean()``,
      which is the *mean absolute value* (``level_measure: mean_abs``, ``level_db: 0``:
      mean |x| = 1); ``level_measure: rms`` normalises the RMS instead. For a stem with
      a high crest factor (drums) the two differ by several dB, so the relative levels
      of the stems in a mixture differ;
    * the segment: the authors draw uniformly over all active segments of a stem, so
      long songs are drawn more often (``song_first: false``); ``song_first: true``
      draws a song uniformly, then one of its segments.

    A crop that is silent (mean square below :data:`SILENT_POWER`) is redrawn (at most
    :data:`MAX_DRAWS` times); the authors keep an all-zero crop as silence. After the
    activity filter (each segment at least half active) a 6 s crop of an 8 s segment
    is practically never silent, so the two agree in practice.

    In validation/inference mode (``train=False``) the data pass through unchanged, so
    fixed validation crops stay fixed.

    Args:
        train: training mode (ESPnet passes it).
        index_dir: folder with ``active_{stem}.tsv`` for every stem (written by
            ``python -m espnet2_ext.datasets.activity``); read in training mode only.
        stems: stem names in output order; stem ``i`` becomes ``speech_ref{i+1}``.
        segment_seconds: length of an example.
        sample_rate: rate of the audio files (checked on every read).
        min_gain_db, max_gain_db: range of the uniform random gain per stem.
        drop_prob: probability of silencing a stem (at least one is always kept).
        level_measure: ``mean_abs`` (the authors' code) or ``rms``: what is normalised.
        level_db: the level every stem is normalised to before its gain, in dB of
            ``level_measure`` (0: mean |x| = 1 or RMS = 1, as in the authors' code).
            The model's input normalisation makes the absolute level immaterial; the
            measure matters (relative stem levels).
        rms_level_db: deprecated name of ``level_db`` (one warning; not with it).
        song_first: pick a song uniformly, then one of its segments (True), or pick
            uniformly among all segments, favouring long songs (False: the authors').
        speech_name: key of the mixture in the returned dict.
        speech_ref_name_prefix: prefix of the stems' keys (``speech_ref1`` …).

    Returns (``__call__``, training mode): ``data`` with ``speech_mix`` and
    ``speech_ref1`` … ``speech_refN``, each ``[T, C]`` float32, ``T`` =
    ``round(segment_seconds · sample_rate)``; ``speech_mix`` equals the sum of the refs.
    """

    def __init__(
        self,
        train: bool,
        index_dir: str,
        stems: Sequence[str] = MUSDB_STEMS,
        segment_seconds: float = 6.0,
        sample_rate: int = MUSIC_SAMPLE_RATE,
        min_gain_db: float = -10.0,
        max_gain_db: float = 10.0,
        drop_prob: float = 0.05,
        level_measure: str = "mean_abs",
        level_db: float = 0.0,
        rms_level_db: Optional[float] = None,
        song_first: bool = False,
        speech_name: str = "speech_mix",
        speech_ref_name_prefix: str = "speech_ref",
    ):
        super().__init__(train)
        stems = tuple(stems)
        if not stems or len(set(stems)) != len(stems):
            raise ValueError(f"stems must be non-empty and distinct, got {stems}")
        if segment_seconds <= 0 or sample_rate <= 0:
            raise ValueError(
                f"segment_seconds ({segment_seconds}) and sample_rate ({sample_rate}) "
                "must be positive"
            )
        if min_gain_db > max_gain_db:
            raise ValueError(
                f"min_gain_db ({min_gain_db}) is above max_gain_db ({max_gain_db})"
            )
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        if level_measure not in LEVEL_MEASURES:
            raise ValueError(
                f"level_measure must be one of {LEVEL_MEASURES}, got {level_measure!r}"
            )
        if rms_level_db is not None:
            if level_db != 0.0:
                raise ValueError(
                    "give level_db only (rms_level_db is its deprecated name), not both"
                )
            logging.warning(
                f"preprocessor_conf: rms_level_db is deprecated, read as level_db "
                f"({rms_level_db} dB of level_measure {level_measure!r}); rename it"
            )
            level_db = rms_level_db
        self.index_dir = index_dir
        self.stems = stems
        self.sample_rate = sample_rate
        self.segment_samples = int(round(segment_seconds * sample_rate))
        self.min_gain_db = float(min_gain_db)
        self.max_gain_db = float(max_gain_db)
        self.drop_prob = float(drop_prob)
        self.level_measure = level_measure
        self.level = 10.0 ** (level_db / 20.0)
        self.song_first = song_first
        self.speech_name = speech_name
        self.speech_ref_name_prefix = speech_ref_name_prefix

        # stem -> list of (song, [SoundSegment, ...]) ; only read when training
        self._index: Dict[str, List[Tuple[str, List[SoundSegment]]]] = {}
        self._flat: Dict[str, List[SoundSegment]] = {}
        self.num_channels: Optional[int] = None
        if train:
            self._load_index()

    def _load_index(self) -> None:
        if not os.path.isdir(self.index_dir):
            raise FileNotFoundError(
                f"index_dir {self.index_dir!r} does not exist: run the recipe's "
                "source-activity stage (python -m espnet2_ext.datasets.activity "
                f"--data <train data dir> --out {self.index_dir}) first"
            )
        channels = {}
        for stem in self.stems:
            path = active_index_path(self.index_dir, stem)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{path} is missing: run the recipe's source-activity stage "
                    "(python -m espnet2_ext.datasets.activity) for stem "
                    f"{stem!r} first, or fix stems/index_dir in preprocessor_conf"
                )
            rows = read_active_index(path)
            if not rows:
                raise ValueError(
                    f"{path} lists no active segment of {stem!r}: dynamic mixing "
                    "needs at least one (check the training data or the activity "
                    "threshold)"
                )
            too_short = [
                seg for _, seg in rows if seg.num_samples < self.segment_samples
            ]
            if too_short:
                raise ValueError(
                    f"{path}: {len(too_short)} segments are shorter than "
                    f"segment_seconds ({self.segment_samples} samples, e.g. "
                    f"{too_short[0]}); re-run the activity stage with longer segments"
                )
            by_song: Dict[str, List[SoundSegment]] = {}
            for song, seg in rows:
                by_song.setdefault(song, []).append(seg)
            self._index[stem] = list(by_song.items())
            self._flat[stem] = [seg for _, seg in rows]
            info = sf.info(rows[0][1].path)
            if info.samplerate != self.sample_rate:
                raise ValueError(
                    f"{rows[0][1].path} is sampled at {info.samplerate} Hz, "
                    f"sample_rate is {self.sample_rate}"
                )
            channels[stem] = info.channels
        if len(set(channels.values())) != 1:
            raise ValueError(f"stems have different channel counts: {channels}")
        self.num_channels = next(iter(channels.values()))

    def _draw_segment(self, stem: str, rng: np.random.Generator) -> SoundSegment:
        if self.song_first:
            songs = self._index[stem]
            _, segments = songs[int(rng.integers(len(songs)))]
        else:
            segments = self._flat[stem]
        return segments[int(rng.integers(len(segments)))]

    def _draw_stem(self, stem: str, rng: np.random.Generator) -> np.ndarray:
        """A normalised, gain-scaled crop ``[T, C]`` of ``stem`` (zeros if silent)."""
        length = self.segment_samples
        for _ in range(MAX_DRAWS):
            segment = self._draw_segment(stem, rng)
            start = segment.start + int(rng.integers(segment.num_samples - length + 1))
            crop, rate = read_sound_segment(segment.path, start, start + length)
            if rate != self.sample_rate:
                raise ValueError(
                    f"{segment.path} is sampled at {rate} Hz, sample_rate is "
                    f"{self.sample_rate}"
                )
            if crop.shape[1] != self.num_channels:
                raise ValueError(
                    f"{segment.path} has {crop.shape[1]} channels, the other stems "
                    f"{self.num_channels}"
                )
            if _power(crop) >= SILENT_POWER:
                gain_db = rng.uniform(self.min_gain_db, self.max_gain_db)
                level = _level(crop, self.level_measure)
                scale = self.level * 10.0 ** (gain_db / 20.0) / level
                return (crop * scale).astype(np.float32)
        logging.warning(
            f"{MAX_DRAWS} crops of {stem!r} in a row were silent; using silence"
        )
        return np.zeros((length, self.num_channels), dtype=np.float32)

    def __call__(self, uid: str, data: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if not self.train:
            return data
        rng = _training_rng(uid)
        num = len(self.stems)
        dropped = rng.random(num) < self.drop_prob
        while dropped.all():
            dropped = rng.random(num) < self.drop_prob
        refs = []
        for stem, drop in zip(self.stems, dropped):
            if drop:
                refs.append(
                    np.zeros((self.segment_samples, self.num_channels), np.float32)
                )
            else:
                refs.append(self._draw_stem(stem, rng))
        mix = refs[0].copy()
        for ref in refs[1:]:
            mix += ref
        out = dict(data)
        out[self.speech_name] = mix
        for i, ref in enumerate(refs, 1):
            out[f"{self.speech_ref_name_prefix}{i}"] = ref
        return out


class MixtureOfMixtures(AbsPreprocessor):
    """Mixture of mixtures for MixIT (seeds/002 §2, Wisdom et al. 2020).

    An example is one unlabeled segment (e.g. 10 s of an FMA track, loaded as
    ``input_name``). The call pairs it with a random partner segment from
    ``segment_scp``, takes a random ``segment_seconds`` crop of both, and rescales the
    partner so that the power ratio of the two mixtures, ``10·log10(P1 / P2)``, is
    uniform in ``[min_ratio_db, max_ratio_db]``. A silent crop (mean square below
    :data:`SILENT_POWER`) or a partner from the same file is redrawn.

    The paper splits each batch into halves and adds them; pairing every example with a
    random partner from the same pool here gives the same distribution of pairs and
    power ratios, and it runs through ESPnet's ordinary data path and training entry
    point (the batch then holds B mixtures of mixtures instead of B/2).

    Training mode (``train=True``) draws from :func:`_training_rng`; otherwise the
    draws depend on the uid alone (a fixed validation set), and the partners come from
    ``valid_segment_scp`` when given. Every draw is a uniform float mapped to its range,
    so in validation mode applying the preprocessor twice gives the result of applying
    it once (ESPnet's streaming iterator, used by ``--collect_stats``, applies it twice
    to types it cannot stream), unless a silent crop forced a redraw.

    Args:
        train: training mode (ESPnet passes it).
        segment_scp: ``segment_sound`` scp of the training segments (the partners).
        valid_segment_scp: partners in validation mode (default: ``segment_scp``).
        segment_seconds: crop length.
        sample_rate: rate of the audio files (checked).
        min_ratio_db, max_ratio_db: range of the power ratio of the two mixtures.
        input_name: key of the loaded segment in ``data``.
        speech_name: key of the mixture of mixtures in the output.
        speech_ref_name_prefix: prefix of the two mixtures' keys.

    Returns (``__call__``): ``data`` with ``speech_ref1`` (the crop of the example),
    ``speech_ref2`` (the rescaled partner crop) and ``speech_mix`` = their sum, each
    ``[T, C]`` float32.
    """

    def __init__(
        self,
        train: bool,
        segment_scp: str,
        valid_segment_scp: Optional[str] = None,
        segment_seconds: float = 6.0,
        sample_rate: int = MUSIC_SAMPLE_RATE,
        min_ratio_db: float = -5.0,
        max_ratio_db: float = 5.0,
        input_name: str = "speech_ref1",
        speech_name: str = "speech_mix",
        speech_ref_name_prefix: str = "speech_ref",
    ):
        super().__init__(train)
        if segment_seconds <= 0 or sample_rate <= 0:
            raise ValueError(
                f"segment_seconds ({segment_seconds}) and sample_rate ({sample_rate}) "
                "must be positive"
            )
        if min_ratio_db > max_ratio_db:
            raise ValueError(
                f"min_ratio_db ({min_ratio_db}) is above max_ratio_db ({max_ratio_db})"
            )
        self.segment_samples = int(round(segment_seconds * sample_rate))
        self.sample_rate = sample_rate
        self.min_ratio_db = float(min_ratio_db)
        self.max_ratio_db = float(max_ratio_db)
        self.input_name = input_name
        self.speech_name = speech_name
        self.speech_ref_name_prefix = speech_ref_name_prefix

        pool_scp = (
            segment_scp if train or valid_segment_scp is None else valid_segment_scp
        )
        if not os.path.isfile(pool_scp):
            raise FileNotFoundError(
                f"{pool_scp} is missing: run the recipe's FMA data-preparation stage "
                "(python -m espnet2_ext.datasets.fma) first, or fix "
                "segment_scp/valid_segment_scp in preprocessor_conf"
            )
        pool = read_segment_scp(pool_scp)
        self.pool_scp = pool_scp
        self._segments = {
            uid: seg
            for uid, seg in pool.items()
            if seg.num_samples >= self.segment_samples
        }
        if len(self._segments) < len(pool):
            logging.warning(
                f"{pool_scp}: {len(pool) - len(self._segments)} segments are shorter "
                f"than segment_seconds and are never used as partners"
            )
        if len({seg.path for seg in self._segments.values()}) < 2:
            raise ValueError(
                f"{pool_scp} needs segments of at least two different files that are "
                f"at least {self.segment_samples} samples long to form pairs. Re-run "
                "the data preparation (python -m espnet2_ext.datasets.fma, the "
                "recipe's stage 1), which keeps two files in each split, or give it "
                "a larger --valid_percent"
            )
        self._uids = list(self._segments)

    def _rng(self, uid: str) -> np.random.Generator:
        if self.train:
            return _training_rng(uid)
        return np.random.default_rng(_uid_seed(uid))

    def __call__(self, uid: str, data: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self.input_name not in data:
            raise KeyError(
                f"MixtureOfMixtures needs the segment loaded as {self.input_name!r}; "
                f"the data has {sorted(data)}"
            )
        x = np.asarray(data[self.input_name], dtype=np.float32)
        if x.ndim == 1:
            x = x[:, None]  # [T] -> [T, 1]
        length = self.segment_samples
        if x.shape[0] < length:
            raise ValueError(
                f"{uid}: {x.shape[0]} samples, shorter than segment_seconds "
                f"({length} samples)"
            )
        own = self._segments.get(uid)
        rng = self._rng(uid)
        first = second = None
        for _ in range(MAX_DRAWS):
            u_crop, u_partner, u_partner_crop, u_ratio = rng.random(4)
            start = int(u_crop * (x.shape[0] - length + 1))
            first = x[start : start + length]
            partner_uid = self._uids[int(u_partner * len(self._uids))]
            partner = self._segments[partner_uid]
            if own is not None and partner.path == own.path:
                continue
            offset = int(u_partner_crop * (partner.num_samples - length + 1))
            second, rate = read_sound_segment(
                partner.path, partner.start + offset, partner.start + offset + length
            )
            if rate != self.sample_rate:
                raise ValueError(
                    f"{partner.path} is sampled at {rate} Hz, sample_rate is "
                    f"{self.sample_rate}"
                )
            if second.shape[1] != first.shape[1]:
                raise ValueError(
                    f"{uid} has {first.shape[1]} channels, partner {partner_uid} "
                    f"{second.shape[1]}"
                )
            power1, power2 = _power(first), _power(second)
            if power1 < SILENT_POWER or power2 < SILENT_POWER:
                continue
            ratio_db = self.min_ratio_db + u_ratio * (
                self.max_ratio_db - self.min_ratio_db
            )
            scale = np.sqrt(power1 / (power2 * 10.0 ** (ratio_db / 10.0)))
            second = (second * scale).astype(np.float32)
            break
        else:
            logging.warning(
                f"{uid}: no non-silent pair from another file in {MAX_DRAWS} draws; "
                "using the last draw without rescaling"
            )
            if second is None:  # every draw hit the example's own file
                second = np.zeros_like(first)
        first = np.ascontiguousarray(first, dtype=np.float32)
        out = dict(data)
        out[self.speech_ref_name_prefix + "1"] = first
        out[self.speech_ref_name_prefix + "2"] = second
        out[self.speech_name] = first + second
        return out
