"""The FMA segmenting rules on planted arrays: the authors' (default) and ours.

A 1 kHz "sample rate" keeps the arrays small: segments of 1000 samples every 500, 20
chunks of 50 samples.
"""

import numpy as np
import pytest

from espnet2_ext.datasets.fma import FmaConfig, segment_starts, silent_chunks

RATE = 1000
AUTHORS = FmaConfig(sample_rate=RATE, segment_seconds=1.0, hop_seconds=0.5)
OURS = FmaConfig(
    sample_rate=RATE,
    segment_seconds=1.0,
    hop_seconds=0.5,
    last_segment="complete",
    silence="below_db",
    silent_segment="drop_segment",
)


def noise(n, seed=0):
    return 0.1 * np.random.default_rng(seed).standard_normal((n, 2)).astype(np.float32)


def test_defaults_are_the_authors_rules():
    config = FmaConfig()
    assert (config.segment_seconds, config.hop_seconds, config.num_chunks) == (
        10,
        5,
        20,
    )
    assert config.last_segment == "end_aligned"
    assert config.silence == "zero"
    assert config.silent_segment == "drop_track"


def test_end_aligned_last_segment_one_per_hop_position():
    # 2.7 s: hop positions 0, .5, 1, 1.5, 2, 2.5 s; the last two run past the end and
    # both become the segment [1.7, 2.7) s, as in the authors' chunking_sad.py
    segments, reason = segment_starts(noise(2700), AUTHORS)
    assert reason == ""
    assert segments == [(0, 0), (1, 500), (2, 1000), (3, 1500), (4, 1700), (5, 1700)]
    # ours: complete segments only, the last 200 samples unused
    segments, _ = segment_starts(noise(2700), OURS)
    assert segments == [(0, 0), (1, 500), (2, 1000), (3, 1500)]
    # a track of exactly one segment: one position either way
    assert segment_starts(noise(1000), AUTHORS)[0] == [(0, 0), (1, 0)]
    assert segment_starts(noise(1000), OURS)[0] == [(0, 0)]


def test_shorter_than_a_segment_is_dropped():
    for config in (AUTHORS, OURS):
        segments, reason = segment_starts(noise(999), config)
        assert segments == [] and "shorter than a segment" in reason


def test_a_chunk_is_silent_only_at_exactly_zero_energy_for_the_authors():
    window = noise(1000)
    window[:600] = 1e-20  # -400 dBFS, but not zero: 12 quiet chunks
    assert silent_chunks(window, AUTHORS) == 0
    assert silent_chunks(window, OURS) == 12
    window[:600] = 0.0
    assert silent_chunks(window, AUTHORS) == 12
    # float32 squares of 1e-23 would underflow to 0: energies are summed in float64
    window[:600] = np.float32(1e-23)
    assert silent_chunks(window, AUTHORS) == 0


@pytest.mark.parametrize("zero_chunks, silent", [(9, False), (10, True)])
def test_half_of_the_chunks_make_a_segment_silent(zero_chunks, silent):
    track = noise(1000)
    track[: 50 * zero_chunks] = 0.0
    segments, _ = segment_starts(track, AUTHORS)
    assert (segments == []) == silent


def test_one_silent_segment_drops_the_whole_track_for_the_authors():
    track = noise(4000)
    track[1500:2100] = 0.0  # [1, 2) s has 12 zero chunks; [1.5, 2.5) has 12 too
    segments, reason = segment_starts(track, AUTHORS)
    assert segments == [] and "1.0 s is silent" in reason
    # ours drops the two segments that are mostly silent and keeps the rest
    segments, _ = segment_starts(track, OURS)
    assert [start for _, start in segments] == [0, 500, 2000, 2500, 3000]


def test_the_end_test_looks_at_the_samples_left_for_the_authors():
    """At hop position t past the end, the authors test samples [t, end): 200 zero
    samples at the end of the track are a silent window there, although the end-aligned
    segment [1.7, 2.7) s is only 20 % silent."""
    track = noise(2700)
    track[2500:] = 0.0
    segments, reason = segment_starts(track, AUTHORS)
    assert segments == [] and "2.5 s is silent" in reason
    assert len(segment_starts(track, OURS)[0]) == 4  # complete segments: all loud
    # with the other two rules of the authors, only the end-aligned last segment
    mixed = FmaConfig(**{**AUTHORS.__dict__, "silent_segment": "drop_segment"})
    segments, _ = segment_starts(track, mixed)
    assert segments == [(0, 0), (1, 500), (2, 1000), (3, 1500), (4, 1700)]


def test_invalid_rules_are_refused():
    with pytest.raises(ValueError, match="last_segment"):
        FmaConfig(last_segment="pad")
    with pytest.raises(ValueError, match="silence"):
        FmaConfig(silence="quiet")
    with pytest.raises(ValueError, match="silent_segment"):
        FmaConfig(silent_segment="keep")
