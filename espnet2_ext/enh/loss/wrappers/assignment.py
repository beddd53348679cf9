"""Assignment of separated outputs to references: one module for MixIT and heads.

Two problems share this code:

* **MixIT** (many-to-one): every output ``ŝ_n`` goes to exactly one reference
  mixture ``x_m``; the remix is ``x̂ = A ŝ`` with a binary mixing matrix ``A``
  ``[M, N]`` whose columns are one-hot. :func:`least_squares_assignment` is the
  efficient solver (Wisdom et al., WASPAA 2021): least-squares ``A``, then each
  column binarised at its argmax. :func:`exhaustive_assignment` tries all ``M^N``
  assignments.
* **Head selection** (one-to-one): every reference stem gets a distinct output,
  chosen to maximise the summed SNR: :func:`pairwise_snr` and
  :func:`best_injective_assignment` (Hungarian algorithm, exact).

Everything that only selects is done without gradient on second-order statistics
(Gram matrices, summed in fp64): the inner products of all references and outputs
give every energy that a squared-error criterion needs, for every candidate
assignment, so the exhaustive search costs ``M^N`` tiny matrix products instead of
``M^N`` remixes of the waveforms.

Legend: ``B`` batch, ``M`` references (mixtures), ``N`` outputs, ``T`` samples,
``K`` candidate assignments.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

#: an energy-domain loss: (|x_m|², |x_m - x̂_m|², |Σ x|²) -> loss, broadcasting
EnergyLoss = Callable[
    [torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor
]
#: a signal-domain loss on flattened pairs: (ref [X, T], est [X, T], mix) -> [X]
SignalLoss = Callable[
    [torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor
]


@dataclass
class GramStatistics:
    """Inner products of references and outputs, fp64, without gradient.

    Attributes:
        ref_gram: ``<x_m, x_m'>``, ``[B, M, M]``.
        cross: ``<x_m, ŝ_n>``, ``[B, M, N]``.
        est_gram: ``<ŝ_n, ŝ_n'>``, ``[B, N, N]``.
    """

    ref_gram: torch.Tensor
    cross: torch.Tensor
    est_gram: torch.Tensor

    @property
    def ref_energy(self) -> torch.Tensor:
        """``|x_m|²``, ``[B, M]``."""
        return torch.diagonal(self.ref_gram, dim1=-2, dim2=-1)

    @property
    def est_energy(self) -> torch.Tensor:
        """``|ŝ_n|²``, ``[B, N]``."""
        return torch.diagonal(self.est_gram, dim1=-2, dim2=-1)

    @property
    def mixture_energy(self) -> torch.Tensor:
        """``|Σ_m x_m|²``, ``[B]``."""
        return self.ref_gram.sum(dim=(-2, -1))


def _check_signals(ref: torch.Tensor, est: torch.Tensor) -> None:
    if ref.dim() != 3 or est.dim() != 3:
        raise ValueError(
            f"expected ref [B, M, T] and est [B, N, T], got {tuple(ref.shape)} and "
            f"{tuple(est.shape)}"
        )
    if ref.shape[0] != est.shape[0] or ref.shape[-1] != est.shape[-1]:
        raise ValueError(
            f"ref {tuple(ref.shape)} and est {tuple(est.shape)} must agree in batch "
            "size and length"
        )


#: samples per step of the Gram accumulation
GRAM_CHUNK = 1 << 14


@torch.no_grad()
def gram_statistics(ref: torch.Tensor, est: torch.Tensor) -> GramStatistics:
    """All inner products of ``ref [B, M, T]`` and ``est [B, N, T]``, fp64 sums.

    The products of each ``GRAM_CHUNK``-sample piece run in the inputs' precision
    (fp32 for fp32/fp16/bf16 inputs, fp64 for fp64) and are summed in fp64: the
    relative error stays near fp32's 1e-7 however long the signals are, which is
    far below what moves an assignment (the 30 dB floor is 1e-3), without a full
    fp64 copy of the batch.
    """
    _check_signals(ref, est)
    batch, num_ref, length = ref.shape
    num_est = est.shape[1]
    work = torch.float64 if ref.dtype == torch.float64 else torch.float32
    ref, est = ref.to(work), est.to(work)
    f64 = dict(dtype=torch.float64, device=ref.device)
    ref_gram = torch.zeros(batch, num_ref, num_ref, **f64)
    cross = torch.zeros(batch, num_ref, num_est, **f64)
    est_gram = torch.zeros(batch, num_est, num_est, **f64)
    with torch.autocast(device_type=ref.device.type, enabled=False):
        for start in range(0, length, GRAM_CHUNK):
            r = ref[..., start : start + GRAM_CHUNK]  # [B, M, t]
            e = est[..., start : start + GRAM_CHUNK]  # [B, N, t]
            ref_gram += torch.bmm(r, r.transpose(-1, -2))
            cross += torch.bmm(r, e.transpose(-1, -2))
            est_gram += torch.bmm(e, e.transpose(-1, -2))
    return GramStatistics(ref_gram=ref_gram, cross=cross, est_gram=est_gram)


def assignment_to_mixing(
    assignment: torch.Tensor, num_mixtures: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """One-hot mixing matrices from assignments.

    Args:
        assignment: ``[..., N]`` integer, the mixture index of each output.
        num_mixtures: ``M``.
    Returns:
        ``[..., M, N]`` binary, ``A[..., m, n] = (assignment[..., n] == m)``.
    """
    onehot = torch.nn.functional.one_hot(assignment.long(), num_mixtures)
    return onehot.transpose(-1, -2).to(dtype)


def enumerate_assignments(
    num_outputs: int, num_mixtures: int, device: Optional[torch.device] = None
) -> torch.Tensor:
    """All ``M^N`` assignments, ``[K, N]`` long, in ``itertools.product`` order.

    This is the order of ESPnet's ``MixITSolver``, so ties resolve the same way.
    """
    if num_outputs < 1 or num_mixtures < 1:
        raise ValueError(
            f"need at least one output and one mixture, got N={num_outputs}, "
            f"M={num_mixtures}"
        )
    grid = list(itertools.product(range(num_mixtures), repeat=num_outputs))
    return torch.tensor(grid, dtype=torch.long, device=device)


@torch.no_grad()
def least_squares_mixing(stats: GramStatistics, rtol: float = 1e-10) -> torch.Tensor:
    """``A = argmin_A |X - A Ŝ|²`` from the normal equations, ``[B, M, N]`` fp64.

    ``A = <X, Ŝ> (<Ŝ, Ŝ>)^+``. The pseudo-inverse (eigenvalues below ``rtol`` times
    the largest are dropped) gives the minimum-norm solution when outputs are
    silent or linearly dependent, where a plain solve would return huge
    coefficients of opposite signs; identical outputs then share their
    coefficient, and a silent output gets 0.
    """
    gram_pinv = torch.linalg.pinv(stats.est_gram, rtol=rtol, hermitian=True)
    return torch.matmul(stats.cross, gram_pinv)


@torch.no_grad()
def least_squares_assignment(
    stats: GramStatistics, rtol: float = 1e-10
) -> torch.Tensor:
    """The efficient MixIT assignment, ``[B, N]`` long.

    Each column of the least-squares mixing matrix is binarised to a one-hot at its
    argmax over the ``M`` mixtures (ties go to the lower mixture index).
    """
    return least_squares_mixing(stats, rtol=rtol).argmax(dim=-2)


@torch.no_grad()
def remix_error_energies(
    stats: GramStatistics, assignments: torch.Tensor
) -> torch.Tensor:
    """``|x_m - Σ_{n: a_n = m} ŝ_n|²`` for candidate assignments, ``[B, K, M]``.

    Expanded as ``|x_m|² - 2 <x_m, x̂_m> + |x̂_m|²`` from the Gram matrices; fp64
    keeps the cancellation harmless down to errors far below the 30 dB floor.

    Args:
        stats: statistics of ``B`` examples.
        assignments: ``[K, N]`` (the same candidates for every example) or
            ``[B, K, N]``.
    """
    num_mixtures = stats.ref_gram.shape[-1]
    mixing = assignment_to_mixing(assignments, num_mixtures, torch.float64)
    if mixing.dim() == 3:  # [K, M, N]: shared by the batch
        mixing = mixing.unsqueeze(0)  # [1, K, M, N]
    cross = torch.einsum("bkmn,bmn->bkm", mixing, stats.cross)
    # |x̂_m|² = a_mᵀ G a_m
    remix_energy = torch.einsum(
        "bkmn,bkmn->bkm",
        torch.einsum("bkmn,bnl->bkml", mixing, stats.est_gram),
        mixing,
    )
    error = stats.ref_energy.unsqueeze(1) - 2 * cross + remix_energy
    return error.clamp(min=0.0)


@torch.no_grad()
def exhaustive_assignment(
    stats: GramStatistics,
    energy_loss: EnergyLoss,
    max_chunk_elements: int = 1 << 22,
    channels: int = 1,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Exact MixIT: the assignment with the least mean loss over the mixtures.

    Tries all ``M^N`` assignments on energies only (see module docstring), in chunks
    of candidates whose intermediate tensors hold at most ``max_chunk_elements``.

    Args:
        stats: statistics of ``B`` examples, or of ``B·C`` rows ``(b c)`` (each
            example's channels one after the other) when ``channels = C > 1``.
        energy_loss: ``(|x_m|², |x_m - x̂_m|², |Σ x|²) -> loss``, broadcasting, e.g.
            ``ThresholdedSNRLoss.from_energies``.
        channels: ``C``: the loss of a candidate is the mean of its per-channel
            losses, and one assignment serves all channels of an example.
    Returns:
        ``(assignment [B, N] long, loss [B] fp64)``; ties go to the first candidate
        in ``itertools.product`` order.
    """
    rows, num_mixtures, num_outputs = stats.cross.shape
    if channels < 1 or rows % channels != 0:
        raise ValueError(f"{rows} rows of statistics are not examples x {channels}")
    batch = rows // channels
    candidates = enumerate_assignments(num_outputs, num_mixtures, stats.cross.device)
    chunk = max(1, max_chunk_elements // max(1, rows * num_mixtures * num_outputs))
    ref_energy = stats.ref_energy.unsqueeze(1)  # [B, 1, M]
    mixture_energy = stats.mixture_energy[:, None, None]  # [B, 1, 1]
    best_loss, best_index = None, None
    for start in range(0, candidates.shape[0], chunk):
        error = remix_error_energies(stats, candidates[start : start + chunk])
        loss = energy_loss(ref_energy, error, mixture_energy).mean(dim=-1)  # [B·C, k]
        loss = loss.reshape(batch, channels, -1).mean(dim=1)  # [B, k]
        loss, index = loss.min(dim=-1)
        index = index + start
        if best_loss is None:
            best_loss, best_index = loss, index
        else:
            better = loss < best_loss  # strict: earlier candidates win ties
            best_loss = torch.where(better, loss, best_loss)
            best_index = torch.where(better, index, best_index)
    return candidates[best_index], best_loss


@torch.no_grad()
def exhaustive_assignment_by_signals(
    ref: torch.Tensor,
    est: torch.Tensor,
    signal_loss: SignalLoss,
    mixture: Optional[torch.Tensor] = None,
    max_chunk_elements: int = 1 << 25,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Exact MixIT for any criterion: remix the waveforms for every assignment.

    The fallback for criteria that are not functions of energies (e.g. SI-SNR);
    costs ``M^N`` remixes, in chunks of at most ``max_chunk_elements`` samples.

    Args:
        ref: ``[B, M, T]``; est: ``[B, N, T]``.
        signal_loss: ``(ref [X, T], est [X, T], mixture [X, T] or None) -> [X]``.
        mixture: ``[B, T]``, handed to ``signal_loss`` beside each pair, or None.
    Returns:
        ``(assignment [B, N] long, loss [B])``.
    """
    _check_signals(ref, est)
    batch, num_mixtures, length = ref.shape
    num_outputs = est.shape[1]
    candidates = enumerate_assignments(num_outputs, num_mixtures, ref.device)
    chunk = max(1, max_chunk_elements // max(1, batch * num_mixtures * length))
    target = ref.reshape(-1, length)  # [B·M, T]
    mix = None
    if mixture is not None:
        mix = mixture.unsqueeze(1).expand(-1, num_mixtures, -1).reshape(-1, length)
    best_loss, best_index = None, None
    for start in range(0, candidates.shape[0], chunk):
        mixing = assignment_to_mixing(
            candidates[start : start + chunk], num_mixtures, est.dtype
        )  # [k, M, N]
        remix = torch.einsum("kmn,bnt->kbmt", mixing, est)
        # one criterion call per candidate on [B·M, T] views: no copies of ref
        loss = torch.stack(
            [
                signal_loss(target, candidate.reshape(-1, length), mix)
                for candidate in remix
            ]
        ).reshape(remix.shape[:3])
        loss, index = loss.mean(dim=-1).min(dim=0)  # over candidates: [B]
        index = index + start
        if best_loss is None:
            best_loss, best_index = loss, index
        else:
            better = loss < best_loss
            best_loss = torch.where(better, loss, best_loss)
            best_index = torch.where(better, index, best_index)
    return candidates[best_index], best_loss


@torch.no_grad()
def pairwise_snr(
    ref: torch.Tensor, est: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """SNR of every output against every reference, ``[B, R, N]`` dB (fp64).

    ``10 log10((|s_r|² + eps) / (|s_r - ŝ_n|² + eps))``.

    Args:
        ref: ``[B, R, T]``; est: ``[B, N, T]``.
    """
    stats = gram_statistics(ref, est)
    ref_energy = stats.ref_energy.unsqueeze(-1)  # [B, R, 1]
    error = (ref_energy - 2 * stats.cross + stats.est_energy.unsqueeze(-2)).clamp(
        min=0.0
    )
    return 10 * torch.log10(ref_energy + eps) - 10 * torch.log10(error + eps)


def best_injective_assignment(
    score: torch.Tensor, maximize: bool = True
) -> torch.Tensor:
    """Distinct outputs for the references with the best summed score.

    Solved exactly by the Hungarian algorithm (``scipy.optimize.
    linear_sum_assignment``) on each ``[R, N]`` matrix, ``R <= N``; the same optimum
    as trying every one of the ``N! / (N-R)!`` injective maps (what the authors'
    head-selection script does), in polynomial time.

    Args:
        score: ``[R, N]`` or ``[B, R, N]``; entry ``(r, n)`` scores output ``n`` as
            reference ``r``.
    Returns:
        ``[R]`` or ``[B, R]`` long: the output chosen for each reference.
    """
    squeeze = score.dim() == 2
    if squeeze:
        score = score.unsqueeze(0)
    if score.dim() != 3:
        raise ValueError(f"score must be [R, N] or [B, R, N], got {tuple(score.shape)}")
    num_ref, num_out = score.shape[-2:]
    if num_ref > num_out:
        raise ValueError(
            f"cannot give {num_ref} references distinct outputs out of {num_out}"
        )
    values = score.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(values).all():
        raise ValueError("score contains NaN or inf; check the signals")
    result = np.empty(values.shape[:2], dtype=np.int64)
    for b, matrix in enumerate(values):
        rows, cols = linear_sum_assignment(matrix, maximize=maximize)
        result[b, rows] = cols
    result = torch.from_numpy(result).to(score.device)
    return result[0] if squeeze else result


def num_assignments(num_outputs: int, num_mixtures: int) -> int:
    """``M^N``, the size of the exhaustive search."""
    return num_mixtures**num_outputs
