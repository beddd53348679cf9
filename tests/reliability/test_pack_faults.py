"""Reliability of packs (issue 16): a CRC error, a truncated zip or a pack that lacks
what its meta.yaml lists is one clear message, "damaged pack: …", in the separation
command, the Python API and hf_upload; a mistyped local model path is never sent to the
hub."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.api import load_model
from espnet2_ext.bin import hf_upload
from espnet2_ext.bin import separate as separate_cli
from espnet2_ext.version import __version__
from espnet2_ext.zoo import DamagedPackError

from conftest import FS, pack_model_dir, tiny_model_dir


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tiny_model_dir(tmp_path_factory.mktemp("faults") / "exp", 2)
    return pack_model_dir(root, root.parent / "packed.zip")


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    path = tmp_path_factory.mktemp("song") / "song.wav"
    rng = np.random.default_rng(0)
    sf.write(path, 0.1 * rng.standard_normal((int(0.2 * FS), 2)), FS)
    return path


def _crc_damaged(packed: Path, out: Path) -> Path:
    """A copy of the pack with one byte of the weights' compressed data flipped."""
    data = bytearray(packed.read_bytes())
    with zipfile.ZipFile(packed) as zf:
        info = zf.getinfo("model.pth")
    # local header: 30 bytes + name + extra field, then the compressed data
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


def _truncated(packed: Path, out: Path) -> Path:
    out.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    return out


def _without_weights(packed: Path, out: Path) -> Path:
    with zipfile.ZipFile(packed) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            if item.filename != "model.pth":
                zout.writestr(item, zin.read(item.filename))
    return out


DAMAGES = {"crc": _crc_damaged, "truncated": _truncated, "no_weights": _without_weights}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_pack_in_the_api(packed, tmp_path, damage):
    bad = DAMAGES[damage](packed, tmp_path / f"{damage}.zip")
    with pytest.raises(DamagedPackError, match=f"^damaged pack: {bad}"):
        load_model(bad, cache_dir=tmp_path / "cache")
    # nothing half-unpacked is left in the cache: a zip that cannot be read leaves
    # nothing; a readable one that lacks its weights is there exactly as it is
    packs = tmp_path / "cache" / "packs"
    left = sorted(packs.iterdir()) if packs.exists() else []
    if damage == "no_weights":
        with zipfile.ZipFile(bad) as zf:
            names = sorted(zf.namelist())
        assert [sorted(p.name for p in d.iterdir()) for d in left] == [names]
    else:
        assert left == []


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_pack_in_the_command(packed, song, tmp_path, capsys, damage):
    bad = DAMAGES[damage](packed, tmp_path / f"{damage}.zip")
    status = separate_cli.main(
        ["-m", str(bad), "-o", str(tmp_path / "out"), "--cache_dir",
         str(tmp_path / "cache"), str(song)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1
    assert f"cannot load the model: damaged pack: {bad}" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_pack_in_hf_upload(packed, tmp_path, capsys, damage):
    bad = DAMAGES[damage](packed, tmp_path / f"{damage}.zip")
    status = hf_upload.main(
        ["--packed", str(bad), "--repo", "someone/tiny", "--local_dir",
         str(tmp_path / "repo"), "--install_source", f"espnet2_ext=={__version__}"]
    )  # fmt: skip
    assert status == 1
    assert f"cannot be published: damaged pack: {bad}" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_a_mistyped_local_path_is_never_sent_to_the_hub(
    song, tmp_path, monkeypatch, capsys
):
    def no_network(*args, **kwargs):  # pragma: no cover - the failure being tested
        raise AssertionError("the hub was contacted for a local path")

    monkeypatch.setattr("espnet2_ext.zoo.resolve.hub_snapshot", no_network)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp").mkdir()
    for typo in ("exp/typo.zip", "exp/enh_typo"):
        with pytest.raises(FileNotFoundError, match="not looked up on the Hugging"):
            load_model(typo)
        status = separate_cli.main(["-m", typo, "-o", "out", str(song)])
        err = capsys.readouterr().err
        assert status == 1 and "it looks like a local path" in err, err
