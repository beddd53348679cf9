"""Training configs at a budget of updates (espnet2_ext.train.budget): the authors'
released schedules come back unchanged at their own budget, and shrunk to a smaller
budget they give the learning rate the reference gives at the same fraction of
training. The reference learning rate is the authors' formula written here, not our
scheduler; the budget's is our scheduler stepped once per update, as ESPnet's trainer
does."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from espnet2_ext.bin.budget_config import main as budget_config_main
from espnet2_ext.train.budget import (
    budget_config,
    scale_staircase,
    training_steps,
    write_budget_config,
)
from espnet2_ext.train.schedulers import WarmupStaircaseLR

ROOT = Path(__file__).resolve().parents[2]
TUNING = ROOT / "conf" / "tuning"
DEMO = ROOT / "egs2" / "fma" / "mixit_enh1" / "conf"
#: the released configs of each kind (their schedules are the same for every size)
RELEASED = {
    "mixit": TUNING / "train_mixit_bs_locoformer_small.yaml",
    "finetune": TUNING / "finetune_enh_bs_locoformer_small.yaml",
    "frozen": TUNING / "finetune_frozen_enh_bs_locoformer_small.yaml",
}
#: the demo configs compare.sh starts from (their own peak learning rate)
DEMO_CONFIGS = {
    "mixit": DEMO / "train_mixit_demo.yaml",
    "finetune": DEMO / "finetune_enh_demo.yaml",
    "frozen": DEMO / "finetune_frozen_enh_demo.yaml",
}


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def authors_factor(
    step, warmup_steps, decay_start_step, decay_stop_step, step_size, gamma
):
    """b-sigpro/mixit-mss common/lr_schedulers/warmup.py: the LambdaLR function of
    ``step`` updates done (their negative value at step 0 aside)."""
    if step < decay_start_step:
        return min((step - 1) / (warmup_steps - 1), 1.0)
    return gamma ** ((min(step, decay_stop_step) - decay_start_step) // step_size)


def _factors(config: dict) -> list:
    """The learning rate of each update of ``config``'s run over its peak: our
    scheduler, built from the config and stepped once per update."""
    peak = config["optim_conf"]["lr"]
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    scheduler = WarmupStaircaseLR(optimizer, **config["scheduler_conf"])
    out = []
    with warnings.catch_warnings():
        # no optimizer.step() in between: torch warns about the order, harmlessly
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(training_steps(config)):
            out.append(optimizer.param_groups[0]["lr"] / peak)
            scheduler.step()
    return out


@pytest.mark.parametrize("kind", sorted(RELEASED))
def test_the_released_schedule_comes_back_unchanged_at_its_own_budget(kind):
    released = _load(RELEASED[kind])
    steps = released["max_epoch"] * released["num_iters_per_epoch"]
    assert (
        steps == {"mixit": 150 * 2038, "finetune": 900 * 110, "frozen": 200 * 110}[kind]
    )
    again = budget_config(
        released,
        steps=steps,
        steps_per_epoch=released["num_iters_per_epoch"],
        schedule_from=released,
    )
    assert again == released
    conf = released["scheduler_conf"]
    assert scale_staircase(conf, steps, steps) == conf


@pytest.mark.parametrize(
    "kind,epochs,per_epoch",
    [
        ("finetune", 90, 110),  # 9,900 updates: 1/10 of 99,000
        ("mixit", 150, 10),  # 1,500 updates: 10/2038 of 305,700
        ("frozen", 20, 110),  # 2,200 updates: 1/10 of 22,000
    ],
)
def test_a_shrunk_schedule_has_the_references_rate_at_the_same_fractions(
    kind, epochs, per_epoch
):
    released = _load(RELEASED[kind])
    reference_steps = training_steps(released)
    steps = epochs * per_epoch
    demo = _load(DEMO_CONFIGS[kind])
    config = budget_config(
        demo, steps=steps, steps_per_epoch=per_epoch, schedule_from=released
    )
    assert (config["max_epoch"], config["num_iters_per_epoch"]) == (epochs, per_epoch)
    # the demo config's own peak learning rate, the released schedule's shape
    assert config["optim_conf"] == demo["optim_conf"]
    assert config["scheduler"] == "warmupstaircaselr"
    warmup = config["scheduler_conf"]["warmup_steps"]
    factors = _factors(config)
    assert len(factors) == steps
    compared = 0
    for k in range(1, steps):
        # update k of the budget is at the fraction k / steps of training; the
        # reference's update at that fraction, where it is a whole update
        if (k * reference_steps) % steps:
            continue
        reference_step = k * reference_steps // steps
        expected = authors_factor(reference_step, **released["scheduler_conf"])
        if k < warmup:
            # the ramp (step - 1) / (warmup - 1): its "- 1" does not scale
            assert factors[k] == pytest.approx(expected, abs=1 / (warmup - 1)), k
        else:
            assert factors[k] == pytest.approx(expected, rel=1e-12, abs=0), k
        compared += 1
    assert compared >= (steps - 1) // 5  # every 5th update at least
    # the end of training: the reference's end value (its floor)
    end = authors_factor(reference_steps - 1, **released["scheduler_conf"])
    assert factors[-1] == pytest.approx(end, rel=1e-12)


def test_a_budget_between_stairs_keeps_the_decay_per_update():
    """2,000 updates of the MUSDB18-HQ schedule: a stair of 4.44 updates rounds to 4,
    gamma follows, so the decay per update is the reference's and the floor is within
    one stair of it."""
    released = _load(RELEASED["finetune"])
    conf = released["scheduler_conf"]
    scaled = scale_staircase(conf, 99000, 2000)
    assert (scaled["warmup_steps"], scaled["decay_start_step"]) == (101, 1222)
    assert (scaled["decay_stop_step"], scaled["step_size"]) == (2000, 4)
    stair = 220 * 2000 / 99000
    assert math.log(scaled["gamma"]) / 4 == pytest.approx(math.log(0.98) / stair)
    floor = authors_factor(1999, **scaled)
    reference_floor = 0.98**175
    assert reference_floor * scaled["gamma"] < floor < reference_floor / scaled["gamma"]


def test_tiny_budgets_warm_up_over_two_updates_and_refuse_to_train_nothing():
    released = _load(RELEASED["finetune"])
    demo = _load(DEMO_CONFIGS["finetune"])
    config = budget_config(demo, steps=3, steps_per_epoch=3, schedule_from=released)
    assert config["scheduler_conf"]["warmup_steps"] == 2
    # the first two updates have learning rate 0 (the authors' ramp), the third the peak
    assert _factors(config) == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="2 updates train nothing.*at least 3"):
        budget_config(demo, steps=2, steps_per_epoch=1, schedule_from=released)


def test_bad_configs_and_budgets_give_the_error_that_says_what_to_do(tmp_path):
    released = _load(RELEASED["finetune"])
    demo = _load(DEMO_CONFIGS["finetune"])
    no_epochs = {k: v for k, v in released.items() if k != "max_epoch"}
    with pytest.raises(ValueError, match="needs max_epoch and num_iters_per_epoch"):
        budget_config(demo, steps=20, steps_per_epoch=10, schedule_from=no_epochs)
    with pytest.raises(ValueError, match="multiple of steps_per_epoch"):
        budget_config(demo, steps=25, steps_per_epoch=10, schedule_from=released)
    # the demo config's own piecewiselinearwarmuplr has no staircase to scale
    with pytest.raises(ValueError, match="not 'warmupstaircaselr'"):
        budget_config(released, steps=20, steps_per_epoch=10, schedule_from=demo)
    # without schedule_from another scheduler is kept as it is
    kept = budget_config(demo, steps=20, steps_per_epoch=10)
    assert kept["scheduler_conf"] == demo["scheduler_conf"]

    # the file and the command: the error names the file, nothing is written
    bad = tmp_path / "no_epochs.yaml"
    bad.write_text(yaml.safe_dump(no_epochs))
    out = tmp_path / "out.yaml"
    with pytest.raises(ValueError, match=re.escape(f"{bad} needs max_epoch")):
        write_budget_config(str(DEMO_CONFIGS["finetune"]), str(out), 20, 10, str(bad))
    args = ["--config", str(DEMO_CONFIGS["finetune"]), "--out", str(out),
            "--steps", "20", "--steps_per_epoch", "10", "--schedule_from"]  # fmt: skip
    assert budget_config_main(args + [str(bad)]) == 1
    assert not out.exists()
    assert budget_config_main(args + [str(RELEASED["finetune"])]) == 0
    written = _load(out)
    assert (written["max_epoch"], written["num_iters_per_epoch"]) == (2, 10)
    assert written["scheduler_conf"] == scale_staircase(
        released["scheduler_conf"], 99000, 20
    )
    assert "scaled from its 99,000 updates to 20" in out.read_text()
