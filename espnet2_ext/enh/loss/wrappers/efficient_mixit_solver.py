"""Mixture invariant training (MixIT) with the efficient least-squares assignment.

Reference:
    S. Wisdom et al., "Sparse, efficient, and semantic mixture invariant training:
    taming in-the-wild unsupervised sound separation", WASPAA 2021 (efficient
    solver); used for MixIT pre-training of BS-Locoformer in seeds/002.

ESPnet's own ``mixit`` wrapper tries all ``2^N`` assignments with one remix of the
waveforms each and assumes ``N = 2M``; this wrapper takes any ``N`` outputs and
``M`` mixtures and finds the assignment in one least-squares solve.

Legend: ``B`` batch, ``M`` reference mixtures, ``N`` outputs, ``T`` samples,
``C`` channels.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from einops import rearrange
from espnet2.enh.loss.criterions.abs_loss import AbsEnhLoss
from espnet2.enh.loss.wrappers.abs_wrapper import AbsLossWrapper

from espnet2_ext.enh.loss.wrappers.assignment import (
    assignment_to_mixing,
    exhaustive_assignment,
    exhaustive_assignment_by_signals,
    gram_statistics,
    least_squares_assignment,
    num_assignments,
)

MODES = ("efficient", "exact")


class EfficientMixITSolver(AbsLossWrapper):
    """MixIT loss wrapper with an efficient (least-squares) or exact assignment.

    Every output is assigned to one reference mixture; the loss is the criterion
    between each mixture ``x_m`` and the sum ``x̂_m`` of the outputs assigned to it,
    averaged over the mixtures and the batch. The assignment is chosen without
    gradient; the gradient flows through the outputs of the remix only.

    * ``mode: efficient``: ``A = argmin |X - A Ŝ|²`` by least squares on channel
      ``ref_channel`` (all of ``T`` for ``[B, T]`` inputs), each column binarised to a
      one-hot at its argmax over the ``M`` mixtures.
    * ``mode: exact``: all ``M^N`` assignments; the one with the least criterion
      value (over all channels) wins. Criteria with ``from_energies`` (the
      thresholded SNRs) are searched on Gram matrices, others by remixing the
      waveforms. Refused above ``max_exact_assignments`` candidates.

    Criteria with ``uses_mixture = True`` (``thres_snr_zeroref``) get the sum of the
    references, i.e. the mixture of mixtures, as ``mixture``.

    Multi-channel signals ``[B, T, C]`` (``multichannel_loss: per_channel``): one
    assignment serves every channel (the authors solve on channel 0); criteria with
    ``accepts_channels = True`` (the thresholded SNRs) then get ``[B, T, C]`` and
    average their per-channel losses, as the authors' code does; other criteria get the
    channels laid end to end, ``[B, C·T]``. ``mode: exact`` minimises the same loss.

    Args:
        criterion: a time-domain criterion returning a loss per example ``(B,)``.
        weight: weight of this loss in ESPnet's multi-task sum.
        mode: ``efficient`` or ``exact``.
        ref_channel: channel that the efficient solve uses for ``[B, T, C]`` inputs.
        max_exact_assignments: largest ``M^N`` that ``exact`` mode accepts.
    """

    def __init__(
        self,
        criterion: AbsEnhLoss,
        weight: float = 1.0,
        mode: str = "efficient",
        ref_channel: int = 0,
        max_exact_assignments: int = 1 << 16,
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if ref_channel < 0:
            raise ValueError(f"ref_channel must be >= 0, got {ref_channel}")
        if max_exact_assignments < 1:
            raise ValueError(
                f"max_exact_assignments must be >= 1, got {max_exact_assignments}"
            )
        self.criterion = criterion
        self.weight = weight
        self.mode = mode
        self.ref_channel = ref_channel
        self.max_exact_assignments = max_exact_assignments

    @property
    def name(self) -> str:
        return "efficient_mixit"

    @property
    def criterion_uses_mixture(self) -> bool:
        """Whether the criterion takes ``mixture=`` (``thres_snr_zeroref`` does)."""
        return bool(getattr(self.criterion, "uses_mixture", False))

    @property
    def criterion_accepts_channels(self) -> bool:
        """Whether the criterion takes ``[B, T, C]`` (per-channel losses)."""
        return bool(getattr(self.criterion, "accepts_channels", False))

    def _stack(self, signals: List[torch.Tensor], what: str) -> torch.Tensor:
        if not isinstance(signals, (list, tuple)) or len(signals) == 0:
            raise ValueError(f"{what} must be a non-empty list of tensors")
        if any(torch.is_tensor(s) and s.is_complex() for s in signals) or not all(
            torch.is_tensor(s) for s in signals
        ):
            raise ValueError(
                f"{self.name} works on real time-domain signals; {what} holds "
                "complex or non-tensor items (use a time-domain criterion)"
            )
        shapes = {tuple(s.shape) for s in signals}
        if len(shapes) != 1:
            raise ValueError(f"all {what} signals must have one shape, got {shapes}")
        stacked = torch.stack(list(signals), dim=1)  # [B, M or N, T(, C)]
        if stacked.dim() not in (3, 4):
            raise ValueError(
                f"{what} signals must be [B, T] or [B, T, C], got {shapes.pop()}"
            )
        return stacked

    def _criterion(
        self,
        ref: torch.Tensor,
        est: torch.Tensor,
        mixture: Optional[torch.Tensor],
    ) -> torch.Tensor:
        if self.criterion_uses_mixture:
            return self.criterion(ref, est, mixture=mixture)
        return self.criterion(ref, est)

    @torch.no_grad()
    def solve(self, ref: torch.Tensor, est: torch.Tensor) -> torch.Tensor:
        """The assignment of each output to a mixture, ``[B, N]`` long.

        Args:
            ref: ``[B, M, T]`` or ``[B, M, T, C]``; est: ``[B, N, T(, C)]``.
        """
        if self.mode == "efficient":
            if ref.dim() == 4:
                ref, est = ref[..., self.ref_channel], est[..., self.ref_channel]
            return least_squares_assignment(gram_statistics(ref, est))
        # exact: the least loss as forward computes it, all channels
        per_channel = ref.dim() == 4 and self.criterion_accepts_channels
        if per_channel and hasattr(self.criterion, "from_energies"):
            # one row of statistics per example and channel, losses averaged
            assignment, _ = exhaustive_assignment(
                gram_statistics(
                    rearrange(ref, "b m t c -> (b c) m t"),
                    rearrange(est, "b n t c -> (b c) n t"),
                ),
                self.criterion.from_energies,
                channels=ref.shape[-1],
            )
            return assignment
        shape = ref.shape[2:]  # (T,) or (T, C)
        ref = rearrange(ref, "b m t ... -> b m (t ...)")
        est = rearrange(est, "b n t ... -> b n (t ...)")
        if not per_channel and hasattr(self.criterion, "from_energies"):
            return exhaustive_assignment(
                gram_statistics(ref, est), self.criterion.from_energies
            )[0]

        def signal_loss(r, e, mix):
            if per_channel:  # [X, T·C] -> [X, T, C], as forward hands the criterion
                r, e = r.reshape(-1, *shape), e.reshape(-1, *shape)
                mix = None if mix is None else mix.reshape(-1, *shape)
            return self._criterion(r, e, mix)

        assignment, _ = exhaustive_assignment_by_signals(
            ref,
            est,
            signal_loss,
            mixture=ref.sum(dim=1) if self.criterion_uses_mixture else None,
        )
        return assignment

    def forward(
        self,
        ref: List[torch.Tensor],
        inf: List[torch.Tensor],
        others: Optional[Dict] = None,
    ) -> Tuple[torch.Tensor, Dict, Dict]:
        """MixIT loss with the best (efficient or exact) assignment.

        Args:
            ref: ``M`` mixtures, each ``[B, T]`` or ``[B, T, C]``.
            inf: ``N`` outputs of the same shape.
            others: unused (ESPnet's wrapper interface).
        Returns:
            loss: scalar, the criterion averaged over mixtures and batch.
            stats: ``{criterion.name: loss.detach()}``.
            others: ``mixit_assignment`` and ``perm``: the binary mixing matrices
                ``[B, M, N]`` (``perm`` as ESPnet's ``MixITSolver`` returns it);
                ``mixit_output_to_mixture``: the mixture index of each output
                ``[B, N]``.
        """
        ref_t = self._stack(ref, "ref")
        est_t = self._stack(inf, "inf")
        if ref_t.shape[0] != est_t.shape[0] or ref_t.shape[2:] != est_t.shape[2:]:
            raise ValueError(
                f"ref items {tuple(ref[0].shape)} and inf items {tuple(inf[0].shape)} "
                "must have the same shape"
            )
        if ref_t.dim() == 4 and self.ref_channel >= ref_t.shape[-1]:
            raise ValueError(
                f"ref_channel {self.ref_channel} does not exist in signals with "
                f"{ref_t.shape[-1]} channels"
            )
        num_mixtures, num_outputs = ref_t.shape[1], est_t.shape[1]
        if self.mode == "exact":
            size = num_assignments(num_outputs, num_mixtures)
            if size > self.max_exact_assignments:
                raise ValueError(
                    f"exact MixIT would try {num_mixtures}^{num_outputs} = {size} "
                    "assignments (max_exact_assignments="
                    f"{self.max_exact_assignments}); use mode: efficient or raise "
                    "max_exact_assignments"
                )

        assignment = self.solve(ref_t.detach(), est_t.detach())  # [B, N]
        mixing = assignment_to_mixing(assignment, num_mixtures, est_t.dtype)
        remix = torch.einsum("bmn,bn...->bm...", mixing, est_t)

        if not self.criterion_accepts_channels:
            # the criterion sees [B, T]: channels are laid end to end
            ref_t = rearrange(ref_t, "b m t ... -> b m (t ...)")
            remix = rearrange(remix, "b m t ... -> b m (t ...)")
        mixture = ref_t.sum(dim=1) if self.criterion_uses_mixture else None
        loss = torch.stack(
            [
                self._criterion(ref_t[:, m], remix[:, m], mixture)
                for m in range(num_mixtures)
            ],
            dim=1,
        ).mean(
            dim=1
        )  # [B]
        loss = loss.mean()

        stats = {self.criterion.name: loss.detach()}
        mixing = mixing.detach()
        return (
            loss,
            stats,
            {
                "mixit_assignment": mixing,
                "perm": mixing,
                "mixit_output_to_mixture": assignment,
            },
        )
