"""Band split for BS-Locoformer: the band table, the band-wise encoder and mask decoder.

The one-sided STFT spectrum (``F = n_fft // 2 + 1`` bins) is cut into ``K`` contiguous
bands of ``w_k`` bins each. Every band gets its own small encoder, which maps the band's
real and imaginary parts of all audio channels to a ``D``-dimensional embedding, and its
own mask decoder, which maps the embedding back to a complex mask for every source and
audio channel of that band's bins (band-split RNN, Luo & Yu 2023; BS-RoFormer,
Lu et al. 2024; TUSS and MixIT-MSS, Saijo et al. 2025).

Einops legend used in this module::

    b: batch            m: audio channels (M)     t: STFT frames (T)
    f: bins (of a band or of the whole spectrum)  ri: real / imaginary (2)
    n: sources (N)      d: embedding (D)          k: bands (K)

The flattening orders (``(f ri m)`` in the encoder, ``(ri n m f)`` in the decoder) are
those of the authors' code (b-sigpro/mixit-mss), so that their published weights act on
the same features when loaded into these modules.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
from einops import rearrange
from torch import nn

#: Bins per band of the 62-band table for 44.1 kHz audio and ``n_fft = 2048``
#: (1025 bins): the table of BS-RoFormer, used by BS-Locoformer (MixIT-MSS).
DEFAULT_BANDS: Tuple[int, ...] = (
    (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)
)
#: The STFT that :data:`DEFAULT_BANDS` was made for.
DEFAULT_BANDS_SAMPLE_RATE = 44100
DEFAULT_BANDS_N_FFT = 2048

#: Width of the hidden layers of the mask decoder, in multiples of the embedding size.
DECODER_HIDDEN_FACTOR = 4


def validate_bands(bands: Sequence[int], n_bins: int) -> Tuple[int, ...]:
    """Check a band table against the number of STFT bins and return it as a tuple.

    Args:
        bands: bins per band, low to high frequency; every entry a positive integer.
        n_bins: number of one-sided STFT bins, ``n_fft // 2 + 1``.

    Raises:
        ValueError: empty table, a band that is not a positive integer, or a table whose
            widths do not add up to ``n_bins``.
    """
    bands = tuple(bands)
    if len(bands) == 0:
        raise ValueError("bands is empty: give the number of STFT bins of every band")
    for k, width in enumerate(bands):
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(
                f"bands[{k}] = {width!r}: every band must hold a positive integer "
                "number of STFT bins"
            )
    total = sum(bands)
    if total != n_bins:
        raise ValueError(
            f"bands sum to {total}, the STFT gives {n_bins} bins "
            f"(n_fft {2 * (n_bins - 1)}); give bands that cover every bin exactly "
            "once, e.g. espnet2_ext.enh.layers.band_split.scale_bands(n_fft, "
            "sample_rate)"
        )
    return bands


def scale_bands(
    n_fft: int,
    sample_rate: int,
    reference_bands: Sequence[int] = DEFAULT_BANDS,
    reference_n_fft: int = DEFAULT_BANDS_N_FFT,
    reference_sample_rate: int = DEFAULT_BANDS_SAMPLE_RATE,
) -> Tuple[int, ...]:
    """Derive a band table for another STFT size or sampling rate.

    The band edges of the reference table are kept **in Hz**: each inner edge (bin
    index ``e`` of the reference STFT, ``e * reference_sample_rate / reference_n_fft``
    Hz) is moved to the nearest bin of the new STFT, ``round(hz * n_fft / sample_rate)``
    (half up). Edges that fall on the same new bin merge (no band is narrower than one
    bin), edges at or above the new Nyquist bin are dropped, and the last band runs up
    to the new Nyquist bin. So a finer STFT keeps the 62 bands with proportionally
    more bins each; a coarser STFT or a lower sampling rate gives fewer bands; a higher
    sampling rate puts everything above the reference's top inner edge (19.3 kHz for
    the default table) into the last band. With the reference STFT itself the table
    comes back unchanged.

    Args:
        n_fft: FFT size of the new STFT (``n_fft // 2 + 1`` bins).
        sample_rate: sampling rate of the new STFT in Hz.
        reference_bands: table to scale (default: the 62-band table).
        reference_n_fft: FFT size the reference table was made for.
        reference_sample_rate: sampling rate the reference table was made for.

    Returns:
        Bins per band; they add up to ``n_fft // 2 + 1``.
    """
    if n_fft < 2 or sample_rate <= 0:
        raise ValueError(
            f"n_fft must be >= 2 and sample_rate > 0, got n_fft {n_fft}, "
            f"sample_rate {sample_rate}"
        )
    reference_bands = validate_bands(reference_bands, reference_n_fft // 2 + 1)
    n_bins = n_fft // 2 + 1
    ratio = (n_fft / sample_rate) * (reference_sample_rate / reference_n_fft)
    edges = [0]
    position = 0
    for width in reference_bands[:-1]:
        position += width
        # round half up (Python's round() would round half to even)
        edge = int(math.floor(position * ratio + 0.5))
        if edges[-1] < edge < n_bins:
            edges.append(edge)
    edges.append(n_bins)
    return tuple(hi - lo for lo, hi in zip(edges[:-1], edges[1:]))


def band_features(spec: torch.Tensor, bands: Sequence[int]) -> List[torch.Tensor]:
    """Cut a complex spectrum into bands of real features.

    Args:
        spec: complex spectrum [B, M, T, F], ``F == sum(bands)``.
        bands: bins per band.

    Returns:
        One real tensor [B, w_k * 2 * M, T] per band; the feature axis is ordered
        ``(f ri m)``: bin, then real/imaginary, then audio channel (channel fastest).
    """
    feats = torch.view_as_real(spec)  # [B, M, T, F, 2]
    return [
        rearrange(band, "b m t f ri -> b (f ri m) t")
        for band in torch.split(feats, list(bands), dim=3)
    ]


def glu_output_to_mask(
    out: torch.Tensor, num_spk: int, num_channels: int
) -> torch.Tensor:
    """Turn one band's GLU output into complex masks.

    Args:
        out: real tensor [B, 2 * N * M * w, T], feature axis ordered ``(ri n m f)``.
        num_spk: N.
        num_channels: M.

    Returns:
        Complex masks [B, N, M, T, w] in float32 precision (complex64).
    """
    out = rearrange(
        out.float(),
        "b (ri n m f) t -> b n m t f ri",
        ri=2,
        n=num_spk,
        m=num_channels,
    )
    return torch.view_as_complex(out.contiguous())


def _no_autocast(x: torch.Tensor):
    """Context that turns autocast off on the device of ``x`` (for fp32 norms)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


class BandEncoder(nn.Module):
    """Encoder of one band: GroupNorm(1 group) over the band's features, 1×1 conv.

    The GroupNorm with one group normalises each example over all of the band's features
    *and* frames (mean and variance of the whole [w·2·M, T] slice), with a learned
    per-feature affine; it runs in fp32 even under autocast.
    """

    def __init__(self, in_dim: int, emb_dim: int, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.GroupNorm(1, in_dim, eps=eps)
        self.proj = nn.Conv1d(in_dim, emb_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, w·2·M, T] → [B, D, T]."""
        with _no_autocast(x):
            x = self.norm(x.float())
        return self.proj(x)


class BandMaskHead(nn.Module):
    """Mask decoder of one band.

    GroupNorm(1, D) → Conv1×1(D → 4D) → Conv1×1(4D → 4D) → Tanh
    → Conv1×1(4D → 2·2·N·M·w) → GLU. As in the authors' code there is no non-linearity
    between the first two convolutions. The GLU halves the last conv's outputs
    (value · sigmoid(gate)); the remaining ``2·N·M·w`` features are the real and
    imaginary parts of the masks, ordered ``(ri n m f)``. The output is not bounded:
    the value half is linear.

    Rows of ``out.weight``: ``[value | gate]``, each ``(ri n m f)``; selecting sources
    means selecting the matching rows in both halves.
    """

    def __init__(self, emb_dim: int, width: int, num_spk: int, num_channels: int):
        super().__init__()
        hidden = DECODER_HIDDEN_FACTOR * emb_dim
        self.norm = nn.GroupNorm(1, emb_dim)
        self.fc1 = nn.Conv1d(emb_dim, hidden, kernel_size=1)
        self.fc2 = nn.Conv1d(hidden, hidden, kernel_size=1)
        n_out = 2 * 2 * num_spk * num_channels * width  # (value | gate) × (ri n m f)
        self.out = nn.Conv1d(hidden, n_out, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D, T] → [B, 2·N·M·w, T]."""
        with _no_autocast(x):
            x = self.norm(x.float())
        x = torch.tanh(self.fc2(self.fc1(x)))
        return nn.functional.glu(self.out(x), dim=1)


class BandSplitEncoder(nn.Module):
    """Band-wise encoder: one :class:`BandEncoder` per band, embeddings stacked.

    Args:
        bands: bins per band (validated against ``sum(bands)`` by the caller).
        num_channels: audio channels M (2 for stereo).
        emb_dim: embedding size D.
    """

    def __init__(self, bands: Sequence[int], num_channels: int, emb_dim: int):
        super().__init__()
        self.bands = tuple(bands)
        self.num_channels = num_channels
        self.encoders = nn.ModuleList(
            BandEncoder(2 * num_channels * width, emb_dim) for width in self.bands
        )

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex spectrum [B, M, T, F] → embeddings [B, D, T, K]."""
        feats = band_features(spec, self.bands)
        return torch.stack(
            [encoder(x) for encoder, x in zip(self.encoders, feats)], dim=-1
        )


class BandMaskDecoder(nn.Module):
    """Band-wise mask decoder: one :class:`BandMaskHead` per band, masks concatenated.

    Args:
        bands: bins per band.
        num_spk: sources N.
        num_channels: audio channels M.
        emb_dim: embedding size D.
    """

    def __init__(
        self, bands: Sequence[int], num_spk: int, num_channels: int, emb_dim: int
    ):
        super().__init__()
        self.bands = tuple(bands)
        self.num_spk = num_spk
        self.num_channels = num_channels
        self.heads = nn.ModuleList(
            BandMaskHead(emb_dim, width, num_spk, num_channels) for width in self.bands
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings [B, D, T, K] → complex masks [B, N, M, T, F] (complex64)."""
        masks = [
            glu_output_to_mask(head(x[..., k]), self.num_spk, self.num_channels)
            for k, head in enumerate(self.heads)
        ]
        return torch.cat(masks, dim=-1)
