"""ESPnet separator adapter for BS-Locoformer (band-split TF-Locoformer).

Used with ESPnet's STFT encoder and decoder, e.g.::

    encoder: stft
    encoder_conf: {n_fft: 2048, hop_length: 512, window: hann}
    decoder: stft
    decoder_conf: {n_fft: 2048, hop_length: 512, window: hann}
    separator: bs_locoformer
    separator_conf: {num_spk: 4, num_channels: 2, n_layers: 6, emb_dim: 128, ...}

Einops legend: b batch, t frames, m audio channels, f bins, n sources.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from einops import rearrange
from espnet2.enh.separator.abs_separator import AbsSeparator

from espnet2_ext.enh.layers.band_split import (
    DEFAULT_BANDS,
    DEFAULT_BANDS_N_FFT,
    validate_bands,
)
from espnet2_ext.enh.layers.tf_locoformer import BSLocoformer, LocoformerBlockConfig

#: Paper sizes (MixIT-MSS text; authors' recipe configs): blocks, D, C, heads, groups.
#: Kernel 8 and stride 1 for all. Use as
#: ``BSLocoformerSeparator(**BS_LOCOFORMER_SIZES["medium"])``.
BS_LOCOFORMER_SIZES: Dict[str, Dict[str, int]] = {
    "small": dict(n_layers=4, emb_dim=96, ffn_hidden_dim=128, n_heads=4, norm_groups=4),
    "medium": dict(
        n_layers=6, emb_dim=128, ffn_hidden_dim=192, n_heads=8, norm_groups=8
    ),
    "large": dict(
        n_layers=9, emb_dim=192, ffn_hidden_dim=256, n_heads=8, norm_groups=8
    ),
}

#: Defaults of the block arguments (the medium paper model), defined by the config.
_BLOCK = LocoformerBlockConfig()

#: Floor on the power of each STFT bin when the RMS scale is computed (authors' value):
#: an all-silent mixture gets a scale of sqrt(1e-15) instead of 0.
SCALE_POWER_FLOOR = 1e-15

_CHANNEL_WORDS = {1: "1 channel (mono)", 2: "2 channels (stereo)"}
_MIXTURE_LAYOUTS = {
    1: "mono mixtures speech_mix [B, samples]",
    2: "stereo mixtures speech_mix [B, samples, 2]",
}


class BSLocoformerSeparator(AbsSeparator):
    """BS-Locoformer separator: complex masks on the mixture STFT, stereo native.

    MixIT-MSS (seeds/002) and TUSS (Saijo et al., ICASSP 2025). The mixture spectrum is
    divided by the per-channel RMS of its magnitude, cut into bands, encoded per band,
    processed by ``n_layers`` TF-Locoformer blocks (frequency path over the bands, then
    time path over the frames), and decoded per band into one unbounded complex mask per
    source and audio channel, which multiplies the (unscaled) mixture spectrum.

    Args:
        input_dim: STFT bins (ESPnet passes ``encoder.output_dim``, ``n_fft // 2 + 1``).
        num_spk: output sources N.
        num_channels: audio channels M of the mixture: 2 (stereo) or 1 (mono).
        bands: bins per band, summing to ``input_dim``; ``None`` selects the 62-band
            table for ``n_fft`` 2048 (needs ``input_dim`` 1025). For other STFTs see
            :func:`espnet2_ext.enh.layers.band_split.scale_bands`.
        n_layers: TF-Locoformer blocks.
        emb_dim, ffn_hidden_dim, n_heads, norm_groups, attention_dim, ffn_kernel_size,
        ffn_stride, dropout, attention_dropout, eps, rope: the arguments of every
            block, gathered and checked once in
            :class:`~espnet2_ext.enh.layers.tf_locoformer.LocoformerBlockConfig`
            (which documents them; defaults: the medium paper model).
        input_scaling: divide the network's input by the per-channel STFT RMS.
        drop_last_frame: run the network on all frames but the last and return one
            frame fewer, as the MixIT-MSS authors' wrapper does (it keeps the first
            ``L // hop`` frames of a centred STFT of ``L`` samples; the RMS scale is
            still measured on every frame). ESPnet's STFT decoder then inverts the
            shorter spectrum to the input length, like their iSTFT. The band
            encoder's GroupNorm and the time attention see every frame they get, so
            this changes every output sample: published weights converted by
            :mod:`espnet2_ext.convert.mixit_mss` need it to compute the authors'
            outputs. Exact for batches of equal length (training crops, inference);
            in padded batches each example loses the last frame of the batch.
    """

    def __init__(
        self,
        input_dim: int = DEFAULT_BANDS_N_FFT // 2 + 1,
        *,
        num_spk: int = 4,
        num_channels: int = 2,
        bands: Optional[Sequence[int]] = None,
        n_layers: int = 6,
        emb_dim: int = _BLOCK.emb_dim,
        ffn_hidden_dim: int = _BLOCK.ffn_hidden_dim,
        n_heads: int = _BLOCK.n_heads,
        norm_groups: int = _BLOCK.norm_groups,
        attention_dim: Optional[int] = _BLOCK.attention_dim,
        ffn_kernel_size: int = _BLOCK.ffn_kernel_size,
        ffn_stride: int = _BLOCK.ffn_stride,
        dropout: float = _BLOCK.dropout,
        attention_dropout: float = _BLOCK.attention_dropout,
        eps: float = _BLOCK.eps,
        rope: bool = _BLOCK.rope,
        input_scaling: bool = True,
        drop_last_frame: bool = False,
    ):
        super().__init__()
        if bands is None:
            if input_dim != sum(DEFAULT_BANDS):
                raise ValueError(
                    f"bands: null selects the 62-band table for n_fft "
                    f"{DEFAULT_BANDS_N_FFT} ({sum(DEFAULT_BANDS)} bins), but the "
                    f"encoder gives input_dim {input_dim} bins; use n_fft "
                    f"{DEFAULT_BANDS_N_FFT} or give separator_conf.bands (see "
                    "espnet2_ext.enh.layers.band_split.scale_bands)"
                )
            bands = DEFAULT_BANDS
        bands = validate_bands(bands, input_dim)
        if num_channels not in (1, 2):
            raise ValueError(
                f"num_channels must be 1 (mono) or 2 (stereo), got {num_channels}"
            )
        if num_spk < 1:
            raise ValueError(f"num_spk must be >= 1, got {num_spk}")
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}")
        self.block_config = LocoformerBlockConfig(
            emb_dim=emb_dim,
            ffn_hidden_dim=ffn_hidden_dim,
            n_heads=n_heads,
            norm_groups=norm_groups,
            attention_dim=attention_dim,
            ffn_kernel_size=ffn_kernel_size,
            ffn_stride=ffn_stride,
            dropout=dropout,
            attention_dropout=attention_dropout,
            eps=eps,
            rope=rope,
        )

        self.input_dim = input_dim
        self._num_spk = num_spk
        self.num_channels = num_channels
        self.input_scaling = input_scaling
        self.drop_last_frame = drop_last_frame
        self.bands = bands
        self.model = BSLocoformer(
            bands=bands,
            num_spk=num_spk,
            num_channels=num_channels,
            n_layers=n_layers,
            block=self.block_config,
        )

    @property
    def num_spk(self) -> int:
        return self._num_spk

    def parameter_counts(self) -> Dict[str, int]:
        """Parameter counts: ``encoder``, ``blocks`` (TF-Locoformer), ``decoder``,
        ``total``."""
        return self.model.parameter_counts()

    def _check_input(self, input: torch.Tensor) -> None:
        if not torch.is_complex(input):
            raise TypeError(
                "BSLocoformerSeparator expects a complex STFT (torch complex dtype), "
                f"got {input.dtype}; use encoder: stft with use_builtin_complex: true"
            )
        if input.dim() not in (3, 4):
            raise ValueError(
                "expected a spectrum [B, T, F] (mono) or [B, T, C, F] (multi-channel), "
                f"got shape {tuple(input.shape)}"
            )
        channels = 1 if input.dim() == 3 else input.shape[2]
        if channels != self.num_channels:
            built = _CHANNEL_WORDS[self.num_channels]
            got = f"{channels} channel{'s' if channels != 1 else ''}"
            layout = "[B, T, F]" if input.dim() == 3 else "[B, T, C, F]"
            raise ValueError(
                f"the model was built for {built} but got {got}: input spectrum "
                f"{layout} = {tuple(input.shape)}. Give "
                f"{_MIXTURE_LAYOUTS[self.num_channels]} or build the separator with "
                f"num_channels: {channels}"
            )
        if input.shape[-1] != self.input_dim:
            raise ValueError(
                f"the spectrum has {input.shape[-1]} bins but the separator was built "
                f"for input_dim {self.input_dim}; match the encoder's n_fft"
            )
        if input.shape[1] == 0:
            raise ValueError("the spectrum has no frames: the input clip is empty")
        if self.drop_last_frame and input.shape[1] < 2:
            raise ValueError(
                "drop_last_frame needs at least 2 STFT frames (one hop of audio), got "
                f"{input.shape[1]}"
            )

    def _rms_scale(
        self, spec: torch.Tensor, ilens: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """Per-channel RMS of the STFT magnitude over the valid frames and all bins.

        Args:
            spec: complex [B, M, T, F].
            ilens: valid frames per example [B], or None (all frames).

        Returns:
            Real float32 scale [B, M, 1, 1], at least ``sqrt(SCALE_POWER_FLOOR)``.
        """
        with torch.autocast(device_type=spec.device.type, enabled=False):
            ri = torch.view_as_real(spec).float()
            power = ri.square().sum(dim=-1).clamp(min=SCALE_POWER_FLOOR)
            n_frames = spec.shape[2]
            if ilens is None:
                valid = torch.ones(spec.shape[0], n_frames, device=spec.device)
            else:
                frames = torch.arange(n_frames, device=spec.device)
                valid = (frames[None, :] < ilens.to(spec.device)[:, None]).float()
            valid = rearrange(valid, "b t -> b 1 t 1")
            count = (valid.sum(dim=2, keepdim=True) * spec.shape[3]).clamp(min=1.0)
            mean_power = (power * valid).sum(dim=(2, 3), keepdim=True) / count
            return mean_power.sqrt()

    def forward(
        self,
        input: torch.Tensor,
        ilens: torch.Tensor,
        additional: Optional[Dict] = None,
    ) -> Tuple[List[torch.Tensor], torch.Tensor, OrderedDict]:
        """Separate a mixture spectrum.

        Args:
            input: complex mixture STFT, [B, T, F] (mono) or [B, T, C, F] (the layouts
                of ESPnet's STFT encoder for [B, samples] and [B, samples, C] input).
            ilens: valid frames per example [B].
            additional: unused.

        Returns:
            masked: ``num_spk`` complex spectra, each the shape and dtype of ``input``
                (one frame fewer with ``drop_last_frame``).
            ilens: [B], unchanged (minus one with ``drop_last_frame``).
            others: ``mask_spk1`` … ``mask_spkN``: complex masks shaped like the
                estimates.
        """
        self._check_input(input)
        # one layout throughout, ESPnet's [B, T, M, F]: the network reads it through a
        # [B, M, T, F] view and returns masks stored as [N, B, T, M, F]
        spec = input if input.dim() == 4 else rearrange(input, "b t f -> b t 1 f")
        if spec.dtype == torch.complex32:  # half-precision STFT: compute in complex64
            spec = spec.to(torch.complex64)
        spec = rearrange(spec, "b t m f -> b m t f")

        if self.input_scaling:
            # masks are scale-free: the estimates are masks × the *unscaled* mixture,
            # which is the same as scaling the masked estimates back by the RMS
            features = spec / self._rms_scale(spec, ilens)
        else:
            features = spec
        if self.drop_last_frame:  # after the scale, which sees every frame
            spec, features = spec[:, :, :-1], features[:, :, :-1]
            if ilens is not None:
                ilens = (ilens - 1).clamp(min=1)
        masks = rearrange(self.model(features), "b n m t f -> n b t m f")
        masks = masks.to(spec.dtype)
        estimates = masks * rearrange(spec, "b m t f -> 1 b t m f")

        if input.dim() == 3:
            masks, estimates = masks.squeeze(3), estimates.squeeze(3)
        others = OrderedDict(
            (f"mask_spk{i + 1}", mask.to(input.dtype))
            for i, mask in enumerate(masks.unbind(0))
        )
        return [est.to(input.dtype) for est in estimates.unbind(0)], ilens, others


def bs_locoformer_parameter_counts(
    size: str, num_spk: int = 4, num_channels: int = 2
) -> Dict[str, int]:
    """Parameter counts of a paper size (``small``, ``medium``, ``large``).

    Built on the ``meta`` device: no memory is allocated and nothing is initialised.

    Returns:
        ``encoder``, ``blocks`` (the TF-Locoformer blocks), ``decoder`` and ``total``.
    """
    if size not in BS_LOCOFORMER_SIZES:
        raise ValueError(
            f"size must be one of {sorted(BS_LOCOFORMER_SIZES)}, got {size!r}"
        )
    with torch.device("meta"):
        model = BSLocoformerSeparator(
            num_spk=num_spk, num_channels=num_channels, **BS_LOCOFORMER_SIZES[size]
        )
    return model.parameter_counts()
