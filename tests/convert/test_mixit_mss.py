"""Converter of the MixIT-MSS authors' checkpoints (b-sigpro/mixit-mss).

Their checkpoints cannot be downloaded here, so the tests build state dicts with their
names and shapes. ``their_shapes`` states those from their module definitions
(``BandSplitModule``, ``LocoformerBlock``, ``MultiHeadSelfAttention``,
``SwiGLUConvDeconv1d``, ``RMSGroupNorm``), independently of the converter's renaming
table, and ``their_forward`` is their network's forward pass written from their code
with functional ops, so the tests check that converted weights compute the same thing
in our separator, not only that renaming is invertible.
"""

from __future__ import annotations

import argparse
import math
from itertools import accumulate

import pytest
import torch
import torch.nn.functional as F
import yaml

from espnet2_ext.api import load_model
from espnet2_ext.constants import MUSDB_STEMS, MUSIC_SAMPLE_RATE
from espnet2_ext.convert import mixit_mss
from espnet2_ext.enh.layers.band_split import DEFAULT_BANDS
from espnet2_ext.tasks.enh import EnhancementTask
from espnet2_ext.zoo import full_train_config

from conftest import FS

#: A tiny model in their terms (their config keys).
NET = dict(
    num_spk=4,
    num_chan=2,
    n_layers=2,
    emb_dim=8,
    norm_type="rmsgroupnorm",
    num_groups=2,
    tf_order="ft",
    n_heads=2,
    flash_attention=True,
    attention_dim=8,
    ffn_type=["swiglu_conv1d", "swiglu_conv1d"],
    ffn_hidden_dim=[6, 6],
    conv1d_kernel=8,
    conv1d_shift=1,
    dropout=0.1,
    eps=1.0e-5,
)
P = "model.model."  # their task → ModelWrapper → BSLocoformer


def their_shapes(net=NET, bands=DEFAULT_BANDS, prefix=P):
    """Parameter names and shapes of their BSLocoformer (from their module code)."""
    m, n, d = net["num_chan"], net["num_spk"], net["emb_dim"]
    c, a, k = net["ffn_hidden_dim"][0], net["attention_dim"], net["conv1d_kernel"]
    shapes = {}
    for b, w in enumerate(bands):
        enc = f"{prefix}band_split_module.band_split_module.{b}."
        shapes.update({
            enc + "0.weight": (2 * m * w,), enc + "0.bias": (2 * m * w,),
            enc + "1.weight": (d, 2 * m * w, 1), enc + "1.bias": (d,),
        })  # fmt: skip
        dec = f"{prefix}band_split_module.bandwise_decoding_module.{b}."
        shapes.update({
            dec + "0.weight": (d,), dec + "0.bias": (d,),
            dec + "1.weight": (4 * d, d, 1), dec + "1.bias": (4 * d,),
            dec + "2.weight": (4 * d, 4 * d, 1), dec + "2.bias": (4 * d,),
            dec + "4.weight": (4 * n * m * w, 4 * d, 1),
            dec + "4.bias": (4 * n * m * w,),
        })  # fmt: skip
    for i in range(net["n_layers"]):
        for path in ("freq_path", "frame_path"):
            q = f"{prefix}blocks.{i}.{path}."
            for j in (0, 1):
                shapes.update({
                    f"{q}ffn_norm.{j}.gamma": (d,),
                    f"{q}ffn.{j}.conv1d.weight": (2 * c, d, k),
                    f"{q}ffn.{j}.conv1d.bias": (2 * c,),
                    f"{q}ffn.{j}.deconv1d.weight": (c, d, k),
                    f"{q}ffn.{j}.deconv1d.bias": (d,),
                })  # fmt: skip
            shapes[q + "attn_norm.gamma"] = (d,)
            shapes[q + "attn.qkv.weight"] = (3 * a, d)
            shapes[q + "attn.aggregate_heads.0.weight"] = (d, a)
    return shapes


# --------------------------------------------------------------------------- their net
def _rms_norm(x, gamma, groups, eps):
    g = x.reshape(*x.shape[:-1], groups, -1)
    rms = g.norm(2, dim=-1, keepdim=True) * g.shape[-1] ** -0.5
    return (g / (rms + eps)).reshape(x.shape) * gamma


def _swiglu_ffn(x, sd, q, kernel, shift):
    b, s1, s2, h = x.shape
    y = x.reshape(b * s1, s2, h).transpose(-1, -2)
    diff = kernel - shift
    seq_len = math.ceil((s2 + 2 * diff - kernel) / shift) * shift + kernel
    y = F.pad(y, (diff, seq_len - s2 - diff))
    y = F.conv1d(y, sd[q + "conv1d.weight"], sd[q + "conv1d.bias"], stride=shift)
    inner = y.shape[1] // 2
    y = y[:, :inner] * F.silu(y[:, inner:])
    y = F.conv_transpose1d(
        y, sd[q + "deconv1d.weight"], sd[q + "deconv1d.bias"], stride=shift
    ).transpose(-1, -2)
    return y[..., diff : diff + s2, :].reshape(b, s1, s2, h)


def _attention(x, sd, q, heads):
    n, length, _ = x.shape
    qkv = (x @ sd[q + "qkv.weight"].T).reshape(n, length, 3, heads, -1)
    qkv = qkv.movedim(-2, 1)  # [n, heads, L, 3, e]
    y = F.scaled_dot_product_attention(qkv[..., 0, :], qkv[..., 1, :], qkv[..., 2, :])
    y = y.transpose(1, 2).reshape(n, length, -1)
    return y @ sd[q + "aggregate_heads.0.weight"].T


def _locoformer_path(x, sd, q, net):
    """Their macaron LocoformerBlock: ffn[-1] before attention, ffn[0] after."""
    b, s1, s2, c = x.shape
    groups, eps = net["num_groups"], net["eps"]
    k, s = net["conv1d_kernel"], net["conv1d_shift"]
    y = x + _swiglu_ffn(
        _rms_norm(x, sd[q + "ffn_norm.1.gamma"], groups, eps), sd, q + "ffn.1.", k, s
    )
    a = _rms_norm(y, sd[q + "attn_norm.gamma"], groups, eps).reshape(b * s1, s2, c)
    y = _attention(a, sd, q + "attn.", net["n_heads"]).reshape(b, s1, s2, c) + y
    return y + _swiglu_ffn(
        _rms_norm(y, sd[q + "ffn_norm.0.gamma"], groups, eps), sd, q + "ffn.0.", k, s
    )


@torch.no_grad()
def their_forward(sd, spec, net=NET, bands=DEFAULT_BANDS):
    """Their BSLocoformer.forward: complex [B, F, M, T] → masked [B, N, M, F, T]."""
    n, m = net["num_spk"], net["num_chan"]
    batch0 = spec.movedim(-1, 1)  # [B, T, F, M]
    x = torch.cat((batch0.real, batch0.imag), dim=-1).movedim(1, -1)  # [B, F, 2M, T]
    n_batch, n_frames = x.shape[0], x.shape[-1]
    edges = list(accumulate([0] + list(bands)))
    encoded = []
    for b in range(len(bands)):
        q = f"{P}band_split_module.band_split_module.{b}."
        sub = x[:, edges[b] : edges[b + 1]].reshape(n_batch, -1, n_frames)
        sub = F.group_norm(sub, 1, sd[q + "0.weight"], sd[q + "0.bias"], eps=1e-5)
        encoded.append(F.conv1d(sub, sd[q + "1.weight"], sd[q + "1.bias"]))
    h = torch.stack(encoded, dim=-1)  # [B, D, T, K]
    for i in range(net["n_layers"]):
        y = _locoformer_path(h.movedim(1, -1), sd, f"{P}blocks.{i}.freq_path.", net)
        y = _locoformer_path(y.transpose(1, 2), sd, f"{P}blocks.{i}.frame_path.", net)
        h = y.transpose(-1, 1)
    masks = []
    for b in range(len(bands)):
        q = f"{P}band_split_module.bandwise_decoding_module.{b}."
        z = F.group_norm(h[..., b], 1, sd[q + "0.weight"], sd[q + "0.bias"], eps=1e-5)
        z = F.conv1d(z, sd[q + "1.weight"], sd[q + "1.bias"])
        z = torch.tanh(F.conv1d(z, sd[q + "2.weight"], sd[q + "2.bias"]))
        z = F.glu(F.conv1d(z, sd[q + "4.weight"], sd[q + "4.bias"]), dim=1)
        masks.append(z.reshape(n_batch, 2, n, m, -1, n_frames))
    mask = torch.cat(masks, dim=-2).transpose(-1, -2)  # [B, 2, N, M, T, F]
    mask = torch.complex(mask[:, 0], mask[:, 1])
    return (batch0.movedim(-1, -3).unsqueeze(1) * mask).transpose(-1, -2)


@torch.no_grad()
def their_wrapper_forward(sd, wav, net=NET, n_fft=2048, hop=512):
    """Their ``ModelWrapper.forward`` with ``scaling: true``: [B, M, L] → [B, N, M, L].

    Written from their code: a centred STFT (torchaudio's Spectrogram: periodic Hann,
    reflect padding); the mixture divided by the per-channel RMS of the STFT magnitude
    over all bins and frames (per-bin power floored at 1e-15); the network on the first
    ``L // hop`` frames only; the iSTFT to length ``L``; the scale multiplied back.
    """
    window = torch.hann_window(n_fft, dtype=wav.dtype)
    batch, channels, length = wav.shape

    def stft(x):  # [B, M, L] -> [B, F, M, T] (their "b m f t -> b f m t")
        spec = torch.stft(
            x.reshape(-1, length), n_fft, hop, window=window, return_complex=True
        )
        return spec.reshape(batch, channels, *spec.shape[-2:]).transpose(1, 2)

    scale = stft(wav).abs().square().clip(1e-15).mean(dim=(1, -1), keepdim=True).sqrt()
    x = stft(wav / scale.squeeze(1))[..., : length // hop]
    masked = their_forward(sd, x, net)  # [B, N, M, F, T']
    est = torch.istft(
        masked.reshape(-1, *masked.shape[-2:]), n_fft, hop, window=window, length=length
    ).reshape(batch, net["num_spk"], channels, length)
    return est * scale  # [B, 1, M, 1] broadcast over the outputs


# --------------------------------------------------------------------------- fixtures
def _their_checkpoint(net=NET, seed=0, extras=True):
    """A state dict of their task with random values, their names and shapes."""
    g = torch.Generator().manual_seed(seed)
    sd = {
        name: 0.3 * torch.randn(shape, generator=g)
        for name, shape in their_shapes(net).items()
    }
    if extras:  # STFT window buffers of their task and wrapper
        for name in ("stft.0.window", "model.stft.0.window", "model.istft.window"):
            sd[name] = torch.hann_window(2048)
    return sd


def _their_config(net=NET):
    """Their merged_config.yaml (the parts the converter reads), with interpolations."""
    return dict(
        sr=MUSIC_SAMPLE_RATE,
        n_fft=2048,
        hop_length=512,
        n_src=net["num_spk"],
        task=dict(
            _target_="mixit_mss.mixit.tasks.sup_task.SupTask",
            n_fft="${n_fft}",
            hop_length="${hop_length}",
            normalize_mixture=True,
            model=dict(
                _target_="mixit_mss.mixit.model.model_wrapper.ModelWrapper",
                n_fft="${n_fft}",
                hop_length="${hop_length}",
                fs="${sr}",
                scaling=True,
                model={
                    "_target_": "mixit_mss.mixit.model.bslocoformer.BSLocoformer",
                    **net,
                    "num_spk": "${n_src}",
                },
            ),
        ),
    )


def _our_model(config):
    args = argparse.Namespace(**full_train_config(config, "unused"))
    return EnhancementTask.build_model(args).eval()


def _spectrum(seed=1, frames=5):
    g = torch.Generator().manual_seed(seed)
    shape = (1, sum(DEFAULT_BANDS), 2, frames)  # their layout [B, F, M, T]
    real, imag = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    return torch.complex(real, imag)


# --------------------------------------------------------------------------- tests
def test_our_model_has_exactly_their_parameters():
    """Renaming ours gives their names and shapes, one to one (no leftovers)."""
    config = mixit_mss.convert(
        _their_checkpoint(), their_config=mixit_mss.parse_their_config(_their_config())
    ).config
    ours = _our_model(config).state_dict()
    theirs = mixit_mss.to_their_state_dict(ours)
    expected = their_shapes()
    assert set(theirs) == set(expected)
    for name, shape in expected.items():
        assert tuple(theirs[name].shape) == shape, name


def test_converted_weights_compute_their_network(tmp_path):
    """Their forward pass on their weights == our BS-Locoformer on the converted ones
    (their stem order kept, so outputs correspond one to one)."""
    sd = _their_checkpoint()
    result = mixit_mss.convert(
        sd,
        their_config=mixit_mss.parse_their_config(_their_config()),
        stem_order="theirs",
    )
    assert result.config["stems"] == list(mixit_mss.THEIR_STEMS)
    assert sorted(result.report["ignored_entries"]) == sorted(
        ["stft.0.window", "model.stft.0.window", "model.istft.window"]
    )
    model = _our_model(result.config)
    model.load_state_dict(result.state_dict, strict=True)
    spec = _spectrum()
    expected = their_forward(sd, spec)  # [B, N, M, F, T]
    ours_spec = spec.permute(0, 2, 3, 1)  # [B, M, T, F]
    with torch.no_grad():
        masks = model.separator.model(ours_spec)  # [B, N, M, T, F]
    got = (masks * ours_spec.unsqueeze(1)).transpose(-1, -2)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_converted_model_reproduces_their_whole_forward_on_2s_of_stereo():
    """Waveform in, waveforms out, through ESPnet's STFT encoder and decoder: the
    converted model equals their wrapper's forward (frame dropped, scale, iSTFT to
    the input length) within 1e-5; without drop_last_frame it does not."""
    sd = _their_checkpoint(seed=4)
    result = mixit_mss.convert(
        sd,
        their_config=mixit_mss.parse_their_config(_their_config()),
        stem_order="theirs",
    )
    assert result.config["separator_conf"]["drop_last_frame"] is True
    model = _our_model(result.config)
    model.load_state_dict(result.state_dict, strict=True)
    g = torch.Generator().manual_seed(6)
    length = 2 * MUSIC_SAMPLE_RATE + 123  # 2 s of stereo, not a whole number of hops
    wav = 0.1 * torch.randn(1, 2, length, generator=g)
    expected = their_wrapper_forward(sd, wav)  # [B, N, M, L]
    lengths = torch.tensor([length])
    with torch.no_grad():
        est = model.forward_enhance(wav.transpose(1, 2), lengths)[0]
    got = torch.stack([e.transpose(1, 2) for e in est], dim=1)  # [B, N, M, L]
    assert got.shape == expected.shape
    peak = float(expected.abs().max())
    assert 0.01 < peak < 100  # a meaningful comparison scale
    diff = float((got - expected).abs().max())
    print(f"max abs difference {diff:.2e} (peak {peak:.3f})")
    assert diff <= 1e-5
    # all frames into the network: every sample moves, not only the last n_fft
    model.separator.drop_last_frame = False
    with torch.no_grad():
        est = model.forward_enhance(wav.transpose(1, 2), lengths)[0]
    moved = (torch.stack([e.transpose(1, 2) for e in est], 1) - expected).abs()
    assert float(moved[..., : length // 2].max()) > 1e-4  # 10 x the tolerance


def test_four_stem_models_are_reordered_to_the_musdb_order():
    sd = _their_checkpoint(seed=2)
    result = mixit_mss.convert(
        sd, their_config=mixit_mss.parse_their_config(_their_config())
    )
    assert result.config["stems"] == list(MUSDB_STEMS)
    assert result.report["output_order"] == {
        "vocals": 2, "bass": 0, "drums": 1, "other": 3
    }  # fmt: skip
    model = _our_model(result.config)
    model.load_state_dict(result.state_dict, strict=True)
    spec = _spectrum(seed=3)
    expected = their_forward(sd, spec)
    ours_spec = spec.permute(0, 2, 3, 1)
    with torch.no_grad():
        got = (model.separator.model(ours_spec) * ours_spec.unsqueeze(1)).transpose(
            -1, -2
        )
    for ours, name in enumerate(MUSDB_STEMS):
        theirs = mixit_mss.THEIR_STEMS.index(name)
        torch.testing.assert_close(
            got[:, ours], expected[:, theirs], rtol=1e-4, atol=1e-5
        )


def test_round_trip_through_their_format_gives_identical_outputs(tmp_path):
    """Ours → their names (a 12-output MixIT model, SWA-style prefix and n_averaged)
    → converter CLI → our loader: identical separations."""
    net = {**NET, "num_spk": 12}
    config = mixit_mss.convert(
        _their_checkpoint(net),
        their_config=mixit_mss.parse_their_config(_their_config(net)),
    ).config
    torch.manual_seed(5)
    original = _our_model(config)
    with torch.no_grad():
        for p in original.parameters():
            p.add_(0.05 * torch.randn_like(p))  # not the initial values
    theirs = mixit_mss.to_their_state_dict(
        original.state_dict(), prefix="model.module.model."
    )
    theirs["model.n_averaged"] = torch.tensor(7)
    model_dir = tmp_path / "mixit.fma-large.bslocoformer-tiny.12outputs"
    (model_dir / "checkpoints").mkdir(parents=True)
    torch.save(theirs, model_dir / "checkpoints" / "model.pth")
    with open(model_dir / "merged_config.yaml", "w") as f:
        yaml.safe_dump(_their_config(net), f)

    out = tmp_path / "converted"
    checkpoint = model_dir / "checkpoints" / "model.pth"
    assert mixit_mss.main(["--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    report = yaml.safe_load((out / "conversion.yaml").read_text())
    assert report["outputs"] == 12 and report["stems"] is None
    assert report["ignored_entries"] == ["model.n_averaged"]
    assert report["config"].endswith("merged_config.yaml")  # found next to checkpoints/

    separator = load_model(out, segment=None)
    assert separator.stems == tuple(f"spk{n}" for n in range(1, 13))
    g = torch.Generator().manual_seed(0)
    mix = 0.1 * torch.randn(2, int(0.1 * FS), generator=g)
    stems = separator.separate(mix, FS)
    lengths = torch.tensor([mix.shape[-1]])
    with torch.no_grad():
        est, *_ = original.eval().forward_enhance(mix.T[None], lengths, {}, fs=None)
    for n in range(12):
        assert torch.equal(stems[f"spk{n + 1}"], est[n][0].T), n


def test_without_a_config_the_size_preset_gives_heads_and_groups(tmp_path):
    sd = _their_checkpoint()
    torch.save(sd, tmp_path / "model.pth")
    with pytest.raises(ValueError, match="heads"):
        mixit_mss.convert(sd)
    result = mixit_mss.convert(sd, n_heads=2, norm_groups=2)
    conf = result.config["separator_conf"]
    assert (conf["num_spk"], conf["num_channels"], conf["n_layers"]) == (4, 2, 2)
    sizes = (conf["emb_dim"], conf["ffn_hidden_dim"], conf["ffn_kernel_size"])
    assert sizes == (8, 6, 8)
    assert conf["bands"] is None  # their table is our default 62-band table
    model = _our_model(result.config)
    model.load_state_dict(result.state_dict, strict=True)


def test_mismatched_config_and_foreign_entries_are_refused():
    sd = _their_checkpoint()
    wrong = _their_config({**NET, "emb_dim": 16, "attention_dim": 16})
    with pytest.raises(ValueError, match="emb_dim"):
        mixit_mss.convert(sd, their_config=mixit_mss.parse_their_config(wrong))
    extra = dict(sd)
    extra[P + "blocks.0.freq_path.ffn_norm.0.beta"] = torch.zeros(8)
    with pytest.raises(ValueError, match="no counterpart"):
        mixit_mss.convert(extra, n_heads=2, norm_groups=2)
    non_macaron = _their_config({**NET, "ffn_type": "swiglu_conv1d"})
    with pytest.raises(ValueError, match="macaron"):
        mixit_mss.convert(sd, their_config=mixit_mss.parse_their_config(non_macaron))


def test_lightning_checkpoints_load_and_pickled_objects_are_refused(tmp_path):
    sd = _their_checkpoint(extras=False)
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "epoch=3.ckpt")
    assert mixit_mss.load_checkpoint(tmp_path / "epoch=3.ckpt").keys() == sd.keys()
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"state_dict": sd, "hyper_parameters": Payload()}, tmp_path / "x.ckpt")
    with pytest.raises(RuntimeError, match="weights_only"):
        mixit_mss.load_checkpoint(tmp_path / "x.ckpt")
    assert not marker.exists()
