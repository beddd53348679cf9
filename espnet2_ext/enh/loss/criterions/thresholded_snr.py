"""Thresholded SNR losses, with and without inactive (silent) references.

Reference:
    S. Wisdom et al., "Unsupervised sound separation using mixture invariant
    training", NeurIPS 2020 (thresholded SNR), and "What's all the fuss about free
    universal sound separation data?", ICASSP 2021 (inactive references);
    used for MixIT pre-training and MUSDB18-HQ fine-tuning in
    "Is MixIT really unsuitable for correlated sources?" (seeds/002).

Both criteria take ``[B, T]`` tensors, as every ESPnet time-domain criterion does, or
multi-channel ``[B, T, C]`` tensors: then the loss (and, for inactive references, the
activity decision) is computed for each channel and the channels' losses are averaged,
as the authors' code does for stereo music (``multichannel_loss: per_channel`` of our
task hands them the channels). Given ``[B, C·T]`` (``multichannel_loss: folded``), the
energies are summed over both channels instead.

The loss is written once, as a function of signal energies
(:meth:`ThresholdedSNRLoss.from_energies`), and ``forward`` only measures the
energies. The exhaustive MixIT search (:mod:`espnet2_ext.enh.loss.wrappers.assignment`)
evaluates the very same function on energies computed from Gram matrices, so the
assignment it picks minimises exactly this criterion.
"""

from __future__ import annotations

from typing import Optional

import torch
from espnet2.enh.loss.criterions.time_domain import TimeDomainLoss


def _energy_dtype(x: torch.Tensor) -> torch.dtype:
    """Energies are summed in fp32 at least (fp64 stays fp64), also under autocast."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _energy(x: torch.Tensor) -> torch.Tensor:
    """Sum of squares over the time axis (dim 1): ``[B, T] -> [B]``,
    ``[B, T, C] -> [B, C]``; fp32 or wider."""
    x = x.to(_energy_dtype(x))
    return (x * x).sum(dim=1)  # faster than pow(2) on CPU


def _channel_mean(loss: torch.Tensor) -> torch.Tensor:
    """``[B] -> [B]``; ``[B, C] -> [B]``: the mean of the channels' losses."""
    return loss.mean(dim=1) if loss.dim() == 2 else loss


def _widen(x: torch.Tensor) -> torch.Tensor:
    """Cast to the energy dtype before subtracting, so ``s - ŝ`` is exact enough."""
    return x.to(_energy_dtype(x))


def _check_pair(ref: torch.Tensor, inf: torch.Tensor) -> None:
    if ref.shape != inf.shape:
        raise ValueError(
            f"reference {tuple(ref.shape)} and estimate {tuple(inf.shape)} must have "
            "the same shape [B, T] or [B, T, C]"
        )
    if ref.dim() not in (2, 3):
        raise ValueError(
            "thresholded SNR expects [B, T] or [B, T, C] tensors, got "
            f"{ref.dim()} dimensions {tuple(ref.shape)}"
        )


class ThresholdedSNRLoss(TimeDomainLoss):
    """Negative SNR with a soft cap at ``snr_max`` dB (loss per example, ``(B,)``).

    ``loss = 10 log10(|s - ŝ|² + τ |s|² + eps) - 10 log10(|s|² + eps)`` with
    ``τ = 10^(-snr_max / 10)``: the loss cannot go below ``-snr_max``, so well
    separated examples stop dominating the gradient. ``eps`` keeps the loss finite
    on all-zero references and estimates (both zero gives 0 dB).

    Args:
        snr_max: SNR cap in dB (30 in the paper).
        eps: added to every energy inside the logarithms.
        name, only_for_test, is_noise_loss, is_dereverb_loss: as ESPnet's criteria.
    """

    #: wrappers pass ``mixture=`` only to criteria that say they use it
    uses_mixture = False
    #: ``forward`` takes ``[B, T, C]`` and averages the channels' losses
    accepts_channels = True

    def __init__(
        self,
        snr_max: float = 30.0,
        eps: float = 1e-8,
        name: Optional[str] = None,
        only_for_test: bool = False,
        is_noise_loss: bool = False,
        is_dereverb_loss: bool = False,
    ):
        super().__init__(
            "thres_snr_loss" if name is None else name,
            only_for_test=only_for_test,
            is_noise_loss=is_noise_loss,
            is_dereverb_loss=is_dereverb_loss,
        )
        if not eps > 0:
            raise ValueError(f"eps must be > 0 to keep the loss finite, got {eps}")
        self.snr_max = float(snr_max)
        self.tau = 10.0 ** (-self.snr_max / 10.0)
        self.eps = float(eps)

    def from_energies(
        self,
        ref_energy: torch.Tensor,
        error_energy: torch.Tensor,
        mixture_energy: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The loss from ``|s|²`` and ``|s - ŝ|²`` (any equal shapes)."""
        return 10 * torch.log10(
            error_energy + self.tau * ref_energy + self.eps
        ) - 10 * torch.log10(ref_energy + self.eps)

    def forward(self, ref: torch.Tensor, inf: torch.Tensor) -> torch.Tensor:
        """Args: ref, inf: ``[B, T]`` or ``[B, T, C]``.

        Returns: loss ``[B]`` (fp32 or fp64); for ``[B, T, C]`` the mean over the
        channels of each channel's loss.
        """
        _check_pair(ref, inf)
        ref, inf = _widen(ref), _widen(inf)
        return _channel_mean(self.from_energies(_energy(ref), _energy(ref - inf)))


class ThresholdedSNRZeroRefLoss(ThresholdedSNRLoss):
    """Thresholded SNR that also accepts inactive (silent) references.

    A reference is inactive when ``10 log10(|s|² / |x|²) < inactive_threshold_db``
    relative to the mixture ``x``; its loss is then
    ``inactive_weight · 10 log10(|s - ŝ|² + τ |x|² + eps)``: the estimate is pushed
    towards silence, with a floor set by the mixture level instead of by the (zero)
    reference. For an all-zero reference ``|s - ŝ|² = |ŝ|²``, the paper's form; we
    keep ``s - ŝ`` (as the authors' code does) so that a reference just below the
    threshold is treated continuously. Active references get
    :class:`ThresholdedSNRLoss`.

    The mixture comes from the loss wrapper (``forward(ref, inf, mixture=x)``): a
    criterion sees one reference at a time, and the activity of a stem is only
    defined relative to the mixture. Wrappers of this package pass the sum of all
    references, which is the mixture for MUSDB18-HQ training (the mixture is built
    as the sum of the stems) and the mixture of mixtures for MixIT; the authors'
    code uses the same sum.

    Args:
        snr_max: SNR cap in dB for active references (30 in the paper).
        inactive_threshold_db: activity threshold relative to the mixture (-60).
        inactive_weight: weight of the inactive-reference loss (0.1).
        eps: added to every energy inside the logarithms.
        name, only_for_test, is_noise_loss, is_dereverb_loss: as ESPnet's criteria.
    """

    uses_mixture = True

    def __init__(
        self,
        snr_max: float = 30.0,
        inactive_threshold_db: float = -60.0,
        inactive_weight: float = 0.1,
        eps: float = 1e-8,
        name: Optional[str] = None,
        only_for_test: bool = False,
        is_noise_loss: bool = False,
        is_dereverb_loss: bool = False,
    ):
        super().__init__(
            snr_max=snr_max,
            eps=eps,
            name="thres_snr_zeroref_loss" if name is None else name,
            only_for_test=only_for_test,
            is_noise_loss=is_noise_loss,
            is_dereverb_loss=is_dereverb_loss,
        )
        if inactive_weight < 0:
            raise ValueError(f"inactive_weight must be >= 0, got {inactive_weight}")
        self.inactive_threshold_db = float(inactive_threshold_db)
        self.inactive_weight = float(inactive_weight)

    def is_active(
        self, ref_energy: torch.Tensor, mixture_energy: torch.Tensor
    ) -> torch.Tensor:
        """``10 log10(|s|² / (|x|² + eps)) >= threshold``, compared without a log.

        An all-zero reference is inactive, also in an all-zero mixture.
        """
        ratio = 10.0 ** (self.inactive_threshold_db / 10.0)
        return ref_energy >= ratio * (mixture_energy + self.eps)

    def from_energies(
        self,
        ref_energy: torch.Tensor,
        error_energy: torch.Tensor,
        mixture_energy: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The loss from ``|s|²``, ``|s - ŝ|²`` and ``|x|²`` (broadcastable)."""
        if mixture_energy is None:
            raise ValueError(
                "thres_snr_zeroref needs the mixture energy to decide whether a "
                "reference is active"
            )
        active_loss = super().from_energies(ref_energy, error_energy)
        inactive_loss = (
            self.inactive_weight
            * 10
            * torch.log10(error_energy + self.tau * mixture_energy + self.eps)
        )
        # both branches are finite, so the gradient of torch.where is finite too
        return torch.where(
            self.is_active(ref_energy, mixture_energy), active_loss, inactive_loss
        )

    def forward(
        self,
        ref: torch.Tensor,
        inf: torch.Tensor,
        mixture: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Args: ref, inf, mixture: ``[B, T]`` or ``[B, T, C]``.

        Returns: loss ``[B]``; for ``[B, T, C]`` each channel is judged active or
        inactive against the same channel of the mixture, and the channels' losses
        are averaged.

        Raises:
            ValueError: no mixture was given (ESPnet's own wrappers never pass one;
                use a wrapper of this package) or the shapes differ.
        """
        _check_pair(ref, inf)
        if mixture is None:
            raise ValueError(
                "thres_snr_zeroref needs the mixture (activity is measured relative "
                "to it), but the loss wrapper called it as criterion(ref, inf). Use "
                "a wrapper that passes mixture= (espnet2_ext's efficient_mixit "
                "passes the sum of its references), or use thres_snr."
            )
        if mixture.shape != ref.shape:
            raise ValueError(
                f"mixture {tuple(mixture.shape)} must have the reference's shape "
                f"{tuple(ref.shape)}"
            )
        ref, inf = _widen(ref), _widen(inf)
        return _channel_mean(
            self.from_energies(
                _energy(ref), _energy(ref - inf), _energy(mixture).detach()
            )
        )
