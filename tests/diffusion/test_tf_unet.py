"""TF-attention U-Net: shapes, adaLN-Zero start, conditioning, invalid configs."""

import pytest
import torch

from espnet2_ext.diffusion.tf_unet import TFAttentionUNet, TFBlock

from diffusion_helpers import TINY_NET_CONF, _one_thread  # noqa: F401


@pytest.mark.parametrize("length", [1000, 1553])
def test_output_is_a_waveform_of_the_input_length(length):
    net = TFAttentionUNet(**TINY_NET_CONF)
    x = torch.randn(2, length)
    eps = net(x, torch.tensor([10.0, 900.0]))
    assert eps.shape == (2, length) and eps.dtype == torch.float32
    assert torch.isfinite(eps).all() and eps.abs().sum() > 0


def test_paper_size_builds_with_its_widths():
    net = TFAttentionUNet()
    assert net.conv_in.out_channels == 72
    assert [len(stage) for stage in net.stages] == [2, 4, 8, 4, 2]
    assert net.stages[2][0].freq.attn.qkv.in_features == 288
    assert net.stages[2][0].fullband is not None and net.stages[0][0].fullband is None
    # the full-band token: 16 channels × (256 / 4 bins at the bottleneck / fold 4)
    assert net.stages[2][0].fullband.token_dim == 256
    assert net.window.shape == (510,)


def test_blocks_start_as_identity():
    block = TFBlock(8, 2, 16, 2, fullband=dict(freq_bins=8, fold=4, band_dim=4))
    x = torch.randn(2, 8, 5, 8)
    assert torch.equal(block(x, torch.randn(2, 16)), x)


def test_class_conditioning_changes_the_prediction():
    torch.manual_seed(0)
    net = TFAttentionUNet(num_classes=3, **TINY_NET_CONF)
    with torch.no_grad():
        for p in net.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.05)
    x, t = torch.randn(1, 800), torch.tensor([500.0])
    out = [net(x, t, torch.tensor([c])) for c in (0, 1)] + [net(x, t, None)]
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[0], out[2])
    with pytest.raises(ValueError, match="unconditional"):
        TFAttentionUNet(**TINY_NET_CONF)(x, t, torch.tensor([0]))


def test_bf16_autocast_keeps_the_stft_in_fp32():
    net = TFAttentionUNet(**TINY_NET_CONF)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        eps = net(torch.randn(1, 700), torch.tensor([3.0]))
    assert eps.dtype == torch.float32 and torch.isfinite(eps).all()


@pytest.mark.parametrize(
    "conf, message",
    [
        (dict(n_fft=512), "257 bins"),
        (dict(depths=(1, 1, 1)), "5 non-negative"),
        (dict(hidden_size=9), "even"),
        (dict(hidden_size=12, num_heads=4), "head size"),
        (dict(num_classes=-1), "num_classes"),
    ],
)
def test_invalid_configs_raise(conf, message):
    with pytest.raises(ValueError, match=message):
        TFAttentionUNet(**{**TINY_NET_CONF, **conf})
