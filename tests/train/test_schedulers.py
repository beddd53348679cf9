"""The authors' learning-rate staircase (b-sigpro/mixit-mss WarmUpStepLR) as an ESPnet
scheduler: the learning rate at chosen steps equals their formula, and it holds its
last value beyond the end of the staircase."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from espnet2.schedulers.abs_scheduler import AbsBatchStepScheduler
from espnet2.tasks.abs_task import scheduler_classes

import espnet2_ext.tasks.enh  # noqa: F401  (registers)
from espnet2_ext.registry import register_scheduler
from espnet2_ext.train.schedulers import WarmupStaircaseLR

ROOT = Path(__file__).resolve().parents[2]


def authors_factor(
    step, warmup_steps, decay_start_step, decay_stop_step, step_size, decay
):
    """Their LambdaLR function, written from their warmup.py (step = updates so far)."""
    if step < decay_start_step:
        return min((step - 1) / (warmup_steps - 1), 1.0)
    return decay ** ((min(step, decay_stop_step) - decay_start_step) // step_size)


#: their configs: recipes/musdb18hq/models/sup.musdb18hq.bslocoformer-medium/config.yaml
#: and recipes/fma/models/mixit.fma-large.bslocoformer-medium/config.yaml
MUSDB = dict(
    warmup_steps=5000, decay_start_step=60500, decay_stop_step=99000, step_size=220
)
FMA = dict(
    warmup_steps=4000, decay_start_step=4001, decay_stop_step=152850, step_size=2038
)


def _optimizer(peak=1e-3):
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=peak)


def _lrs_at(conf, steps, peak=1e-3):
    """The learning rate used for the update that follows ``s`` updates, for each
    ``s``: a scheduler built at that position, as ESPnet's resume sets it."""
    out = {}
    for step in steps:
        optim = _optimizer(peak)
        optim.param_groups[0]["initial_lr"] = peak
        WarmupStaircaseLR(optim, **conf, last_epoch=step - 1)  # then steps once
        out[step] = optim.param_groups[0]["lr"]
    return out


def test_stepping_gives_the_same_learning_rates_as_the_closed_form():
    """ESPnet's trainer steps the scheduler once per update."""
    conf = dict(warmup_steps=50, decay_start_step=80, decay_stop_step=200, step_size=7)
    param = torch.nn.Parameter(torch.zeros(1))
    optim = torch.optim.AdamW([param], lr=2e-3)
    scheduler = WarmupStaircaseLR(optim, **conf, gamma=0.9)
    for step in range(300):
        assert optim.param_groups[0]["lr"] == pytest.approx(
            2e-3 * max(0.0, authors_factor(step, **conf, decay=0.9)), rel=1e-12, abs=0
        )
        param.grad = torch.ones(1)
        optim.step()
        scheduler.step()


@pytest.mark.parametrize(
    "conf,gamma,steps",
    [
        (MUSDB, 0.98, [1, 2, 2500, 4999, 5000, 60499, 60500, 60719, 60720, 60721,
                       61159, 61160, 98999, 99000, 99001, 120000, 250000]),
        (FMA, 0.965, [1, 2, 3999, 4000, 4001, 6038, 6039, 152849, 152850, 152851,
                      200000, 305700]),
    ],
)  # fmt: skip
def test_learning_rate_equals_the_authors_formula(conf, gamma, steps):
    lrs = _lrs_at({**conf, "gamma": gamma}, steps)
    for step in steps:
        expected = 1e-3 * authors_factor(step, **conf, decay=gamma)
        assert lrs[step] == pytest.approx(expected, rel=1e-12, abs=0), step


def test_the_staircase_holds_its_last_value():
    # MUSDB: 175 stairs of 220 updates from 60,500 to 99,000, then nothing more
    lrs = _lrs_at({**MUSDB, "gamma": 0.98}, [99000, 150000, 400000])
    assert lrs[99000] == lrs[150000] == lrs[400000] == pytest.approx(1e-3 * 0.98**175)
    # FMA (released): the floor 0.965^73 ≈ 0.074 of the peak
    lrs = _lrs_at({**FMA, "gamma": 0.965}, [152850, 305700])
    assert lrs[152850] == lrs[305700] == pytest.approx(1e-3 * 0.965**73)
    assert 0.965**73 == pytest.approx(0.074, abs=5e-4)


def test_step_zero_is_zero_not_negative():
    # their lambda gives -1/(warmup - 1) before the first update; ours 0
    assert authors_factor(0, **MUSDB, decay=0.98) < 0
    assert _lrs_at({**MUSDB, "gamma": 0.98}, [0])[0] == 0.0


def test_resume_restores_the_position():
    optim = _optimizer()
    scheduler = WarmupStaircaseLR(optim, **MUSDB, gamma=0.98)
    scheduler.last_epoch = 60718  # as after 60,718 updates
    optim2 = _optimizer()
    restored = WarmupStaircaseLR(optim2, **MUSDB, gamma=0.98)
    restored.load_state_dict(scheduler.state_dict())
    for sched in (scheduler, restored):
        sched.optimizer.step()
        sched.step()  # 60,719: still the peak
    assert optim.param_groups[0]["lr"] == optim2.param_groups[0]["lr"] == 1e-3
    for sched in (scheduler, restored):
        sched.optimizer.step()
        sched.step()  # 60,720: the first stair
    assert optim2.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.98)


def test_registered_for_espnet_and_invalid_settings_raise():
    assert scheduler_classes["warmupstaircaselr"] is WarmupStaircaseLR
    assert issubclass(WarmupStaircaseLR, AbsBatchStepScheduler)
    with pytest.raises(ValueError, match="already registered"):
        register_scheduler("warmupstaircaselr", WarmupStaircaseLR)
    with pytest.raises(ValueError, match="already registered"):
        register_scheduler("warmuplr", WarmupStaircaseLR)  # ESPnet's stays ESPnet's
    with pytest.raises(TypeError, match="AbsScheduler"):
        register_scheduler("not_a_scheduler", torch.optim.AdamW)
    optim = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(ValueError, match="decay_stop_step"):
        WarmupStaircaseLR(optim, decay_start_step=10, decay_stop_step=5)
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupStaircaseLR(optim, warmup_steps=1)


@pytest.mark.parametrize(
    "name,conf,gamma",
    [
        ("train_enh_bs_locoformer_medium.yaml", MUSDB, 0.98),
        ("finetune_enh_bs_locoformer_large.yaml", MUSDB, 0.98),
        ("train_mixit_bs_locoformer_small.yaml", FMA, 0.965),
    ],
)
def test_paper_configs_use_the_released_schedules(name, conf, gamma):
    config = yaml.safe_load((ROOT / "conf" / "tuning" / name).read_text())
    assert config["scheduler"] == "warmupstaircaselr"
    assert config["scheduler_conf"] == {**conf, "gamma": gamma}
