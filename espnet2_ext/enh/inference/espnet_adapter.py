"""Adapter from an ESPnet enhancement model to ``f(mixture [b, C, L]) -> [b, N, C, L]``.

The one way the plugin runs a trained enh model on audio: whole-song separation, the
chunked overlap-add, multi-step inference and its calibration all call the function
returned by :func:`espnet_model_separate_fn`.
"""

from __future__ import annotations

from typing import Callable, List

import torch
from einops import rearrange

from espnet2_ext.enh.separator import is_plugin_separator

#: ``separate_fn(mixture [b, C, L]) -> estimates [b, N, C, L]`` in a fixed source order.
SeparateFn = Callable[[torch.Tensor], torch.Tensor]

CHANNEL_MODES = ("auto", "native", "fold")


def espnet_model_separate_fn(model, *, channel_mode: str = "auto") -> SeparateFn:
    """Adapt an ESPnet enhancement model to ``f(mixture [b, C, L]) -> [b, N, C, L]``.

    Runs ``encoder → separator → decoder`` (``forward_enhance``) with the variance
    normalisation that ESPnet's ``SeparateSpeech`` applies around it. Put the model in
    eval mode first; the input is moved to the model's device and dtype, the output comes
    back on the input's device.

    Args:
        model: an ``ESPnetEnhancementModel`` (ours or stock: BSRNN, TF-GridNet,
            Conv-TasNet, …).
        channel_mode: ``"native"`` feeds ESPnet's multi-channel layout [b, L, C] and
            expects [b, L, C] outputs (our stereo BS-Locoformer); ``"fold"`` separates
            each channel as its own mono item [b·C, L] (stock single-channel models);
            ``"auto"``: native for a separator of this plugin whose ``num_channels``
            equals C > 1, else fold (mono input is always [b, L]). Stock separators are
            always folded: they return one channel, and ``num_channels`` means a hidden
            width in some of them (BSRNN).
    """
    if channel_mode not in CHANNEL_MODES:
        raise ValueError(
            f"channel_mode must be one of {CHANNEL_MODES}, got {channel_mode!r}"
        )
    if (
        not hasattr(model, "forward_enhance")
        or getattr(model, "separator", None) is None
    ):
        raise ValueError(
            f"{type(model).__name__} has no separator/forward_enhance; multi-step "
            "inference needs an ESPnetEnhancementModel"
        )
    if getattr(model, "always_forward_in_48k", False):
        raise ValueError(
            "models with always_forward_in_48k resample inside SeparateSpeech; resample "
            "the audio to 48 kHz and build the model without that option"
        )

    def forward(x: torch.Tensor) -> List[torch.Tensor]:
        lengths = torch.full(
            (x.shape[0],), x.shape[1], dtype=torch.long, device=x.device
        )
        std = None
        if getattr(model, "normalize_variance_per_ch", False):
            std = torch.std(x, dim=1, keepdim=True)  # [b, 1] or [b, 1, C]
        elif getattr(model, "normalize_variance", False):
            std = torch.std(x, dim=tuple(range(1, x.dim())), keepdim=True)
        if std is not None:
            x = x / std
        est, *_ = model.forward_enhance(x, lengths, {}, fs=None)
        if est is None:
            raise ValueError(f"{type(model).__name__} returned no waveform estimates")
        if std is not None:
            est = [
                e * (std if e.dim() == std.dim() else std.flatten(1)[:, :1])
                for e in est
            ]
        return est

    @torch.no_grad()
    def separate_fn(mixture: torch.Tensor) -> torch.Tensor:
        if mixture.dim() != 3:
            raise ValueError(f"mixture must be [b, C, L], got {tuple(mixture.shape)}")
        param = next(model.parameters(), None)
        device = param.device if param is not None else mixture.device
        dtype = param.dtype if param is not None else mixture.dtype
        x = mixture.to(device=device, dtype=dtype)
        b, n_chan, _ = x.shape
        mode = channel_mode
        if mode == "auto":
            ours = is_plugin_separator(model.separator)
            native = getattr(model.separator, "num_channels", None) == n_chan
            mode = "native" if ours and native and n_chan > 1 else "fold"
        if n_chan == 1:
            est = torch.stack(forward(x[:, 0]), dim=1)  # [b, N, L]
            out = est[:, :, None]
        elif mode == "native":
            est = forward(rearrange(x, "b c l -> b l c"))
            if est[0].dim() != 3:
                raise ValueError(
                    f"the model returned {tuple(est[0].shape)} for a {n_chan}-channel "
                    "input: it does not output every channel; use channel_mode='fold'"
                )
            out = rearrange(torch.stack(est, dim=1), "b n l c -> b n c l")
        else:
            est = torch.stack(forward(rearrange(x, "b c l -> (b c) l")), dim=1)
            out = rearrange(est, "(b c) n l -> b n c l", c=n_chan)
        return out.to(mixture.device)

    return separate_fn
