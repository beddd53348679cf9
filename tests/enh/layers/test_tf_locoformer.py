"""TF-Locoformer parts: RMS group norm, conv SwiGLU FFN, attention, blocks."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from espnet2_ext.enh.layers.tf_locoformer import (
    LocoformerBlockConfig,
    LocoformerPath,
    MultiHeadSelfAttention,
    RMSGroupNorm,
    SwiGLUConvFFN,
    TFLocoformerBlock,
    apply_rope,
)

torch.set_num_threads(1)

TINY = LocoformerBlockConfig(
    emb_dim=8,
    ffn_hidden_dim=6,
    n_heads=2,
    norm_groups=2,
    attention_dim=None,
    ffn_kernel_size=3,
    ffn_stride=1,
    dropout=0.0,
    attention_dropout=0.0,
    eps=1e-5,
    rope=False,
)


def test_rms_group_norm_matches_a_hand_computation():
    torch.manual_seed(0)
    norm = RMSGroupNorm(num_groups=2, dim=6, eps=1e-5)
    with torch.no_grad():
        norm.gamma.copy_(torch.tensor([1.0, 2.0, 3.0, -1.0, 0.5, 4.0]))
    x = torch.randn(3, 4, 6)
    y = norm(x)
    for i in range(3):
        for j in range(4):
            for g in range(2):
                group = x[i, j, 3 * g : 3 * g + 3].tolist()
                rms = math.sqrt(sum(v * v for v in group) / 3)
                for c in range(3):
                    gamma = norm.gamma[3 * g + c].item()
                    expected = group[c] / (rms + 1e-5) * gamma
                    got = y[i, j, 3 * g + c].item()
                    assert got == pytest.approx(expected, rel=1e-5)


def test_rms_group_norm_has_no_bias_and_guards_silence():
    norm = RMSGroupNorm(4, 8)
    assert [name for name, _ in norm.named_parameters()] == ["gamma"]
    assert torch.equal(norm(torch.zeros(2, 8)), torch.zeros(2, 8))


def test_rms_group_norm_computes_in_fp32_under_autocast():
    norm = RMSGroupNorm(2, 8)
    x = 1e4 * torch.randn(5, 8)  # x² overflows nothing in fp32; bf16 would be coarse
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = norm(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, norm(x))
    y16 = norm(x.bfloat16())  # bf16 in: bf16 out, normalised like fp32 then rounded
    assert y16.dtype == torch.bfloat16
    expected = norm(x.bfloat16().float())
    torch.testing.assert_close(y16.float(), expected, rtol=1e-2, atol=1e-2)


def test_rms_group_norm_rejects_groups_that_do_not_divide():
    with pytest.raises(ValueError, match="num_groups=3"):
        RMSGroupNorm(3, 8)


@pytest.mark.parametrize("length", [1, 2, 7, 20])
@pytest.mark.parametrize("kernel, stride", [(8, 1), (3, 1), (4, 2), (4, 4)])
def test_conv_ffn_keeps_the_sequence_length(length, kernel, stride):
    ffn = SwiGLUConvFFN(6, 5, kernel_size=kernel, stride=stride)
    x = torch.randn(2, 3, length, 6)
    assert ffn(x).shape == x.shape


def reference_ffn(ffn: SwiGLUConvFFN, x: torch.Tensor) -> torch.Tensor:
    """The authors' padding and cropping, spelled out: [S, L, D] → [S, L, D]."""
    length, kernel, stride = x.shape[1], ffn.kernel_size, ffn.stride
    offset = kernel - stride
    n_steps = -(-(length + 2 * offset - kernel) // stride)
    padded = n_steps * stride + kernel
    h = F.pad(rearrange(x, "s l d -> s d l"), (offset, padded - length - offset))
    value, gate = F.conv1d(h, ffn.conv1d.weight, ffn.conv1d.bias, stride).chunk(2, 1)
    y = F.conv_transpose1d(
        value * F.silu(gate), ffn.deconv1d.weight, ffn.deconv1d.bias, stride
    )
    return rearrange(y[..., offset : offset + length], "s d l -> s l d")


@pytest.mark.parametrize("length", [1, 2, 7, 20])
@pytest.mark.parametrize("kernel, stride", [(8, 1), (3, 1), (4, 2), (4, 4), (5, 3)])
def test_conv_ffn_matches_the_reference_along_either_axis(length, kernel, stride):
    torch.manual_seed(0)
    ffn = SwiGLUConvFFN(6, 5, kernel_size=kernel, stride=stride)
    x = torch.randn(2, 3, length, 6)  # [B, S, L, D]
    expected = reference_ffn(ffn, x.reshape(6, length, 6)).reshape(2, 3, length, 6)
    torch.testing.assert_close(ffn(x), expected, rtol=1e-5, atol=1e-6)
    # along axis 1 of the transposed grid: the same sequences
    got = ffn(x.transpose(1, 2).contiguous(), dim=1).transpose(1, 2)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_attention_along_an_inner_axis_matches_the_transposed_grid():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(8, 2, rope=True).eval()
    x = torch.randn(2, 7, 3, 8)  # [B, L, S, D]: sequences along axis 1
    expected = attn(x.transpose(1, 2).reshape(6, 7, 8)).reshape(2, 3, 7, 8)
    torch.testing.assert_close(
        attn(x, dim=1), expected.transpose(1, 2), rtol=1e-5, atol=1e-6
    )


def test_path_along_an_inner_axis_matches_the_transposed_grid():
    torch.manual_seed(0)
    path = LocoformerPath(TINY).eval()
    x = torch.randn(2, 6, 3, 8)  # sequences along axis 1
    expected = path(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(path(x, dim=1), expected, rtol=1e-5, atol=1e-6)


def test_conv_ffn_layers_and_gating():
    ffn = SwiGLUConvFFN(6, 5, kernel_size=8, stride=1)
    assert ffn.conv1d.weight.shape == (10, 6, 8)  # D → 2C: value then gate
    assert ffn.deconv1d.weight.shape == (5, 6, 8)  # C → D
    # gate half at -inf-like values closes the SiLU gate: the output is the bias only
    with torch.no_grad():
        ffn.conv1d.bias[5:] = -1e4
    x = torch.randn(1, 1, 9, 6)
    expected = ffn.deconv1d.bias.expand(1, 1, 9, 6)
    torch.testing.assert_close(ffn(x), expected)


def test_conv_ffn_is_centred_with_a_receptive_field_of_kernel_minus_one_each_side():
    kernel = 4
    ffn = SwiGLUConvFFN(3, 4, kernel_size=kernel, stride=1)
    x = torch.randn(1, 1, 15, 3, requires_grad=True)
    i = 7
    ffn(x)[0, 0, i].sum().backward()
    reached = (x.grad[0, 0].abs().sum(-1) > 0).nonzero().flatten().tolist()
    assert reached == list(range(i - (kernel - 1), i + kernel))


def test_conv_ffn_rejects_stride_above_kernel():
    with pytest.raises(ValueError, match="ffn_stride"):
        SwiGLUConvFFN(4, 4, kernel_size=2, stride=3)


def test_attention_matches_a_manual_computation_and_has_no_biases():
    torch.manual_seed(0)
    d, h, length = 8, 2, 5
    attn = MultiHeadSelfAttention(d, h).eval()
    assert all("bias" not in name for name, _ in attn.named_parameters())
    assert attn.qkv.weight.shape == (3 * d, d) and attn.out_proj.weight.shape == (d, d)
    x = torch.randn(3, length, d)
    qkv = x @ attn.qkv.weight.T  # [S, L, 3D], ordered (three, head, e)
    e = d // h
    heads = []
    for head in range(h):
        q = qkv[..., 0 * d + head * e : 0 * d + (head + 1) * e]
        k = qkv[..., 1 * d + head * e : 1 * d + (head + 1) * e]
        v = qkv[..., 2 * d + head * e : 2 * d + (head + 1) * e]
        weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(e), dim=-1)
        heads.append(weights @ v)
    expected = torch.cat(heads, dim=-1) @ attn.out_proj.weight.T
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)


def test_attention_without_rope_has_no_positional_information():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(8, 2).eval()
    x = torch.randn(2, 6, 8)
    perm = torch.randperm(6)
    torch.testing.assert_close(attn(x[:, perm]), attn(x)[:, perm], rtol=1e-5, atol=1e-5)


def test_rope_makes_attention_position_aware():
    torch.manual_seed(0)
    plain = MultiHeadSelfAttention(8, 2).eval()
    rope = MultiHeadSelfAttention(8, 2, rope=True).eval()
    rope.load_state_dict(plain.state_dict())  # same parameters, RoPE adds none
    x = torch.randn(2, 6, 8)
    assert not torch.allclose(rope(x), plain(x), atol=1e-4)
    perm = torch.tensor([5, 4, 3, 2, 1, 0])
    assert not torch.allclose(rope(x[:, perm]), rope(x)[:, perm], atol=1e-4)


def test_apply_rope_is_a_rotation_with_relative_scores():
    q = torch.randn(1, 1, 6, 4)
    rotated = apply_rope(q)
    torch.testing.assert_close(rotated.norm(dim=-1), q.norm(dim=-1))  # norm kept
    torch.testing.assert_close(rotated[..., 0, :], q[..., 0, :])  # position 0 unchanged
    # <R_i q, R_j k> depends on j - i only: the same vectors at shifted positions
    k = torch.randn(4)
    seq_q = torch.stack([q[0, 0, 0]] * 6)[None, None]
    seq_k = torch.stack([k] * 6)[None, None]
    rq, rk = apply_rope(seq_q)[0, 0], apply_rope(seq_k)[0, 0]
    torch.testing.assert_close(rq[1] @ rk[3], rq[2] @ rk[4], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(n_heads=3), "n_heads=3"),
        (dict(rope=True, emb_dim=6, n_heads=2), "rope"),
    ],
)
def test_attention_rejects_invalid_heads(kwargs, key):
    emb_dim = kwargs.pop("emb_dim", 8)
    with pytest.raises(ValueError, match=key):
        MultiHeadSelfAttention(emb_dim, **kwargs)


def test_path_is_macaron_ffn_attention_ffn_without_half_factor():
    torch.manual_seed(0)
    path = LocoformerPath(TINY).eval()
    x = torch.randn(2, 3, 5, 8)
    x1 = x + path.ffn1(path.ffn1_norm(x))  # full residual: no 0.5
    h = path.attn(path.attn_norm(x1).reshape(6, 5, 8)).reshape(2, 3, 5, 8)
    x2 = x1 + h
    expected = x2 + path.ffn2(path.ffn2_norm(x2))
    torch.testing.assert_close(path(x), expected)


def test_block_mixes_bands_then_frames_and_keeps_the_shape():
    torch.manual_seed(0)
    block = TFLocoformerBlock(TINY).eval()
    x = torch.randn(1, 6, 5, 8, requires_grad=True)  # [B, T, K, D]
    y = block(x)
    assert y.shape == x.shape and y.is_contiguous()
    # frequency path (sequences over K) first, then time path (sequences over T), each
    # on its sequences as the last-but-one axis
    h = block.freq_path(x).transpose(1, 2)
    expected = block.time_path(h.contiguous()).transpose(1, 2)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-6)
    y[0, 0, 0].sum().backward()
    # one block reaches another frame *and* another band (freq path, then time path)
    assert x.grad[0, 4, 3].abs().sum() > 0


def test_block_gradient_reaches_every_parameter():
    block = TFLocoformerBlock(
        dataclasses.replace(TINY, dropout=0.1, attention_dropout=0.1)
    )
    block(torch.randn(2, 4, 3, 8)).square().sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_block_is_finite_under_bf16_autocast():
    block = TFLocoformerBlock(TINY).eval()
    x = torch.randn(1, 5, 4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = block(x)
    assert torch.isfinite(y).all()
    assert (y.float() - block(x)).abs().max() < 0.2 * block(x).abs().max()


def test_medium_blocks_hold_15_0_million_parameters():
    with torch.device("meta"):
        medium = LocoformerBlockConfig(
            emb_dim=128, ffn_hidden_dim=192, n_heads=8, norm_groups=8
        )
        blocks = [TFLocoformerBlock(medium) for _ in range(6)]
    n = sum(p.numel() for block in blocks for p in block.parameters())
    assert abs(n - 15.0e6) / 15.0e6 < 0.01, n
