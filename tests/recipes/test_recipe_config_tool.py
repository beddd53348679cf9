"""utils/recipe_config.py (the driver's questions about configs) and the stem mapping of
espnet2_ext.utils.merge_separated."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from recipe_helpers import MUSDB_RECIPE, ROOT, TEMPLATE

from espnet2_ext.utils.merge_separated import check_stems, link_song_trees, main

_spec = importlib.util.spec_from_file_location(
    "recipe_config", TEMPLATE / "utils" / "recipe_config.py"
)
recipe_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recipe_config)

DEMO = yaml.safe_load((MUSDB_RECIPE / "conf" / "train_enh_demo.yaml").read_text())


def test_stats_key_ignores_training_only_keys_and_follows_data_and_data_keys(tmp_path):
    scp = tmp_path / "mix_segments.scp"
    scp.write_text("a song.wav 0 6\n")
    key = recipe_config.stats_key(DEMO, "", [str(scp)])["key"]
    longer = {**DEMO, "max_epoch": 900, "optim_conf": {"lr": 1.0}}
    bigger = {**DEMO, "separator_conf": {**DEMO["separator_conf"], "n_layers": 6}}
    for config, args in ((longer, ""), (bigger, ""), (DEMO, "--max_epoch 3 --seed 2")):
        assert recipe_config.stats_key(config, args, [str(scp)])["key"] == key
    other_data = {**DEMO, "preprocessor_conf": {"segment_seconds": 1.0}}
    for config, args in (
        (other_data, ""),
        (DEMO, "--preprocessor_conf segment_seconds=1.0"),
        (DEMO, "--stems a b --num_spk 2"),
    ):
        assert recipe_config.stats_key(config, args, [str(scp)])["key"] != key
    scp.write_text("a song.wav 0 5\n")
    assert recipe_config.stats_key(DEMO, "", [str(scp)])["key"] != key


def test_stems_args_carry_names_and_output_count():
    assert recipe_config.stems_args(DEMO, ["vocals", "bass", "drums", "other"]) == [
        "--stems", "vocals", "bass", "drums", "other",
    ]  # fmt: skip
    args = recipe_config.stems_args(DEMO, ["drums", "keys", "lead"])
    assert args == [
        "--stems", "drums", "keys", "lead", "--num_spk", "3",
        "--separator_conf", "num_spk=3",
        "--preprocessor_conf", "stems=[drums,keys,lead]",
    ]  # fmt: skip
    # what ESPnet's parser makes of them: the config with three named outputs
    from espnet2_ext.tasks.enh import EnhancementTask

    parsed = EnhancementTask.get_parser().parse_args(
        ["--config", str(MUSDB_RECIPE / "conf" / "train_enh_demo.yaml"), *args]
    )
    assert parsed.stems == ["drums", "keys", "lead"] and parsed.num_spk == 3
    assert parsed.separator_conf["num_spk"] == 3
    assert parsed.separator_conf["emb_dim"] == DEMO["separator_conf"]["emb_dim"]
    assert parsed.preprocessor_conf["stems"] == ["drums", "keys", "lead"]
    assert parsed.preprocessor_conf["segment_seconds"] == 3.0


def test_paper_size_names_the_paper_configs_not_the_demo():
    assert recipe_config.paper_size(DEMO, "") is None
    small = yaml.safe_load(
        (ROOT / "conf/tuning/train_enh_bs_locoformer_small.yaml").read_text()
    )
    assert "4 blocks, D = 96" in recipe_config.paper_size(small, "")
    assert "99,000 steps" in recipe_config.paper_size(small, "")
    long_demo = recipe_config.paper_size(DEMO, "--max_epoch 1000")
    assert long_demo == "25,000 steps"


def _song_data(tmp_path: Path, stems):
    data = tmp_path / "data"
    data.mkdir()
    audio = {}
    for n, stem in enumerate(["mixture", *stems]):
        path = tmp_path / f"{stem}.wav"
        sf.write(path, np.full((10, 2), n, np.float32), 44100)
        audio[stem] = path
    (data / "wav.scp").write_text(f"u1 {audio['mixture']}\n")
    for n, stem in enumerate(stems, 1):
        (data / f"spk{n}.scp").write_text(f"u1 {audio[stem]}\n")
    return data


def test_merge_links_stems_by_name_not_by_position(tmp_path):
    data = _song_data(tmp_path, ["drums", "keys", "lead"])
    job = tmp_path / "out.1"
    job.mkdir()
    # a model whose outputs are in another order than the data's references
    model_stems = ["lead", "drums", "keys"]
    for n, stem in enumerate(model_stems, 1):
        est = tmp_path / f"est_{stem}.wav"
        sf.write(est, np.zeros((10, 2), np.float32), 44100)
        (job / f"spk{n}.scp").write_text(f"u1 {est}\n")
    out = tmp_path / "sep"
    main(
        [str(job), "--out", str(out), "--data", str(data), "--model_stems",
         *model_stems, "--ref_stems", "drums", "keys", "lead", "--stems", "keys"]
    )  # fmt: skip
    assert (out / "stems/u1/keys.wav").resolve().name == "est_keys.wav"
    assert (out / "refs/u1/keys.wav").resolve().name == "keys.wav"
    assert not (out / "stems/u1/drums.wav").exists()  # only the stems asked for
    with pytest.raises(ValueError, match=r"vocals.*model.*\['lead', 'drums', 'keys'\]"):
        link_song_trees(out, data, ["vocals"], model_stems, ["drums", "keys", "lead"])
    with pytest.raises(ValueError, match="twice"):
        check_stems(["keys"], ["keys", "keys"], ["keys"])
    with pytest.raises(SystemExit):
        main([str(job), "--out", str(out), "--data", str(data), "--model_stems",
              "a", "b", "--ref_stems", "a", "--stems", "b"])  # fmt: skip
