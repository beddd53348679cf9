"""TF-Locoformer blocks and the band-split TF-Locoformer network (BS-Locoformer).

TF-Locoformer (Saijo et al., IWAENC 2024) is a dual-path transformer on a time-frequency
grid whose feed-forward networks are 1-D convolutions ("local modelling"), so that it
needs no positional encoding. BS-Locoformer (TUSS, Saijo et al., ICASSP 2025; MixIT-MSS,
seeds/002) runs it on a band-split spectrum: the "frequency" axis is the sequence of
bands. Structure and defaults follow the authors' code (b-sigpro/mixit-mss).

Einops legend used in this module::

    b: batch        t: frames (T)      k: bands (K)       d: embedding (D)
    s: outer axis (the one a path does not mix)   l: the sequence a path mixes
    h: attention heads                 e: per-head size    n: sources (N)
    m: audio channels (M)              f: STFT bins (F)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from espnet2_ext.enh.layers.band_split import BandMaskDecoder, BandSplitEncoder


@dataclass(frozen=True, kw_only=True)
class LocoformerBlockConfig:
    """Arguments of every TF-Locoformer block of a network, defined and checked once.

    The field names are the separator's YAML keys (``separator_conf``): the separator
    builds one config from its arguments and hands it to every block and path, so the
    checks below run once per model and their messages name the keys to fix. The
    defaults are those of the medium paper model.

    Attributes:
        emb_dim: embedding size D.
        ffn_hidden_dim: C, the gated width of each conv FFN.
        n_heads: attention heads; must divide the attention size.
        norm_groups: groups of the RMS group norms; must divide ``emb_dim``.
        attention_dim: attention size A (``None``: ``emb_dim``, as in all paper
            models).
        ffn_kernel_size: conv FFN kernel.
        ffn_stride: conv FFN stride, ``1 <= ffn_stride <= ffn_kernel_size``.
        dropout: dropout in the FFNs and after the attention output projection.
        attention_dropout: dropout on the attention weights.
        eps: RMS group norm epsilon.
        rope: rotary position embedding in both paths (off in the paper).
    """

    emb_dim: int = 128
    ffn_hidden_dim: int = 192
    n_heads: int = 8
    norm_groups: int = 8
    attention_dim: Optional[int] = None
    ffn_kernel_size: int = 8
    ffn_stride: int = 1
    dropout: float = 0.1
    attention_dropout: float = 0.1
    eps: float = 1e-5
    rope: bool = False

    def __post_init__(self) -> None:
        emb_dim, n_heads = self.emb_dim, self.n_heads
        if emb_dim < 1 or self.ffn_hidden_dim < 1:
            raise ValueError(
                f"emb_dim and ffn_hidden_dim must be positive, got {emb_dim} and "
                f"{self.ffn_hidden_dim}"
            )
        if self.norm_groups < 1 or emb_dim % self.norm_groups != 0:
            raise ValueError(
                f"norm_groups={self.norm_groups} does not divide emb_dim={emb_dim}: "
                "the RMS group norm splits the embedding into equal groups; pick a "
                "divisor"
            )
        attention_size = self.attention_size
        if n_heads < 1 or attention_size % n_heads != 0:
            raise ValueError(
                f"n_heads={n_heads} does not divide the attention size "
                f"{attention_size} (attention_dim, or emb_dim when attention_dim is "
                "null); pick a divisor"
            )
        if self.rope and (attention_size // n_heads) % 2 != 0:
            raise ValueError(
                f"rope: true needs an even per-head size, but {attention_size} / "
                f"{n_heads} heads = {attention_size // n_heads}"
            )
        if not 1 <= self.ffn_stride <= self.ffn_kernel_size:
            raise ValueError(
                "need 1 <= ffn_stride <= ffn_kernel_size, got ffn_stride "
                f"{self.ffn_stride}, ffn_kernel_size {self.ffn_kernel_size}"
            )
        for name in ("dropout", "attention_dropout"):
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")

    @property
    def attention_size(self) -> int:
        """A: ``attention_dim``, or ``emb_dim`` when it is ``None``."""
        return self.emb_dim if self.attention_dim is None else self.attention_dim


class RMSGroupNorm(nn.Module):
    """RMS group norm over the last axis.

    The ``dim`` features are split into ``num_groups`` groups of ``dim // num_groups``;
    each group is divided by its root mean square (plus ``eps``), then every feature is
    scaled by a learned ``gamma``. No mean is removed and there is no bias. Computed in
    fp32 even under autocast; the output has the dtype of the input.

    ``y = x / (sqrt(mean_group(x²)) + eps) * gamma``: ``eps`` is added to the RMS
    (not inside the square root), as in the authors' code.

    Args:
        num_groups: number of groups G; must divide ``dim``.
        dim: number of features.
        eps: added to each group's RMS.
    """

    def __init__(self, num_groups: int, dim: int, eps: float = 1e-5):
        super().__init__()
        if num_groups < 1 or dim % num_groups != 0:
            raise ValueError(
                f"RMS group norm: num_groups={num_groups} must be a positive divisor "
                f"of the feature size {dim}"
            )
        self.num_groups = num_groups
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., D] → [..., D]."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            groups = rearrange(x.float(), "... (g c) -> ... g c", g=self.num_groups)
            # root mean square as a norm: one pass over the features
            rms = torch.linalg.vector_norm(groups, dim=-1, keepdim=True)
            rms = rms * groups.shape[-1] ** -0.5
            y = rearrange(groups / (rms + self.eps), "... g c -> ... (g c)")
            y = y * self.gamma.float()
        return y.to(x.dtype)


class SwiGLUConvFFN(nn.Module):
    """Convolutional SwiGLU feed-forward network along a sequence.

    Conv1d(D → 2C, kernel, stride) → value · SiLU(gate) → dropout
    → ConvTranspose1d(C → D, kernel, stride) → crop to the input length → dropout.
    The input is padded by ``kernel - stride`` on the left (and enough on the right for
    the strides to fit), and the output is cropped from the same offset, so that with
    stride 1 each output step sees the inputs within ``kernel - 1`` steps on either
    side (centred).

    Args:
        emb_dim: D.
        hidden_dim: C (the gated width; the first conv outputs 2C: value then gate).
        kernel_size: conv kernel (8 in BS-Locoformer).
        stride: conv stride (1 in BS-Locoformer); at most ``kernel_size``.
        dropout: dropout after the gate and after the transposed conv.
    """

    def __init__(
        self,
        emb_dim: int,
        hidden_dim: int,
        kernel_size: int = 8,
        stride: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not 1 <= stride <= kernel_size:
            raise ValueError(
                f"conv FFN: need 1 <= ffn_stride <= ffn_kernel_size, got stride "
                f"{stride}, kernel {kernel_size}"
            )
        self.hidden_dim = hidden_dim
        self.kernel_size = kernel_size
        self.stride = stride
        self.conv1d = nn.Conv1d(emb_dim, 2 * hidden_dim, kernel_size, stride=stride)
        self.deconv1d = nn.ConvTranspose1d(
            hidden_dim, emb_dim, kernel_size, stride=stride
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, dim: int = -2) -> torch.Tensor:
        """[..., D] → [..., D]: convolution along axis ``dim`` (of length L); every
        other axis but the last (features) indexes independent sequences."""
        x = x.movedim(dim, -1)  # [..., D, L]
        outer, (emb_dim, length) = x.shape[:-2], x.shape[-2:]
        x = x.reshape(-1, emb_dim, length)
        offset = self.kernel_size - self.stride
        # smallest padded length >= length + 2 * offset that the strides tile exactly
        n_steps = -(-(length + 2 * offset - self.kernel_size) // self.stride)
        right = n_steps * self.stride + self.kernel_size - length - offset
        conv, deconv = self.conv1d, self.deconv1d
        if right == offset:
            # symmetric (always so with stride 1): the convolutions pad and crop
            # themselves, and the transposed one computes only the kept outputs
            x = F.conv1d(x, conv.weight, conv.bias, self.stride, padding=offset)
        else:
            x = F.conv1d(F.pad(x, (offset, right)), conv.weight, conv.bias, self.stride)
        value, gate = x.chunk(2, dim=1)
        x = self.dropout(value * F.silu(gate))
        if right == offset:
            x = F.conv_transpose1d(
                x, deconv.weight, deconv.bias, self.stride, padding=offset
            )
        else:
            x = F.conv_transpose1d(x, deconv.weight, deconv.bias, self.stride)
            x = x[..., offset : offset + length]
        x = self.dropout(x)  # [(...), D, L]
        return x.reshape(*outer, emb_dim, length).movedim(-1, dim)


def apply_rope(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding over the sequence axis (computed in fp32).

    The per-head features are split into two halves ``(x1, x2)`` rotated together, the
    ``i``-th pair at angle ``position · base^(-2i / e)``.

    Args:
        x: [..., L, e] with ``e`` even.

    Returns:
        Same shape and dtype as ``x``.
    """
    length, size = x.shape[-2], x.shape[-1]
    half = size // 2
    inv_freq = base ** (
        -torch.arange(half, device=x.device, dtype=torch.float32) / half
    )
    position = torch.arange(length, device=x.device, dtype=torch.float32)
    angle = position[:, None] * inv_freq
    cos, sin = angle.cos(), angle.sin()  # [L, e / 2]
    x1, x2 = x.float()[..., :half], x.float()[..., half:]
    rotated = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return rotated.to(x.dtype)


class MultiHeadSelfAttention(nn.Module):
    """Bias-free multi-head self-attention through ``scaled_dot_product_attention``.

    ``qkv``: Linear(D → 3A, no bias), its outputs ordered ``(3 h e)`` (query, key,
    value; then heads); ``out_proj``: Linear(A → D, no bias), then dropout. No
    positional encoding unless ``rope`` (rotary embedding of queries and keys).

    Args:
        emb_dim: D.
        n_heads: heads H; must divide ``attention_dim``.
        attention_dim: A (default D).
        attention_dropout: dropout on the attention weights (training only).
        dropout: dropout after the output projection.
        rope: apply rotary position embedding to queries and keys.
    """

    def __init__(
        self,
        emb_dim: int,
        n_heads: int,
        attention_dim: Optional[int] = None,
        attention_dropout: float = 0.0,
        dropout: float = 0.0,
        rope: bool = False,
    ):
        super().__init__()
        attention_dim = emb_dim if attention_dim is None else attention_dim
        if n_heads < 1 or attention_dim % n_heads != 0:
            raise ValueError(
                f"n_heads={n_heads} must be a positive divisor of the attention size "
                f"{attention_dim}"
            )
        if rope and (attention_dim // n_heads) % 2 != 0:
            raise ValueError(
                f"rope needs an even per-head size, got attention size {attention_dim} "
                f"/ {n_heads} heads = {attention_dim // n_heads}"
            )
        self.n_heads = n_heads
        self.attention_dropout = attention_dropout
        self.rope = rope
        self.qkv = nn.Linear(emb_dim, 3 * attention_dim, bias=False)
        self.out_proj = nn.Linear(attention_dim, emb_dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, dim: int = -2) -> torch.Tensor:
        """[..., D] → [..., D]: attention along axis ``dim`` (of length L); every other
        axis but the last (features) indexes independent sequences."""
        x = x.movedim(dim, -2)
        outer = x.shape[:-2]
        x = x.reshape(-1, *x.shape[-2:])  # [S, L, D]; a copy only when dim is not -2
        q, k, v = rearrange(
            self.qkv(x), "s l (three h e) -> three s h l e", three=3, h=self.n_heads
        )
        if self.rope:
            q, k = apply_rope(q), apply_rope(k)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attention_dropout if self.training else 0.0
        )
        y = self.dropout(self.out_proj(rearrange(y, "s h l e -> s l (h e)")))
        return y.reshape(*outer, *y.shape[-2:]).movedim(-2, dim)


class LocoformerPath(nn.Module):
    """One macaron Locoformer layer along one axis of a [..., D] grid.

    ``x += FFN1(norm(x)); x += MHSA(norm(x)); x += FFN2(norm(x))``, mixing along one
    axis (L) and independent along the others.

    The two FFN residuals carry **no ½ factor** (Conformer / Macaron-Net scale each FFN
    by ½). This is the authors' choice in TF-Locoformer, kept so that their trained
    weights behave the same here.

    Args:
        config: the block arguments (checked by :class:`LocoformerBlockConfig`).
    """

    def __init__(self, config: LocoformerBlockConfig):
        super().__init__()
        ffn_kwargs = dict(
            emb_dim=config.emb_dim,
            hidden_dim=config.ffn_hidden_dim,
            kernel_size=config.ffn_kernel_size,
            stride=config.ffn_stride,
            dropout=config.dropout,
        )
        norm_args = (config.norm_groups, config.emb_dim)
        self.ffn1_norm = RMSGroupNorm(*norm_args, eps=config.eps)
        self.ffn1 = SwiGLUConvFFN(**ffn_kwargs)
        self.attn_norm = RMSGroupNorm(*norm_args, eps=config.eps)
        self.attn = MultiHeadSelfAttention(
            config.emb_dim,
            config.n_heads,
            attention_dim=config.attention_dim,
            attention_dropout=config.attention_dropout,
            dropout=config.dropout,
            rope=config.rope,
        )
        self.ffn2_norm = RMSGroupNorm(*norm_args, eps=config.eps)
        self.ffn2 = SwiGLUConvFFN(**ffn_kwargs)

    def forward(self, x: torch.Tensor, dim: int = -2) -> torch.Tensor:
        """[..., D] → [..., D], mixing along axis ``dim`` ([B, S, L, D] by default).

        The grid keeps its layout: each sub-layer gathers its sequences itself, so the
        residual stream is never transposed.
        """
        x = x + self.ffn1(self.ffn1_norm(x), dim)
        x = x + self.attn(self.attn_norm(x), dim)
        x = x + self.ffn2(self.ffn2_norm(x), dim)
        return x


class TFLocoformerBlock(nn.Module):
    """TF-Locoformer block: a frequency path, then a time path.

    The frequency path mixes along the bands within each frame, the time path along the
    frames within each band; both are :class:`LocoformerPath`.

    Args:
        config: the block arguments (checked by :class:`LocoformerBlockConfig`).
    """

    def __init__(self, config: LocoformerBlockConfig):
        super().__init__()
        self.freq_path = LocoformerPath(config)
        self.time_path = LocoformerPath(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, K, D] → [B, T, K, D]."""
        x = self.freq_path(x, dim=2)  # sequences over bands, one per frame
        return self.time_path(x, dim=1)  # sequences over frames, one per band


class BSLocoformer(nn.Module):
    """Band-split TF-Locoformer: complex spectrum in, complex masks out.

    Band-wise encoder → ``n_layers`` :class:`TFLocoformerBlock` → band-wise GLU mask
    decoder. Built by
    :class:`~espnet2_ext.enh.separator.bs_locoformer_separator.BSLocoformerSeparator`,
    which checks its arguments with messages in terms of its YAML keys.

    Args:
        bands: bins per band (already valid, see
            :func:`~espnet2_ext.enh.layers.band_split.validate_bands`).
        num_spk: sources N.
        num_channels: audio channels M.
        n_layers: TF-Locoformer blocks.
        block: the arguments of every block (their ``emb_dim`` is also the band
            encoder's and decoder's embedding size).
    """

    def __init__(
        self,
        *,
        bands: Sequence[int],
        num_spk: int,
        num_channels: int,
        n_layers: int,
        block: LocoformerBlockConfig,
    ):
        super().__init__()
        self.bands = tuple(bands)
        self.encoder = BandSplitEncoder(self.bands, num_channels, block.emb_dim)
        self.blocks = nn.ModuleList(TFLocoformerBlock(block) for _ in range(n_layers))
        self.decoder = BandMaskDecoder(self.bands, num_spk, num_channels, block.emb_dim)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex spectrum [B, M, T, F] → complex64 masks [B, N, M, T, F].

        The masks are a view of a tensor stored as [N, B, T, M, F]
        (:class:`~espnet2_ext.enh.layers.band_split.BandMaskDecoder`).
        """
        x = self.encoder(spec)  # [B, T, K, D]
        for block in self.blocks:
            x = block(x)
        return self.decoder(x)

    def parameter_counts(self) -> Dict[str, int]:
        """Number of parameters: ``encoder``, ``blocks``, ``decoder`` and ``total``."""
        counts = {
            name: sum(p.numel() for p in getattr(self, name).parameters())
            for name in ("encoder", "blocks", "decoder")
        }
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts
