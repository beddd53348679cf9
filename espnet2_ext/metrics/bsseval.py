"""BSSEval v4 as museval computes it, for arrays: all windows and stems in batched ops.

:func:`evaluate` gives the numbers of ``museval.evaluate(references, estimates, win,
hop, mode="v4")`` (``museval.metrics.bss_eval`` with ``framewise_filters=False``,
``bsseval_sources_version=False``, ``compute_permutation=False``; Liutkus, Stöter and
Ito, "The 2018 Signal Separation Evaluation Campaign", LVA/ICA 2018). museval's
definition, which this module follows to the sample:

1. **Distortion filters, once per track.** For every estimate ``j`` and channel ``c``,
   the least-squares fit of ``e_jc`` by the references delayed by ``0 .. L-1`` samples
   (``L = filters_len = 512``): *joint* filters over every channel of every reference,
   and *own* filters over the channels of reference ``j`` only. Both solve the normal
   equations ``(G + eps I) x = D``: ``G`` the Gram matrix of the delayed references
   (whole track, zero outside it), ``D`` their inner products with the estimate, ``eps``
   the float64 machine epsilon (museval's only regularisation).
2. **Windows** ``[t hop, t hop + win)`` for ``t < nwin``, ``nwin = floor((T - win +
   hop) / hop)`` if ``win < T`` else 1: a last partial window is dropped, a song no
   longer than a window is one window of the whole song.
3. **Per window**, the window's references (zero outside it) go through the filters,
   giving ``win + L - 1`` samples: ``P_j`` (own filters) and ``P`` (joint filters); with
   ``s`` reference ``j`` and ``e`` estimate ``j`` of the window, zero-padded alike, and
   energies summed over samples and channels::

       SDR = 10 log10(|s|^2 / |e - s|^2)        ISR = 10 log10(|s|^2 / |P_j - s|^2)
       SIR = 10 log10(|P_j|^2 / |P - P_j|^2)    SAR = 10 log10(|P|^2 / |e - P|^2)

   a zero denominator gives ``+inf``.
4. **Silent windows**: a window where *any* reference or *any* estimate is silent (its
   channel sum is zero at every sample) is NaN for *every* source and metric.

What museval does that one might not expect:

* the NaN rule is per *window*, for *all* sources: one silent stem (or estimate) in a
  window blanks every stem there, and a stem silent over the whole song is an error;
* "padding" (``evaluate(padding=True)``) only cuts or zero-pads the estimates to the
  references' length; the last partial window is dropped, not padded;
* the only regularisation is ``eps = 2.2e-16`` added to a diagonal of energies (~1e2 to
  1e6): nothing, numerically. When the delayed references are (nearly) linearly
  dependent, ISR, SIR and SAR are set by rounding (see the agreement notes below), and
  an exactly singular ``G`` (a stem whose channels are identical) reaches LAPACK as is:
  museval's ``lstsq`` fallback is dead code with numpy >= 2 (``np.linalg.linalg`` is
  gone), so it relies on OpenBLAS not finding an exactly zero pivot;
* ``bss_eval`` returns ``+inf`` for a zero error energy, which museval's ``TrackStore``
  later stores as NaN.

How it is computed here (same mathematics, another order of operations):

* Whole-track correlations (lags ``-(L-1) .. L-1``) as sums over blocks: each block's
  own correlation from its spectrum (blocks zero-padded to ``B + L - 1`` points or
  more, so these lags do not wrap), summed over blocks as one matrix product per bin
  before one inverse FFT, plus the pairs that straddle block boundaries (short
  segments). museval takes one FFT of the whole track per channel and one whole-track
  inverse FFT per pair of channels, then ``scipy.linalg.toeplitz``. When the windows
  tile the track (``hop == win``) the blocks are the windows, and their spectra serve
  the scores too.
* ``G`` is gathered from those correlations as a block-Toeplitz matrix. One LU solve
  (float64, LAPACK ``getrf`` as ``numpy.linalg.solve``) gives the joint filters of all
  estimates and channels (museval solves once per estimate); one small solve per source
  its own filters. Exact copies of a reference channel (and all-zero channels) are left
  out of the fit: same span, same projection, a regular system.
* Window energies by Parseval's theorem on the windows' spectra: filtering is a product
  with the filters' spectra, so no projected signal is ever synthesised.

Agreement with museval (``tests/metrics/test_bsseval.py``): SDR always (it needs no
projection); ISR, SIR and SAR within 0.01 dB when the references' Gram matrix is
well-conditioned, as it is for stems with a noise floor (16-bit audio). Ratios above
~100 dB (an estimate inside the span of the delayed references, e.g. the mixture's SAR)
are rounding noise in both implementations.

Legend (einops axes): ``s``/``j`` source, ``c``/``d`` channel, ``p``/``q`` reference
channel ``(s c)`` (``q`` also over the estimates' channels), ``a``/``b`` delay (filter
tap), ``w`` window or block, ``n`` sample, ``f`` frequency bin, ``k`` references or
estimates (or joint or own projection), ``r`` real or imaginary part.
"""

from __future__ import annotations

import math
import warnings
from typing import Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from einops import rearrange
from scipy.fft import next_fast_len

from espnet2_ext.constants import MUSIC_SAMPLE_RATE

#: museval's distortion filter length (``bss_eval(filters_len=512)``).
FILTERS_LEN = 512

#: Blocks of this FFT size give the whole-track correlations (a power of two).
_CORRELATION_FFT = 2**15

#: Windows (or correlation blocks) transformed at once: bounds the memory of a batch.
_BATCH_FRAMES = {"cpu": 8, "cuda": 64}

Signals = Union[np.ndarray, torch.Tensor]
Scores = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def evaluate(
    references: Signals,
    estimates: Signals,
    win: int = MUSIC_SAMPLE_RATE,
    hop: int = MUSIC_SAMPLE_RATE,
    mode: str = "v4",
    padding: bool = True,
    *,
    filters_len: int = FILTERS_LEN,
    device: Optional[Union[str, torch.device]] = None,
    allow_silent: bool = False,
    batch_frames: Optional[int] = None,
    cache_mib: float = 2048,
) -> Scores:
    """``museval.evaluate`` in mode v4, computed with batched torch operations.

    Args:
        references: [nsrc, nsamples, nchan] true sources (numpy or torch; float64 is
            used throughout).
        estimates: [nsrc, nsamples', nchan] estimated sources, in the references' order.
        win: window in samples (museval's MUSDB evaluation: 1 s = the sampling rate).
        hop: hop in samples (1 s).
        mode: ``"v4"`` only (museval's ``"v3"``, filters per window, is not here).
        padding: as museval, cut or zero-pad the estimates to the references' length;
            ``False`` requires equal lengths.
        filters_len: distortion filter taps (museval: 512).
        device: where to compute (``"cuda"`` for a GPU); default: the references'
            device if they are a tensor, else the CPU.
        allow_silent: a source silent over the whole song (a reference or an estimate
            whose channel sum is zero everywhere) makes museval raise ``ValueError``,
            and so does this function unless ``allow_silent``: then every window is
            NaN, which is what museval's window rule would give.
        batch_frames: windows (or correlation blocks) transformed at once; default 8
            on a CPU, 64 on a GPU. Bounds the working memory, about 30 MiB per window
            of 4 stereo stems at 44.1 kHz.
        cache_mib: with ``hop == win``, the windows' spectra (about 5.5 MiB per window
            of 4 stereo stems at 44.1 kHz) are kept between the two passes over the
            track when they fit in this many MiB, else computed again.

    Returns:
        ``(SDR, ISR, SIR, SAR)``, each [nsrc, nwin] float64 numpy arrays in dB; NaN in
        windows where a reference or an estimate is silent, ``+inf`` where museval gives
        ``+inf`` (a zero error energy).
    """
    if mode != "v4":
        raise ValueError(
            f"mode={mode!r} is not supported: only 'v4' (filters estimated once on the "
            "whole track); use museval.evaluate for 'v3'"
        )
    references, estimates = _prepare(references, estimates, padding, device)
    scores = bss_eval_v4(
        references,
        estimates,
        win=win,
        hop=hop,
        filters_len=filters_len,
        allow_silent=allow_silent,
        batch_frames=batch_frames,
        cache_mib=cache_mib,
    )
    return tuple(score.cpu().numpy() for score in scores)


def bss_eval_v4(
    references: torch.Tensor,
    estimates: torch.Tensor,
    *,
    win: int = MUSIC_SAMPLE_RATE,
    hop: int = MUSIC_SAMPLE_RATE,
    filters_len: int = FILTERS_LEN,
    allow_silent: bool = False,
    batch_frames: Optional[int] = None,
    cache_mib: float = 2048,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """BSSEval v4 per window on tensors of equal shape (see :func:`evaluate`).

    Args:
        references: [nsrc, nsamples, nchan] float64, finite
        estimates: [nsrc, nsamples, nchan] float64, finite, on the same device

    Returns:
        ``(SDR, ISR, SIR, SAR)``, each [nsrc, nwin] float64 on the inputs' device.
    """
    _check_pair(references, estimates)
    win, hop, filters_len = _check_counts(win=win, hop=hop, filters_len=filters_len)
    nsrc, nsamples, _ = references.shape
    nwin = window_count(nsamples, win, hop)
    if batch_frames is None:
        batch_frames = _BATCH_FRAMES.get(references.device.type, _BATCH_FRAMES["cuda"])
    elif batch_frames < 1:
        raise ValueError(f"batch_frames must be >= 1, got {batch_frames}")
    if cache_mib < 0:
        raise ValueError(f"cache_mib must be >= 0, got {cache_mib}")

    plan = _Plan(nsamples, win, hop, filters_len)
    corr, cache, silent = _correlations(
        references, estimates, plan, batch_frames, int(cache_mib * 2**20)
    )
    if bool(silent.any()):
        if not allow_silent:
            names = ", ".join(
                f"{('references', 'estimates')[k]}[{j}]"
                for k, j in torch.nonzero(silent).tolist()
            )
            raise ValueError(
                f"{names} silent over the whole signal (channel sum zero at every "
                "sample): museval refuses such a song, as BSSEval is undefined for it; "
                "pass allow_silent=True to get NaN for every window instead"
            )
        nan = references.new_full((nsrc, nwin), math.nan)
        return nan, nan.clone(), nan.clone(), nan.clone()
    own, joint = _distortion_filters(corr, references, filters_len)
    return _window_scores(references, estimates, own, joint, plan, batch_frames, cache)


def window_count(nsamples: int, win: int, hop: int) -> int:
    """museval's number of windows (``Framing.nwin``): a last partial one is dropped."""
    if win < nsamples:
        return (nsamples - win + hop) // hop
    return 1


# ----------------------------------------------------------------------------- inputs


def _prepare(
    references: Signals,
    estimates: Signals,
    padding: bool,
    device: Optional[Union[str, torch.device]],
) -> Tuple[torch.Tensor, torch.Tensor]:
    """float64 tensors on ``device``, shapes checked, estimates cut/padded (museval)."""
    if device is None:
        device = references.device if isinstance(references, torch.Tensor) else "cpu"
    references = _as_tensor("references", references, device)
    estimates = _as_tensor("estimates", estimates, device)
    if references.shape[0] != estimates.shape[0]:
        raise ValueError(
            f"references have {references.shape[0]} stems and estimates "
            f"{estimates.shape[0]}: give one estimate per reference, in the same order"
        )
    if references.shape[2] != estimates.shape[2]:
        raise ValueError(
            f"references have {references.shape[2]} channels and estimates "
            f"{estimates.shape[2]}: the channel counts must match"
        )
    nsamples = references.shape[1]
    if estimates.shape[1] != nsamples:
        if not padding:
            raise ValueError(
                f"references have {nsamples} samples and estimates "
                f"{estimates.shape[1]}: equal lengths are required with padding=False"
            )
        # museval.evaluate's pad_or_truncate: the references' length rules
        if estimates.shape[1] > nsamples:
            estimates = estimates[:, :nsamples]
        else:
            estimates = torch.nn.functional.pad(
                estimates, (0, 0, 0, nsamples - estimates.shape[1])
            )
    return references, estimates


def _as_tensor(
    name: str, signals: Signals, device: Union[str, torch.device]
) -> torch.Tensor:
    if isinstance(signals, torch.Tensor):
        tensor = signals.detach()
    else:
        array = np.asarray(signals)
        if any(stride < 0 for stride in array.strides):
            array = array.copy()
        with warnings.catch_warnings():
            # read-only arrays (e.g. the broadcast mixture of a baseline) are only read
            warnings.simplefilter("ignore", UserWarning)
            tensor = torch.from_numpy(array)
    if tensor.ndim != 3:
        raise ValueError(
            f"{name} must be [nsrc, nsamples, nchan], got shape {tuple(tensor.shape)}; "
            "a mono source needs a trailing axis of size 1"
        )
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must hold real samples, got dtype {tensor.dtype}")
    if 0 in tensor.shape:
        raise ValueError(f"{name} are empty: shape {tuple(tensor.shape)}")
    return tensor.to(device=device, dtype=torch.float64)


def _check_pair(references: torch.Tensor, estimates: torch.Tensor) -> None:
    if references.ndim != 3 or references.shape != estimates.shape:
        raise ValueError(
            f"references {tuple(references.shape)} and estimates "
            f"{tuple(estimates.shape)} must both be [nsrc, nsamples, nchan]"
        )
    if references.dtype != torch.float64 or estimates.dtype != torch.float64:
        raise ValueError(
            f"BSSEval needs float64 (got {references.dtype} and {estimates.dtype}): "
            "its normal equations are ill-conditioned"
        )
    for name, sources in (("references", references), ("estimates", estimates)):
        if bool(torch.isfinite(sources.sum())):  # one reduction in the common case
            continue
        bad = (~torch.isfinite(sources)).flatten(1).sum(dim=1)
        stems = ", ".join(
            f"{name}[{j}] ({count} samples)"
            for j, count in enumerate(bad.tolist())
            if count
        )
        if stems:  # else only the float64 sum overflowed
            raise ValueError(f"NaN or Inf in {stems}: the scores would be meaningless")


def _check_counts(**counts: int) -> Tuple[int, ...]:
    """Positive whole numbers of samples (museval's ``np.inf`` window is not taken)."""
    for name, value in counts.items():
        whole = isinstance(value, (int, np.integer, float, np.floating)) and not (
            isinstance(value, bool)
        )
        if not whole or not math.isfinite(value) or value != int(value) or value < 1:
            raise ValueError(
                f"{name} must be a positive whole number of samples, got {value!r}"
            )
    return tuple(int(value) for value in counts.values())


# ------------------------------------------------------------------- spectra, blocks


class _Plan:
    """How a track is cut: correlation blocks, windows, FFT sizes.

    The whole-track correlations are sums over blocks of ``block`` samples (zero-padded
    to ``block_fft >= block + L - 1`` points, so that lags up to ``L - 1`` do not wrap)
    plus the pairs that straddle block boundaries. When the windows tile the track
    (``hop == win``, the MUSDB setting) the blocks *are* the windows, and one FFT per
    window and signal serves both the filters and the scores.
    """

    def __init__(self, nsamples: int, win: int, hop: int, filters_len: int) -> None:
        self.nsamples = nsamples
        self.filters_len = filters_len
        self.hop = hop
        self.length = min(win, nsamples)  # museval's window: the whole song if shorter
        self.nwin = window_count(nsamples, win, hop)
        self.aligned = (hop == win or self.nwin == 1) and (
            self.length >= filters_len - 1 or self.length == nsamples
        )
        if self.aligned:
            self.block = self.length
        else:
            default = max(_CORRELATION_FFT - (filters_len - 1), filters_len - 1)
            self.block = min(default, nsamples)
        self.block_fft = next_fast_len(self.block + filters_len - 1, real=True)
        self.window_fft = next_fast_len(self.length + filters_len - 1, real=True)


def _frames(
    signals: torch.Tensor, start: int, stop: int, hop: int, length: int
) -> torch.Tensor:
    """Frames ``[t hop, t hop + length)`` for ``start <= t < stop``, zero past the end.

    [nsrc, nsamples, nchan] -> [w, nsrc, nchan, length]: a view where the frames lie
    inside the track, else a zero-padded copy of these frames only.
    """
    nsamples = signals.shape[1]
    end = (stop - 1) * hop + length
    segment = signals[:, start * hop : end]
    if end > nsamples:
        segment = torch.nn.functional.pad(segment, (0, 0, 0, end - nsamples))
    return rearrange(segment.unfold(1, length, hop), "s w c n -> w s c n")


def _spectra(
    references: torch.Tensor, estimates: torch.Tensor, n_fft: int, work: "_Workspace"
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Spectra of zero-padded frames, and museval's silence flags of the frames.

    Args:
        references: [w, s, c, n] frames
        estimates: [w, s, c, n] frames

    Returns:
        spectra [w, k, s, c, f] complex with ``k`` = (references, estimates), a new
        tensor; silent [w, k, s]: museval's silence test, the channel sum is zero at
        every sample of the frame.
    """
    count, nsrc, nchan, length = references.shape
    padded = work.zeros("padded", (count, 2, nsrc, nchan, n_fft), references.dtype)
    padded[:, 0, ..., :length] = references  # the padding stays zero
    padded[:, 1, ..., :length] = estimates
    channel_sum = padded[..., :length].sum(dim=3)  # [w, k, s, n]
    silent = channel_sum.abs_().amax(dim=-1) == 0
    return torch.fft.rfft(padded), silent


def _bins_first(
    spectra: torch.Tensor, work: "_Workspace", keep: bool = False
) -> torch.Tensor:
    """[w, k, s, c, f] -> [f, (k s c), w], in a reused buffer unless ``keep``.

    Bins first and frames last: the layout of the per-bin matrix products that follow
    (torch's batched complex products are fast on contiguous operands).
    """
    count, nsig, nsrc, nchan, nbins = spectra.shape
    shape = (nbins, nsig, nsrc, nchan, count)
    if keep:
        out = spectra.new_empty(shape)
    else:
        out = work.empty("bins_first", shape, spectra.dtype)
    out.copy_(rearrange(spectra, "w k s c f -> f k s c w"))
    return out.flatten(1, 3)


class _Workspace:
    """Buffers kept across the batches of a loop, one per name and shape.

    Fresh large tensors cost page faults on every batch (the allocator hands them back
    to the system); reusing them keeps the memory-bound steps fast.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._buffers = {}

    def empty(self, name: str, shape: Tuple[int, ...], dtype: torch.dtype):
        key = (name, tuple(shape), dtype)
        if key not in self._buffers:
            self._buffers[key] = torch.empty(shape, dtype=dtype, device=self.device)
        return self._buffers[key]

    def zeros(self, name: str, shape: Tuple[int, ...], dtype: torch.dtype):
        """A buffer zeroed when made: callers rewrite the same region every time."""
        key = (name, tuple(shape), dtype)
        if key not in self._buffers:
            self._buffers[key] = torch.zeros(shape, dtype=dtype, device=self.device)
        return self._buffers[key]


# ------------------------------------------------------------ correlations, per track


def _correlations(
    references: torch.Tensor,
    estimates: torch.Tensor,
    plan: _Plan,
    batch_frames: int,
    cache_bytes: int,
) -> Tuple[torch.Tensor, Optional[list], torch.Tensor]:
    """Whole-track cross-correlations at lags ``-(L-1) .. L-1``, channels flattened.

    ``out[q, p, L-1 + k] = sum_n z_q[n + k] x_p[n]``, ``z`` the references then the
    estimates, ``x`` the references, all zero outside the track: the sum over blocks
    of each block's own correlation (one matrix product per bin over the blocks'
    spectra, then one inverse FFT) plus the pairs across block boundaries.

    Returns:
        [2 nsrc nchan, nsrc nchan, 2 L - 1]; when the blocks are the windows and their
        spectra fit in ``cache_bytes``, the windows' ``(spectra, silent)`` batches (see
        :func:`_spectra`), else None; silent [2, nsrc]: the references and estimates
        silent over the whole track (in every block).
    """
    nsrc, nsamples, nchan = references.shape
    nref = nsrc * nchan
    lags = plan.filters_len
    nbins = plan.block_fft // 2 + 1
    nblocks = -(-nsamples // plan.block)
    window_bytes = nbins * 2 * nref * 16
    keep = plan.aligned and plan.nwin * window_bytes <= cache_bytes
    cache = [] if keep else None
    acc = references.new_zeros((nbins, 2 * nref, nref), dtype=torch.complex128)
    silent_track = torch.ones((2, nsrc), dtype=torch.bool, device=references.device)
    work = _Workspace(references.device)
    for start, stop in _batches(nblocks, batch_frames):
        spectra, silent = _spectra(
            _frames(references, start, stop, plan.block, plan.block),
            _frames(estimates, start, stop, plan.block, plan.block),
            plan.block_fft,
            work,
        )
        silent_track &= silent.all(dim=0)
        windows = min(stop, plan.nwin) - start  # blocks that are windows (not a last)
        spectra = _bins_first(spectra, work, keep=keep and windows > 0)  # [f, q, w]
        if keep and windows > 0:
            cache.append((spectra[..., :windows].contiguous(), silent[:windows]))
        conj_refs = work.empty("conj_refs", (nbins, stop - start, nref), acc.dtype)
        conj_refs.copy_(spectra[:, :nref].transpose(1, 2).conj())
        acc.baddbmm_(spectra, conj_refs)  # sum over blocks of z_q conj(x_p), per bin
    within = torch.fft.irfft(rearrange(acc, "f q p -> q p f"), n=plan.block_fft)
    taps = torch.arange(-(lags - 1), lags, device=acc.device)
    corr = within[..., taps % plan.block_fft]
    if nblocks > 1 and lags > 1:
        corr += _boundary_correlations(
            references, estimates, plan.block, lags, batch_frames
        )
    return corr, cache, silent_track


def _boundary_correlations(
    references: torch.Tensor,
    estimates: torch.Tensor,
    block: int,
    lags: int,
    batch_frames: int,
) -> torch.Tensor:
    """The pairs ``z_q[n + k] x_p[n]`` that straddle a block boundary, ``|k| < L``.

    Around each boundary, the last ``L - 1`` samples before it (tail) and the first
    ``L - 1`` after it (head): ``k > 0`` pairs a head of ``z`` with a tail of ``x``,
    ``k < 0`` a tail of ``z`` with a head of ``x``. Both are correlations of short
    segments, summed over boundaries on their spectra. ``block >= L - 1``.

    Returns:
        [2 nsrc nchan, nsrc nchan, 2 L - 1] as :func:`_correlations`
    """
    nsrc, nsamples, nchan = references.shape
    nref = nsrc * nchan
    side = lags - 1
    nboundaries = (nsamples - 1) // block
    # tail at [0, L-1), head at [L-1, 2L-2): the head-tail correlation has its lags in
    # [1, 2L-3], the tail-head one in [-(2L-3), -1]; n_fft >= 3L - 3 keeps the lags
    # read below, |k| < L, clear of the other's wrap-around
    n_fft = next_fast_len(3 * side, real=True)
    nbins = n_fft // 2 + 1
    acc = references.new_zeros((nbins, 2 * nref, nref), dtype=torch.complex128)
    work = _Workspace(references.device)
    for start, stop in _batches(nboundaries, 4 * batch_frames):
        count = stop - start
        # segments [b, k, s, c, n] around the boundaries (start + 1 .. stop) * block
        parts = work.zeros("parts", (2, count, 2, nsrc, nchan, n_fft), acc.real.dtype)
        for k, signals in enumerate((references, estimates)):
            segments = _frames(signals[:, block - side :], start, stop, block, 2 * side)
            parts[0, :, k, ..., :side] = segments[..., :side]  # tails
            parts[1, :, k, ..., side : 2 * side] = segments[..., side:]  # heads
        tails, heads = torch.fft.rfft(parts).flatten(2, 4).unbind(0)  # [b, q, f]
        z_spec = work.empty("z_spec", (nbins, 2 * nref, 2, count), acc.dtype)
        x_spec = work.empty("x_spec", (nbins, 2, count, nref), acc.dtype)
        z_spec[:, :, 0] = rearrange(heads, "b q f -> f q b")
        z_spec[:, :, 1] = rearrange(tails, "b q f -> f q b")
        x_spec[:, 0] = rearrange(tails[:, :nref].conj(), "b p f -> f b p")
        x_spec[:, 1] = rearrange(heads[:, :nref].conj(), "b p f -> f b p")
        acc.baddbmm_(z_spec.flatten(2), x_spec.flatten(1, 2))
    across = torch.fft.irfft(rearrange(acc, "f q p -> q p f"), n=n_fft)
    taps = torch.arange(-side, lags, device=references.device)
    return across[..., taps % n_fft]


# ---------------------------------------------------------------- filters, per track


def _distortion_filters(
    corr: torch.Tensor, references: torch.Tensor, filters_len: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """museval's own and joint distortion filters from the whole-track correlations.

    A reference channel that is an exact copy of another (a mono source written as
    stereo, the common case) or all zero adds nothing to the span of the delayed
    references, and makes museval's ``G`` exactly singular; such channels are left out
    of the fit (their filters are zero), which gives the same projection from a smaller,
    regular system.

    Args:
        corr: [2 nsrc nchan, nsrc nchan, 2 L - 1] from :func:`_correlations`
        references: [nsrc, nsamples, nchan]

    Returns:
        own [j, c, a, d]: tap ``a`` from channel ``c`` of reference ``j`` to channel
        ``d`` of the projection of estimate ``j``; joint [p, a, j, d]: tap ``a`` from
        reference channel ``p = (s c)`` to channel ``d`` of the projection of estimate
        ``j``.
    """
    nsrc, _, nchan = references.shape
    nref = nsrc * nchan
    lags = filters_len
    # r[p, q, L-1 + k] = sum_n x_p[n + k] x_q[n]; (p, q, k) and (q, p, -k) are the same
    # sum computed twice: their mean makes G exactly symmetric, as museval's is
    r = corr[:nref]
    r = 0.5 * (r + r.transpose(0, 1).flip(-1))
    products = r[:, :, lags - 1].tolist()  # lag 0: [p][q]

    def system(channels: List[int], estimates: slice) -> torch.Tensor:
        """Filters [(p a), (j d)] from the given reference channels to estimates."""
        index = torch.tensor(channels, device=r.device)
        # G[(p a), (q b)] = <x_p delayed a, x_q delayed b> = r[p, q, L-1 + b - a]: the
        # Hankel view H[a', b] = r[a' + b] read with its rows reversed (a = L-1 - a')
        toeplitz = r[index][:, index].unfold(-1, lags, 1).flip(2)  # [p, q, a, b]
        gram = rearrange(toeplitz, "p q a b -> (p a) (q b)")
        gram.diagonal().add_(torch.finfo(torch.float64).eps)  # museval's G + eps I
        # D[(p a), (j d)] = <x_p delayed a, e_jd> = sum_n e_jd[n + a] x_p[n]
        rhs = rearrange(corr[nref:][estimates, index, lags - 1 :], "q p a -> (p a) q")
        return _solve(gram, rhs)

    joint = r.new_zeros((nref, lags, nsrc, nchan))
    channels = _spanning_channels(range(nref), products, references)
    joint[channels] = rearrange(
        system(channels, slice(None)), "(p a) (j d) -> p a j d", a=lags, j=nsrc
    )
    # own filters: reference j's channels to estimate j. One solve per source: torch's
    # batched CPU LU fails with more than one thread (pytorch/pytorch#142815: MKL's
    # "Parameter 6 was incorrect on entry to DLASWP")
    own = r.new_zeros((nsrc, nchan, lags, nchan))
    for j in range(nsrc):
        mine = range(j * nchan, (j + 1) * nchan)
        channels = _spanning_channels(mine, products, references)
        solution = system(channels, slice(j * nchan, (j + 1) * nchan))
        own[j, [p - j * nchan for p in channels]] = rearrange(
            solution, "(c a) d -> c a d", a=lags
        )
    return own, joint


def _spanning_channels(
    candidates: Iterable[int], products: List[List[float]], references: torch.Tensor
) -> List[int]:
    """The candidate reference channels ``p = (s c)`` that are neither all zero nor an
    exact copy of an earlier kept one. ``products[p][q]`` (lag-0 correlations) screen
    the pairs; the samples decide."""
    nchan = references.shape[2]

    def channel(p: int) -> torch.Tensor:
        return references[p // nchan, :, p % nchan]

    kept = []
    for p in candidates:
        energy = products[p][p]
        if energy == 0 and not bool(channel(p).any()):
            continue
        tolerance = 1e-9 * energy
        if not any(
            abs(products[q][q] - energy) <= tolerance
            and abs(products[p][q] - energy) <= tolerance
            and torch.equal(channel(p), channel(q))
            for q in kept
        ):
            kept.append(p)
    return kept


def _solve(gram: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``numpy.linalg.solve`` (LU) of a symmetric system; least squares if singular.

    ``gram`` [n, n] is exactly symmetric, so its transpose, a column-major view, is
    handed to LAPACK: the same matrix without the layout copy (a slow transpose).

    museval means to fall back to ``numpy.linalg.lstsq`` on a singular ``G``; with
    numpy >= 2 its ``except np.linalg.linalg.LinAlgError`` itself fails, so there
    museval raises ``AttributeError`` instead.
    """
    solution, info = torch.linalg.solve_ex(gram.mT, rhs)
    if int(info) != 0:
        # gelsd with numpy's default cutoff; CPU, as CUDA's lstsq has no SVD driver
        cutoff = torch.finfo(torch.float64).eps * max(gram.shape)
        solution = torch.linalg.lstsq(
            gram.cpu(), rhs.cpu(), rcond=cutoff, driver="gelsd"
        ).solution.to(gram.device)
    return solution


# ------------------------------------------------------------------ scores per window


def _window_scores(
    references: torch.Tensor,
    estimates: torch.Tensor,
    own: torch.Tensor,
    joint: torch.Tensor,
    plan: _Plan,
    batch_frames: int,
    cache: Optional[list],
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """SDR, ISR, SIR, SAR [nsrc, nwin] from the windows' spectra (Parseval).

    A window's references and estimates are transformed once, zero-padded to at least
    ``win + L - 1`` points, so that filtering is a product of spectra; the projections
    through the joint and own filters are one complex matrix product per bin, and every
    energy, by Parseval, a weighted sum over bins of squared spectra.
    """
    nsrc, _, nchan = references.shape
    nref = nsrc * nchan
    n_fft = plan.block_fft if plan.aligned else plan.window_fft
    nbins = n_fft // 2 + 1
    # Parseval for a real signal of n_fft points from its rfft bins
    weight = references.new_full((nbins,), 2.0 / n_fft)
    weight[0] = 1.0 / n_fft
    if n_fft % 2 == 0:
        weight[-1] = 1.0 / n_fft

    # one filter bank per bin: output (joint | own, j, d) from input reference channel
    # p = (s c); the own filters of source j read the channels of reference j only
    filters = references.new_zeros(
        (nbins, 2, nsrc, nchan, nref), dtype=torch.complex128
    )
    filters[:, 0] = rearrange(
        torch.fft.rfft(joint, n=n_fft, dim=1), "p f j d -> f j d p"
    )
    own_spec = torch.fft.rfft(own, n=n_fft, dim=2)  # [j, c, f, d]
    for j in range(nsrc):
        filters[:, 1, j, :, j * nchan : (j + 1) * nchan] = rearrange(
            own_spec[j], "c f d -> f d c"
        )
    filters = rearrange(filters, "f k j d p -> f (k j d) p")

    work = _Workspace(references.device)
    energies = []  # per batch: [7, s, w]
    silent = []
    for spectra, flags in _window_spectra(
        references, estimates, plan, batch_frames, cache, work
    ):
        count = spectra.shape[-1]
        # museval's rule: any reference or estimate silent makes the window NaN
        silent.append(flags.flatten(1).any(dim=1))
        # filtering = product of spectra (n_fft >= window + taps - 1: no wrap-around)
        proj = work.empty("proj", (nbins, 2 * nref, count), filters.dtype)
        torch.bmm(filters, spectra[:, :nref], out=proj)
        joint_proj, own_proj = torch.view_as_real(proj).view(nbins, 2, -1).unbind(1)
        ref, est = torch.view_as_real(spectra).view(nbins, 2, -1).unbind(1)
        power = work.empty("power", ref.shape, ref.dtype)  # [f, (s c w r)]

        def energy(first: torch.Tensor, second: Optional[torch.Tensor] = None):
            """Parseval: sum_f weight_f |first_f - second_f|^2 -> [s, w]."""
            if second is None:
                torch.mul(first, first, out=power)
            else:
                torch.sub(first, second, out=power).square_()
            total = (weight @ power).view(nsrc, nchan, count, 2)  # [s, c, w, re/im]
            return total.sum(dim=(1, 3))

        energies.append(
            torch.stack(
                [
                    energy(ref),  # |s|^2
                    energy(est, ref),  # |e - s|^2
                    energy(own_proj, ref),  # |P_j - s|^2
                    energy(own_proj),  # |P_j|^2
                    energy(joint_proj, own_proj),  # |P - P_j|^2
                    energy(joint_proj),  # |P|^2
                    energy(est, joint_proj),  # |e - P|^2
                ]
            )
        )
    target, error, spatial, own_image, interference, image, artifacts = torch.cat(
        energies, dim=2
    )  # each [s, w]
    silent = torch.cat(silent)  # [w]
    scores = (
        _decibels(target, error),
        _decibels(target, spatial),
        _decibels(own_image, interference),
        _decibels(image, artifacts),
    )
    return tuple(score.masked_fill(silent, math.nan) for score in scores)


def _window_spectra(
    references: torch.Tensor,
    estimates: torch.Tensor,
    plan: _Plan,
    batch_frames: int,
    cache: Optional[list],
    work: _Workspace,
) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """The windows' ``(spectra [f, (k s c), w], silent [w, k, s])``, batch by batch.

    From ``cache`` (see :func:`_correlations`) when given, else transformed here.
    """
    if cache is None:
        n_fft = plan.block_fft if plan.aligned else plan.window_fft
        cache = (
            _spectra(
                _frames(references, start, stop, plan.hop, plan.length),
                _frames(estimates, start, stop, plan.hop, plan.length),
                n_fft,
                work,
            )
            for start, stop in _batches(plan.nwin, batch_frames)
        )
        cache = ((_bins_first(spectra, work), silent) for spectra, silent in cache)
    yield from cache


def _batches(count: int, size: int) -> Iterator[Tuple[int, int]]:
    """``(start, stop)`` of consecutive batches of ``size`` items out of ``count``."""
    for start in range(0, count, size):
        yield start, min(start + size, count)


def _decibels(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """museval's ``_safe_db``: ``10 log10(num / den)``, ``+inf`` where ``den == 0``."""
    ratio = 10.0 * torch.log10(num / den)
    return torch.where(den == 0, torch.full_like(ratio, math.inf), ratio)
