"""Learning-rate schedules of the MixIT-MSS authors, as ESPnet batch-step schedulers.

The authors (b-sigpro/mixit-mss, ``common/lr_schedulers/warmup.py``) use one schedule
for MixIT pre-training and MUSDB18-HQ training: a linear warm-up, a constant stretch,
then a staircase decay that stops at a given step and **holds** its last value. ESPnet
has no scheduler that holds: ``warmupsteplr`` decays for ever, and
``piecewiselinearwarmuplr`` switches to an inverse-square-root tail after its last
breakpoint, which jumps back to about the peak learning rate.

Register under ``--scheduler warmupstaircaselr`` (:mod:`espnet2_ext.registry`).
"""

from __future__ import annotations

from typing import List

import torch
from espnet2.schedulers.abs_scheduler import AbsBatchStepScheduler
from torch.optim.lr_scheduler import LRScheduler


def warmup_staircase_factor(
    step: int,
    *,
    warmup_steps: int,
    decay_start_step: int,
    decay_stop_step: int,
    step_size: int,
    gamma: float,
) -> float:
    """The factor on the peak learning rate after ``step`` optimizer updates.

    ``step`` counts the updates done so far (0 before the first), which is the count
    the authors' ``LambdaLR`` passes to its function and ``last_epoch`` of a torch
    scheduler stepped once per update. Before ``decay_start_step``:
    ``max(0, min((step - 1) / (warmup_steps - 1), 1))``; from it on:
    ``gamma ** ((min(step, decay_stop_step) - decay_start_step) // step_size)``.

    The one difference from the authors' formula is ``max(0, ·)``: theirs gives
    ``-1 / (warmup_steps - 1)`` at step 0, i.e. a (tiny) negative learning rate for the
    very first update.
    """
    if step < decay_start_step:
        return max(0.0, min((step - 1) / (warmup_steps - 1), 1.0))
    return gamma ** ((min(step, decay_stop_step) - decay_start_step) // step_size)


class WarmupStaircaseLR(LRScheduler, AbsBatchStepScheduler):
    """Linear warm-up, constant, staircase decay that stops and holds (per update).

    The MixIT-MSS authors' ``WarmUpStepLR`` (see :func:`warmup_staircase_factor`):
    the learning rate rises linearly to the optimizer's ``lr`` over ``warmup_steps``
    updates, stays there until update ``decay_start_step``, is multiplied by ``gamma``
    every ``step_size`` updates after that, and holds the value it has at
    ``decay_stop_step`` for every later update, however long training runs.

    Their configs (``recipes/*/models/*/config.yaml``):

    * MUSDB18-HQ (scratch and fine-tuning): ``warmup_steps 5000, decay_start_step
      60500, decay_stop_step 99000, step_size 220, gamma 0.98`` (floor 0.98^175);
    * FMA MixIT pre-training: ``warmup_steps 4000, decay_start_step 4001,
      decay_stop_step 152850, step_size 2038, gamma 0.965`` (floor 0.965^73 ≈ 0.074).

    Args:
        optimizer: the optimizer; its ``lr`` is the peak learning rate.
        warmup_steps: updates of the linear warm-up (>= 2).
        decay_start_step: update at which the staircase starts (>= 1).
        decay_stop_step: update after which the value is held (>= decay_start_step).
        step_size: updates per stair (>= 1).
        gamma: factor per stair, in (0, 1].
        last_epoch: as torch's schedulers (-1: a new run).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_steps: int = 5000,
        decay_start_step: int = 60500,
        decay_stop_step: int = 99000,
        step_size: int = 220,
        gamma: float = 0.98,
        last_epoch: int = -1,
    ):
        if warmup_steps < 2:
            raise ValueError(
                f"warmup_steps must be >= 2 (the ramp is (step - 1) / (warmup_steps "
                f"- 1)), got {warmup_steps}"
            )
        if decay_start_step < 1:
            raise ValueError(f"decay_start_step must be >= 1, got {decay_start_step}")
        if decay_stop_step < decay_start_step:
            raise ValueError(
                f"decay_stop_step ({decay_stop_step}) must not come before "
                f"decay_start_step ({decay_start_step})"
            )
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        self.warmup_steps = int(warmup_steps)
        self.decay_start_step = int(decay_start_step)
        self.decay_stop_step = int(decay_stop_step)
        self.step_size = int(step_size)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(warmup_steps={self.warmup_steps}, "
            f"decay_start_step={self.decay_start_step}, "
            f"decay_stop_step={self.decay_stop_step}, step_size={self.step_size}, "
            f"gamma={self.gamma})"
        )

    def factor(self, step: int) -> float:
        """The factor on the peak learning rate after ``step`` updates."""
        return warmup_staircase_factor(
            step,
            warmup_steps=self.warmup_steps,
            decay_start_step=self.decay_start_step,
            decay_stop_step=self.decay_stop_step,
            step_size=self.step_size,
            gamma=self.gamma,
        )

    def get_lr(self) -> List[float]:
        # closed form of last_epoch (the updates so far): exact after any resume
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]
