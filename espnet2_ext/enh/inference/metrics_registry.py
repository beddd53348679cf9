"""Metrics that multi-step inference maximises, as a small guarded registry.

Multi-step inference (seeds/000, :mod:`espnet2_ext.enh.inference.multistep`) keeps, at
each step, the candidate estimate that scores highest under a metric. Two kinds exist:

* **oracle** metrics compare with the true sources (SNR, SI-SDR). They are usable only
  where the references are known (validation, or to measure an upper bound); every result
  selected with one is labelled ``oracle`` (see :attr:`Metric.label`).
* **non-intrusive** metrics need no reference (a quality predictor such as UTMOS for
  speech). A user registers one with :func:`register_metric`; results selected with one
  are deployable as they are. One is built in for music: ``mixture_consistency``
  (:func:`mixture_consistency`).

A metric is called as ``fn(estimate, reference, mixture)`` with

* ``estimate``: [B, N, C, L] (batch, sources, channels, samples);
* ``reference``: [B, N, C, L] for an oracle metric, ``None`` for a non-intrusive one;
* ``mixture``: [B, C, L], the input of the separator's first step;

and returns scores to **maximise**, [B, N, C] (one per item, source and channel) or
[B, N] (one per item and source; the selection is then shared by all channels).
A loss must be negated before it is registered.

A **joint** metric (``joint=True``) scores a source's candidate together with the
*current* estimates of the other sources: it is called with a fourth argument,
``current`` [B, N, C, L], and the score of source ``n`` may use ``estimate[:, n]`` and
``current[:, m]`` for ``m != n`` (never ``current[:, n]``, which the candidate replaces).
Called without ``current``, the estimate is its own context (the score of a whole set of
estimates). The multi-step search then updates the sources one after another
(:class:`~espnet2_ext.enh.inference.multistep.search.MultiStepSeparator`).

The metrics live in the plugin's one guarded
:class:`~espnet2_ext.utils.registry.Registry`: names are lower case, a name is never
overwritten, and the built-in names stay built in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
from einops import rearrange
from espnet2.enh.loss.criterions.time_domain import SISNRLoss, SNRLoss

from espnet2_ext.utils.registry import Registry

#: ``fn(estimate [B, N, C, L], reference [B, N, C, L] | None, mixture [B, C, L])``
#: ``-> scores [B, N, C] or [B, N]`` (higher is better); a joint metric takes a fourth
#: argument, the current estimates [B, N, C, L].
MetricFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    Args:
        name: registry key (lower case).
        fn: the scoring function, see the module docstring.
        requires_reference: True for an oracle metric (needs the true sources).
        builtin: registered by this module (cannot be removed).
        joint: the score of a source depends on the other sources' current estimates
            (``fn`` takes ``current``; see the module docstring).
    """

    name: str
    fn: MetricFn
    requires_reference: bool
    builtin: bool = False
    joint: bool = False

    @property
    def label(self) -> str:
        """``"oracle snr"`` for a reference-based metric, the bare name otherwise."""
        return f"oracle {self.name}" if self.requires_reference else self.name

    def __call__(
        self,
        estimate: torch.Tensor,
        reference: Optional[torch.Tensor],
        mixture: torch.Tensor,
        current: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Score ``estimate`` [B, N, C, L]; returns float32 [B, N, C] or [B, N].

        ``current`` [B, N, C, L] (joint metrics only; default: ``estimate``): the
        estimates of the other sources that each source's candidate is scored with.
        A reference given to a non-intrusive metric is never passed on to it.

        Raises:
            ValueError: a reference is missing for an oracle metric, its shape (or that
                of ``current``) differs from the estimate's, or the function returned
                another shape.
        """
        if self.requires_reference:
            if reference is None:
                raise ValueError(
                    f"metric {self.name!r} is an oracle metric: it needs the reference "
                    "sources [B, N, C, L]; pass them, or use a schedule or a "
                    "non-intrusive metric (register_metric(..., "
                    "requires_reference=False))"
                )
            if reference.shape != estimate.shape:
                raise ValueError(
                    f"metric {self.name!r}: reference shape {tuple(reference.shape)} "
                    f"differs from the estimate shape {tuple(estimate.shape)}; both "
                    "must be [B, N, C, L] with the sources in the separator's order"
                )
        reference = reference if self.requires_reference else None
        if self.joint:
            if current is None:
                current = estimate
            elif current.shape != estimate.shape:
                raise ValueError(
                    f"metric {self.name!r}: current estimates of shape "
                    f"{tuple(current.shape)} for an estimate of shape "
                    f"{tuple(estimate.shape)}; both must be [B, N, C, L]"
                )
            scores = self.fn(estimate, reference, mixture, current)
        else:
            scores = self.fn(estimate, reference, mixture)
        b, n, c, _ = estimate.shape
        if not isinstance(scores, torch.Tensor) or tuple(scores.shape) not in (
            (b, n, c),
            (b, n),
        ):
            got = (
                tuple(scores.shape)
                if isinstance(scores, torch.Tensor)
                else type(scores).__name__
            )
            raise ValueError(
                f"metric {self.name!r} returned {got} for an estimate of shape "
                f"{tuple(estimate.shape)}; it must return [B, N, C] = {(b, n, c)} or "
                f"[B, N] = {(b, n)}"
            )
        return scores.float()


#: The registry (:class:`~espnet2_ext.utils.registry.Registry`): lower-case names, no
#: overwriting, built-in metrics cannot be removed.
_METRICS: Registry[Metric] = Registry("metric", base=Metric)

# The Registry checks names too; checking them here first keeps this module's message,
# which shows how to register a metric.
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def register_metric(
    name: str, fn: MetricFn, *, requires_reference: bool = False, joint: bool = False
) -> Metric:
    """Add a metric under ``name``; returns the registered :class:`Metric`.

    Args:
        name: lower-case key, e.g. ``"utmos"``.
        fn: ``fn(estimate, reference, mixture) -> scores`` (module docstring), higher
            is better; ``fn(estimate, reference, mixture, current)`` if ``joint``.
        requires_reference: True if ``fn`` compares with the true sources (its results
            are then labelled oracle).
        joint: ``fn`` scores a source together with the other sources' current
            estimates.

    Raises:
        ValueError: the name is not lower case / not an identifier, or it is taken.
        TypeError: ``fn`` is not callable.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"metric names are lower case letters, digits and '_', starting with a "
            f"letter (got {name!r}); e.g. register_metric('utmos', fn)"
        )
    if not callable(fn):
        raise TypeError(f"metric {name!r}: fn must be callable, got {fn!r}")
    metric = Metric(
        name=name,
        fn=fn,
        requires_reference=bool(requires_reference),
        joint=bool(joint),
    )
    try:
        return _METRICS.add(name, metric)
    except ValueError as e:  # the name is taken
        raise ValueError(
            f"{e} (or unregister_metric it first if it is yours)"
        ) from None


def unregister_metric(name: str) -> None:
    """Remove a user-registered metric (built-in metrics cannot be removed).

    Raises:
        ValueError: unknown or built-in name.
    """
    _METRICS.remove(name)


def get_metric(name: str) -> Metric:
    """The metric registered as ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    try:
        return _METRICS.get(name)
    except ValueError as e:
        raise ValueError(f"{e} (add one with register_metric)") from None


def available_metrics() -> List[str]:
    """Names of all registered metrics, sorted."""
    return _METRICS.names()


def _per_signal(
    estimate: torch.Tensor, reference: torch.Tensor, criterion
) -> torch.Tensor:
    """Apply an ESPnet time-domain criterion (a loss per signal) to every channel.

    estimate, reference: [B, N, C, L] → scores [B, N, C] (the negated loss, in fp32).
    """
    b, n, _, _ = estimate.shape
    est = rearrange(estimate.float(), "b n c l -> (b n c) l")
    ref = rearrange(reference.float(), "b n c l -> (b n c) l")
    loss = criterion(ref, est)
    return rearrange(-loss, "(b n c) -> b n c", b=b, n=n)


_SNR = SNRLoss()
_SI_SDR = SISNRLoss(zero_mean=True)


def snr(
    estimate: torch.Tensor, reference: Optional[torch.Tensor], mixture: torch.Tensor
) -> torch.Tensor:
    """SNR in dB per item, source and channel, ``10 log10(|s|² / |s - ŝ|²)``.

    ESPnet's :class:`~espnet2.enh.loss.criterions.time_domain.SNRLoss` (norms floored at
    float32's eps). Averaged over channels and songs it is the uSDR of seeds/002.
    """
    return _per_signal(estimate, reference, _SNR)


def si_sdr(
    estimate: torch.Tensor, reference: Optional[torch.Tensor], mixture: torch.Tensor
) -> torch.Tensor:
    """Scale-invariant SDR in dB (zero-mean) per item, source and channel.

    ESPnet's :class:`~espnet2.enh.loss.criterions.time_domain.SISNRLoss`
    (``fast_bss_eval``); a silent estimate or reference gives ``-inf``.
    """
    return _per_signal(estimate, reference, _SI_SDR)


#: Floor of the energies in :func:`mixture_consistency` (ESPnet's SNRLoss floor).
_ENERGY_EPS = torch.finfo(torch.float32).eps


def mixture_consistency(
    estimate: torch.Tensor,
    reference: Optional[torch.Tensor],
    mixture: torch.Tensor,
    current: torch.Tensor,
) -> torch.Tensor:
    """How well the mixture is explained: a reference-free (non-intrusive) joint metric.

    For source ``n`` the candidate ``ŷ_n`` is put in place of the current estimate of
    that source, and the score is the signal-to-residual ratio of the mixture::

        e_n = x − ŷ_n − Σ_{m≠n} c_m          score_n = 10 log10(|x|² / |e_n|²)  [dB]

    per item, source and channel (energies floored at float32's eps). Called with
    ``current = estimate`` every source gets the same score: that of the set.

    Why it is a sound criterion for music: a MUSDB18-HQ mixture is by definition the sum
    of its stems (``mixture.wav`` is their sample-wise sum, as in the generated songs),
    so the true stems leave no residual and any residual is error that some stem must
    take. It is necessary, not sufficient (the mixture in one stem and silence in the
    others also sums to the mixture): in multi-step inference it only chooses among the
    separator's own outputs for blends of the mixture and the previous estimate.

    Args:
        estimate: candidates [B, N, C, L].
        reference: ignored (``None``): the metric never sees the true sources.
        mixture: x [B, C, L].
        current: current estimates [B, N, C, L] (the other sources' context).

    Returns:
        [B, N, C] in dB, higher is better.
    """
    est = estimate.float()
    cur = current.float()
    # e_n = x − Σ_m c_m − (ŷ_n − c_n)
    residual = (mixture.float() - cur.sum(dim=1))[:, None] - (est - cur)
    mix_energy = mixture.float().pow(2).sum(dim=-1)[:, None]  # [B, 1, C]
    res_energy = residual.pow(2).sum(dim=-1)  # [B, N, C]
    return 10.0 * torch.log10(
        mix_energy.clamp_min(_ENERGY_EPS) / res_energy.clamp_min(_ENERGY_EPS)
    )


for _name, _fn, _oracle, _joint in (
    ("snr", snr, True, False),
    ("si_sdr", si_sdr, True, False),
    ("mixture_consistency", mixture_consistency, False, True),
):
    _METRICS.add(
        _name,
        Metric(
            name=_name, fn=_fn, requires_reference=_oracle, builtin=True, joint=_joint
        ),
        builtin=True,
    )
