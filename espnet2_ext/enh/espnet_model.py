"""ESPnet's enhancement model with losses over every channel of multi-channel signals."""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from einops import rearrange
from espnet2.enh.decoder.abs_decoder import AbsDecoder
from espnet2.enh.encoder.abs_encoder import AbsEncoder
from espnet2.enh.espnet_model import ESPnetEnhancementModel
from espnet2.enh.loss.wrappers.abs_wrapper import AbsLossWrapper
from espnet2.enh.separator.abs_separator import AbsSeparator


class MultiChannelLossEnhancementModel(ESPnetEnhancementModel):
    """:class:`ESPnetEnhancementModel` whose time-domain losses see every channel.

    What ESPnet does (verified in ``ESPnetEnhancementModel._align_ref_pre_channels``,
    ESPnet 202611): when both the references and the estimates are multi-channel
    ``[B, T, C]``, time-domain criteria are called with ``force_1ch=True`` and only the
    reference channel (``ref_channel``, default 0) is kept. A stereo music model trained
    that way never gets a gradient for its right channel.

    What this class does: with ``loss_over_channels=True`` (the default) the channels are
    laid end to end along time, ``[B, T, C] -> [B, C·T]``, so an energy-based criterion
    (SNR, thresholded SNR) measures ``‖s − ŝ‖²`` and ``‖s‖²`` summed over both channels,
    the definition used for stereo music separation. Scale-invariant criteria then fit
    one scale for the whole stereo signal. ``loss_over_channels=False`` restores ESPnet's
    behaviour. Frequency-domain criteria already see all channels and are unchanged.

    Args:
        loss_over_channels: compute time-domain losses over all channels (see above).
        Every other argument is :class:`ESPnetEnhancementModel`'s.
    """

    def __init__(
        self,
        encoder: AbsEncoder,
        separator: Optional[AbsSeparator],
        decoder: AbsDecoder,
        mask_module,
        loss_wrappers: Optional[List[AbsLossWrapper]],
        loss_over_channels: bool = True,
        **kwargs,
    ):
        super().__init__(
            encoder=encoder,
            separator=separator,
            decoder=decoder,
            mask_module=mask_module,
            loss_wrappers=loss_wrappers,
            **kwargs,
        )
        self.loss_over_channels = loss_over_channels

    def _align_ref_pre_channels(
        self,
        ref: Optional[Sequence[torch.Tensor]],
        pre: Optional[Sequence[torch.Tensor]],
        ch_dim: int = 2,
        force_1ch: bool = False,
    ):
        if (
            self.loss_over_channels
            and force_1ch
            and ref is not None
            and pre is not None
            and not isinstance(pre[0], (list, tuple))
            and ref[0].dim() == pre[0].dim() == 3
        ):
            if ch_dim != 2:
                raise ValueError(f"channels are expected on dim 2, got ch_dim={ch_dim}")
            fold = lambda x: rearrange(x, "b t c -> b (c t)")  # noqa: E731
            return [fold(r) for r in ref], [fold(p) for p in pre]
        return super()._align_ref_pre_channels(
            ref, pre, ch_dim=ch_dim, force_1ch=force_1ch
        )
