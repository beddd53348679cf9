"""uSDR by hand, cSDR against museval itself with both scorers (silent windows
included), the active-window SDR against museval on the active stems, aggregation."""

import types

import museval
import numpy as np
import pytest

from espnet2_ext.metrics.music import (
    aggregate_csdr,
    aggregate_usdr,
    bss_eval_framewise,
    count_defined,
    csdr,
    csdr_framewise,
    mixture_estimates,
    summarize,
    usdr,
    window_sdr,
)

RATE = 8000  # small rate: museval's cost grows with the samples per window
STEMS = ("vocals", "bass", "drums")


def _planted(seed, seconds=3.4, noise=0.3, nchan=2, nsrc=len(STEMS)):
    rng = np.random.default_rng(seed)
    nsamples = int(seconds * RATE)
    references = rng.standard_normal((nsrc, nsamples, nchan)) * 0.1
    estimates = references + noise * 0.1 * rng.standard_normal(references.shape)
    # some leakage between sources, so that SIR is finite and differs per source
    estimates[0] += 0.2 * references[1]
    return references, estimates


def _museval_track_store(references, estimates, name="song"):
    """What museval's MUSDB evaluation stores for one track (eval_mus_track)."""
    stems = STEMS[: len(references)]
    track = types.SimpleNamespace(
        name=name,
        rate=RATE,
        subset="test",
        targets={
            s: types.SimpleNamespace(audio=references[i]) for i, s in enumerate(stems)
        },
    )
    return museval.eval_mus_track(track, {s: estimates[i] for i, s in enumerate(stems)})


def _museval_song_medians(store, stems=STEMS):
    frames = museval.EvalStore()
    frames.add_track(store)
    per_target = frames.agg_frames_scores().xs("SDR", level="metric")
    return np.array([per_target.xs(s, level="target").iloc[0] for s in stems])


def test_usdr_of_a_planted_snr_per_channel():
    rng = np.random.default_rng(0)
    references = rng.standard_normal((2, 5000, 2))
    snr_db = np.array([[10.0, 20.0], [-3.0, 7.0]])  # [source, channel]
    noise = rng.standard_normal(references.shape)
    for j in range(2):
        for c in range(2):
            target = np.sum(references[j, :, c] ** 2) / 10 ** (snr_db[j, c] / 10)
            noise[j, :, c] *= np.sqrt(target / np.sum(noise[j, :, c] ** 2))
    result = usdr(references, references + noise)
    np.testing.assert_allclose(result, snr_db.mean(axis=1), atol=1e-6)


def test_usdr_of_a_scaled_estimate_and_of_silence():
    references = np.random.default_rng(1).standard_normal((1, 1000, 1))
    # estimate 0.9 s: error 0.1 s -> SNR 20 dB
    np.testing.assert_allclose(usdr(references, 0.9 * references), [20.0], atol=1e-6)
    # a silent reference is undefined, whatever the estimate (the eps formula would
    # give 0 dB for a silent estimate and about -90 dB for a loud one)
    zeros = np.zeros((2, 1000, 2))
    loud = np.ones((2, 1000, 2))
    assert np.isnan(usdr(zeros, zeros)).all() and np.isnan(usdr(zeros, loud)).all()


def test_usdr_leaves_out_a_silent_channel():
    rng = np.random.default_rng(9)
    references = rng.standard_normal((1, 4000, 2))
    references[0, :, 1] = 0.0  # hard-panned left
    estimates = 0.9 * references
    estimates[0, :, 1] = 0.05 * rng.standard_normal(4000)  # leakage to the right
    # the left channel's 20 dB only, not the mean with the eps formula's -80 dB
    np.testing.assert_allclose(usdr(references, estimates), [20.0], atol=1e-6)


def test_csdr_equals_museval_eval_mus_track_with_both_scorers():
    references, estimates = _planted(seed=2)
    theirs = _museval_song_medians(_museval_track_store(references, estimates))
    exact = csdr(references, estimates, win=RATE, hop=RATE, scorer="museval")
    np.testing.assert_allclose(exact, theirs, rtol=0, atol=1e-9)
    fast = csdr(references, estimates, win=RATE, hop=RATE)  # the default scorer
    np.testing.assert_allclose(fast, theirs, rtol=0, atol=0.01)
    # the planted leakage makes the first source worse than the others
    assert fast[0] < fast[1] - 1.0
    with pytest.raises(ValueError, match="scorer"):
        csdr(references, estimates, win=RATE, hop=RATE, scorer="bss_eval")


def test_silent_reference_windows_are_handled_like_museval():
    references, estimates = _planted(seed=3, seconds=4.5, nchan=1)
    references[1, RATE : 2 * RATE] = 0.0  # bass silent during the second window
    estimates[2, 3 * RATE : 4 * RATE] = 0.0  # drums estimate silent in the fourth
    theirs = museval.evaluate(references, estimates, win=RATE, hop=RATE)
    # ours are rounded to 1e-5 as museval stores them; museval.evaluate is not
    for scorer, tolerance in (("museval", 5e-6), ("fast", 0.01)):
        ours = bss_eval_framewise(
            references, estimates, win=RATE, hop=RATE, scorer=scorer
        )
        # the last half window is dropped, as museval does
        assert ours["SDR"].shape == (3, 4)
        # museval makes a window NaN for every source when any source is silent in it
        assert np.isnan(ours["SDR"][:, 1]).all() and np.isnan(ours["SDR"][:, 3]).all()
        assert np.isfinite(ours["SDR"][:, [0, 2]]).all()
        for name, values in zip(("SDR", "ISR", "SIR", "SAR"), theirs):
            np.testing.assert_array_equal(np.isnan(ours[name]), np.isnan(values))
            np.testing.assert_allclose(
                ours[name], values, rtol=0, atol=tolerance, err_msg=name
            )
    ours = csdr(references, estimates, win=RATE, hop=RATE)
    theirs = _museval_song_medians(_museval_track_store(references, estimates))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=0.01)


def test_window_sdr_is_museval_sdr_where_the_stem_is_active():
    """The active-window extra: museval's SDR in the windows museval scores, and in the
    windows it drops for another stem's silence, museval's SDR computed without that
    stem (BSSEval v4's SDR involves the stem's own reference and estimate only)."""
    references, estimates = _planted(seed=10, seconds=3.0, nchan=2)
    references[2, RATE : 2 * RATE] = 0.0  # drums silent in the second window
    estimates[0, 2 * RATE :] = 0.0  # vocals estimate silent in the third
    active = window_sdr(references, estimates, win=RATE, hop=RATE)
    assert active.shape == (3, 3)
    full = museval.evaluate(references, estimates, win=RATE, hop=RATE)[0]
    scored = np.isfinite(full)
    assert scored.sum() == 3  # the first window only
    np.testing.assert_allclose(active[scored], full[scored], rtol=0, atol=2e-5)
    # the second window, without the silent drums: vocals and bass
    pair = museval.evaluate(
        references[:2, RATE : 2 * RATE], estimates[:2, RATE : 2 * RATE], win=RATE
    )[0]
    np.testing.assert_allclose(active[:2, 1], pair[:, 0], rtol=0, atol=2e-5)
    assert np.isnan(active[2, 1])  # the silent reference itself: undefined
    # a silent estimate where the reference plays: |e - s| = |s|, 0 dB, defined
    assert active[0, 2] == 0.0
    assert np.isfinite(active[1:, 2]).all()


def test_a_source_silent_for_the_whole_song_gives_nan_not_a_crash():
    references, estimates = _planted(seed=4, seconds=2.0)
    references[0] = 0.0
    with pytest.raises(ValueError, match="non-silent"):
        museval.evaluate(references, estimates, win=RATE, hop=RATE)
    with pytest.warns(RuntimeWarning, match="silent"):
        result = csdr(references, estimates, win=RATE, hop=RATE)
    assert result.shape == (3,) and np.isnan(result).all()


def test_aggregation_matches_museval_medians_over_tracks():
    # two mono sources: museval's cost is in solves of size sources x channels x 512
    songs = [_planted(seed=s, seconds=2.2, nchan=1, nsrc=2) for s in (5, 6, 7)]
    stores = [
        _museval_track_store(r, e, name=f"song{i}") for i, (r, e) in enumerate(songs)
    ]
    ours = aggregate_csdr([csdr(r, e, win=RATE, hop=RATE) for r, e in songs])
    method = museval.EvalStore(frames_agg="median", tracks_agg="median")
    for store in stores:
        method.add_track(store)
    table = method.agg_frames_tracks_scores().xs("SDR", level="metric")
    np.testing.assert_allclose(ours, [table[s] for s in STEMS[:2]], rtol=0, atol=1e-9)


def test_aggregate_helpers_skip_nan_songs_and_average_stems():
    per_song = np.array([[1.0, 2.0], [3.0, np.nan], [8.0, 4.0]])
    np.testing.assert_allclose(aggregate_csdr(per_song), [3.0, 3.0])
    np.testing.assert_allclose(aggregate_usdr(per_song), [4.0, 3.0])
    np.testing.assert_array_equal(count_defined(per_song), [3, 2])
    summary = summarize(per_song, per_song, ["a", "b"])
    assert summary["uSDR"] == {"a": 4.0, "b": 3.0, "average": 3.5}
    assert summary["cSDR"] == {"a": 3.0, "b": 3.0, "average": 3.0}
    with pytest.raises(ValueError, match="columns"):
        summarize(per_song, per_song, ["a", "b", "c"])


def test_mixture_baseline_estimates_every_stem_by_the_mixture():
    references, _ = _planted(seed=8, seconds=2.0)
    mixture = references.sum(axis=0)
    estimates = mixture_estimates(mixture, len(STEMS))
    assert estimates.shape == references.shape
    np.testing.assert_array_equal(estimates[1], mixture)
    # for equal-power independent stems the mixture is about -10 log10(2) dB for 3
    scores = usdr(references, estimates)
    np.testing.assert_allclose(scores, -10 * np.log10(2), atol=0.3)


def test_shape_mismatch_raises_with_a_message():
    with pytest.raises(ValueError, match="same shape"):
        usdr(np.zeros((2, 10, 2)), np.zeros((2, 11, 2)))
    with pytest.raises(ValueError, match="nsrc, nsamples, nchan"):
        csdr(np.zeros((10, 2)), np.zeros((10, 2)))
