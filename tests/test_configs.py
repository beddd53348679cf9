"""Every enh training config in conf/ and in the recipes builds its model."""

import argparse
import inspect
from pathlib import Path

import pytest
import yaml
from espnet2.tasks.enh import preprocessor_choices

from espnet2_ext.enh.separator.bs_locoformer_separator import (
    BS_LOCOFORMER_SIZES,
    bs_locoformer_parameter_counts,
)
from espnet2_ext.tasks.enh import EnhancementTask

ROOT = Path(__file__).resolve().parents[1]
ENH_CONFIGS = sorted(
    p
    for p in [*ROOT.glob("conf/**/*.yaml"), *ROOT.glob("egs2/*/*/conf/*.yaml")]
    if "separator" in (yaml.safe_load(p.read_text()) or {})
)


def _namespace(config: dict) -> argparse.Namespace:
    args = EnhancementTask.get_parser().parse_args(["--output_dir", "unused"])
    for key, value in config.items():
        setattr(args, key, value)
    return args


def test_the_paper_configs_are_found():
    names = {p.name for p in ENH_CONFIGS}
    for size in ("small", "medium", "large"):
        assert f"train_enh_bs_locoformer_{size}.yaml" in names


@pytest.mark.parametrize("path", ENH_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_builds_its_model(path):
    config = yaml.safe_load(path.read_text())
    # every key is an option of our training entry point (no silently ignored typo)
    known = {a.dest for a in EnhancementTask.get_parser()._actions}
    assert set(config) <= known, set(config) - known
    model = EnhancementTask.build_model(_namespace(config))
    assert model.num_spk == config["num_spk"] == config["separator_conf"]["num_spk"]
    assert len(model.loss_wrappers) == len(config["criterions"])
    if "preprocessor" in config:
        cls = preprocessor_choices.get_class(config["preprocessor"])
        inspect.signature(cls).bind(train=True, **config["preprocessor_conf"])


@pytest.mark.parametrize("size", ["small", "medium", "large"])
def test_paper_configs_hold_the_paper_sizes(size):
    config = yaml.safe_load(
        (ROOT / f"conf/tuning/train_enh_bs_locoformer_{size}.yaml").read_text()
    )
    conf = config["separator_conf"]
    expected = BS_LOCOFORMER_SIZES[size]
    for key, value in expected.items():
        assert conf[key] == value, key
    assert config["optim"] == "adamw"
    assert config["optim_conf"]["weight_decay"] == pytest.approx(1e-2)
    assert config["optim_conf"]["lr"] == pytest.approx(
        5e-4 if size == "large" else 1e-3
    )
    assert config["grad_clip"] == 5.0
    assert config["preprocessor_conf"]["segment_seconds"] == 6.0


def test_readme_parameter_table_is_measured():
    """The README's parameter counts are the ones the code gives."""
    readme = (ROOT / "README.md").read_text()
    for size in ("small", "medium", "large"):
        counts = bs_locoformer_parameter_counts(size)
        row = f"| {size} | {counts['blocks']:,} | {counts['total']:,} |"
        assert row in readme, row


def _paper(name: str) -> dict:
    return yaml.safe_load((ROOT / "conf" / "tuning" / name).read_text())


@pytest.mark.parametrize("size", ["small", "medium", "large"])
def test_paper_configs_follow_the_authors_released_code(size):
    """Issue 12: the from-scratch baselines train with the fine-tuning schedule, and
    every paper config uses the authors' per-channel stereo loss and framing."""
    scratch = _paper(f"train_enh_bs_locoformer_{size}.yaml")
    finetune = _paper(f"finetune_enh_bs_locoformer_{size}.yaml")
    assert scratch["scheduler"] == finetune["scheduler"] == "warmupstaircaselr"
    assert scratch["scheduler_conf"] == finetune["scheduler_conf"]
    assert scratch["num_iters_per_epoch"] * scratch["max_epoch"] == 99000
    names = [
        f"train_enh_bs_locoformer_{size}.yaml",
        f"finetune_enh_bs_locoformer_{size}.yaml",
        f"finetune_frozen_enh_bs_locoformer_{size}.yaml",
        f"train_mixit_bs_locoformer_{size}.yaml",
    ]
    for name in names:
        config = _paper(name)
        assert config["multichannel_loss"] == "per_channel", name
        assert config["separator_conf"]["drop_last_frame"] is True, name
        assert "loss_over_channels" not in (config.get("model_conf") or {}), name


def test_the_paper_text_schedule_is_a_named_alternative():
    released = _paper("train_mixit_bs_locoformer_medium.yaml")
    text = _paper("train_mixit_bs_locoformer_medium_text_schedule.yaml")
    assert released["scheduler_conf"]["warmup_steps"] == 4000
    assert text["scheduler_conf"]["warmup_steps"] == 5000
    assert text["scheduler_conf"]["step_size"] == text["num_iters_per_epoch"] == 1000
    # the same run otherwise
    drop = ("scheduler_conf", "num_iters_per_epoch")
    assert {k: v for k, v in text.items() if k not in drop} == {
        k: v for k, v in released.items() if k not in drop
    }
