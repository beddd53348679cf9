"""Unpacking packs safely, once, into a cache.

A pack is unpacked by this module, not by ``zipfile.extractall``: an entry whose path
is absolute, contains ``..``, is a symbolic link or any other non-regular file is
refused before anything is written. Packs are unpacked once into a cache folder named
after the SHA-256 of the zip's bytes, through a temporary folder renamed at the end, so
an interrupted unpack leaves nothing that looks complete. A zip that cannot be read
(CRC error, truncated, bad compressed data) raises :class:`DamagedPackError`, whose
message starts with "damaged pack:", wherever the pack is read. Weights are always loaded
with ``torch.load(weights_only=True)`` (:func:`espnet2_ext.zoo.load_model`): nothing in
a pack is executed.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Dict, Optional

import yaml

from espnet2_ext.zoo.compat import check_compatible
from espnet2_ext.zoo.files import PathLike, sha256

#: Environment variable that moves the cache of unpacked packs.
CACHE_ENV = "ESPNET2_EXT_CACHE"


class UnsafeArchiveError(ValueError):
    """A pack whose entries would be written outside the folder it is unpacked into."""


class DamagedPackError(ValueError):
    """A pack that cannot be read: a CRC or compression error, a truncated zip, or a
    ``meta.yaml`` that does not describe the files the pack holds."""

    def __init__(self, pack: PathLike, detail: str):
        super().__init__(
            f"damaged pack: {pack}: {detail}; re-download it or pack the model again"
        )


#: What zipfile and zlib raise for damaged archives.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)


def _zip_entry_problem(info: zipfile.ZipInfo) -> Optional[str]:
    """Why a zip entry must not be unpacked, or ``None`` if it is safe."""
    name = info.filename
    if "\x00" in name:
        return "its name contains a NUL byte"
    if "\\" in name:
        return "its name contains a backslash"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "its path is absolute"
    if ".." in PurePosixPath(name).parts:
        return "its path contains '..'"
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        return "it is a symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "it is not a regular file or folder"
    return None


def check_zip_entries(zip_path: PathLike) -> None:
    """Refuse a zip with any entry that could land outside its target folder.

    Raises:
        UnsafeArchiveError: lists every offending entry and why.
        ValueError: the file is not a zip.
    """
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
    except ZIP_ERRORS as e:
        raise DamagedPackError(zip_path, f"not a readable zip file ({e})") from e
    bad = [
        f"{info.filename!r}: {problem}"
        for info in infos
        if (problem := _zip_entry_problem(info)) is not None
    ]
    if bad:
        raise UnsafeArchiveError(
            f"refusing to unpack {zip_path}: {len(bad)} entr"
            f"{'y' if len(bad) == 1 else 'ies'} would be written outside the target "
            "folder or are not plain files:\n  " + "\n  ".join(bad[:20])
        )


def safe_unpack(zip_path: PathLike, target_dir: PathLike) -> Path:
    """Unpack a zip into ``target_dir`` after :func:`check_zip_entries`.

    Every entry is written by this function (regular files and folders only), and each
    path is checked once more to resolve inside ``target_dir``.

    Returns:
        ``target_dir``.
    """
    check_zip_entries(zip_path)
    target = Path(target_dir)
    target.mkdir(parents=True, exist_ok=True)
    base = target.resolve()
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            out = (base / info.filename).resolve()
            if out != base and base not in out.parents:
                raise UnsafeArchiveError(
                    f"refusing to unpack {info.filename!r} from {zip_path}: it "
                    f"resolves to {out}, outside {base}"
                )
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except ZIP_ERRORS as e:
                raise DamagedPackError(
                    zip_path, f"cannot extract {info.filename} ({e})"
                ) from e
    return target


def default_cache_dir() -> Path:
    """``$ESPNET2_EXT_CACHE``, else ``$XDG_CACHE_HOME/espnet2_ext``, else
    ``~/.cache/espnet2_ext``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "espnet2_ext"


def unpack_pack(zip_path: PathLike, cache_dir: Optional[PathLike] = None) -> Path:
    """Unpack a pack once into ``<cache_dir>/packs/<sha256 of the zip>``; returns it.

    The zip is unpacked into a temporary folder next to the final one and renamed when
    complete; a second call with the same zip (same bytes) reuses the folder.
    """
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise FileNotFoundError(f"pack not found: {zip_path}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    packs = root / "packs"
    final = packs / sha256(zip_path)[:32]
    if final.is_dir():
        return final
    packs.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=packs))
    try:
        safe_unpack(zip_path, staging)
        try:
            os.rename(staging, final)
        except OSError:
            if not final.is_dir():  # not a concurrent unpack of the same pack
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


def unpack_with_espnet_model_zoo(
    zip_path: PathLike, cachedir: Optional[PathLike] = None
) -> Dict[str, str]:
    """Unpack a pack with ESPnet's own model-zoo tool and check its plugin version.

    ``espnet_model_zoo.downloader.ModelDownloader.unpack_local_file`` extracts the zip
    under ``<cachedir>/<md5 of its path>/`` and returns the paths listed in
    ``meta.yaml`` (``train_config``, ``model_file``). Its own extraction guards against
    entries escaping the folder; this function additionally refuses unsafe entries
    before ESPnet sees the zip and applies :func:`check_compatible`.

    Returns:
        ESPnet's dict, e.g. ``{"train_config": ..., "model_file": ...}``.
    """
    from espnet_model_zoo.downloader import ModelDownloader

    check_zip_entries(zip_path)
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = [n for n in zf.namelist() if PurePosixPath(n).name == "meta.yaml"]
            if not names:
                raise DamagedPackError(zip_path, "no meta.yaml: not a model pack")
            meta = yaml.safe_load(zf.read(names[0]))
        check_compatible(meta, source=str(zip_path))
        downloader = ModelDownloader(
            cachedir=None if cachedir is None else str(cachedir)
        )
        return downloader.unpack_local_file(str(zip_path))
    except (*ZIP_ERRORS, yaml.YAMLError) as e:
        raise DamagedPackError(zip_path, f"{type(e).__name__}: {e}") from e
