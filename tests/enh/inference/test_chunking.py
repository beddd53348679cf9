"""Chunked overlap-add: identity, linearity, aligned slicing, memory bound, guards."""

import pytest
import torch

from espnet2_ext.enh.inference.chunking import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_HOP_SIZE,
    apply_chunked,
    chunk_starts,
    make_window,
    sum_of_weights,
)

# (length, chunk, hop): lengths not divisible by the hop, exactly one chunk, shorter
# than one chunk, one sample more than a chunk, hop = chunk, hop = 1
CASES = [
    (1000, 256, 128),
    (1001, 256, 100),
    (999, 300, 299),
    (256, 256, 64),
    (100, 256, 128),
    (257, 256, 128),
    (777, 128, 128),
    (300, 64, 1),
]


def _identity(chunk):
    """[b, C, L] -> [b, 1, C, L]"""
    return chunk.unsqueeze(1)


@pytest.mark.parametrize("length,chunk,hop", CASES)
@pytest.mark.parametrize("window", ["hann", "triangular", "rectangular"])
def test_identity_network_gives_the_input_back(length, chunk, hop, window):
    torch.manual_seed(0)
    mixture = torch.randn(2, 2, length)
    out = apply_chunked(
        _identity, mixture, chunk_size=chunk, hop_size=hop, window=window
    )
    assert out.shape == (2, 1, 2, length)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out[:, 0], mixture, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length,chunk,hop", CASES[:4])
def test_identity_with_a_window_that_is_zero_at_its_ends(length, chunk, hop):
    # torch's periodic Hann is 0 at sample 0: the song edges must still get weight
    mixture = torch.randn(1, 2, length, dtype=torch.float64)
    out = apply_chunked(
        _identity,
        mixture,
        chunk_size=chunk,
        hop_size=hop,
        window=torch.hann_window(chunk, dtype=torch.float64),
    )
    assert out.dtype == torch.float64
    torch.testing.assert_close(out[:, 0], mixture)


@pytest.mark.parametrize("batch_chunks", [1, 3, 100])
def test_per_source_gain_commutes_with_chunking(batch_chunks):
    """A linear time-invariant per-sample op gives the same result chunked or not."""
    gains = torch.tensor([0.5, -2.0, 3.0, 1.0])

    def separate(chunk):  # [b, C, L] -> [b, 4, C, L]
        return gains[None, :, None, None] * chunk[:, None]

    mixture = torch.randn(3, 2, 2345)
    chunked = apply_chunked(
        separate, mixture, chunk_size=500, hop_size=230, batch_chunks=batch_chunks
    )
    torch.testing.assert_close(chunked, separate(mixture), rtol=1e-5, atol=1e-5)


def test_where_one_chunk_covers_a_sample_the_output_is_that_chunk():
    """Each chunk outputs a constant (its start); overlaps blend, the rest is exact."""

    def separate(chunk, ramp_chunk):  # ramp_chunk [b, 1, L] holds song positions
        start = ramp_chunk[:, :, :1]  # [b, 1, 1]
        return (chunk * 0 + start)[:, None]

    ramp = torch.arange(20.0).reshape(1, 1, 20)
    out = apply_chunked(
        separate,
        torch.ones(1, 1, 20),
        chunk_size=8,
        hop_size=6,
        window="triangular",
        aligned=[ramp],
    )[0, 0, 0]
    # starts 0, 6, 12 (the last moved back from 18 to 12)
    assert chunk_starts(20, 8, 6) == [0, 6, 12]
    torch.testing.assert_close(out[:6], torch.zeros(6))
    torch.testing.assert_close(out[8:12], torch.full((4,), 6.0))
    torch.testing.assert_close(out[14:], torch.full((6,), 12.0))
    # samples 6, 7 are covered by chunks 0 and 1: strictly between 0 and 6
    assert bool(((out[6:8] > 0) & (out[6:8] < 6)).all())


def test_aligned_tensors_arrive_sliced_like_the_mixture():
    """Every aligned chunk holds exactly the samples of its mixture chunk."""
    length, chunk, hop, batch = 1003, 200, 90, 2
    position = torch.arange(length, dtype=torch.float64)
    offset = torch.tensor([0.0, 1e6])[:, None, None]  # tells the two songs apart
    mixture = position.expand(batch, 2, length) + offset
    reference = (position * 10).expand(batch, 4, 2, length).clone()  # [B, N, C, T]
    scalar = position.expand(batch, length).clone()  # [B, T]
    seen = []

    def separate(chunk_mix, chunk_ref, chunk_scalar):
        assert chunk_ref.shape[1:] == (4, 2, chunk_mix.shape[-1])
        assert chunk_scalar.shape == (chunk_mix.shape[0], chunk_mix.shape[-1])
        # chunk_mix samples carry their song position (+1e6 for the second song)
        torch.testing.assert_close(chunk_ref[:, 0, 0], (chunk_mix[:, 0] % 1e6) * 10)
        torch.testing.assert_close(chunk_scalar, chunk_mix[:, 0] % 1e6)
        seen.append((chunk_mix.shape[0], int(chunk_scalar[0, 0])))
        return chunk_ref * 0 + chunk_mix[:, None]

    out = apply_chunked(
        separate,
        mixture,
        chunk_size=chunk,
        hop_size=hop,
        aligned=(reference, scalar),
        batch_chunks=3,
    )
    starts = chunk_starts(length, chunk, hop)
    assert [s for _, s in seen] == starts[::3]  # the first chunk of every call
    assert all(rows <= 3 * batch for rows, _ in seen)
    torch.testing.assert_close(out[:, 2], mixture)


@pytest.mark.parametrize("batch_chunks", [1, 2, 5])
def test_never_more_than_batch_chunks_chunks_at_once(batch_chunks):
    calls = []

    def separate(chunk):
        calls.append(tuple(chunk.shape))
        return chunk[:, None]

    length, chunk, hop, batch = 10_000, 640, 320, 3
    mixture = torch.randn(batch, 2, length)
    apply_chunked(
        separate,
        mixture,
        chunk_size=chunk,
        hop_size=hop,
        batch_chunks=batch_chunks,
    )
    n_chunks = len(chunk_starts(length, chunk, hop))
    assert max(rows for rows, _, _ in calls) == batch * min(batch_chunks, n_chunks)
    assert all(rows % batch == 0 for rows, _, _ in calls)
    assert {samples for _, _, samples in calls} == {chunk}
    assert sum(rows for rows, _, _ in calls) == batch * n_chunks  # each chunk once


def test_music_defaults_reproduce_a_song():
    assert (DEFAULT_CHUNK_SIZE, DEFAULT_HOP_SIZE) == (12 * 44100, 6 * 44100)
    mixture = torch.randn(1, 1, 25 * 44100 + 7)  # 25 s: three overlapping chunks
    out = apply_chunked(_identity, mixture)
    torch.testing.assert_close(out[:, 0], mixture, rtol=1e-5, atol=1e-5)


def test_chunk_starts_cover_the_song_and_end_at_its_end():
    for length, chunk, hop in CASES:
        starts = chunk_starts(length, chunk, hop)
        size = min(length, chunk)
        assert starts[0] == 0
        assert starts[-1] + size == length
        assert all(b > a for a, b in zip(starts, starts[1:]))
        assert all(b - a <= hop for a, b in zip(starts, starts[1:]))
    song = 2 * DEFAULT_CHUNK_SIZE
    assert chunk_starts(song, DEFAULT_CHUNK_SIZE, DEFAULT_HOP_SIZE) == [
        0,
        DEFAULT_HOP_SIZE,
        2 * DEFAULT_HOP_SIZE,
    ]


def test_windows_are_positive_and_sum_to_one_at_half_overlap():
    for name in ("hann", "triangular"):
        window = make_window(name, 64)
        assert bool((window > 0).all())
        torch.testing.assert_close(window, window.flip(0))
        ones = torch.ones(32, dtype=torch.float64)
        torch.testing.assert_close(window[:32] + window[32:], ones)
    total = sum_of_weights(1000, chunk_size=100, hop_size=50, window="hann")
    assert bool((total > 0).all())
    # interior samples are covered by two chunks whose Hann windows add up to one
    torch.testing.assert_close(total[100:850], torch.ones(750, dtype=torch.float64))


def test_output_follows_the_estimates_dtype_and_the_mixture_device():
    mixture = torch.randn(1, 2, 500)
    out = apply_chunked(
        lambda c: c[:, None].to(torch.bfloat16), mixture, chunk_size=200, hop_size=100
    )
    assert out.dtype == torch.float32 and out.device == mixture.device
    torch.testing.assert_close(out[:, 0], mixture, rtol=1e-2, atol=2e-2)


def test_invalid_arguments_raise_with_a_message():
    mixture = torch.randn(1, 2, 100)
    with pytest.raises(ValueError, match="hop_size"):
        apply_chunked(_identity, mixture, chunk_size=10, hop_size=11)
    with pytest.raises(ValueError, match=r"\[B, C, T\]"):
        apply_chunked(_identity, mixture[0], chunk_size=10, hop_size=5)
    with pytest.raises(ValueError, match="unknown window"):
        apply_chunked(_identity, mixture, chunk_size=10, hop_size=5, window="kaiser")
    with pytest.raises(ValueError, match="aligned"):
        apply_chunked(
            _identity, mixture, chunk_size=10, hop_size=5, aligned=[torch.zeros(1, 99)]
        )
    with pytest.raises(ValueError, match="must return"):
        apply_chunked(lambda c: c, mixture, chunk_size=10, hop_size=5)
    with pytest.raises(ValueError, match="no weight"):
        # a window that is zero at its ends, chunks that do not overlap
        apply_chunked(
            _identity,
            mixture,
            chunk_size=10,
            hop_size=10,
            window=torch.hann_window(10),
        )
    with pytest.raises(ValueError, match="batch_chunks"):
        apply_chunked(_identity, mixture, chunk_size=10, hop_size=5, batch_chunks=0)


def test_progress_bar_runs(capsys):
    mixture = torch.randn(1, 1, 300)
    out = apply_chunked(
        _identity, mixture, chunk_size=100, hop_size=50, progress=True, desc="song"
    )
    torch.testing.assert_close(out[:, 0], mixture)
    assert "song" in capsys.readouterr().err
