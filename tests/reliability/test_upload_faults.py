"""Reliability of ``hf_upload --local_dir`` (issue 16): it writes only into a folder it
owns, never deletes what it did not write, refuses a target holding its input, and a
path naming a file is a clear error."""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from typing import Dict

import pytest
import torch

from espnet2_ext.bin import hf_upload
from espnet2_ext.tasks.enh import EnhancementTask
from espnet2_ext.version import __version__
from espnet2_ext.zoo import full_train_config, pack, write_model_dir
from espnet2_ext.zoo.publish import MARKER

from conftest import tiny_config

#: The card's install line without building a wheel (the wheel route has its own test).
NO_WHEEL = ["--install_source", f"espnet2_ext=={__version__}"]


def _snapshot(folder: Path) -> Dict[str, str]:
    """Every file under ``folder`` with the SHA-256 of its content."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def experiment(tmp_path):
    """An experiment folder as the recipe leaves it: checkpoints, notes, the pack."""
    exp = tmp_path / "exp" / "enh_tiny"
    torch.manual_seed(0)
    config = tiny_config(num_spk=2)
    model = EnhancementTask.build_model(
        argparse.Namespace(**full_train_config(config, exp))
    )
    write_model_dir(config, model.state_dict(), exp, model_name="valid.loss.ave.pth")
    (exp / "checkpoint.pth").write_bytes(b"resume state")
    (exp / "notes.txt").write_text("my notes\n")
    cwd = os.getcwd()
    os.chdir(exp)
    try:
        pack("config.yaml", "valid.loss.ave.pth", exp / "packed.zip")
    finally:
        os.chdir(cwd)
    return exp


def _upload(exp: Path, target: Path, *extra: str) -> int:
    return hf_upload.main(
        ["--packed", str(exp / "packed.zip"), "--repo", "someone/tiny",
         "--local_dir", str(target), *NO_WHEEL, *extra]
    )  # fmt: skip


def test_local_dir_pointed_at_the_experiment_is_refused(experiment, capsys):
    """The trial that deleted a user's experiment: --local_dir <exp> --overwrite."""
    before = _snapshot(experiment)
    assert _upload(experiment, experiment, "--overwrite") == 1
    assert "holds" in capsys.readouterr().err and "packed.zip" in before
    assert _snapshot(experiment) == before
    # its parent holds the pack too
    assert _upload(experiment, experiment.parent, "--overwrite") == 1
    assert _snapshot(experiment) == before


def test_a_folder_not_written_by_hf_upload_is_never_touched(
    experiment, tmp_path, capsys
):
    other = tmp_path / "papers"
    other.mkdir()
    (other / "draft.tex").write_text("\\section{}")
    before = _snapshot(other)
    assert _upload(experiment, other, "--overwrite") == 1
    err = capsys.readouterr().err
    assert "not written by hf_upload" in err and "nothing was changed" in err
    assert _snapshot(other) == before


def test_local_dir_naming_a_file_is_a_clear_error(experiment, tmp_path, capsys):
    target = tmp_path / "upload.txt"
    target.write_text("keep me")
    assert _upload(experiment, target) == 1
    assert "is a file, not a folder" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def _repack(exp: Path, *options: str) -> None:
    cwd = os.getcwd()
    os.chdir(exp)
    try:
        pack("config.yaml", "valid.loss.ave.pth", "packed.zip", option=list(options))
    finally:
        os.chdir(cwd)


def test_an_owned_folder_is_rewritten_without_losing_other_files(
    experiment, tmp_path, capsys
):
    (experiment / "RESULTS.md").write_text("|system|metric|\n")
    _repack(experiment, "RESULTS.md")
    target = tmp_path / "hub_upload"
    assert _upload(experiment, target) == 0
    first = _snapshot(target)
    assert {MARKER, "README.md", "RESULTS.md", "valid.loss.ave.pth"} <= set(first)
    (target / "my_notes.md").write_text("added by the user")
    # without --overwrite: refused, unchanged
    assert _upload(experiment, target) == 1
    assert "--overwrite" in capsys.readouterr().err
    after = _snapshot(target)
    assert after.pop("my_notes.md") and after == first
    # the next pack has no RESULTS.md: the one hf_upload wrote goes, the user's
    # file stays
    _repack(experiment)
    assert _upload(experiment, target, "--overwrite") == 0
    after = _snapshot(target)
    assert "RESULTS.md" not in after
    assert (target / "my_notes.md").read_text() == "added by the user"
    assert after["valid.loss.ave.pth"] == first["valid.loss.ave.pth"]
    assert MARKER in after


def test_a_user_file_with_an_upload_files_name_is_not_replaced(
    experiment, tmp_path, capsys
):
    target = tmp_path / "hub_upload"
    assert _upload(experiment, target) == 0
    (target / "RESULTS.md").write_text("the user's own results")  # not in the upload
    manifest = (target / MARKER).read_text()
    # the next pack has a RESULTS.md: the user's file of that name must stay
    (experiment / "RESULTS.md").write_text("|a|b|\n")
    _repack(experiment, "RESULTS.md")
    assert _upload(experiment, target, "--overwrite") == 1
    assert "were not written by hf_upload" in capsys.readouterr().err
    assert (target / "RESULTS.md").read_text() == "the user's own results"
    assert (target / MARKER).read_text() == manifest
