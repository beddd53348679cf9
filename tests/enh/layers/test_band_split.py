"""Band table, band features and the band-wise encoder / mask decoder."""

import pytest
import torch

from espnet2_ext.enh.layers.band_split import (
    DEFAULT_BANDS,
    BandMaskDecoder,
    BandSplitEncoder,
    band_features,
    glu_output_to_mask,
    scale_bands,
    validate_bands,
)

torch.set_num_threads(1)


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
    assert scale_bands(2048, 44100) == DEFAULT_BANDS


def test_scale_bands_keeps_edges_in_hz():
    # twice the FFT size at the same rate: every band twice as wide (the last band
    # ends at the new Nyquist bin 2048, so it gets 2 * 129 - 1 bins)
    bands = scale_bands(4096, 44100)
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
    bands = scale_bands(512, 44100)
    assert len(bands) < 62 and min(bands) == 1 and sum(bands) == 257


@pytest.mark.parametrize(
    "n_fft, sample_rate", [(512, 16000), (1024, 44100), (2048, 48000), (4096, 22050)]
)
def test_scale_bands_covers_every_bin_of_other_stfts(n_fft, sample_rate):
    bands = scale_bands(n_fft, sample_rate)
    assert validate_bands(bands, n_fft // 2 + 1) == bands
    assert all(w >= 1 for w in bands)
    assert len(bands) <= 62


def test_band_features_order_is_bin_then_real_imag_then_channel():
    spec = torch.randn(2, 2, 3, 7, dtype=torch.complex64)  # [B, M, T, F]
    bands = (3, 4)
    feats = band_features(spec, bands)
    assert [tuple(x.shape) for x in feats] == [(2, 3 * 2 * 2, 3), (2, 4 * 2 * 2, 3)]
    start = 3
    for f in range(4):
        for ri, part in enumerate((spec.real, spec.imag)):
            for m in range(2):
                row = f * 4 + ri * 2 + m
                expected = part[:, m, :, start + f]
                torch.testing.assert_close(feats[1][:, row, :], expected)


def test_glu_output_to_mask_order_is_real_imag_then_source_channel_bin():
    n, m, w, t = 3, 2, 4, 5
    out = torch.randn(2, 2 * n * m * w, t)
    mask = glu_output_to_mask(out, n, m)
    assert mask.shape == (2, n, m, t, w) and mask.dtype == torch.complex64
    for ni, mi, fi in [(0, 0, 0), (2, 1, 3), (1, 0, 2)]:
        re_row = ((0 * n + ni) * m + mi) * w + fi
        im_row = ((1 * n + ni) * m + mi) * w + fi
        torch.testing.assert_close(mask[:, ni, mi, :, fi].real, out[:, re_row])
        torch.testing.assert_close(mask[:, ni, mi, :, fi].imag, out[:, im_row])


def test_encoder_and_decoder_shapes_and_layer_types():
    bands, n_spk, n_ch, d = (2, 3, 5), 3, 2, 8
    enc = BandSplitEncoder(bands, n_ch, d)
    dec = BandMaskDecoder(bands, n_spk, n_ch, d)
    spec = torch.randn(2, n_ch, 6, 10, dtype=torch.complex64)
    emb = enc(spec)
    assert emb.shape == (2, d, 6, 3)
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
    mask = dec(torch.randn(1, 4, 3, 1))
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
