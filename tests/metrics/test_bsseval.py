"""BSSEval v4 at array speed against museval itself, window by window.

museval is the reference throughout. Agreement means, per metric: the same NaN windows,
the same infinite ones, and every other window within 0.01 dB of museval's; except that
ratios above 100 dB (an error energy 1e-10 of the signal's, e.g. the SAR of an estimate
that lies exactly in the span of the delayed references) are rounding noise in both
implementations, and only have to be above 100 dB in both.

museval's cost is mostly its 4 LU solves of a 4096 x 4096 system per song (4 stereo
stems, 512 taps): the 4-stem songs are few, the other cases use fewer stems or channels,
and a low sampling rate with 1 s windows.
"""

import warnings

import museval
import numpy as np
import pytest
import torch
from scipy.signal import butter, lfilter

from espnet2_ext.metrics.bsseval import bss_eval_v4, evaluate, window_count

RATE = 8000  # windows of 1 s, as museval's MUSDB evaluation, at a lower rate
TOLERANCE_DB = 0.01
ROUNDING_DB = 100.0
METRICS = ("SDR", "ISR", "SIR", "SAR")


def _song(nsrc=4, seconds=4.6, nchan=2, seed=0, rate=RATE):
    """Stems like music: harmonic notes with envelopes, coloured noise, a noise floor.

    The noise floor (as 16-bit quantisation gives real stems) keeps the references'
    Gram matrix well-conditioned, where museval's SIR and SAR are defined by the
    signals rather than by rounding.
    """
    rng = np.random.default_rng(seed)
    nsamples = int(seconds * rate)
    t = np.arange(nsamples) / rate
    stems = np.zeros((nsrc, nsamples, nchan))
    for j in range(nsrc):
        pitch = 55.0 * 2 ** (rng.integers(0, 36) / 12)
        notes = np.floor(t * (1.5 + j)) % 3  # a few note changes
        f0 = pitch * (1 + notes / 4)
        phase = 2 * np.pi * np.cumsum(f0) / rate
        tone = sum(np.sin(h * phase + rng.uniform(0, 6)) / h for h in range(1, 6))
        envelope = np.exp(-3 * ((t * (1.5 + j)) % 1))  # a decay per note
        noise = lfilter([1.0], [1.0, -0.9 + 0.3 * j], rng.standard_normal(nsamples))
        mono = 0.3 * envelope * tone + 0.02 * noise
        pan = rng.uniform(0.3, 1.0, nchan)
        stems[j] = mono[:, None] * pan + 1e-4 * rng.standard_normal((nsamples, nchan))
    return stems


def _estimates(references, seed=1):
    """A separation of sorts: leakage, a short filter and noise, per source."""
    rng = np.random.default_rng(seed)
    estimates = lfilter([0.8, 0.15, 0.05], [1.0], references, axis=1)
    estimates += 0.01 * rng.standard_normal(references.shape)
    estimates += 0.1 * np.roll(references, 1, axis=0)  # leakage from the next source
    return estimates


def _museval(references, estimates, win=RATE, hop=RATE, filters_len=512):
    """museval: ``evaluate``, or for other filter lengths the ``bss_eval`` it calls."""
    if filters_len == 512:
        return museval.evaluate(references, estimates, win=win, hop=hop, mode="v4")
    scores = museval.metrics.bss_eval(
        references,
        estimates,
        window=win,
        hop=hop,
        compute_permutation=False,
        filters_len=filters_len,
        framewise_filters=False,
        bsseval_sources_version=False,
    )
    return scores[:4]


def _assert_agree(ours, theirs):
    for name, mine, reference in zip(METRICS, ours, theirs):
        assert mine.shape == reference.shape, name
        assert mine.dtype == np.float64, name
        np.testing.assert_array_equal(np.isnan(mine), np.isnan(reference), name)
        np.testing.assert_array_equal(np.isinf(mine), np.isinf(reference), name)
        finite = np.isfinite(reference)
        exact = finite & (reference < ROUNDING_DB)
        np.testing.assert_allclose(
            mine[exact], reference[exact], rtol=0, atol=TOLERANCE_DB, err_msg=name
        )
        assert np.all(mine[finite & ~exact] > ROUNDING_DB), name
    # the per-song numbers (cSDR etc.): median over windows per stem, NaN skipped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN stems give NaN
        for name, mine, reference in zip(METRICS, ours, theirs):
            median = np.nanmedian(reference, axis=1)
            exact = ~(median >= ROUNDING_DB)
            np.testing.assert_allclose(
                np.nanmedian(mine, axis=1)[exact],
                median[exact],
                rtol=0,
                atol=TOLERANCE_DB,
                err_msg=name,
            )


def test_four_stereo_stems_with_silence_mixture_and_a_partial_last_window():
    """The MUSDB case: 4 stereo stems, 1 s windows, in one museval call.

    Also inside: a stem silent for one window (NaN for every stem there), a stem whose
    estimate is the mixture (SAR at rounding level), a track of 4.6 windows (the last
    partial window dropped).
    """
    references = _song()
    references[2, RATE : 2 * RATE] = 0.0  # silent window in an otherwise active stem
    estimates = _estimates(references)
    estimates[3] = references.sum(axis=0)  # the mixture as the estimate of a stem
    theirs = _museval(references, estimates)
    ours = evaluate(references, estimates, win=RATE, hop=RATE)
    _assert_agree(ours, theirs)
    assert ours[0].shape == (4, 4)
    assert np.isnan(ours[0][:, 1]).all() and not np.isnan(ours[0][:, 0]).any()
    # the mixture lies in the span of the delayed references: its SAR is rounding noise
    assert (ours[3][3][~np.isnan(ours[3][3])] > ROUNDING_DB).all()


@pytest.mark.parametrize(
    "nchan, seconds, win, hop, filters_len",
    [
        (1, 3.3, RATE, RATE, 512),  # mono
        (2, 0.6, RATE, RATE, 512),  # a song shorter than one window: one window
        (2, 3.0, RATE, RATE // 2, 64),  # overlapping windows: the general path
        (2, 2.5, 300, 700, 512),  # windows shorter than the filters, with gaps
    ],
)
def test_agrees_with_museval(nchan, seconds, win, hop, filters_len):
    references = _song(nsrc=2, seconds=seconds, nchan=nchan, seed=3)
    estimates = _estimates(references, seed=4)
    ours = evaluate(references, estimates, win=win, hop=hop, filters_len=filters_len)
    _assert_agree(ours, _museval(references, estimates, win, hop, filters_len))
    assert ours[0].shape == (2, window_count(references.shape[1], win, hop))


def test_silent_window_in_an_estimate_only():
    references = _song(nsrc=3, seconds=3.2, seed=5)
    estimates = _estimates(references, seed=6)
    estimates[0, 2 * RATE : 3 * RATE] = 0.0
    # channels that cancel are silent too: museval tests the channel sum
    estimates[1, :RATE, 1] = -estimates[1, :RATE, 0]
    ours = evaluate(references, estimates, win=RATE, hop=RATE, filters_len=128)
    _assert_agree(ours, _museval(references, estimates, filters_len=128))
    assert np.isnan(ours[2][:, [0, 2]]).all() and not np.isnan(ours[2][:, 1]).any()


def test_mono_source_in_stereo_and_a_hard_panned_one():
    """A stem with identical channels (a mono source written as stereo: museval's G is
    exactly singular) and a stem with one channel all zero."""
    references = _song(nsrc=3, seconds=2.6, seed=17)
    references[0, :, 1] = references[0, :, 0]
    references[1, :, 1] = 0.0
    estimates = _estimates(references, seed=18)
    ours = evaluate(references, estimates, win=RATE, hop=RATE, filters_len=256)
    _assert_agree(ours, _museval(references, estimates, filters_len=256))


def test_the_mixture_baseline_as_a_read_only_broadcast():
    """``music.mixture_estimates`` gives a read-only broadcast view: read as is."""
    references = _song(nsrc=2, seconds=2.2, seed=19)
    mixture = references.sum(axis=0)
    view = np.broadcast_to(mixture, references.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = evaluate(references, view, win=RATE, hop=RATE)
    copies = evaluate(references, np.stack([mixture] * 2), win=RATE, hop=RATE)
    for mine, other in zip(ours, copies):
        np.testing.assert_array_equal(mine, other)


def test_batching_and_caching_do_not_change_the_scores():
    references = _song(nsrc=2, seconds=5.3, seed=20)
    estimates = _estimates(references, seed=21)
    taps = dict(win=RATE, hop=RATE, filters_len=64)
    default = evaluate(references, estimates, **taps)
    for options in (dict(batch_frames=1), dict(batch_frames=3, cache_mib=0)):
        other = evaluate(references, estimates, **taps, **options)
        for mine, reference in zip(other, default):
            np.testing.assert_allclose(mine, reference, rtol=0, atol=1e-9)


def test_estimates_cut_or_padded_as_museval():
    references = _song(nsrc=2, seconds=2.4, nchan=1, seed=7)
    estimates = _estimates(references, seed=8)
    for length in (references.shape[1] - 1234, references.shape[1] + 999):
        cut = np.zeros((2, length, 1))
        common = min(length, references.shape[1])
        cut[:, :common] = estimates[:, :common]
        ours = evaluate(references, cut, win=RATE, hop=RATE)
        _assert_agree(ours, museval.evaluate(references, cut, win=RATE, hop=RATE))
    with pytest.raises(ValueError, match="equal lengths"):
        evaluate(references, cut, padding=False)


def test_a_stem_silent_over_the_whole_song():
    references = _song(nsrc=2, seconds=2.2, seed=9)
    estimates = _estimates(references, seed=10)
    estimates[1] = 0.0
    with pytest.raises(ValueError, match="silent"):
        museval.evaluate(references, estimates)
    with pytest.raises(ValueError, match=r"estimates\[1\] silent"):
        evaluate(references, estimates)
    nan = evaluate(references, estimates, win=RATE, hop=RATE, allow_silent=True)
    assert all(np.isnan(score).all() and score.shape == (2, 2) for score in nan)


def test_band_limited_references_sdr():
    """Stems with nothing in the upper part of the band (and no noise floor): museval's
    Gram matrices are numerically singular and its projections follow rounding (SIR
    moves by tens of dB when museval gets the same stems in the other order; ISR and
    SIR say an estimate at 15 dB SDR is mostly interference). SDR, the reported
    number, needs no projection, and agrees."""
    song = _song(nsrc=2, seconds=2.4, nchan=1, seed=11)
    references = lfilter(*butter(10, 0.45), song, axis=1)
    estimates = _estimates(references, seed=12)
    ours = evaluate(references, estimates, win=RATE, hop=RATE)
    theirs = museval.evaluate(references, estimates, win=RATE, hop=RATE)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=0, atol=TOLERANCE_DB)
    swapped = museval.evaluate(references[::-1], estimates[::-1], win=RATE, hop=RATE)
    np.testing.assert_allclose(swapped[0][::-1], theirs[0], rtol=0, atol=1e-9)
    assert np.abs(swapped[2][::-1] - theirs[2]).max() > 1.0  # SIR: rounding


def test_tensors_in_and_repeatable_float64():
    references = _song(nsrc=2, seconds=2.3, seed=13)
    estimates = _estimates(references, seed=14)
    first = bss_eval_v4(
        torch.from_numpy(references), torch.from_numpy(estimates), win=RATE, hop=RATE
    )
    again = evaluate(references, estimates, win=RATE, hop=RATE, cache_mib=0)
    for mine, other in zip(first, again):
        assert mine.dtype == torch.float64 and mine.shape == (2, 2)
        np.testing.assert_array_equal(mine.numpy(), other)  # bit for bit


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r, e: (r, e[:1]), "2 stems and estimates 1"),
        (lambda r, e: (r, e[..., :1]), "2 channels and estimates 1"),
        (lambda r, e: (r[0], e[0]), r"\[nsrc, nsamples, nchan\]"),
        (lambda r, e: (r, _poke(e, np.nan)), r"NaN or Inf in estimates\[1\] \(1 sa"),
        (lambda r, e: (r, _poke(e, np.inf)), r"NaN or Inf in estimates\[1\]"),
        (lambda r, e: (_poke(r, np.nan), e), r"NaN or Inf in references\[1\]"),
        (lambda r, e: (r[:, :0], e[:, :0]), "empty"),
    ],
)
def test_bad_input_is_named(change, message):
    references = _song(nsrc=2, seconds=1.2, seed=15)
    with pytest.raises(ValueError, match=message):
        evaluate(*change(references, _estimates(references)))


def _poke(signals, value):
    signals = signals.copy()
    signals[1, 100, 0] = value
    return signals


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(mode="v3"), "only 'v4'"),
        (dict(win=0), "win must be a positive"),
        (dict(hop=1.5), "hop must be a positive"),
        (dict(filters_len=0), "filters_len must be"),
        (dict(batch_frames=0), "batch_frames must be"),
    ],
)
def test_bad_options_are_named(options, message):
    references = _song(nsrc=2, seconds=1.2, seed=16)
    with pytest.raises(ValueError, match=message):
        evaluate(references, references, **options)
