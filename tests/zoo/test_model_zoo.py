"""Model zoo: pack safety, plugin-version rule, folders, ESPnet's own unpacking."""

from __future__ import annotations

import argparse
import os
import stat
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.zoo import (
    DamagedPackError,
    IncompatiblePackError,
    UnsafeArchiveError,
    check_zip_entries,
    compatibility_problem,
    looks_like_path,
    pack,
    parse_hub_id,
    resolve_folder,
    resolve_source,
    safe_unpack,
    stem_names,
    unpack_pack,
    unpack_with_espnet_model_zoo,
)

from conftest import pack_model_dir, tiny_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("zoo") / "exp", 4)


@pytest.fixture(scope="module")
def packed(model_dir):
    return pack_model_dir(model_dir, model_dir.parent / "packed.zip")


def _rewrite_meta(src: Path, dst: Path, version: str) -> Path:
    """A copy of a pack whose meta.yaml records another plugin version."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "meta.yaml":
                meta = yaml.safe_load(data)
                meta["plugins"]["espnet2_ext"] = version
                data = yaml.safe_dump(meta).encode()
            zout.writestr(item, data)
    return dst


# --------------------------------------------------------------------------- versions
@pytest.mark.parametrize(
    "made, installed, ok",
    [
        ("0.1.0", "0.1.0", True),
        ("0.1.0", "0.1.7", True),  # older patch release of the same 0.1 series
        ("0.1.8", "0.1.7", False),  # newer than installed
        ("0.2.0", "0.1.7", False),  # 0.x: another minor series
        ("1.2.0", "1.4.1", True),
        ("1.5.0", "1.4.1", False),
        ("2.0.0", "1.9.0", False),  # another major version
        ("not-a-version", "0.1.0", False),
    ],
)
def test_compatibility_rule(made, installed, ok):
    problem = compatibility_problem(made, installed)
    assert (problem is None) is ok
    if not ok:
        assert made in problem and "install" in problem.lower() or "valid" in problem


def test_pack_records_the_plugin_version(packed):
    with zipfile.ZipFile(packed) as zf:
        meta = yaml.safe_load(zf.read("meta.yaml"))
    from espnet2_ext.version import __version__

    assert meta["plugins"] == {"espnet2_ext": __version__}


def test_incompatible_pack_is_refused_with_the_versions(packed, tmp_path):
    newer = _rewrite_meta(packed, tmp_path / "newer.zip", "0.99.0")
    with pytest.raises(IncompatiblePackError, match=r"0\.99\.0"):
        resolve_source(newer, cache_dir=tmp_path / "cache")
    other_major = _rewrite_meta(packed, tmp_path / "major.zip", "3.0.0")
    with pytest.raises(IncompatiblePackError, match="major"):
        resolve_source(other_major, cache_dir=tmp_path / "cache")


# --------------------------------------------------------------------------- zips
def _zip_with(path: Path, entries) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path


def _symlink_entry(name: str, target: str):
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


@pytest.mark.parametrize(
    "entry",
    [
        ("../escaped.txt", b"x"),
        ("/tmp/absolute.txt", b"x"),
        ("sub/../../escaped.txt", b"x"),
        _symlink_entry("link", "/etc/passwd"),
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink"],
)
def test_zip_slip_is_refused_before_anything_is_written(tmp_path, entry):
    bad = _zip_with(tmp_path / "bad.zip", [("meta.yaml", b"{}"), entry])
    target = tmp_path / "target"
    with pytest.raises(UnsafeArchiveError, match="refusing"):
        check_zip_entries(bad)
    with pytest.raises(UnsafeArchiveError):
        safe_unpack(bad, target)
    assert not any(p.is_file() for p in tmp_path.rglob("*") if p.name != "bad.zip")
    # the cached unpack refuses as well and leaves no (temporary) folder behind
    with pytest.raises(UnsafeArchiveError):
        unpack_pack(bad, tmp_path / "cache")
    assert list((tmp_path / "cache" / "packs").iterdir()) == []


def test_not_a_zip_is_a_clear_error(tmp_path):
    junk = tmp_path / "model.zip"
    junk.write_bytes(b"this is not a zip")
    with pytest.raises(DamagedPackError, match="damaged pack: .*model.zip"):
        resolve_source(junk, cache_dir=tmp_path / "cache")
    other = tmp_path / "model.bin"
    other.write_bytes(b"weights?")
    with pytest.raises(ValueError, match="not a pack"):
        resolve_source(other, cache_dir=tmp_path / "cache")


def test_pack_is_readable_by_others_and_prints_only_its_final_path(
    model_dir, tmp_path, capsys
):
    old = os.umask(0o022)
    try:
        out = pack_model_dir(model_dir, tmp_path / "shared.zip")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    printed = capsys.readouterr().out
    assert printed.splitlines()[-1] == f"Generate: {out}"
    assert ".pack-" not in printed  # no temporary name
    assert [p.name for p in tmp_path.iterdir()] == ["shared.zip"]


def test_pack_records_the_model_name_and_chunking(model_dir, tmp_path):
    from espnet2_ext.separation.config import ChunkingConfig

    plain = pack_model_dir(model_dir, tmp_path / "plain.zip")
    files = resolve_source(plain, cache_dir=tmp_path / "cache")
    assert files.name == model_dir.name and files.chunking is None
    cwd = os.getcwd()
    os.chdir(model_dir)
    try:
        chunked = pack(
            "config.yaml",
            "model.pth",
            tmp_path / "chunked.zip",
            name="my model",
            chunking=ChunkingConfig(segment=8.0, hop=2.0, window="triangular"),
        )
    finally:
        os.chdir(cwd)
    with zipfile.ZipFile(chunked) as zf:
        meta = yaml.safe_load(zf.read("meta.yaml"))
    assert meta["espnet2_ext"] == {
        "name": "my_model",
        "chunking": {"segment": 8.0, "hop": 2.0, "window": "triangular"},
    }
    files = resolve_source(chunked, cache_dir=tmp_path / "cache")
    assert files.name == "my_model" and files.chunking["hop"] == 2.0
    resolved = ChunkingConfig.resolve(files.chunking)
    assert (resolved.segment, resolved.hop, resolved.window) == (8.0, 2.0, "triangular")
    assert ChunkingConfig.resolve(files.chunking, segment=4.0).hop == 1.0
    assert ChunkingConfig.resolve(None).segment == 12.0


@pytest.mark.parametrize(
    "source, path",
    [
        ("user/model", False),
        ("hf://user/model", False),
        ("user/model.v2@main", False),
        ("exp/typo.zip", True),
        ("exp/typo", True),  # exp/ exists in the working directory
        ("./model", True),
        ("a/b/c", True),
        ("~/models/x", True),
    ],
)
def test_sources_that_look_like_paths(source, path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp").mkdir()
    assert looks_like_path(source) is path


def test_unpack_is_cached_by_content(packed, tmp_path):
    first = unpack_pack(packed, tmp_path)
    marker = first / "marker"
    marker.write_text("kept")
    assert unpack_pack(packed, tmp_path) == first and marker.exists()
    files = resolve_folder(first, kind="pack")
    assert files.train_config.name == "config.yaml"
    assert files.model_file.name == "model.pth"


def test_pack_made_outside_the_working_directory_resolves_inside(model_dir, tmp_path):
    """ESPnet's packer records absolute paths for files outside the cwd (and strips
    the leading / in the zip); they must resolve inside the unpacked folder."""
    zip_path = pack(
        model_dir / "config.yaml", model_dir / "model.pth", tmp_path / "abs.zip"
    )
    with zipfile.ZipFile(zip_path) as zf:
        meta = yaml.safe_load(zf.read("meta.yaml"))
    assert os.path.isabs(meta["files"]["model_file"])
    files = resolve_source(zip_path, cache_dir=tmp_path / "cache")
    root = (tmp_path / "cache").resolve()
    assert root in files.model_file.resolve().parents
    assert files.model_file.read_bytes() == (model_dir / "model.pth").read_bytes()


# --------------------------------------------------------------------------- folders
def test_plain_folder_needs_exactly_one_pth(model_dir, tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "config.yaml").write_bytes((model_dir / "config.yaml").read_bytes())
    with pytest.raises(FileNotFoundError, match="no weights"):
        resolve_folder(folder)
    (folder / "a.pth").write_bytes((model_dir / "model.pth").read_bytes())
    assert resolve_folder(folder).model_file.name == "a.pth"
    (folder / "b.pth").write_bytes((model_dir / "model.pth").read_bytes())
    with pytest.raises(ValueError, match="model_file"):
        resolve_folder(folder)
    assert resolve_folder(folder, model_file="b.pth").model_file.name == "b.pth"


def test_unpacked_pack_with_a_missing_weight_file_is_a_clear_error(packed, tmp_path):
    folder = safe_unpack(packed, tmp_path / "unpacked")
    (folder / "model.pth").unlink()
    with pytest.raises(FileNotFoundError, match="model weights not found"):
        resolve_folder(folder)


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a file"):
        resolve_source(tmp_path / "no" / "such" / "model.zip")


def test_hub_ids():
    assert parse_hub_id("user/model") == ("user/model", None)
    assert parse_hub_id("hf://user/model") == ("user/model", None)
    assert parse_hub_id("user/model@v1.0") == ("user/model", "v1.0")
    assert parse_hub_id("model.zip") is None
    assert parse_hub_id("a/b/c") is None


# --------------------------------------------------------------------------- stems
def test_stem_names():
    assert stem_names(argparse.Namespace(), 4) == MUSDB_STEMS
    assert stem_names(argparse.Namespace(), 3) == ("spk1", "spk2", "spk3")
    named = argparse.Namespace(stems=["lead", "backing"])
    assert stem_names(named, 2) == ("lead", "backing")
    with pytest.raises(ValueError, match="distinct"):
        stem_names(named, 3)
    with pytest.raises(ValueError, match="file names"):
        stem_names(argparse.Namespace(stems=["../x", "y"]), 2)


# --------------------------------------------------------------------------- ESPnet
def test_espnet_model_zoo_unpacks_our_pack(packed, tmp_path):
    """ESPnet's ModelDownloader reads our meta.yaml; the files it returns load with
    our strict loader and give the same weights."""
    from espnet2_ext.zoo import load_model

    files = unpack_with_espnet_model_zoo(packed, tmp_path / "espnet_cache")
    assert set(files) >= {"train_config", "model_file"}
    model, args = load_model(files["train_config"], files["model_file"])
    reference = torch.load(packed.parent / "exp" / "model.pth", weights_only=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key
    assert args.separator == "bs_locoformer"


def test_espnet_model_zoo_path_refuses_incompatible_packs(packed, tmp_path):
    newer = _rewrite_meta(packed, tmp_path / "newer.zip", "0.99.0")
    with pytest.raises(IncompatiblePackError):
        unpack_with_espnet_model_zoo(newer, tmp_path / "espnet_cache")
