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
    n: sources (N)      d: embedding (D)          k: bands (K, or those of a run)
    c: features of a layer's input                glu: value / gate half of a GLU

Bands of equal width have layers of equal shapes; the encoder and decoder compute each
run of them as batched matrix products (:func:`band_groups`) rather than one small
convolution per band. ``tests/enh/layers/test_band_split.py`` keeps the per-band
computation as the reference they must match.

The flattening orders (``(f ri m)`` in the encoder, ``(ri n m f)`` in the decoder) are
those of the authors' code (b-sigpro/mixit-mss), so that their published weights act on
the same features when loaded into these modules.
"""

from __future__ import annotations

import math
from typing import List, NamedTuple, Sequence, Tuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from espnet2_ext.constants import MUSIC_SAMPLE_RATE

#: Bins per band of the 62-band table for 44.1 kHz audio and ``n_fft = 2048``
#: (1025 bins): the table of BS-RoFormer, used by BS-Locoformer (MixIT-MSS).
DEFAULT_BANDS: Tuple[int, ...] = (
    (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)
)
#: The STFT that :data:`DEFAULT_BANDS` was made for.
DEFAULT_BANDS_SAMPLE_RATE = MUSIC_SAMPLE_RATE
DEFAULT_BANDS_N_FFT = 2048

#: Width of the hidden layers of the mask decoder, in multiples of the embedding size.
DECODER_HIDDEN_FACTOR = 4

#: Most bands computed together by the band-wise encoder and decoder (see
#: :func:`band_groups`).
MAX_BANDS_PER_GROUP = 8


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


class BandGroup(NamedTuple):
    """A run of consecutive bands of equal width, computed together.

    Attributes:
        first_band: index of the run's first band.
        num_bands: bands in the run.
        width: bins per band.
        first_bin: index of the run's first STFT bin.
    """

    first_band: int
    num_bands: int
    width: int
    first_bin: int

    @property
    def bands(self) -> slice:
        return slice(self.first_band, self.first_band + self.num_bands)

    @property
    def bins(self) -> slice:
        return slice(self.first_bin, self.first_bin + self.num_bands * self.width)


def band_groups(
    bands: Sequence[int], max_bands: int = MAX_BANDS_PER_GROUP
) -> Tuple[BandGroup, ...]:
    """Cut a band table into runs of at most ``max_bands`` consecutive bands of equal
    width.

    The per-band layers of a run have equal shapes, so a run is computed as one batched
    matrix product instead of band by band. The cap bounds the memory of a run's hidden
    activations on long inputs: the 62-band table gives 10 runs (3 × 8 bands of 2 bins,
    8 + 4 of 4 bins, 8 × 12, 8 × 24, 8 × 48, 128, 129).
    """
    if max_bands < 1:
        raise ValueError(f"max_bands must be >= 1, got {max_bands}")
    groups: List[BandGroup] = []
    first_bin = 0
    for k, width in enumerate(bands):
        last = groups[-1] if groups else None
        if last is not None and last.width == width and last.num_bands < max_bands:
            groups[-1] = last._replace(num_bands=last.num_bands + 1)
        else:
            groups.append(BandGroup(k, 1, width, first_bin))
        first_bin += width
    return tuple(groups)


def _no_autocast(x: torch.Tensor):
    """Context that turns autocast off on the device of ``x`` (for fp32 norms)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def _stacked(layers: Sequence[nn.Module], name: str) -> torch.Tensor:
    """The parameter ``name`` of every layer stacked on a new first axis.

    1×1 convolution weights ``[out, in, 1]`` lose their kernel axis: ``[K, out, in]``.
    Stacking copies a few MB per call, which is cheap next to the activations; the
    gradients flow back to each layer's own parameter.
    """
    params = [getattr(layer, name) for layer in layers]
    if params[0].dim() == 3:
        params = [p.squeeze(-1) for p in params]
    return torch.stack(params)


def _per_band_group_norm(
    x: torch.Tensor, norms: Sequence[nn.GroupNorm]
) -> torch.Tensor:
    """Each band's GroupNorm(1 group) over its features and frames, in fp32.

    Args:
        x: [K', B, T, C] (the bands of one run, then batch, frames, features).
        norms: the K' GroupNorm(1, C) layers (each normalises its band of every
            example over all of its ``T · C`` values, then a per-feature affine).

    Returns:
        [K', B, T, C] float32.
    """
    with _no_autocast(x):
        x = F.layer_norm(x.float(), x.shape[-2:], eps=norms[0].eps)
        weight = rearrange(_stacked(norms, "weight"), "k c -> k 1 1 c")
        bias = rearrange(_stacked(norms, "bias"), "k c -> k 1 1 c")
        return torch.addcmul(bias.float(), x, weight.float())


def _per_band_linear(x: torch.Tensor, layers: Sequence[nn.Conv1d]) -> torch.Tensor:
    """Each band's 1×1 convolution as one batched matrix product.

    Args:
        x: [K', R, C_in] (the bands of one run, then rows: batch × frames).
        layers: the K' Conv1d(C_in → C_out, kernel 1) layers.

    Returns:
        [K', R, C_out].
    """
    weight = _stacked(layers, "weight")  # [K', C_out, C_in]
    bias = rearrange(_stacked(layers, "bias"), "k c -> k 1 c")
    return torch.baddbmm(bias, x, weight.transpose(1, 2))


class BandEncoder(nn.Module):
    """Parameters of one band's encoder: GroupNorm(1 group) over the band's features,
    then a 1×1 conv to the embedding.

    The GroupNorm with one group normalises each example over all of the band's features
    *and* frames (mean and variance of the whole [w·2·M, T] slice), with a learned
    per-feature affine; it runs in fp32 even under autocast. The computation is batched
    over bands of equal width in :class:`BandSplitEncoder`.
    """

    def __init__(self, in_dim: int, emb_dim: int, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.GroupNorm(1, in_dim, eps=eps)
        self.proj = nn.Conv1d(in_dim, emb_dim, kernel_size=1)


class BandMaskHead(nn.Module):
    """Parameters of one band's mask decoder.

    GroupNorm(1, D) → Conv1×1(D → 4D) → Conv1×1(4D → 4D) → Tanh
    → Conv1×1(4D → 2·2·N·M·w) → GLU. As in the authors' code there is no non-linearity
    between the first two convolutions. The GLU halves the last conv's outputs
    (value · sigmoid(gate)); the remaining ``2·N·M·w`` features are the real and
    imaginary parts of the masks, ordered ``(ri n m f)``. The output is not bounded:
    the value half is linear. The computation is batched over bands in
    :class:`BandMaskDecoder`.

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


class BandSplitEncoder(nn.Module):
    """Band-wise encoder: one :class:`BandEncoder` per band, embeddings stacked.

    Each band's input features are its bins' real and imaginary parts of every audio
    channel, ordered ``(f ri m)`` (channel fastest). Bands of equal width are computed
    together (:func:`band_groups`).

    Args:
        bands: bins per band (validated against ``sum(bands)`` by the caller).
        num_channels: audio channels M (2 for stereo).
        emb_dim: embedding size D.
    """

    def __init__(self, bands: Sequence[int], num_channels: int, emb_dim: int):
        super().__init__()
        self.bands = tuple(bands)
        self.groups = band_groups(self.bands)
        self.num_channels = num_channels
        self.encoders = nn.ModuleList(
            BandEncoder(2 * num_channels * width, emb_dim) for width in self.bands
        )

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex spectrum [B, M, T, F] → embeddings [B, T, K, D]."""
        feats = torch.view_as_real(spec)  # [B, M, T, F, ri]
        batch = feats.shape[0]
        embeddings = []
        for group in self.groups:
            x = rearrange(
                feats[:, :, :, group.bins],
                "b m t (k f) ri -> k b t (f ri m)",
                k=group.num_bands,
            )
            encoders = self.encoders[group.bands]
            x = _per_band_group_norm(x, [enc.norm for enc in encoders])
            x = _per_band_linear(
                rearrange(x, "k b t c -> k (b t) c"), [enc.proj for enc in encoders]
            )
            embeddings.append(rearrange(x, "k (b t) d -> b t k d", b=batch))
        return torch.cat(embeddings, dim=2)


class BandMaskDecoder(nn.Module):
    """Band-wise mask decoder: one :class:`BandMaskHead` per band, masks concatenated.

    Bands of equal width are computed together, a run at a time (:func:`band_groups`),
    and their masks written side by side.

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
        self.groups = band_groups(self.bands)
        self.num_spk = num_spk
        self.num_channels = num_channels
        self.heads = nn.ModuleList(
            BandMaskHead(emb_dim, width, num_spk, num_channels) for width in self.bands
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings [B, T, K, D] → complex masks [B, N, M, T, F] (complex64).

        The masks are a permuted view of a tensor stored as [N, B, T, M, F]: the
        layout of ESPnet's multi-channel spectra ([B, T, M, F] per source), so that
        the separator applies and returns them without another copy.
        """
        batch = x.shape[0]
        order = dict(glu=2, ri=2, n=self.num_spk, m=self.num_channels)
        masks = []
        for group in self.groups:
            heads = self.heads[group.bands]
            h = _per_band_group_norm(
                rearrange(x[:, :, group.bands], "b t k d -> k b t d"),
                [head.norm for head in heads],
            )
            h = rearrange(h, "k b t d -> k (b t) d")
            h = _per_band_linear(h, [head.fc1 for head in heads])
            h = torch.tanh(_per_band_linear(h, [head.fc2 for head in heads]))
            # the output rows, stored (glu ri n m f), are taken in the order
            # (glu n m f ri): the products then come out with each bin's real and
            # imaginary parts side by side, and the copy into the mask layout moves
            # whole runs of (f ri) instead of single numbers
            weight = rearrange(
                _stacked([head.out for head in heads], "weight"),
                "k (glu ri n m f) c -> k c (glu n m f ri)",
                **order,
            )
            bias = rearrange(
                _stacked([head.out for head in heads], "bias"),
                "k (glu ri n m f) -> k 1 (glu n m f ri)",
                **order,
            )
            out = F.glu(torch.baddbmm(bias, h, weight), dim=-1)
            masks.append(
                rearrange(
                    out.float(),  # [K', (b t), (n m f ri)]
                    "k (b t) (n m f ri) -> n b t m (k f) ri",
                    b=batch,
                    ri=2,
                    n=self.num_spk,
                    m=self.num_channels,
                )
            )
        masks = torch.cat(masks, dim=4)  # [N, B, T, M, F, ri]
        return rearrange(torch.view_as_complex(masks), "n b t m f -> b n m t f")
