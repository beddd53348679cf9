"""ESPnet's enhancement model with losses over every channel of multi-channel signals."""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from einops import rearrange
from espnet2.enh.decoder.abs_decoder import AbsDecoder
from espnet2.enh.encoder.abs_encoder import AbsEncoder
from espnet2.enh.espnet_model import ESPnetEnhancementModel
from espnet2.enh.loss.criterions.time_domain import TimeDomainLoss
from espnet2.enh.loss.wrappers.abs_wrapper import AbsLossWrapper
from espnet2.enh.separator.abs_separator import AbsSeparator

#: How time-domain losses see multi-channel signals (``--multichannel_loss``).
MULTICHANNEL_LOSSES = ("per_channel", "folded", "ref_channel")

#: The default of our task's ``--multichannel_loss`` (works with every criterion).
DEFAULT_MULTICHANNEL_LOSS = "folded"


class MultiChannelLossEnhancementModel(ESPnetEnhancementModel):
    """:class:`ESPnetEnhancementModel` whose time-domain losses see every channel.

    What ESPnet does (verified in ``ESPnetEnhancementModel._align_ref_pre_channels``,
    ESPnet 202611): when both the references and the estimates are multi-channel
    ``[B, T, C]``, time-domain criteria are called with ``force_1ch=True`` and only the
    reference channel (``ref_channel``, default 0) is kept. A stereo music model trained
    that way never gets a gradient for its right channel.

    ``multichannel_loss`` chooses what the loss wrappers get instead:

    * ``per_channel``: the signals as they are, ``[B, T, C]``. Criteria that take
      channels (``accepts_channels = True``: ``thres_snr``, ``thres_snr_zeroref``)
      compute the loss of each channel, and decide per channel whether a reference is
      inactive, then average the channels: the MixIT-MSS authors' stereo loss (their
      ``ThresSNRLoss`` / ``ThresSNRLossWithInactiveSource`` on ``[B, C, N, T]``).
      Building the model with a time-domain criterion that does not take channels is
      an error.
    * ``folded``: the channels laid end to end along time, ``[B, T, C] -> [B, C·T]``,
      so an energy-based criterion measures ``‖s − ŝ‖²`` and ``‖s‖²`` summed over both
      channels (one SNR of the stereo signal as a whole); works with every criterion
      (scale-invariant ones fit one scale for the whole stereo signal).
    * ``ref_channel``: ESPnet's behaviour.

    Frequency-domain criteria already see all channels and are unchanged.

    The option is not part of ``model_conf`` (it is our task's ``--multichannel_loss``),
    so ESPnet's own task can build its ``ESPnetEnhancementModel`` from a config written
    by our training, e.g. in ``espnet2.bin.enh_inference.SeparateSpeech``.

    Args:
        multichannel_loss: one of :data:`MULTICHANNEL_LOSSES` (see above).
        Every other argument is :class:`ESPnetEnhancementModel`'s.
    """

    def __init__(
        self,
        encoder: AbsEncoder,
        separator: Optional[AbsSeparator],
        decoder: AbsDecoder,
        mask_module,
        loss_wrappers: Optional[List[AbsLossWrapper]],
        multichannel_loss: str = DEFAULT_MULTICHANNEL_LOSS,
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
        if multichannel_loss not in MULTICHANNEL_LOSSES:
            raise ValueError(
                f"multichannel_loss must be one of {MULTICHANNEL_LOSSES}, got "
                f"{multichannel_loss!r}"
            )
        if multichannel_loss == "per_channel":
            for wrapper in loss_wrappers or []:
                criterion = wrapper.criterion
                if isinstance(criterion, TimeDomainLoss) and not getattr(
                    criterion, "accepts_channels", False
                ):
                    raise ValueError(
                        f"multichannel_loss: per_channel hands the criteria [B, T, C] "
                        f"signals, but {type(criterion).__name__} "
                        f"({criterion.name}) takes [B, T] only; use a criterion that "
                        "takes channels (thres_snr, thres_snr_zeroref) or "
                        "multichannel_loss: folded"
                    )
        self.multichannel_loss = multichannel_loss

    def _align_ref_pre_channels(
        self,
        ref: Optional[Sequence[torch.Tensor]],
        pre: Optional[Sequence[torch.Tensor]],
        ch_dim: int = 2,
        force_1ch: bool = False,
    ):
        if (
            self.multichannel_loss != "ref_channel"
            and force_1ch
            and ref is not None
            and pre is not None
            and not isinstance(pre[0], (list, tuple))
            and ref[0].dim() == pre[0].dim() == 3
        ):
            if ch_dim != 2:
                raise ValueError(f"channels are expected on dim 2, got ch_dim={ch_dim}")
            if self.multichannel_loss == "per_channel":
                return list(ref), list(pre)
            fold = lambda x: rearrange(x, "b t c -> b (c t)")  # noqa: E731
            return [fold(r) for r in ref], [fold(p) for p in pre]
        return super()._align_ref_pre_channels(
            ref, pre, ch_dim=ch_dim, force_1ch=force_1ch
        )
