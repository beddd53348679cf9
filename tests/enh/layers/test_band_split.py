"""Band table, band runs and the band-wise encoder / mask decoder.

The encoder and decoder compute bands of equal width together; ``reference_encoder``
and ``reference_decoder`` below are the plain per-band computation (one GroupNorm and
1×1 convolutions per band, as in the authors' code) that they must reproduce.
"""

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from espnet2_ext.constants import MUSIC_SAMPLE_RATE
from espnet2_ext.enh.layers.band_split import (
    DEFAULT_BANDS,
    BandGroup,
    BandMaskDecoder,
    BandSplitEncoder,
    band_groups,
    scale_bands,
    validate_bands,
)

torch.set_num_threads(1)


def reference_encoder(enc: BandSplitEncoder, spec: torch.Tensor) -> torch.Tensor:
    """Band by band: features (f ri m), GroupNorm(1), 1×1 conv. [B, M, T, F] →
    [B, T, K, D]."""
    feats = torch.view_as_real(spec)  # [B, M, T, F, ri]
    out = []
    for band, encoder in zip(torch.split(feats, list(enc.bands), dim=3), enc.encoders):
        x = rearrange(band, "b m t f ri -> b (f ri m) t")
        x = F.group_norm(x, 1, encoder.norm.weight, encoder.norm.bias, eps=1e-5)
        out.append(F.conv1d(x, encoder.proj.weight, encoder.proj.bias))  # [B, D, T]
    return rearrange(torch.stack(out, dim=-1), "b d t k -> b t k d")


def reference_decoder(dec: BandMaskDecoder, x: torch.Tensor) -> torch.Tensor:
    """Band by band: GroupNorm(1), conv, conv, tanh, conv, GLU, rows (ri n m f).
    [B, T, K, D] → complex [B, N, M, T, F]."""
    masks = []
    for k, head in enumerate(dec.heads):
        h = rearrange(x[:, :, k], "b t d -> b d t")
        h = F.group_norm(h, 1, head.norm.weight, head.norm.bias, eps=1e-5)
        h = F.conv1d(h, head.fc1.weight, head.fc1.bias)
        h = torch.tanh(F.conv1d(h, head.fc2.weight, head.fc2.bias))
        h = F.glu(F.conv1d(h, head.out.weight, head.out.bias), dim=1)
        h = rearrange(
            h,
            "b (ri n m f) t -> b n m t f ri",
            ri=2,
            n=dec.num_spk,
            m=dec.num_channels,
        )
        masks.append(torch.view_as_complex(h.contiguous()))
    return torch.cat(masks, dim=-1)


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Random values for every parameter (GroupNorm affines included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))


def test_default_table_is_the_62_band_table():
    assert len(DEFAULT_BANDS) == 62
    assert sum(DEFAULT_BANDS) == 1025  # n_fft 2048
    expected = [2] * 24 + [4] * 12 + [12] * 8 + [24] * 8 + [48] * 8 + [128, 129]
    assert list(DEFAULT_BANDS) == expected
    assert validate_bands(DEFAULT_BANDS, 1025) == DEFAULT_BANDS


def test_validate_bands_reports_the_sum_and_the_bin_count():
    bands = list(DEFAULT_BANDS[:-1]) + [128]  # one bin short
    with pytest.raises(ValueError, match="bands sum to 1024, the STFT gives 1025 bins"):
        validate_bands(bands, 1025)


@pytest.mark.parametrize("bands", [[], [4, 0, 4], [4, -1, 5], [4, 2.5, 1.5]])
def test_validate_bands_rejects_empty_and_non_positive(bands):
    with pytest.raises(ValueError, match="band"):
        validate_bands(bands, 8)


def test_scale_bands_is_identity_on_the_reference_stft():
    assert scale_bands(2048, MUSIC_SAMPLE_RATE) == DEFAULT_BANDS


def test_scale_bands_keeps_edges_in_hz():
    # twice the FFT size at the same rate: every band twice as wide (the last band
    # ends at the new Nyquist bin 2048, so it gets 2 * 129 - 1 bins)
    bands = scale_bands(4096, MUSIC_SAMPLE_RATE)
    assert len(bands) == 62
    assert list(bands[:-1]) == [2 * w for w in DEFAULT_BANDS[:-1]]
    assert bands[-1] == 2 * 129 - 1
    # same FFT size at twice the rate: bins twice as wide in Hz, so every band has
    # half the bins, and the last band takes all from 19.3 kHz (bin 896 // 2) up
    bands = scale_bands(2048, 88200)
    assert len(bands) == 62
    assert list(bands[:-1]) == [w // 2 for w in DEFAULT_BANDS[:-1]]
    assert bands[-1] == 1025 - 896 // 2
    # a coarser STFT merges bands that would be narrower than one bin
    bands = scale_bands(512, MUSIC_SAMPLE_RATE)
    assert len(bands) < 62 and min(bands) == 1 and sum(bands) == 257


@pytest.mark.parametrize(
    "n_fft, sample_rate", [(512, 16000), (1024, 44100), (2048, 48000), (4096, 22050)]
)
def test_scale_bands_covers_every_bin_of_other_stfts(n_fft, sample_rate):
    bands = scale_bands(n_fft, sample_rate)
    assert validate_bands(bands, n_fft // 2 + 1) == bands
    assert all(w >= 1 for w in bands)
    assert len(bands) <= 62


def test_band_groups_are_runs_of_equal_width_of_at_most_eight_bands():
    groups = band_groups(DEFAULT_BANDS)
    assert [(g.num_bands, g.width) for g in groups] == [
        (8, 2), (8, 2), (8, 2), (8, 4), (4, 4), (8, 12), (8, 24), (8, 48),
        (1, 128), (1, 129),
    ]  # fmt: skip
    # without the cap: the 7 runs of the table
    uncapped = band_groups(DEFAULT_BANDS, max_bands=len(DEFAULT_BANDS))
    assert [(g.num_bands, g.width) for g in uncapped] == [
        (24, 2), (12, 4), (8, 12), (8, 24), (8, 48), (1, 128), (1, 129),
    ]  # fmt: skip
    # runs tile the bands and the bins in order
    for gs in (groups, uncapped):
        assert [k for g in gs for k in range(62)[g.bands]] == list(range(62))
        assert [f for g in gs for f in range(1025)[g.bins]] == list(range(1025))
    # equal widths that are not adjacent stay separate runs
    assert band_groups((2, 2, 3, 2)) == (
        BandGroup(0, 2, 2, 0),
        BandGroup(2, 1, 3, 4),
        BandGroup(3, 1, 2, 7),
    )
    with pytest.raises(ValueError, match="max_bands"):
        band_groups((2, 2), max_bands=0)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("bands", [DEFAULT_BANDS, (3, 3, 1, 5, 5, 5, 2)])
def test_encoder_matches_the_per_band_reference(bands, channels):
    torch.manual_seed(0)
    enc = BandSplitEncoder(bands, channels, 6)
    _randomise(enc)
    spec = torch.randn(2, channels, 5, sum(bands), dtype=torch.complex64)
    out = enc(spec)
    assert out.shape == (2, 5, len(bands), 6)
    torch.testing.assert_close(out, reference_encoder(enc, spec), rtol=1e-4, atol=1e-5)


def test_encoder_gradients_match_the_per_band_reference():
    enc = BandSplitEncoder(DEFAULT_BANDS, 2, 4)
    _randomise(enc, seed=1)
    spec = torch.randn(2, 2, 4, 1025, dtype=torch.complex64)
    target = torch.randn(2, 4, 62, 4)
    grads = []
    for fn in (enc, lambda s: reference_encoder(enc, s)):
        enc.zero_grad()
        (fn(spec) * target).sum().backward()
        grads.append({n: p.grad.clone() for n, p in enc.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-5)


def test_encoder_feature_order_is_bin_then_real_imag_then_channel():
    # a 1×1 conv that copies input row r to embedding r: each embedding channel is then
    # an affine function (the band's normalisation) of exactly one spectrum component
    bands, channels = (3, 4), 2
    enc = BandSplitEncoder(bands, channels, 16)
    with torch.no_grad():
        enc.encoders[1].proj.weight.copy_(torch.eye(16)[:, :, None])
        enc.encoders[1].proj.bias.zero_()
    spec = torch.randn(2, channels, 9, 7, dtype=torch.complex64)
    out = enc(spec)[:, :, 1]  # second band: bins 3..6, [B, T, 16]
    for f in range(4):
        for ri, part in enumerate((spec.real, spec.imag)):
            for m in range(channels):
                row = (f * 2 + ri) * channels + m
                pair = torch.stack(
                    [out[..., row].flatten(), part[:, m, :, 3 + f].flatten()]
                )
                assert torch.corrcoef(pair)[0, 1] > 0.999, (f, ri, m)


@pytest.mark.parametrize("num_spk, channels", [(1, 1), (3, 2), (4, 2)])
@pytest.mark.parametrize("bands", [DEFAULT_BANDS, (3, 3, 1, 5, 5, 5, 2)])
def test_decoder_matches_the_per_band_reference(bands, num_spk, channels):
    torch.manual_seed(0)
    dec = BandMaskDecoder(bands, num_spk, channels, 4)
    _randomise(dec)
    x = torch.randn(2, 5, len(bands), 4)
    masks = dec(x)
    assert masks.shape == (2, num_spk, channels, 5, sum(bands))
    assert masks.dtype == torch.complex64
    # stored source-first, [N, B, T, M, F]: the separator's output layout
    assert rearrange(masks, "b n m t f -> n b t m f").is_contiguous()
    torch.testing.assert_close(masks, reference_decoder(dec, x), rtol=1e-4, atol=1e-5)


def test_decoder_gradients_match_the_per_band_reference():
    dec = BandMaskDecoder(DEFAULT_BANDS, 2, 2, 4)
    _randomise(dec, seed=2)
    x = torch.randn(2, 3, 62, 4, requires_grad=True)
    target = torch.randn(2, 2, 2, 3, 1025, dtype=torch.complex64)
    grads = []
    for fn in (dec, lambda h: reference_decoder(dec, h)):
        dec.zero_grad()
        x.grad = None
        (fn(x) * target).real.sum().backward()
        grads.append({"x": x.grad.clone()})
        grads[-1].update({n: p.grad.clone() for n, p in dec.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-5)


def test_decoder_rows_are_value_gate_then_real_imag_source_channel_bin():
    # planted biases with zero weights: the mask is value_bias · sigmoid(gate_bias), so
    # every mask entry names the output row it came from (the rows head selection cuts)
    n, m, w = 3, 2, 4
    dec = BandMaskDecoder((w,), n, m, 4)
    rows = 2 * n * m * w
    with torch.no_grad():
        dec.heads[0].out.weight.zero_()
        dec.heads[0].out.bias[:rows] = torch.arange(rows, dtype=torch.float32)
        dec.heads[0].out.bias[rows:] = 30.0  # gates open
    mask = dec(torch.randn(1, 2, 1, 4))[0]  # [N, M, T, F]
    for ni in range(n):
        for mi in range(m):
            for fi in range(w):
                real_row = ((0 * n + ni) * m + mi) * w + fi
                imag_row = ((1 * n + ni) * m + mi) * w + fi
                value = mask[ni, mi, :, fi]
                assert torch.allclose(value.real, torch.tensor(float(real_row)))
                assert torch.allclose(value.imag, torch.tensor(float(imag_row)))


def test_encoder_and_decoder_shapes_and_layer_types():
    bands, n_spk, n_ch, d = (2, 3, 5), 3, 2, 8
    enc = BandSplitEncoder(bands, n_ch, d)
    dec = BandMaskDecoder(bands, n_spk, n_ch, d)
    spec = torch.randn(2, n_ch, 6, 10, dtype=torch.complex64)
    emb = enc(spec)
    assert emb.shape == (2, 6, 3, d)  # [B, T, K, D]
    mask = dec(emb)
    assert mask.shape == (2, n_spk, n_ch, 6, 10) and mask.dtype == torch.complex64
    # layer sizes: GroupNorm(1, 2·M·w) → Conv(2·M·w → D); decoder 4D hidden,
    # last conv to 2·2·N·M·w (value and gate of the GLU)
    assert enc.encoders[1].norm.num_groups == 1
    assert enc.encoders[1].norm.num_channels == 3 * 2 * n_ch
    assert enc.encoders[1].proj.weight.shape == (d, 3 * 2 * n_ch, 1)
    assert dec.heads[2].fc1.weight.shape == (4 * d, d, 1)
    assert dec.heads[2].fc2.weight.shape == (4 * d, 4 * d, 1)
    assert dec.heads[2].out.weight.shape == (2 * 2 * n_spk * n_ch * 5, 4 * d, 1)


def test_encoder_normalises_each_band_over_features_and_frames():
    # GroupNorm(1 group) makes each band's embedding independent of the band's gain
    enc = BandSplitEncoder((2, 3), 1, 4).eval()
    spec = torch.randn(1, 1, 5, 5, dtype=torch.complex64)
    louder = spec.clone()
    louder[..., 2:] *= 100.0  # second band only
    torch.testing.assert_close(enc(spec), enc(louder), rtol=1e-4, atol=1e-4)


def test_decoder_masks_are_unbounded():
    dec = BandMaskDecoder((4,), 1, 1, 4)
    with torch.no_grad():
        dec.heads[0].out.weight.mul_(100.0)
        dec.heads[0].out.bias.fill_(10.0)
    mask = dec(torch.randn(1, 3, 1, 4))
    assert mask.abs().max() > 2.0


def test_gradient_reaches_every_encoder_and_decoder_parameter():
    bands = (2, 3)
    enc, dec = BandSplitEncoder(bands, 2, 4), BandMaskDecoder(bands, 2, 2, 4)
    spec = torch.randn(2, 2, 4, 5, dtype=torch.complex64)
    dec(enc(spec)).abs().square().sum().backward()
    for name, p in list(enc.named_parameters()) + list(dec.named_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_norms_run_in_fp32_under_bf16_autocast():
    bands = (2, 3)
    enc, dec = BandSplitEncoder(bands, 2, 4), BandMaskDecoder(bands, 1, 2, 4)
    spec = 1e3 * torch.randn(1, 2, 4, 5, dtype=torch.complex64)
    ref = dec(enc(spec))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = dec(enc(spec))
    assert out.dtype == torch.complex64
    assert torch.isfinite(torch.view_as_real(out)).all()
    # bf16 matmuls only: close to the fp32 result, not off by orders of magnitude
    assert (out - ref).abs().max() < 0.1 * ref.abs().max() + 1e-3
