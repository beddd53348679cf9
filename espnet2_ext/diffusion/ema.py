"""Exponential moving average of a module's parameters, kept as buffers.

The average is a copy of the module whose parameters were turned into buffers: it runs
like the module (``ema.shadow(x, …)``), it is saved in the owner's ``state_dict`` (so a
checkpoint or a packed model carries it) and moved by ``.to()``, and it never appears in
``parameters()`` (so optimizers, gradient clipping and DDP ignore it).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def _parameters_to_buffers(module: nn.Module) -> nn.Module:
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is None:
                continue
            del sub._parameters[name]
            sub.register_buffer(name, param.detach().clone())
    return module


class ExponentialMovingAverage(nn.Module):
    """EMA of ``module``'s parameters: ``θ̄ ← d θ̄ + (1 − d) θ`` per :meth:`update`.

    Args:
        module: the module to average (copied at construction).
        decay: d. With ``warmup`` the decay of update n is
            ``min(d, (1 + n) / (10 + n))``, so that early averages are not dominated by
            the random initialisation.
        warmup: use the warm-up rule above.
    """

    def __init__(self, module: nn.Module, decay: float = 0.9999, warmup: bool = True):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay={decay} must lie in [0, 1)")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.shadow = _parameters_to_buffers(copy.deepcopy(module))
        self.shadow.requires_grad_(False)
        self.shadow.eval()
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self._names = [name for name, _ in module.named_parameters()]

    def train(self, mode: bool = True) -> "ExponentialMovingAverage":
        # The averaged copy is for inference: keep it in eval mode (no dropout).
        super().train(mode)
        self.shadow.eval()
        return self

    def current_decay(self) -> float:
        n = int(self.num_updates)
        if self.warmup:
            return min(self.decay, (1.0 + n) / (10.0 + n))
        return self.decay

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Move the average towards ``module``'s current parameters."""
        decay = self.current_decay()
        params = dict(module.named_parameters())
        for name in self._names:
            shadow = self.shadow.get_buffer(name)
            param = params[name].detach()
            shadow.lerp_(param.to(shadow.dtype), 1.0 - decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Write the averaged weights into ``module``'s parameters."""
        params = dict(module.named_parameters())
        for name in self._names:
            params[name].copy_(self.shadow.get_buffer(name))
