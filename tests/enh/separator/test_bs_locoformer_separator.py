"""BSLocoformerSeparator: the ESPnet adapter around the band-split TF-Locoformer."""

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from espnet2.enh.decoder.stft_decoder import STFTDecoder
from espnet2.enh.encoder.stft_encoder import STFTEncoder
from espnet2.enh.separator.abs_separator import AbsSeparator

from espnet2_ext.constants import MUSIC_SAMPLE_RATE
from espnet2_ext.enh.layers.band_split import scale_bands
from espnet2_ext.enh.separator.bs_locoformer_separator import (
    BS_LOCOFORMER_SIZES,
    BSLocoformerSeparator,
    bs_locoformer_parameter_counts,
)

torch.set_num_threads(1)

SR = MUSIC_SAMPLE_RATE
# tiny network on the real 62-band table (n_fft 2048, 1025 bins)
TINY = dict(n_layers=1, emb_dim=8, ffn_hidden_dim=8, n_heads=2, norm_groups=2)


def stft_pair():
    conf = dict(n_fft=2048, hop_length=512, window="hann", default_fs=SR)
    return STFTEncoder(**conf), STFTDecoder(**conf)


def spectrum(batch, frames, channels, bins=1025):
    shape = (batch, frames, bins) if channels == 1 else (batch, frames, channels, bins)
    return torch.randn(*shape, dtype=torch.complex64)


def reference_separator(sep: BSLocoformerSeparator, x: torch.Tensor, ilens):
    """The plain computation, band by band and with explicit transposes (the layout of
    the authors' code): complex [B, T, (M,) F] → estimates [N, B, T, (M,) F]."""
    net = sep.model
    spec = x.unsqueeze(2) if x.dim() == 3 else x  # [B, T, M, F]
    spec = rearrange(spec, "b t m f -> b m t f")
    feats = spec / sep._rms_scale(spec, ilens)
    embedded = []
    feats = torch.view_as_real(feats)
    for band, enc in zip(torch.split(feats, list(sep.bands), 3), net.encoder.encoders):
        h = rearrange(band, "b m t f ri -> b (f ri m) t")
        h = F.group_norm(h, 1, enc.norm.weight, enc.norm.bias, eps=1e-5)
        embedded.append(F.conv1d(h, enc.proj.weight, enc.proj.bias))
    h = rearrange(torch.stack(embedded, -1), "b d t k -> b t k d")
    for block in net.blocks:
        h = block.freq_path(h)  # sequences over bands: the last-but-one axis
        h = block.time_path(h.transpose(1, 2).contiguous()).transpose(1, 2)
    masks = []
    decoder = net.decoder
    for k, head in enumerate(decoder.heads):
        z = rearrange(h[:, :, k], "b t d -> b d t")
        z = F.group_norm(z, 1, head.norm.weight, head.norm.bias, eps=1e-5)
        z = F.conv1d(z, head.fc1.weight, head.fc1.bias)
        z = torch.tanh(F.conv1d(z, head.fc2.weight, head.fc2.bias))
        z = F.glu(F.conv1d(z, head.out.weight, head.out.bias), dim=1)
        z = rearrange(
            z, "b (ri n m f) t -> b n m t f ri", ri=2, n=sep.num_spk, m=sep.num_channels
        )
        masks.append(torch.view_as_complex(z.contiguous()))
    estimates = torch.cat(masks, dim=-1) * spec.unsqueeze(1)  # [B, N, M, T, F]
    estimates = rearrange(estimates, "b n m t f -> n b t m f")
    return estimates.squeeze(3) if x.dim() == 3 else estimates


@pytest.mark.parametrize("channels, num_spk", [(2, 3), (1, 2)])
def test_separator_matches_the_plain_per_band_computation(channels, num_spk):
    torch.manual_seed(0)
    conf = {**TINY, "n_layers": 2}
    sep = BSLocoformerSeparator(num_spk=num_spk, num_channels=channels, **conf).eval()
    with torch.no_grad():  # non-trivial norms and biases everywhere
        for p in sep.parameters():
            p.add_(0.2 * torch.randn_like(p))
    x = spectrum(2, 6, channels)
    ilens = torch.tensor([6, 4])
    target = torch.randn(num_spk, *x.shape, dtype=torch.complex64)
    results = []
    for fn in (
        lambda: torch.stack(sep(x, ilens)[0]),
        lambda: reference_separator(sep, x, ilens),
    ):
        sep.zero_grad()
        out = fn()
        (out * target).real.sum().backward()
        grads = {n: p.grad.clone() for n, p in sep.named_parameters()}
        results.append((out.detach(), grads))
    (fast, fast_grads), (ref, ref_grads) = results
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5)
    for name, ref_grad in ref_grads.items():
        # float sums over many frames: tolerance relative to each gradient's scale
        atol = 1e-3 * ref_grad.abs().max().item()
        torch.testing.assert_close(fast_grads[name], ref_grad, rtol=1e-3, atol=atol)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("num_spk", [1, 2, 4])
def test_output_shapes_and_dtype(channels, num_spk):
    sep = BSLocoformerSeparator(num_spk=num_spk, num_channels=channels, **TINY).eval()
    x = spectrum(2, 9, channels)
    ilens = torch.tensor([9, 9])
    masked, olens, others = sep(x, ilens)
    assert sep.num_spk == num_spk
    assert isinstance(masked, list) and len(masked) == num_spk
    assert list(others) == [f"mask_spk{i + 1}" for i in range(num_spk)]
    for est, mask in zip(masked, others.values()):
        assert est.shape == x.shape and est.dtype == torch.complex64
        assert est.is_contiguous()  # a slice of the [N, B, T, (M,) F] output
        assert mask.shape == x.shape and mask.dtype == torch.complex64
        torch.testing.assert_close(est, mask * x)  # masks act on the mixture
    assert torch.equal(olens, ilens)


def test_stereo_waveforms_through_espnet_stft_encoder_and_decoder():
    enc, dec = stft_pair()
    sep = BSLocoformerSeparator(num_spk=2, num_channels=2, **TINY).eval()
    n = int(0.25 * SR)
    wav = torch.randn(2, n, 2)  # ESPnet's multi-channel layout [B, samples, C]
    lens = torch.tensor([n, n])
    spec, flens = enc(wav, lens)
    assert spec.shape == (2, n // 512 + 1, 2, 1025)  # [B, T, C, F]
    masked, _, _ = sep(spec, flens)
    outs = [dec(s, lens)[0] for s in masked]
    assert all(o.shape == wav.shape for o in outs)
    assert all(torch.isfinite(o).all() for o in outs)


def test_drop_last_frame_runs_the_network_on_all_frames_but_the_last():
    """The MixIT-MSS authors' framing: the scale from every frame, the network on the
    first L // hop frames, ESPnet's decoder back to the input length."""
    enc, dec = stft_pair()
    torch.manual_seed(0)
    sep = BSLocoformerSeparator(num_spk=2, num_channels=2, drop_last_frame=True, **TINY)
    sep.eval()
    n = int(0.25 * SR) + 7
    wav = torch.randn(1, n, 2)
    lens = torch.tensor([n])
    spec, flens = enc(wav, lens)
    seen = {}
    sep.model.register_forward_pre_hook(lambda mod, args: seen.update(x=args[0]))
    masked, out_lens, others = sep(spec, flens)
    assert seen["x"].shape[2] == n // 512 == spec.shape[1] - 1  # [B, M, T', F]
    assert masked[0].shape == (1, n // 512, 2, 1025)
    assert others["mask_spk1"].shape == masked[0].shape
    assert out_lens.tolist() == [flens.item() - 1]
    # the scale is measured on all frames, the last one included
    full = rearrange(spec, "b t m f -> b m t f")
    torch.testing.assert_close(
        seen["x"], (full / sep._rms_scale(full, flens))[:, :, :-1]
    )
    # ... which is a different scale from that of the kept frames alone
    kept = sep._rms_scale(full[:, :, :-1], flens - 1)
    assert not torch.allclose(sep._rms_scale(full, flens), kept)
    assert all(dec(s, lens)[0].shape == wav.shape for s in masked)
    sep.drop_last_frame = False
    assert sep(spec, flens)[0][0].shape == spec.shape


def test_mono_waveforms_through_espnet_stft_encoder_and_decoder():
    enc, dec = stft_pair()
    sep = BSLocoformerSeparator(num_spk=3, num_channels=1, **TINY).eval()
    n = int(0.2 * SR)
    wav = torch.randn(1, n)  # [B, samples]
    spec, flens = enc(wav, torch.tensor([n]))
    assert spec.shape == (1, n // 512 + 1, 1025)  # [B, T, F]
    masked, _, _ = sep(spec, flens)
    assert all(dec(s, torch.tensor([n]))[0].shape == wav.shape for s in masked)


def test_network_input_has_unit_rms_per_channel_and_silence_is_finite():
    sep = BSLocoformerSeparator(num_spk=2, num_channels=2, **TINY).eval()
    seen = {}
    sep.model.register_forward_pre_hook(lambda mod, args: seen.update(x=args[0]))
    x = spectrum(2, 6, 2)
    x[:, :, 0] *= 1000.0  # left channel much louder
    x[1] *= 1e-3
    sep(x, torch.tensor([6, 6]))
    rms = seen["x"].abs().square().mean(dim=(2, 3)).sqrt()  # [B, M]
    torch.testing.assert_close(rms, torch.ones(2, 2), rtol=1e-4, atol=1e-4)

    silent = torch.zeros(1, 6, 2, 1025, dtype=torch.complex64)
    masked, _, others = sep(silent, torch.tensor([6]))
    assert all(torch.isfinite(torch.view_as_real(m)).all() for m in others.values())
    assert all(torch.equal(s, silent) for s in masked)


def test_rms_scale_ignores_padded_frames():
    sep = BSLocoformerSeparator(num_spk=1, num_channels=1, **TINY).eval()
    x = spectrum(1, 8, 1)
    x[:, 5:] = 0.0  # what ESPnet's STFT encoder leaves in padded frames
    scale_valid = sep._rms_scale(x[:, :5].unsqueeze(1), None)
    scale_padded = sep._rms_scale(x.unsqueeze(1), torch.tensor([5]))
    torch.testing.assert_close(scale_padded, scale_valid)


def test_input_scaling_makes_the_output_scale_with_the_input():
    # with input scaling, masks do not depend on the mixture's level
    torch.manual_seed(0)
    sep = BSLocoformerSeparator(num_spk=2, num_channels=2, **TINY).eval()
    x = spectrum(1, 6, 2)
    ilens = torch.tensor([6])
    _, _, quiet = sep(x, ilens)
    _, _, loud = sep(1e4 * x, ilens)
    for key in quiet:
        torch.testing.assert_close(loud[key], quiet[key], rtol=1e-3, atol=1e-4)


def test_gradient_reaches_every_parameter():
    sep = BSLocoformerSeparator(num_spk=2, num_channels=2, **TINY)
    masked, _, _ = sep(spectrum(2, 5, 2), torch.tensor([5, 5]))
    sum(s.abs().square().sum() for s in masked).backward()
    for name, p in sep.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bf16_autocast_forward_is_finite():
    sep = BSLocoformerSeparator(num_spk=4, num_channels=2, **TINY).eval()
    x = spectrum(1, 7, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        masked, _, _ = sep(x, torch.tensor([7]))
    assert all(s.dtype == torch.complex64 for s in masked)
    assert all(torch.isfinite(torch.view_as_real(s)).all() for s in masked)


def test_rope_option_runs_and_changes_the_output():
    torch.manual_seed(0)
    plain = BSLocoformerSeparator(num_spk=2, **TINY).eval()
    rope = BSLocoformerSeparator(num_spk=2, rope=True, **TINY).eval()
    rope.load_state_dict(plain.state_dict())  # RoPE has no parameters
    x = spectrum(1, 6, 2)
    a, _, _ = plain(x, torch.tensor([6]))
    b, _, _ = rope(x, torch.tensor([6]))
    assert not torch.allclose(a[0], b[0], atol=1e-5)


def test_default_construction_is_the_medium_paper_model():
    sep = BSLocoformerSeparator()
    assert isinstance(sep, AbsSeparator)
    assert sep.num_spk == 4 and sep.num_channels == 2 and len(sep.bands) == 62
    counts = sep.parameter_counts()
    assert counts == bs_locoformer_parameter_counts("medium")
    assert counts["total"] == sum(p.numel() for p in sep.parameters())
    assert counts["total"] == counts["encoder"] + counts["blocks"] + counts["decoder"]
    assert abs(counts["blocks"] - 15.0e6) / 15.0e6 < 0.01


def test_paper_sizes_grow():
    counts = {
        size: bs_locoformer_parameter_counts(size)["blocks"]
        for size in BS_LOCOFORMER_SIZES
    }
    assert counts["small"] < counts["medium"] < counts["large"]


def test_custom_bands_for_another_stft():
    bands = scale_bands(1024, SR)
    sep = BSLocoformerSeparator(input_dim=513, bands=list(bands), num_spk=2, **TINY)
    masked, _, _ = sep(spectrum(1, 4, 2, bins=513), torch.tensor([4]))
    assert masked[0].shape == (1, 4, 2, 513)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(bands=[2] * 512), "bands sum to 1024, the STFT gives 1025 bins"),
        (dict(input_dim=513), "bands: null selects the 62-band table"),
        (dict(n_heads=3), "n_heads=3 does not divide"),
        (dict(norm_groups=3), "norm_groups=3 does not divide emb_dim=8"),
        (dict(num_channels=3), "num_channels must be 1"),
        (dict(rope=True, emb_dim=6, norm_groups=2, n_heads=2), "even per-head"),
        (dict(ffn_stride=9), "ffn_stride"),
        (dict(dropout=1.0), "dropout"),
    ],
)
def test_invalid_configs_raise_useful_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BSLocoformerSeparator(**{**TINY, **kwargs})


def test_channel_mismatch_raises():
    stereo = BSLocoformerSeparator(num_channels=2, **TINY)
    with pytest.raises(ValueError, match=r"built for 2 channels \(stereo\) but got 1"):
        stereo(spectrum(1, 4, 1), torch.tensor([4]))
    mono = BSLocoformerSeparator(num_channels=1, **TINY)
    with pytest.raises(ValueError, match=r"built for 1 channel \(mono\) but got 2"):
        mono(spectrum(1, 4, 2), torch.tensor([4]))


def test_bad_spectra_raise():
    sep = BSLocoformerSeparator(**TINY)
    with pytest.raises(ValueError, match="1024 bins"):
        sep(spectrum(1, 4, 2, bins=1024), torch.tensor([4]))
    with pytest.raises(TypeError, match="complex"):
        sep(torch.randn(1, 4, 2, 1025), torch.tensor([4]))
    with pytest.raises(ValueError, match="no frames"):
        sep(spectrum(1, 0, 2), torch.tensor([0]))


def test_clip_shorter_than_one_stft_frame():
    """Behaviour for clips shorter than n_fft (2048 samples).

    ESPnet's centred STFT pads n_fft // 2 samples on each side, so any clip of at
    least n_fft // 2 + 1 samples gives frames and separates normally (a 1500-sample
    clip gives 3 frames, the separator works from a single frame up). Shorter clips
    cannot be reflect-padded: ESPnet's STFT encoder (torch.stft) raises before the
    separator is reached.
    """
    enc, dec = stft_pair()
    sep = BSLocoformerSeparator(num_spk=2, num_channels=2, **TINY).eval()
    n = 1500
    wav = torch.randn(1, n, 2)
    spec, flens = enc(wav, torch.tensor([n]))
    assert spec.shape[1] == 3
    masked, _, _ = sep(spec, flens)
    assert dec(masked[0], torch.tensor([n]))[0].shape == wav.shape

    one_frame, _, _ = sep(spectrum(1, 1, 2), torch.tensor([1]))
    assert one_frame[0].shape == (1, 1, 2, 1025)

    with pytest.raises(RuntimeError):
        enc(torch.randn(1, 1000, 2), torch.tensor([1000]))
