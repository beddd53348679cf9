"""Music source separation metrics: uSDR and cSDR, as reported on MUSDB18-HQ.

* **uSDR** (utterance/song-level SDR, the metric of the SDX/MDX challenges): the SNR of
  the whole song, computed per channel and averaged over channels, per source; the mean
  over songs is the reported number.
* **cSDR** (chunk-level SDR, SiSEC 2018): BSSEval v4 on 1 s windows with a 1 s hop, as
  ``museval.eval_mus_track`` computes it (``museval.evaluate(references, estimates,
  win=rate, hop=rate, mode="v4")``); the median over windows per song, then the median
  over songs. Two scorers give these window values: ``"fast"``
  (:func:`espnet2_ext.metrics.bsseval.evaluate`, batched torch, the default) and
  ``"museval"`` (museval itself, to cross-check); both are stored as museval's
  ``TrackStore`` stores them (infinite values as NaN, the others rounded to 1e-5).

**Undefined, never a number.** A score with a silent reference has no meaning, so it is
NaN (and the reports count and list it), never the ``10 log10(eps / ...)`` of −90 dB or
less that the epsilon formula gives:

* uSDR: a channel whose reference is all zeros is left out of the channel average; a
  source silent in every channel has no uSDR.
* museval's cSDR (unchanged): ``bss_eval`` returns NaN for *every* source in a window
  where any reference or any estimate is silent (its channel sum is zero at every
  sample), and museval's ``EvalStore`` medians skip NaN. A source that is silent for the
  whole song makes museval refuse the song (``ValueError``); here every window of such
  a song is NaN instead, which is what museval's window rule would give. So a song
  without vocals has no museval cSDR for *any* stem.
* The extra, **cSDR on active windows** (:func:`window_sdr`): BSSEval v4's window SDR
  is ``10 log10(|s_j|^2 / |e_j - s_j|^2)``, which depends on source ``j``'s own
  reference and estimate only (the distortion filters enter ISR, SIR and SAR, not SDR).
  It is therefore defined in every window where reference ``j`` has energy, whatever
  the other stems do; in the windows museval scores it equals museval's SDR.

Arrays follow museval: ``[nsrc, nsamples, nchan]`` numpy arrays, float64.
"""

from __future__ import annotations

import math
import warnings
from decimal import Decimal
from typing import Dict, Optional, Sequence

import numpy as np

from espnet2_ext.constants import MUSIC_SAMPLE_RATE
from espnet2_ext.metrics.bsseval import window_count

#: Added to both energies of uSDR, as in the SDX/MDX challenges.
USDR_EPS = 1e-7
#: Samples per block of the uSDR energy sums.
_USDR_BLOCK = 2**16

#: The window scorers: our batched implementation (default) and museval itself.
SCORERS = ("fast", "museval")

#: The BSSEval v4 metrics per window, in museval's order of ``evaluate``'s results.
BSS_METRICS = ("SDR", "ISR", "SIR", "SAR")

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

    ``10 log10((|s_c|^2 + eps) / (|s_c - y_c|^2 + eps))`` averaged over the channels
    ``c`` whose reference ``s_c`` is not all zeros; a source silent in every channel is
    undefined (NaN), not the −90 dB or less that ``eps`` alone would give.

    Args:
        references: [nsrc, nsamples, nchan]
        estimates: [nsrc, nsamples, nchan]
        eps: added to both energies (``USDR_EPS`` = 1e-7, as in the MDX challenge).

    Returns:
        [nsrc] uSDR in dB, NaN for a silent reference
    """
    references, estimates = _check_pair(references, estimates)
    nsrc, nsamples, nchan = references.shape
    signal = np.zeros((nsrc, nchan))
    error = np.zeros((nsrc, nchan))
    # per source and block: whole-song temporaries of a 4-minute song cost more than
    # the sums themselves
    for j in range(nsrc):
        for start in range(0, nsamples, _USDR_BLOCK):
            s = references[j, start : start + _USDR_BLOCK]  # [block, nchan]
            d = estimates[j, start : start + _USDR_BLOCK] - s
            signal[j] += np.einsum("tc,tc->c", s, s)
            error[j] += np.einsum("tc,tc->c", d, d)
    per_channel = 10.0 * np.log10((signal + eps) / (error + eps))
    per_channel[signal == 0] = np.nan  # undefined against silence
    return _nan_reduce(per_channel, 1, np.nanmean)


def silent_sources(references) -> np.ndarray:
    """[nsrc] True where a source is all zeros (every sample of every channel)."""
    references = _as_sources("references", references)
    return np.array([not source.any() for source in references], dtype=bool)


def _any_source_silent(sources: np.ndarray) -> bool:
    """museval's test: a source whose channel sum is zero at every sample is silent."""
    return any(not source.sum(axis=1).any() for source in sources)


def museval_quantize(values: np.ndarray) -> np.ndarray:
    """What museval's ``TrackStore`` stores: inf -> NaN, others rounded to 1e-5."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.shape, np.nan)
    for index, value in np.ndenumerate(values):
        if np.isfinite(value):
            out[index] = float(Decimal(float(value)).quantize(_MUSEVAL_PRECISION))
    return out


def bss_eval_framewise(
    references,
    estimates,
    *,
    win: int = MUSIC_SAMPLE_RATE,
    hop: int = MUSIC_SAMPLE_RATE,
    scorer: str = "fast",
    device: Optional[str] = None,
) -> Dict[str, np.ndarray]:
    """museval's BSSEval v4 window values of one song, as its ``TrackStore`` keeps them.

    Args:
        references: [nsrc, nsamples, nchan], all the stems of the song (the
            interference term projects on all of them, as in museval's evaluation).
        estimates: [nsrc, nsamples, nchan]
        win: window in samples (museval's MUSDB evaluation: 1 s = the sampling rate).
        hop: hop in samples (1 s).
        scorer: ``"fast"`` (:func:`espnet2_ext.metrics.bsseval.evaluate`) or
            ``"museval"`` (``museval.evaluate``).
        device: where the fast scorer computes (e.g. ``"cuda"``); default the CPU.

    Returns:
        ``{"SDR", "ISR", "SIR", "SAR": [nsrc, nwin]}`` in dB, rounded to 1e-5; NaN where
        museval stores NaN (windows with a silent reference or estimate, infinite
        values), every window of a song in which a source is silent throughout.
    """
    references, estimates = _check_pair(references, estimates)
    if scorer not in SCORERS:
        raise ValueError(f"scorer must be one of {SCORERS}, got {scorer!r}")
    if win < 1 or hop < 1:
        raise ValueError(f"win ({win}) and hop ({hop}) must be positive sample counts")
    nsrc, nsamples, _ = references.shape
    if _any_source_silent(references) or _any_source_silent(estimates):
        # museval refuses the song; its window rule gives NaN for every window
        nan = np.full((nsrc, window_count(nsamples, win, hop)), np.nan)
        return {metric: nan.copy() for metric in BSS_METRICS}
    if scorer == "fast":
        from espnet2_ext.metrics.bsseval import evaluate

        with warnings.catch_warnings():
            # read-only inputs (the baseline's broadcast mixture) are only read
            warnings.filterwarnings("ignore", message="The given NumPy array is not")
            scores = evaluate(
                references, estimates, win=int(win), hop=int(hop), padding=False,
                device=device,
            )  # fmt: skip
    else:
        try:
            import museval
        except Exception as error:  # stempeg raises when ffmpeg is missing
            raise RuntimeError(
                f"--scorer museval needs museval, which failed to import ({error}); "
                "install museval and put ffmpeg/ffprobe on PATH (Debian: apt-get "
                "install ffmpeg), or use the fast scorer"
            ) from error
        scores = museval.evaluate(
            references, estimates, win=int(win), hop=int(hop), mode="v4", padding=False
        )
    return {
        metric: museval_quantize(np.asarray(values, dtype=np.float64))
        for metric, values in zip(BSS_METRICS, scores)
    }


def window_sdr(
    references, estimates, *, win: int = MUSIC_SAMPLE_RATE, hop: int = MUSIC_SAMPLE_RATE
) -> np.ndarray:
    """BSSEval v4's window SDR of every source on its own: defined where it is active.

    ``10 log10(|s|^2 / |e - s|^2)`` per source and window of museval's framing (the
    same windows as :func:`bss_eval_framewise`), energies summed over samples and
    channels. This is museval's SDR formula, which involves only the source's own
    reference ``s`` and estimate ``e``; unlike museval, a window is not dropped because
    *another* stem (or estimate) is silent there.

    Returns:
        [nsrc, nwin] in dB, rounded as museval stores values; NaN where the source's
        reference is silent in the window (no energy) or the error is zero (+inf,
        which museval stores as NaN).
    """
    references, estimates = _check_pair(references, estimates)
    if win < 1 or hop < 1:
        raise ValueError(f"win ({win}) and hop ({hop}) must be positive sample counts")
    nsrc, nsamples, _ = references.shape
    nwin = window_count(nsamples, win, hop)
    length = min(win, nsamples)
    target = np.empty((nsrc, nwin))
    error = np.empty((nsrc, nwin))
    for t in range(nwin):
        s = references[:, t * hop : t * hop + length]  # [nsrc, win, nchan]
        e = estimates[:, t * hop : t * hop + length]
        target[:, t] = np.sum(s**2, axis=(1, 2))
        error[:, t] = np.sum((e - s) ** 2, axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        sdr = 10.0 * np.log10(target / error)
    sdr[target == 0] = np.nan
    return museval_quantize(sdr)


def csdr_framewise(
    references,
    estimates,
    *,
    win: int = MUSIC_SAMPLE_RATE,
    hop: int = MUSIC_SAMPLE_RATE,
    scorer: str = "fast",
) -> np.ndarray:
    """BSSEval v4 SDR per source and window, as museval stores them.

    Args:
        references: [nsrc, nsamples, nchan]; museval's MUSDB evaluation uses all the
            stems of a song together (the interference term projects on all of them).
        estimates: [nsrc, nsamples, nchan]
        win: window in samples (museval: 1 s = the sampling rate).
        hop: hop in samples (museval: 1 s).
        scorer: ``"fast"`` or ``"museval"`` (see :func:`bss_eval_framewise`).

    Returns:
        [nsrc, nwin] SDR in dB; NaN where museval gives NaN or inf (silent windows).
    """
    references, estimates = _check_pair(references, estimates)
    if _any_source_silent(references) or _any_source_silent(estimates):
        warnings.warn(
            "a reference or an estimate is silent for the whole signal: cSDR is NaN "
            "for every source (museval would refuse this song)",
            RuntimeWarning,
        )
    return bss_eval_framewise(references, estimates, win=win, hop=hop, scorer=scorer)[
        "SDR"
    ]


def _nan_reduce(values: np.ndarray, axis: int, reduce) -> np.ndarray:
    """``reduce`` over ``axis`` skipping NaN; an all-NaN slice gives NaN, no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return reduce(values, axis=axis)


def median_over_windows(framewise) -> np.ndarray:
    """Per-song value of window scores: the median, NaN skipped (museval's
    ``frames_agg="median"``). [nsrc, nwin] -> [nsrc], NaN where no window is scored."""
    framewise = np.asarray(framewise, dtype=np.float64)
    if framewise.shape[-1] == 0:
        return np.full(framewise.shape[:-1], np.nan)
    return _nan_reduce(framewise, -1, np.nanmedian)


def csdr(
    references,
    estimates,
    *,
    win: int = MUSIC_SAMPLE_RATE,
    hop: int = MUSIC_SAMPLE_RATE,
    scorer: str = "fast",
) -> np.ndarray:
    """cSDR of one song per source: median over museval's 1 s windows, NaN skipped.

    Returns:
        [nsrc] in dB; NaN for a source whose every window is NaN.
    """
    framewise = csdr_framewise(references, estimates, win=win, hop=hop, scorer=scorer)
    return median_over_windows(framewise)


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


def count_defined(per_song) -> np.ndarray:
    """How many songs a per-stem number rests on: ``[nsongs, nsrc]`` -> [nsrc] counts
    of finite (defined) values."""
    per_song = np.asarray(per_song, dtype=np.float64)
    if per_song.ndim != 2:
        raise ValueError(f"per_song must be [nsongs, nsrc], got {per_song.shape}")
    return np.isfinite(per_song).sum(axis=0)
