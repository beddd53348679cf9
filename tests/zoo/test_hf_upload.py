"""Publishing a pack: the files a hub repository gets, the model card, hub errors."""

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
from espnet2_ext.zoo import full_train_config, pack, write_model_dir

from conftest import FS, tiny_config


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("upload") / "exp"
    torch.manual_seed(0)
    config = {**tiny_config(num_spk=2), "stems": ["lead", "accompaniment"]}
    model = EnhancementTask.build_model(
        argparse.Namespace(**full_train_config(config, root))
    )
    write_model_dir(config, model.state_dict(), root)
    (root / "RESULTS.md").write_text("| SDR | 1.23 dB |\n")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        out = root.parent / "packed.zip"
        return pack("config.yaml", "model.pth", out, option=["RESULTS.md"])
    finally:
        os.chdir(cwd)


def test_local_dir_holds_the_unpacked_pack_and_a_model_card(packed, tmp_path):
    target = tmp_path / "repo"
    assert (
        hf_upload.main(
            [
                "--packed",
                str(packed),
                "--repo",
                "someone/tiny",
                "--local_dir",
                str(target),
            ]
        )
        == 0
    )
    with zipfile.ZipFile(packed) as zf:
        for name in zf.namelist():
            assert (target / name).read_bytes() == zf.read(name), name
    card = (target / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert {"espnet", "audio-to-audio", "music-source-separation"} <= set(front["tags"])
    assert f"pip install 'espnet2_ext>={__version__}," in card
    assert "espnet2-ext-separate -m someone/tiny song.mp3" in card
    assert 'load_model("someone/tiny")' in card
    assert "lead, accompaniment" in card and f"{FS} Hz" in card
    assert "| SDR | 1.23 dB |" in card  # the pack's RESULTS.md


def test_uploaded_layout_loads_with_our_api_and_espnet_model_zoo(packed, tmp_path):
    from espnet_model_zoo.downloader import ModelDownloader

    from espnet2_ext.api import load_model

    target = tmp_path / "repo"
    hf_upload.main(
        ["--packed", str(packed), "--repo", "someone/tiny", "--local_dir", str(target)]
    )
    separator = load_model(target, segment=None)
    assert separator.stems == ("lead", "accompaniment")
    # what ModelDownloader does with a hub snapshot of the repository
    snapshot = tmp_path / "snapshot"
    shutil.copytree(target, snapshot)
    files = ModelDownloader._unpack_cache_dir_for_huggingfase(str(snapshot))
    assert os.path.isfile(files["train_config"]) and os.path.isfile(files["model_file"])


def test_unreachable_hub_is_a_clear_error(packed, tmp_path, capsys):
    status = hf_upload.main(
        ["--packed", str(packed), "--repo", "someone/tiny",
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
        ["--packed", str(foreign), "--repo", "a/b", "--local_dir", str(tmp_path / "x")]
    )
    assert status == 1 and "espnet2_ext.bin.pack" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
