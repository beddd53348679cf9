"""Time-frequency attention U-Net: the source-prior network of seeds/001.

The waveform goes through an STFT (510 / 255, √Hann, 256 bins), its real and imaginary
parts become two channels, and a three-level U-Net of DiT-style blocks predicts the
noise spectrum, which an iSTFT turns back into a waveform (ε-prediction in the waveform
domain). Every block attends along frequency (one sequence per frame) and then along
time (one sequence per bin), with rotary position embeddings; the bottleneck blocks
first run a full-band time attention, whose tokens are whole (compressed) spectra. All
blocks are conditioned on the diffusion step (and the class) through adaLN-Zero (Peebles
& Xie, "Scalable Diffusion Models with Transformers", 2023): shift, scale and a gate
regressed from the conditioning vector, the gates initialised to zero so each block
starts as the identity. Feed-forward layers are gated (value · SiLU(gate)).

Facts (STFT, depths 2/4/8/4/2, widths 72/144/288, 128-dim conditioning, 4 heads, a 4×
frequency fold and 16 channels per band in the full-band attention, one conditioning
embedder per level) were read from the authors' code (RunwuShi/unasdiff); the code is
ours.

Shape legend (einops names):
    b  batch            f  frequency bins      t  frames (or samples for waveforms)
    c  channels         d  channels of a band token / head dim
    h  heads            s  sequences (batch × the other axis)   l  sequence length
    r  frequency fold of the full-band attention
Inside the network activations are channel-last: [b, f, t, c].
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from espnet2_ext.diffusion.abs_prior_network import AbsPriorNetwork

_LN_EPS = 1e-6


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the last (channel) axis, no affine parameters, in fp32."""
    y = F.layer_norm(x.float(), (x.shape[-1],), eps=_LN_EPS)
    return y.to(x.dtype)


def _modulate(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """adaLN: ``x · (1 + scale) + shift``; x [b, …, c], shift/scale [b, c]."""
    expand = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    return x * (1 + scale.reshape(expand)) + shift.reshape(expand)


def _gate(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    expand = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    return x * gate.reshape(expand)


def sinusoidal_embedding(
    t: torch.Tensor, dim: int, max_period: float = 10000.0
) -> torch.Tensor:
    """Sinusoidal features of (possibly fractional) times: [b] → [b, dim]."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, dtype=torch.float32, device=t.device)
        / half
    )
    angles = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ConditionEmbedding(nn.Module):
    """Diffusion-time (and class) embedding: sinusoid → MLP, plus a class table.

    Args:
        emb_dim: size of the conditioning vector.
        num_classes: class labels (0: unconditional); the table has one more row, the
            "no class" label used by classifier-free training and at sampling.
        frequency_dim: size of the sinusoidal features.
    """

    def __init__(self, emb_dim: int, num_classes: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.num_classes = num_classes
        self.mlp = nn.Sequential(
            nn.Linear(frequency_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.classes = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None

    def forward(
        self, t: torch.Tensor, category: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """t [b] (float), category [b] (long) or None → [b, emb_dim]."""
        features = sinusoidal_embedding(t, self.frequency_dim)
        emb = self.mlp(features.to(self.mlp[0].weight.dtype))
        if self.classes is not None:
            if category is None:
                category = torch.full(
                    (t.shape[0],), self.num_classes, dtype=torch.long, device=t.device
                )
            emb = emb + self.classes(category)
        return emb


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al., RoFormer) over the sequence axis.

    Channel pairs (i, i + d/2) of each head are rotated by ``pos · base^(−2i/d)``.
    """

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(
                f"rotary embedding needs an even head dimension, got {head_dim}"
            )
        exponents = torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim
        inv_freq = base ** (-exponents)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """q, k [s, h, l, d] → rotated q, k (same shapes and dtypes)."""
        length = q.shape[-2]
        pos = torch.arange(length, dtype=torch.float32, device=q.device)
        angles = pos[:, None] * self.inv_freq.to(q.device)[None]  # [l, d/2]
        cos, sin = angles.cos(), angles.sin()

        def rotate(x: torch.Tensor) -> torch.Tensor:
            x1, x2 = x.float().chunk(2, dim=-1)
            out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
            return out.to(x.dtype)

        return rotate(q), rotate(k)


class RoPEAttention(nn.Module):
    """Multi-head self-attention with rotary positions (sequence input [s, l, dim])."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(
                f"attention width {dim} is not divisible by num_heads={num_heads}"
            )
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.rope = RotaryEmbedding(dim // num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [s, l, dim] → [s, l, dim]."""
        q, k, v = rearrange(
            self.qkv(x), "s l (three h d) -> three s h l d", three=3, h=self.num_heads
        )
        q, k = self.rope(q, k)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(rearrange(y, "s h l d -> s l (h d)"))


class GatedLinear(nn.Module):
    """``value · SiLU(gate)`` of one linear layer with twice the output width."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, 2 * out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.silu(gate)


class GatedMLP(nn.Module):
    """Gated feed-forward network: GatedLinear(dim → ratio·dim) → Linear(→ dim)."""

    def __init__(self, dim: int, ratio: int = 2):
        super().__init__()
        self.up = GatedLinear(dim, ratio * dim)
        self.down = nn.Linear(ratio * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.up(x))


def _zero_linear(in_dim: int, out_dim: int) -> nn.Sequential:
    """SiLU → Linear initialised to zero: the adaLN-Zero regression head."""
    linear = nn.Linear(in_dim, out_dim)
    linear.adaln_zero = True  # re-zeroed by TFAttentionUNet._init_weights
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(nn.SiLU(), linear)


class AxisAttentionBlock(nn.Module):
    """DiT block attending along one axis of a [b, f, t, c] map.

    ``x += gate₁ · Attn(mod(LN(GatedLinear(LN(x)))))`` along ``axis``, then
    ``x += gate₂ · MLP(mod(LN(x)))``; shift, scale and gates come from the conditioning.

    Args:
        dim: channels c.
        num_heads: attention heads.
        emb_dim: size of the conditioning vector.
        axis: "freq" (one sequence over bins per frame) or "time" (over frames per bin).
        mlp_ratio: hidden width of the gated MLP, in multiples of dim.
    """

    def __init__(
        self, dim: int, num_heads: int, emb_dim: int, axis: str, mlp_ratio: int = 2
    ):
        super().__init__()
        if axis not in ("freq", "time"):
            raise ValueError(f"axis={axis!r}: use 'freq' or 'time'")
        self.axis = axis
        self.ada = _zero_linear(emb_dim, 6 * dim)
        self.in_proj = GatedLinear(dim, dim)
        self.attn = RoPEAttention(dim, num_heads)
        self.mlp = GatedMLP(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x [b, f, t, c], cond [b, emb_dim] → [b, f, t, c]."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(cond).chunk(6, dim=-1)
        h = _modulate(_layer_norm(self.in_proj(_layer_norm(x))), shift1, scale1)
        batch = x.shape[0]
        if self.axis == "freq":
            h = rearrange(h, "b f t c -> (b t) f c")
            h = rearrange(self.attn(h), "(b t) f c -> b f t c", b=batch)
        else:
            h = rearrange(h, "b f t c -> (b f) t c")
            h = rearrange(self.attn(h), "(b f) t c -> b f t c", b=batch)
        x = x + _gate(h, gate1)
        return x + _gate(self.mlp(_modulate(_layer_norm(x), shift2, scale2)), gate2)


class FullBandTimeAttention(nn.Module):
    """Attention over frames whose tokens are whole (compressed) spectra.

    The map is folded ``r`` bins into the channels, squeezed to ``band_dim`` channels
    per folded bin by a gated projection, and flattened over frequency into one token
    per frame (``f/r · band_dim`` wide); after the attention a (3 × 1) convolution over
    frequency restores the channels and the fold is undone. Then a gated MLP, both
    adaLN-Zero.

    Args:
        dim: channels c of the map.
        freq_bins: bins f at this level (divisible by fold).
        fold: bins folded into one token position, r.
        band_dim: channels per folded bin in the token.
        num_heads: attention heads.
        emb_dim: size of the conditioning vector.
        mlp_ratio: hidden width of the gated MLP, in multiples of dim.
    """

    def __init__(
        self,
        dim: int,
        freq_bins: int,
        fold: int,
        band_dim: int,
        num_heads: int,
        emb_dim: int,
        mlp_ratio: int = 2,
    ):
        super().__init__()
        if freq_bins % fold:
            raise ValueError(
                f"{freq_bins} bins at the bottleneck are not divisible by "
                f"fullband_fold={fold}; choose a fold that divides them"
            )
        self.fold = fold
        self.band_dim = band_dim
        token_dim = band_dim * (freq_bins // fold)
        self.token_dim = token_dim
        self.ada_attn = _zero_linear(emb_dim, 2 * token_dim + dim)
        self.ada_mlp = _zero_linear(emb_dim, 3 * dim)
        self.in_proj = GatedLinear(fold * dim, band_dim)
        self.attn = RoPEAttention(token_dim, num_heads)
        self.out_conv = nn.Conv2d(
            band_dim, fold * dim, kernel_size=(3, 1), padding=(1, 0)
        )
        self.mlp = GatedMLP(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x [b, f, t, c], cond [b, emb_dim] → [b, f, t, c]."""
        shift, scale, gate = self.ada_attn(cond).split(
            [self.token_dim, self.token_dim, x.shape[-1]], dim=-1
        )
        h = rearrange(_layer_norm(x), "b (f r) t c -> b f t (r c)", r=self.fold)
        h = rearrange(self.in_proj(h), "b f t d -> b t (f d)")
        h = self.attn(_modulate(_layer_norm(h), shift, scale))  # [b, t, f/r · d]
        h = rearrange(_layer_norm(h), "b t (f d) -> b d f t", d=self.band_dim)
        h = rearrange(self.out_conv(h), "b (r c) f t -> b (f r) t c", r=self.fold)
        x = x + _gate(h, gate)
        shift2, scale2, gate2 = self.ada_mlp(cond).chunk(3, dim=-1)
        return x + _gate(self.mlp(_modulate(_layer_norm(x), shift2, scale2)), gate2)


class TFBlock(nn.Module):
    """[full-band time attention →] frequency attention → time attention."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        emb_dim: int,
        mlp_ratio: int,
        fullband: Optional[dict] = None,
    ):
        super().__init__()
        self.fullband = (
            FullBandTimeAttention(
                dim=dim,
                num_heads=num_heads,
                emb_dim=emb_dim,
                mlp_ratio=mlp_ratio,
                **fullband,
            )
            if fullband is not None
            else None
        )
        self.freq = AxisAttentionBlock(dim, num_heads, emb_dim, "freq", mlp_ratio)
        self.time = AxisAttentionBlock(dim, num_heads, emb_dim, "time", mlp_ratio)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if self.fullband is not None:
            x = self.fullband(x, cond)
        return self.time(self.freq(x, cond), cond)


class Downsample(nn.Module):
    """3×3 conv (c → c/2) then 2×2 pixel-unshuffle: [b, f, t, c] → [b, f/2, t/2, 2c]."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim // 2, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(rearrange(x, "b f t c -> b c f t"))
        return rearrange(F.pixel_unshuffle(h, 2), "b c f t -> b f t c")


class Upsample(nn.Module):
    """3×3 conv (c → 2c) then 2×2 pixel-shuffle: [b, f, t, c] → [b, 2f, 2t, c/2]."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim * 2, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(rearrange(x, "b f t c -> b c f t"))
        return rearrange(F.pixel_shuffle(h, 2), "b c f t -> b f t c")


class TFAttentionUNet(AbsPriorNetwork):
    """The time-frequency attention U-Net prior (seeds/001), ε-prediction on waveforms.

    Args:
        n_fft: STFT size (window length too); ``n_fft // 2 + 1`` must be divisible by 4
            (two 2× downsamplings), e.g. 510 → 256 bins.
        hop_length: STFT hop.
        hidden_size: channels of the first level; the levels have 1×, 2×, 4× that.
        depths: blocks per stage: encoder 1, encoder 2, bottleneck, decoder 2,
            decoder 1.
        emb_dim: size of the conditioning vectors.
        num_heads: attention heads in every attention.
        mlp_ratio: hidden width of the gated MLPs, in multiples of the level width.
        fullband_fold: bins folded into a token position in the bottleneck's full-band
            time attention.
        fullband_dim: channels per folded bin in the full-band tokens.
        num_classes: class labels for conditioning (0: unconditional).
    """

    def __init__(
        self,
        n_fft: int = 510,
        hop_length: int = 255,
        hidden_size: int = 72,
        depths: Sequence[int] = (2, 4, 8, 4, 2),
        emb_dim: int = 128,
        num_heads: int = 4,
        mlp_ratio: int = 2,
        fullband_fold: int = 4,
        fullband_dim: int = 16,
        num_classes: int = 0,
    ):
        super().__init__()
        depths = tuple(int(d) for d in depths)
        bins = n_fft // 2 + 1
        if n_fft < 4 or hop_length < 1 or hop_length > n_fft:
            raise ValueError(
                f"need 1 <= hop_length <= n_fft, got {hop_length}, {n_fft}"
            )
        if bins % 4:
            raise ValueError(
                f"n_fft={n_fft} gives {bins} bins, not divisible by 4 (two 2x "
                "downsamplings); use n_fft = 8k + 6, e.g. 510 (256 bins) or 126 "
                "(64 bins)"
            )
        if len(depths) != 5 or min(depths) < 0:
            raise ValueError(
                f"depths={depths}: give 5 non-negative block counts "
                "(encoder 1, encoder 2, bottleneck, decoder 2, decoder 1)"
            )
        if hidden_size % 2:
            raise ValueError(
                f"hidden_size={hidden_size} must be even (downsampling halves it)"
            )
        for width in (hidden_size, 2 * hidden_size, 4 * hidden_size):
            if width % num_heads or (width // num_heads) % 2:
                raise ValueError(
                    f"level width {width} with num_heads={num_heads} gives head size "
                    f"{width / num_heads}; it must be an even integer (rotary "
                    "embedding)"
                )
        if num_classes < 0:
            raise ValueError(
                f"num_classes={num_classes} must be >= 0 (0: unconditional)"
            )
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.num_classes = num_classes
        self.register_buffer(
            "window", torch.hann_window(n_fft, periodic=True).sqrt(), persistent=False
        )
        widths = tuple(m * hidden_size for m in (1, 2, 4, 2, 1))
        fullband = dict(freq_bins=bins // 4, fold=fullband_fold, band_dim=fullband_dim)
        # One conditioning embedder per stage and one for the output layer (as the
        # authors' network): each stage can learn its own use of the step.
        self.embedders = nn.ModuleList(
            ConditionEmbedding(emb_dim, num_classes) for _ in range(6)
        )
        self.conv_in = nn.Conv2d(2, hidden_size, kernel_size=3, padding=1, bias=False)
        self.stages = nn.ModuleList(
            nn.ModuleList(
                TFBlock(
                    width,
                    num_heads,
                    emb_dim,
                    mlp_ratio,
                    fullband=fullband if stage == 2 else None,
                )
                for _ in range(depth)
            )
            for stage, (width, depth) in enumerate(zip(widths, depths))
        )
        self.down1 = Downsample(hidden_size)
        self.down2 = Downsample(2 * hidden_size)
        self.up2 = Upsample(4 * hidden_size)
        self.reduce2 = nn.Linear(4 * hidden_size, 2 * hidden_size)
        self.up1 = Upsample(2 * hidden_size)
        self.reduce1 = nn.Linear(2 * hidden_size, hidden_size)
        self.conv_out = nn.Conv2d(hidden_size, hidden_size, kernel_size=3, padding=1)
        self.final_ada = _zero_linear(emb_dim, 2 * hidden_size)
        self.final_conv = nn.Conv2d(
            hidden_size, 2, kernel_size=3, padding=1, bias=False
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                if getattr(module, "adaln_zero", False):
                    nn.init.zeros_(module.weight)
                else:
                    nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for embedder in self.embedders:
            nn.init.normal_(embedder.mlp[0].weight, std=0.02)
            nn.init.normal_(embedder.mlp[2].weight, std=0.02)
            if embedder.classes is not None:
                nn.init.normal_(embedder.classes.weight, std=0.02)

    def _frames_padding(self, num_samples: int) -> int:
        """Samples to append so that the (centred) STFT has a multiple of 4 frames."""
        frames = num_samples // self.hop_length + 1
        return (-frames) % 4 * self.hop_length

    def _run_stage(
        self, index: int, x: torch.Tensor, cond: torch.Tensor
    ) -> torch.Tensor:
        for block in self.stages[index]:
            x = block(x, cond)
        return x

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        category: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Predict ε.

        Args:
            x_t: diffused waveforms [b, samples].
            t: network time [b] (float).
            category: class labels [b] or None ("no class").
        Returns:
            ε̂ [b, samples].
        """
        if x_t.dim() != 2:
            raise ValueError(
                f"x_t must be [batch, samples], got shape {tuple(x_t.shape)}"
            )
        if category is not None and self.num_classes == 0:
            raise ValueError(
                "category given to an unconditional network (num_classes=0)"
            )
        num_samples = x_t.shape[-1]
        pad = self._frames_padding(num_samples)
        with torch.autocast(device_type=x_t.device.type, enabled=False):
            wave = F.pad(x_t.float(), (0, pad))
            spec = torch.stft(
                wave,
                self.n_fft,
                hop_length=self.hop_length,
                window=self.window.float(),
                center=True,
                return_complex=True,
            )  # [b, f, t]
            spec = torch.stack([spec.real, spec.imag], dim=1)  # [b, 2, f, t]
        x = self.conv_in(spec.to(self.conv_in.weight.dtype))
        x = rearrange(x, "b c f t -> b f t c")

        conds = [embedder(t, category) for embedder in self.embedders]
        skip1 = self._run_stage(0, x, conds[0])
        skip2 = self._run_stage(1, self.down1(skip1), conds[1])
        x = self._run_stage(2, self.down2(skip2), conds[2])
        x = self.reduce2(torch.cat([self.up2(x), skip2], dim=-1))
        x = self._run_stage(3, x, conds[3])
        x = self.reduce1(torch.cat([self.up1(x), skip1], dim=-1))
        x = self._run_stage(4, x, conds[4])

        x = self.conv_out(rearrange(x, "b f t c -> b c f t"))
        shift, scale = self.final_ada(conds[5]).chunk(2, dim=-1)
        x = _modulate(_layer_norm(rearrange(x, "b c f t -> b f t c")), shift, scale)
        out = self.final_conv(rearrange(x, "b f t c -> b c f t"))  # [b, 2, f, t]
        with torch.autocast(device_type=x_t.device.type, enabled=False):
            out = out.float()
            eps = torch.istft(
                torch.complex(out[:, 0], out[:, 1]),
                self.n_fft,
                hop_length=self.hop_length,
                window=self.window.float(),
                center=True,
                length=num_samples + pad,
            )
        return eps[:, :num_samples].to(x_t.dtype)
