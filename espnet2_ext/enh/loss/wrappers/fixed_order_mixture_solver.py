"""Fixed-order loss wrapper that also gives criteria the mixture."""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Optional, Tuple

import torch
from espnet2.enh.loss.wrappers.fixed_order import FixedOrderSolver


class FixedOrderMixtureSolver(FixedOrderSolver):
    """ESPnet's fixed-order solver for criteria that need the mixture.

    Supervised music separation keeps the stems in a fixed order (no permutation
    search). The zero-reference thresholded SNR (``thres_snr_zeroref``) decides whether a
    stem is inactive relative to the mixture; ESPnet's ``fixed_order`` calls
    ``criterion(ref, inf)`` only, so this wrapper computes the mixture as the sum of the
    references (which equals the training mixture for MUSDB18-HQ and dynamic mixing)
    and passes it as ``mixture=`` to every criterion with ``uses_mixture = True``.
    Other criteria are called exactly as ESPnet's wrapper calls them.

    Args:
        criterion: the loss per example (B,).
        weight: weight of this loss in the total.
    """

    def forward(
        self,
        ref: List[torch.Tensor],
        inf: List[torch.Tensor],
        others: Optional[Dict] = None,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """ref, inf: num_spk tensors [B, T] (or [B, T, C]) → (loss, stats, {"perm"})."""
        if not getattr(self.criterion, "uses_mixture", False):
            return super().forward(ref, inf, others)
        if len(ref) != len(inf):
            raise ValueError(
                f"{len(ref)} references but {len(inf)} estimates: fixed-order training "
                "needs one estimate per reference (check num_spk)"
            )
        mixture = torch.stack(ref, dim=0).sum(dim=0)
        num_spk = len(ref)
        loss = 0.0
        stats = defaultdict(list)
        for r, i in zip(ref, inf):
            loss = loss + self.criterion(r, i, mixture=mixture).mean() / num_spk
            for k, v in getattr(self.criterion, "stats", {}).items():
                stats[k].append(v)
        stats = {k: torch.stack(v, dim=1).mean() for k, v in stats.items()}
        stats[self.criterion.name] = loss.detach()
        perm = torch.arange(num_spk).unsqueeze(0).repeat(ref[0].size(0), 1)
        return loss, stats, {"perm": perm}
