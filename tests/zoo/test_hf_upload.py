"""Publishing a pack: the files a hub repository gets, the model card (ESPnet's
template: full config, results, citations, datasets, model-index), the install source,
hub errors."""

from __future__ import annotations

import argparse
import os
import shutil
import zipfile

import pytest
import torch
import yaml

from espnet2_ext.bin import hf_upload
from espnet2_ext.tasks.enh import EnhancementTask
from espnet2_ext.version import __version__
from espnet2_ext.zoo import full_train_config, pack, publish, write_model_dir
from espnet2_ext.zoo.card import parse_results

from conftest import FS, tiny_config

#: A RESULTS.md summary as espnet2_ext.reports.tables.format_results_md writes it.
RESULTS = """\
# RESULTS: enh_tiny

## Summary

- 4 song(s) scored, 0 skipped

|system|metric|lead|accompaniment|average|
|---|---:|---:|---:|---:|
|enh_tiny|cSDR|4.21|n/a|4.21|
|enh_tiny|uSDR|4.11|−0.52|1.80|
|mixture|cSDR|−3.90|−6.04|−4.97|
|mixture|uSDR|−3.95|−6.19|−5.07|
|enh_tiny − mixture|cSDR|8.11|n/a|9.18|
"""

NO_WHEEL = ["--install_source", f"espnet2_ext=={__version__}"]


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("upload") / "exp"
    torch.manual_seed(0)
    config = {**tiny_config(num_spk=2), "stems": ["lead", "accompaniment"]}
    model = EnhancementTask.build_model(
        argparse.Namespace(**full_train_config(config, root))
    )
    write_model_dir(config, model.state_dict(), root)
    (root / "RESULTS.md").write_text(RESULTS)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        out = root.parent / "packed.zip"
        return pack("config.yaml", "model.pth", out, option=["RESULTS.md"])
    finally:
        os.chdir(cwd)


def _upload(packed, target, *extra):
    return hf_upload.main(
        ["--packed", str(packed), "--repo", "someone/tiny", "--local_dir", str(target),
         *extra]
    )  # fmt: skip


def test_results_table_is_parsed_for_the_model_index():
    scores = parse_results(RESULTS)
    assert scores == {
        "cSDR": {"lead": 4.21, "average": 4.21},  # n/a left out
        "uSDR": {"lead": 4.11, "accompaniment": -0.52, "average": 1.80},
    }
    assert parse_results("no table here") == {}


def test_card_follows_espnets_template(packed, tmp_path):
    target = tmp_path / "repo"
    assert _upload(packed, target, *NO_WHEEL, "--dataset", "musdb18hq") == 0
    with zipfile.ZipFile(packed) as zf:
        for name in zf.namelist():
            assert (target / name).read_bytes() == zf.read(name), name
    card = (target / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert {"espnet", "audio-to-audio", "music-source-separation"} <= set(front["tags"])
    assert front.get("library_name") != "espnet"  # the hub's ESPnet snippet: ASR/TTS
    assert front["datasets"] == ["musdb18hq"]
    result = front["model-index"][0]["results"][0]
    assert result["dataset"]["type"] == "musdb18hq"
    metrics = {(m["type"], m["name"]): m["value"] for m in result["metrics"]}
    assert metrics[("csdr", "cSDR (lead, dB)")] == 4.21
    assert metrics[("usdr", "uSDR (accompaniment, dB)")] == -0.52
    assert len(metrics) == 5
    # the full training config, verbatim
    assert (target / "config.yaml").read_text().rstrip() in card
    assert "<details><summary>expand</summary>" in card
    assert "|enh_tiny|uSDR|4.11|−0.52|1.80|" in card  # RESULTS.md
    for key in ("saijo2025mixitmss", "watanabe2018espnet", "li2020espnet"):
        assert "@inproceedings{" + key in card
    for key in ("zang2025multistep", "shi2025unasdiff"):  # the other two papers
        assert "@article{" + key in card
    assert f"pip install 'espnet2_ext=={__version__}'" in card
    assert "espnet2-ext-separate -m someone/tiny song.mp3" in card
    assert 'load_model("someone/tiny")' in card
    assert 'SeparateSpeech.from_pretrained("someone/tiny")' in card
    assert "lead, accompaniment" in card and f"{FS} Hz" in card


def test_default_install_source_is_the_uploaded_wheel(packed, tmp_path):
    """By default the plugin's wheel is built (python -m build), uploaded, and the
    card installs it from the repository."""
    target = tmp_path / "repo"
    assert _upload(packed, target) == 0
    wheels = sorted(target.glob("espnet2_ext-*.whl"))
    assert [w.name for w in wheels] == [f"espnet2_ext-{__version__}-py3-none-any.whl"]
    with zipfile.ZipFile(wheels[0]) as zf:
        names = zf.namelist()
    assert "espnet2_ext/zoo/citations.bib" in names  # package data the card needs
    assert "espnet2_ext/separation/separator.py" in names
    url = f"https://huggingface.co/someone/tiny/resolve/main/{wheels[0].name}"
    assert f"pip install '{url}'" in (target / "README.md").read_text()


def test_a_wheel_that_cannot_load_the_pack_is_refused(packed, tmp_path, capsys):
    wheel = tmp_path / "espnet2_ext-0.0.1-py3-none-any.whl"
    wheel.write_bytes(b"not used")
    assert _upload(packed, tmp_path / "repo", "--wheel", str(wheel)) == 1
    assert "cannot load the pack" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()
    with pytest.raises(ValueError, match="not an espnet2_ext wheel"):
        publish.wheel_version(tmp_path / "other.whl")


def test_uploaded_layout_loads_with_our_api_and_espnet_model_zoo(packed, tmp_path):
    from espnet_model_zoo.downloader import ModelDownloader

    from espnet2_ext.api import load_model

    target = tmp_path / "repo"
    assert _upload(packed, target, *NO_WHEEL) == 0
    separator = load_model(target, segment=None)
    assert separator.stems == ("lead", "accompaniment")
    # what ModelDownloader does with a hub snapshot of the repository
    snapshot = tmp_path / "snapshot"
    shutil.copytree(target, snapshot)
    files = ModelDownloader._unpack_cache_dir_for_huggingfase(str(snapshot))
    assert os.path.isfile(files["train_config"]) and os.path.isfile(files["model_file"])


def test_unreachable_hub_is_a_clear_error(packed, tmp_path, capsys):
    status = hf_upload.main(
        ["--packed", str(packed), "--repo", "someone/tiny", *NO_WHEEL,
         "--endpoint", "http://127.0.0.1:9"]
    )  # fmt: skip
    assert status == 1
    err = capsys.readouterr().err
    assert "could not upload to the Hugging Face hub" in err and "--local_dir" in err


def test_refuses_bad_repo_ids_and_foreign_packs(packed, tmp_path, capsys):
    assert hf_upload.main(["--packed", str(packed), "--repo", "no-slash"]) == 2
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(packed) as zin, zipfile.ZipFile(foreign, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "meta.yaml":
                meta = yaml.safe_load(data)
                del meta["plugins"]
                data = yaml.safe_dump(meta).encode()
            zout.writestr(item, data)
    status = hf_upload.main(
        ["--packed", str(foreign), "--repo", "a/b", "--local_dir", str(tmp_path / "x"),
         *NO_WHEEL]
    )  # fmt: skip
    assert status == 1 and "espnet2_ext.bin.pack" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
