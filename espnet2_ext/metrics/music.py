"""Music source separation metrics: uSDR and cSDR, as reported on MUSDB18-HQ.

* **uSDR** (utterance/song-level SDR, the metric of the SDX/MDX challenges): the SNR of
  the whole song, computed per channel and averaged over channels, per source; the mean
  over songs is the reported number.
* **cSDR** (chunk-level SDR, SiSEC 2018): BSSEval v4 through museval on 1 s windows with
  a 1 s hop (``museval.eval_mus_track`` calls ``museval.evaluate(references, estimates,
  win=rate, hop=rate, mode="v4")``, i.e. ``museval.metrics.bss_eval`` with
  ``compute_permutation=False``, ``framewise_filters=False``,
  ``bsseval_sources_version=False``); the median over windows per song, then the median
  over songs.

Silent windows are treated exactly as museval does: ``bss_eval`` returns NaN for *every*
source in a window where any reference (or any estimate) is all zeros, museval's
``TrackStore`` turns infinite values into NaN and rounds the others to 1e-5, and its
``EvalStore`` takes pandas medians, which skip NaN. A source that is silent for the
whole song makes museval refuse the song (``ValueError``); :func:`csdr_framewise` gives
NaN for every window instead, which is what museval's window rule would give.

Arrays follow museval: ``[nsrc, nsamples, nchan]`` numpy arrays, float64.
"""

from __future__ import annotations

import math
import warnings
from decimal import Decimal
from typing import Dict, Sequence

import numpy as np

from espnet2_ext.constants import MUSIC_SAMPLE_RATE

#: Added to both energies of uSDR, as in the SDX/MDX challenges (keeps silence finite).
USDR_EPS = 1e-7

_MUSEVAL_PRECISION = Decimal(".00001")


def _as_sources(name: str, array) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 3:
        raise ValueError(
            f"{name} must be [nsrc, nsamples, nchan], got shape {array.shape}; "
            "a mono source needs a trailing axis of size 1"
        )
    return array


def _check_pair(references, estimates):
    references = _as_sources("references", references)
    estimates = _as_sources("estimates", estimates)
    if references.shape != estimates.shape:
        raise ValueError(
            f"references {references.shape} and estimates {estimates.shape} must have "
            "the same shape [nsrc, nsamples, nchan]; trim or pad the estimates first"
        )
    if references.shape[1] == 0:
        raise ValueError("the signals are empty (0 samples)")
    return references, estimates


def usdr(references, estimates, *, eps: float = USDR_EPS) -> np.ndarray:
    """Whole-song SNR per source: per channel, then averaged over channels.

    ``10 log10((|s_c|^2 + eps) / (|s_c - y_c|^2 + eps))`` averaged over channels ``c``.

    Args:
        references: [nsrc, nsamples, nchan]
        estimates: [nsrc, nsamples, nchan]
        eps: added to both energies (``USDR_EPS`` = 1e-7, as in the MDX challenge).

    Returns:
        [nsrc] uSDR in dB
    """
    references, estimates = _check_pair(references, estimates)
    signal = np.sum(references**2, axis=1)  # [nsrc, nchan]
    error = np.sum((references - estimates) ** 2, axis=1)  # [nsrc, nchan]
    per_channel = 10.0 * np.log10((signal + eps) / (error + eps))
    return per_channel.mean(axis=1)


def _any_source_silent(sources: np.ndarray) -> bool:
    """museval's test: a source whose channel sum is zero at every sample is silent."""
    return bool(np.any(np.all(np.sum(sources, axis=2) == 0, axis=1)))


def _museval_window_count(nsamples: int, win: int, hop: int) -> int:
    """Number of windows of museval's ``Framing`` (a last partial window is dropped)."""
    if win < nsamples:
        return int(math.floor((nsamples - win + hop) / hop))
    return 1


def _museval_quantize(values: np.ndarray) -> np.ndarray:
    """What museval's ``TrackStore`` stores: inf -> NaN, others rounded to 1e-5."""
    out = np.full(values.shape, np.nan)
    for index, value in np.ndenumerate(values):
        if np.isfinite(value):
            out[index] = float(Decimal(float(value)).quantize(_MUSEVAL_PRECISION))
    return out


def csdr_framewise(
    references, estimates, *, win: int = MUSIC_SAMPLE_RATE, hop: int = MUSIC_SAMPLE_RATE
) -> np.ndarray:
    """BSSEval v4 SDR per source and window, as museval stores them.

    Args:
        references: [nsrc, nsamples, nchan]; museval's MUSDB evaluation uses all the
            stems of a song together (the interference term projects on all of them).
        estimates: [nsrc, nsamples, nchan]
        win: window in samples (museval: 1 s = the sampling rate).
        hop: hop in samples (museval: 1 s).

    Returns:
        [nsrc, nwin] SDR in dB; NaN where museval gives NaN or inf (silent windows).
    """
    references, estimates = _check_pair(references, estimates)
    if win < 1 or hop < 1:
        raise ValueError(f"win ({win}) and hop ({hop}) must be positive sample counts")
    nsrc, nsamples, _ = references.shape
    if _any_source_silent(references) or _any_source_silent(estimates):
        # museval raises for a source silent over the whole song; every window of it is
        # silent, and museval's window rule makes such windows NaN for all sources
        warnings.warn(
            "a reference or an estimate is silent for the whole signal: cSDR is NaN "
            "for every source (museval would refuse this song)",
            RuntimeWarning,
        )
        return np.full((nsrc, _museval_window_count(nsamples, win, hop)), np.nan)
    try:
        import museval
    except Exception as error:  # stempeg raises when ffmpeg is missing
        raise RuntimeError(
            f"cSDR needs museval, which failed to import ({error}); install museval "
            "and put ffmpeg/ffprobe on PATH (Debian: apt-get install ffmpeg)"
        ) from error
    sdr, _isr, _sir, _sar = museval.evaluate(
        references, estimates, win=int(win), hop=int(hop), mode="v4", padding=False
    )
    return _museval_quantize(np.asarray(sdr, dtype=np.float64))


def _nan_reduce(values: np.ndarray, axis: int, reduce) -> np.ndarray:
    """``reduce`` over ``axis`` skipping NaN; an all-NaN slice gives NaN, no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return reduce(values, axis=axis)


def csdr(
    references, estimates, *, win: int = MUSIC_SAMPLE_RATE, hop: int = MUSIC_SAMPLE_RATE
) -> np.ndarray:
    """cSDR of one song per source: median over museval's 1 s windows, NaN skipped.

    Returns:
        [nsrc] in dB; NaN for a source whose every window is NaN.
    """
    framewise = csdr_framewise(references, estimates, win=win, hop=hop)
    return _nan_reduce(framewise, 1, np.nanmedian)


def mixture_estimates(mixture, nsrc: int) -> np.ndarray:
    """The "mixture as estimate" baseline: every source estimated by the mixture.

    Args:
        mixture: [nsamples, nchan]
        nsrc: number of sources

    Returns:
        [nsrc, nsamples, nchan] (a read-only broadcast view, no copy)
    """
    mixture = np.asarray(mixture, dtype=np.float64)
    if mixture.ndim != 2:
        raise ValueError(
            f"mixture must be [nsamples, nchan], got shape {mixture.shape}"
        )
    if nsrc < 1:
        raise ValueError(f"nsrc must be >= 1, got {nsrc}")
    return np.broadcast_to(mixture, (nsrc,) + mixture.shape)


def aggregate_usdr(per_song) -> np.ndarray:
    """uSDR over songs: the mean per source. ``per_song`` [nsongs, nsrc] -> [nsrc]."""
    per_song = np.asarray(per_song, dtype=np.float64)
    if per_song.ndim != 2 or per_song.shape[0] == 0:
        raise ValueError(f"per_song must be [nsongs >= 1, nsrc], got {per_song.shape}")
    return _nan_reduce(per_song, 0, np.nanmean)


def aggregate_csdr(per_song) -> np.ndarray:
    """cSDR over songs: the median per source, NaN songs skipped (as museval/pandas).

    ``per_song`` [nsongs, nsrc] -> [nsrc].
    """
    per_song = np.asarray(per_song, dtype=np.float64)
    if per_song.ndim != 2 or per_song.shape[0] == 0:
        raise ValueError(f"per_song must be [nsongs >= 1, nsrc], got {per_song.shape}")
    return _nan_reduce(per_song, 0, np.nanmedian)


def summarize(
    usdr_per_song, csdr_per_song, stems: Sequence[str]
) -> Dict[str, Dict[str, float]]:
    """Per-stem and average scores of a set of songs, as papers report them.

    uSDR: mean over songs; cSDR: median over songs; ``"average"``: the mean of the
    per-stem values (the "Average" column of seeds/002's tables), NaN if one is NaN.

    Args:
        usdr_per_song: [nsongs, nstems]
        csdr_per_song: [nsongs, nstems]
        stems: names of the columns

    Returns:
        ``{"uSDR": {stem: dB, ..., "average": dB}, "cSDR": {...}}``
    """
    stems = list(stems)
    result = {}
    for metric, values in (
        ("uSDR", aggregate_usdr(usdr_per_song)),
        ("cSDR", aggregate_csdr(csdr_per_song)),
    ):
        if values.shape[0] != len(stems):
            raise ValueError(
                f"{metric} has {values.shape[0]} columns for {len(stems)} stems {stems}"
            )
        row = {stem: float(value) for stem, value in zip(stems, values)}
        # a stem without a score makes the average undefined, as it should
        row["average"] = float(np.mean(values))
        result[metric] = row
    return result
