"""A training config at a given budget of updates, its learning-rate schedule kept in
shape.

A comparison at a small budget (``egs2/fma/mixit_enh1/local/compare.sh``: MixIT
pre-training, fine-tuning and training from scratch, each for a fixed number of updates)
needs the authors' schedules at that budget. Their released schedules are
``warmupstaircaselr`` (:mod:`espnet2_ext.train.schedulers`) over a paper-size run: MixIT
warm-up 4000 of 305,700 updates, the staircase ×0.965 every 2038 updates held from
update 152,850; MUSDB18-HQ warm-up 5000 of 99,000, the peak until 60,500, then ×0.98
every 220. :func:`scale_staircase` shrinks such a schedule to ``steps`` updates so that
every fraction of training has the factor it has in the reference run: the step counts
scale by ``steps / reference_steps`` (rounded, at least one update per stair), and
``gamma`` is adjusted to the rounded stair length so the decay per update stays the
reference's. At ``steps == reference_steps`` the reference comes back unchanged.

A budget so small that every update of it falls in the first two of the warm-up is
refused: the authors' ramp ``(step - 1) / (warmup_steps - 1)`` gives those updates a
learning rate of 0, so such a run would leave its initial weights as they are.
"""

from __future__ import annotations

import copy
import math
from typing import Dict, Mapping, Optional

import yaml

from espnet2_ext.train.schedulers import warmup_staircase_factor
from espnet2_ext.utils.atomic import atomic_write_text

#: The scheduler whose shape :func:`scale_staircase` keeps.
STAIRCASE = "warmupstaircaselr"
STAIRCASE_KEYS = (
    "warmup_steps",
    "decay_start_step",
    "decay_stop_step",
    "step_size",
    "gamma",
)


def training_steps(config: Mapping, name: str = "the config") -> int:
    """Optimizer updates of a config: ``max_epoch × num_iters_per_epoch``.

    Args:
        config: the training config.
        name: how the error message calls it (e.g. its path).

    Raises:
        ValueError: the config leaves either unset (an epoch is then the data's length,
            not a number of updates).
    """
    epochs, iters = config.get("max_epoch"), config.get("num_iters_per_epoch")
    if not epochs or not iters:
        raise ValueError(
            f"{name} needs max_epoch and num_iters_per_epoch to count the updates its "
            f"{STAIRCASE} schedule spans (got max_epoch={epochs}, "
            f"num_iters_per_epoch={iters}): set both to the run the schedule was made "
            "for"
        )
    return int(epochs) * int(iters)


def scale_staircase(
    conf: Mapping[str, float], reference_steps: int, steps: int
) -> Dict[str, float]:
    """The ``warmupstaircaselr`` options for ``steps`` updates with the shape ``conf``
    has over ``reference_steps`` updates.

    Args:
        conf: ``warmup_steps``, ``decay_start_step``, ``decay_stop_step``,
            ``step_size``, ``gamma`` of the reference schedule.
        reference_steps: the updates of the reference run (its config's
            ``max_epoch × num_iters_per_epoch``).
        steps: the updates of the new run.

    Returns:
        the options for ``steps``: warm-up at least 2 updates, the decay starting no
        earlier than the warm-up ends when the reference's does not, stairs at least 1
        update long, and ``gamma ** (new stair / scaled reference stair)``.
    """
    missing = [k for k in STAIRCASE_KEYS if k not in conf]
    if missing:
        raise ValueError(f"{STAIRCASE} options {missing} missing from {dict(conf)}")
    if reference_steps < 1 or steps < 1:
        raise ValueError(
            f"reference_steps and steps must be >= 1, got {reference_steps}, {steps}"
        )
    ratio = steps / reference_steps
    warmup = max(2, round(conf["warmup_steps"] * ratio))
    start = max(1, round(conf["decay_start_step"] * ratio))
    if conf["decay_start_step"] >= conf["warmup_steps"]:
        start = max(start, warmup)
    stop = max(start, round(conf["decay_stop_step"] * ratio))
    stair = conf["step_size"] * ratio  # the reference stair in new updates
    step_size = max(1, round(stair))
    gamma = float(conf["gamma"]) ** (step_size / stair)
    return {
        "warmup_steps": int(warmup),
        "decay_start_step": int(start),
        "decay_stop_step": int(stop),
        "step_size": int(step_size),
        "gamma": gamma,
    }


def budget_config(
    config: Mapping,
    *,
    steps: int,
    steps_per_epoch: int,
    schedule_from: Optional[Mapping] = None,
) -> Dict:
    """``config`` trained for exactly ``steps`` updates, validated every
    ``steps_per_epoch``.

    The schedule: with ``schedule_from`` (a config with a ``warmupstaircaselr``
    schedule, e.g. the paper config of the same kind), its schedule scaled from its own
    budget to ``steps`` (:func:`scale_staircase`), at ``config``'s peak learning rate;
    without it, ``config``'s own ``warmupstaircaselr`` schedule scaled from
    ``config``'s budget, or any other scheduler left as it is.

    Raises:
        ValueError: ``steps`` is not a multiple of ``steps_per_epoch``,
            ``schedule_from`` has another scheduler or no ``max_epoch`` ×
            ``num_iters_per_epoch``, or no update of the scaled schedule has a learning
            rate above 0.
    """
    if steps < 1 or steps_per_epoch < 1 or steps % steps_per_epoch:
        raise ValueError(
            f"steps ({steps}) must be a positive multiple of steps_per_epoch "
            f"({steps_per_epoch}): ESPnet trains whole epochs"
        )
    out = copy.deepcopy(dict(config))
    source = config if schedule_from is None else schedule_from
    if source.get("scheduler") == STAIRCASE:
        name = "the config" if schedule_from is None else "schedule_from"
        scaled = scale_staircase(
            source["scheduler_conf"], training_steps(source, name), steps
        )
        # update k (k = 0 … steps - 1) follows k updates: its factor is that of step k
        if not any(warmup_staircase_factor(k, **scaled) > 0 for k in range(steps)):
            raise ValueError(
                f"{steps} updates train nothing with the {STAIRCASE} schedule scaled "
                f"to them ({scaled}): the warm-up's ramp (step - 1) / (warmup_steps "
                "- 1) gives the first two updates a learning rate of 0; give at "
                "least 3 updates"
            )
        out["scheduler"] = STAIRCASE
        out["scheduler_conf"] = scaled
    elif schedule_from is not None:
        raise ValueError(
            f"schedule_from has scheduler {schedule_from.get('scheduler')!r}, not "
            f"{STAIRCASE!r}: nothing to scale"
        )
    out["max_epoch"] = steps // steps_per_epoch
    out["num_iters_per_epoch"] = steps_per_epoch
    return out


def staircase_floor(conf: Mapping[str, float]) -> float:
    """The factor a ``warmupstaircaselr`` schedule holds after ``decay_stop_step``."""
    stairs = (conf["decay_stop_step"] - conf["decay_start_step"]) // conf["step_size"]
    return math.pow(conf["gamma"], stairs)


def write_budget_config(
    config: str,
    out: str,
    steps: int,
    steps_per_epoch: int,
    schedule_from: Optional[str] = None,
) -> Dict:
    """Read the YAML ``config`` (and ``schedule_from``), write :func:`budget_config`
    of it to ``out`` (atomically, with a comment naming its sources); return it."""
    with open(config, encoding="utf-8") as f:
        source = yaml.safe_load(f)
    reference = None
    if schedule_from is not None:
        with open(schedule_from, encoding="utf-8") as f:
            reference = yaml.safe_load(f)
    shape_config = source if reference is None else reference
    if shape_config.get("scheduler") == STAIRCASE:
        training_steps(shape_config, schedule_from or config)  # its path in the error
    result = budget_config(
        source, steps=steps, steps_per_epoch=steps_per_epoch, schedule_from=reference
    )
    shape = schedule_from or config
    if result.get("scheduler") == STAIRCASE:
        schedule = (
            f"# schedule: the {STAIRCASE} of {shape} scaled from its "
            f"{training_steps(shape_config):,} updates to {steps:,} "
            f"(espnet2_ext.train.budget.scale_staircase), peak lr of {config}\n"
        )
    else:
        schedule = f"# schedule: {config}'s own ({result.get('scheduler')}), unscaled\n"
    header = (
        f"# {config} at a budget of {steps:,} updates ({result['max_epoch']} epochs of "
        f"{steps_per_epoch}); written by python -m espnet2_ext.bin.budget_config\n"
        + schedule
    )
    atomic_write_text(out, header + yaml.safe_dump(result, sort_keys=False))
    return result
