"""The FMA MixIT recipe: its paper configs (schedules, sizes, frozen parameters) and a
tiny end-to-end run on a folder of unlabeled mixtures and a small song tree."""

import json
import re
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from espnet2.tasks.abs_task import scheduler_classes
from recipe_helpers import copy_recipe, run_recipe, tiny_config

from espnet2_ext.datagen.own_data import generate_own_data
from espnet2_ext.enh.separator.bs_locoformer_separator import BS_LOCOFORMER_SIZES
from espnet2_ext.tasks.enh import EnhancementTask

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs2" / "fma" / "mixit_enh1"
TUNING = ROOT / "conf" / "tuning"
SIZES = ("small", "medium", "large")
STEMS = ["chords", "melody", "rhythm"]  # own_data's stems in the data's order
MODEL_KEYS = ("encoder", "encoder_conf", "decoder", "decoder_conf", "separator")


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _lrs(config: dict, num_steps: int) -> list:
    """The learning rate of optimizer steps 1 … num_steps under the config's scheduler."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=config["optim_conf"]["lr"])
    scheduler = scheduler_classes[config["scheduler"]](
        optimizer, **config["scheduler_conf"]
    )
    lrs = []
    with warnings.catch_warnings():
        # no optimizer.step() in between: torch warns about the order, harmlessly
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(num_steps):
            lrs.append(optimizer.param_groups[0]["lr"])
            scheduler.step()
    return lrs


# ------------------------------------------------------------------------- configs
@pytest.mark.parametrize("size", SIZES)
def test_mixit_configs_hold_the_paper_recipe(size):
    config = _load(TUNING / f"train_mixit_bs_locoformer_{size}.yaml")
    sep = config["separator_conf"]
    assert sep["num_spk"] == config["num_spk"] == 12
    for key, value in BS_LOCOFORMER_SIZES[size].items():
        assert sep[key] == value, key
    assert config["model_conf"]["flexible_numspk"] is True
    (criterion,) = config["criterions"]
    assert (criterion["name"], criterion["wrapper"]) == ("thres_snr", "efficient_mixit")
    assert config["preprocessor"] == "mixture_of_mixtures"
    mom = config["preprocessor_conf"]
    assert (mom["segment_seconds"], mom["min_ratio_db"], mom["max_ratio_db"]) == (
        6.0,
        -5.0,
        5.0,
    )
    # 128 segments per step, as 64 mixtures of mixtures
    assert config["batch_size"] == 64
    # the released configs: 150 epochs of 2038 updates (one decay step per epoch)
    assert (config["max_epoch"], config["num_iters_per_epoch"]) == (150, 2038)
    assert config["optim"] == "adamw" and config["grad_clip"] == 5.0
    assert config["optim_conf"]["weight_decay"] == pytest.approx(1e-2)
    assert config["use_amp"] is True


# The learning-rate schedules of these configs (the authors' released staircases) are
# checked against the authors' formula in tests/train/test_schedulers.py.


@pytest.mark.parametrize("size", SIZES)
def test_finetune_configs_match_the_mixit_model_and_the_supervised_recipe(size):
    mixit = _load(TUNING / f"train_mixit_bs_locoformer_{size}.yaml")
    supervised = _load(TUNING / f"train_enh_bs_locoformer_{size}.yaml")
    for name in ("finetune", "finetune_frozen"):
        config = _load(TUNING / f"{name}_enh_bs_locoformer_{size}.yaml")
        # the head-selected MixIT weights fit: same network, 4 outputs
        assert config["separator_conf"] == {**mixit["separator_conf"], "num_spk": 4}
        for key in MODEL_KEYS:
            assert config[key] == mixit[key] == supervised[key], key
        # data and loss of the supervised recipe
        for key in ("preprocessor", "preprocessor_conf", "criterions", "num_spk"):
            assert config[key] == supervised[key], key
        assert (config["batch_size"], config["num_iters_per_epoch"]) == (32, 110)
    frozen = _load(TUNING / f"finetune_frozen_enh_bs_locoformer_{size}.yaml")
    assert frozen["max_epoch"] == 200
    lrs = _lrs(frozen, 200 * 110)
    # constant at the peak after the warm-up
    assert lrs[-1] == max(lrs) == pytest.approx(frozen["optim_conf"]["lr"])
    assert lrs[5001] == lrs[-1]


@pytest.mark.parametrize(
    "path",
    [
        TUNING / "finetune_frozen_enh_bs_locoformer_small.yaml",
        RECIPE / "conf" / "finetune_frozen_enh_demo.yaml",
    ],
    ids=lambda p: p.name,
)
def test_frozen_configs_freeze_exactly_the_locoformer_blocks(path):
    config = _load(path)
    args = EnhancementTask.get_parser().parse_args(["--config", str(path)])
    model = EnhancementTask.build_model(args)
    # ESPnet's rule for --freeze_param (AbsTask.main_worker)
    frozen = {
        name
        for name, _ in model.named_parameters()
        for prefix in config["freeze_param"]
        if name == prefix or name.startswith(prefix + ".")
    }
    blocks = {n for n, _ in model.named_parameters() if ".blocks." in n}
    assert frozen == blocks and blocks
    trained = {n for n, _ in model.named_parameters()} - frozen
    assert any("encoder.encoders" in n for n in trained)
    assert any("decoder.heads" in n for n in trained)


def test_demo_configs_use_the_demo_model_of_the_musdb_recipe():
    musdb_demo = _load(ROOT / "egs2/musdb18hq/enh1/conf/train_enh_demo.yaml")
    expected = musdb_demo["separator_conf"]
    mixit = _load(RECIPE / "conf" / "train_mixit_demo.yaml")
    assert mixit["separator_conf"] == {**expected, "num_spk": 12}
    assert mixit["criterions"][0]["wrapper"] == "efficient_mixit"
    finetune = _load(RECIPE / "conf" / "finetune_enh_demo.yaml")
    frozen = _load(RECIPE / "conf" / "finetune_frozen_enh_demo.yaml")
    assert finetune["separator_conf"] == frozen["separator_conf"] == expected
    # the frozen variant differs only by what it freezes
    assert {k: v for k, v in frozen.items() if k != "freeze_param"} == finetune


# ---------------------------------------------------------------------- the recipe
@pytest.mark.slow
def test_recipe_on_an_unlabeled_folder_and_a_three_stem_song_tree(tmp_path):
    """Stages 1, 5, 6, 7 on a researcher's own data (espnet2_ext.datagen.own_data): 10
    unlabeled mixtures in five formats in a plain folder, MixIT pre-training, heads
    chosen on a song tree with 3 stems of its own names (a training song without
    melody), the validation songs from a list."""
    work = copy_recipe(RECIPE, tmp_path / "mixit_enh1")
    own = generate_own_data(
        tmp_path / "own", num_train=4, num_test=1, duration=6.0, unlabeled_duration=10.5
    )
    mixtures, songs = tmp_path / "own" / "unlabeled", tmp_path / "own" / "songs"
    assert len(list(mixtures.iterdir())) == 10
    tiny_config(
        RECIPE / "conf" / "train_mixit_demo.yaml",
        work / "conf" / "train_mixit_ci.yaml",
        max_epoch=1,
        preprocessor_conf={"segment_seconds": 1.0},
    )
    # the fine-tuning config given as an absolute path, the frozen one relative
    finetune = work / "conf" / "finetune_enh_demo.yaml"
    args = ["--data", str(mixtures), "--musdb", str(songs), "--size", "tiny", "--nj",
            "1", "--enh_config", "conf/train_mixit_ci.yaml",
            "--finetune_config", str(finetune)]  # fmt: skip
    valid_list = tmp_path / "own" / own["valid_list"]
    proc = run_recipe(work, *args, "--valid_list", str(valid_list))
    for n in (1, 5, 6, 7):
        assert f"Stage {n}: " in proc.stdout, n
    assert "epoch 1/1 done: train loss" in proc.stdout

    # stage 1: the plain folder, split with at least two validation files
    valid = (work / "data" / "fma" / "valid" / "mix_segments.scp").read_text()
    assert len({line.split()[1] for line in valid.splitlines()}) >= 2
    assert (work / "data" / "musdb" / "valid" / "stems").read_text().split() == STEMS
    # stages 5-6: MixIT trained a 12-output model
    exp = work / "exp" / "enh_mixit_unlabeled"
    trained = _load(exp / "config.yaml")
    assert trained["separator_conf"]["num_spk"] == 12
    assert trained.get("stems") is None  # unlabeled data: no stems to carry
    assert "efficient_mixit" in json.dumps(trained["criterions"])
    # stage 7: one output per stem of the tree, in a model that loads strictly
    heads = json.loads((exp / "heads" / "heads.json").read_text())
    assert sorted(heads["heads"]) == STEMS
    assert len(set(heads["heads"].values())) == 3
    from espnet2_ext.zoo import load_model

    model, _ = load_model(exp / "heads" / "config.yaml", exp / "heads" / "model.pth")
    assert model.num_spk == 3
    # the hand-off names the MUSDB18-HQ recipe, the model and the stems' data
    assert "--init_param" in proc.stdout and "heads/model.pth" in proc.stdout
    # the printed commands name files that exist, wherever the configs were given from
    printed = re.findall(r"--(?:enh_config|init_param) (\S+)", proc.stdout)
    assert len(printed) == 4 and str(finetune) in printed
    assert all(Path(p).is_file() for p in printed), printed
    assert f"--data {songs}" in proc.stdout
