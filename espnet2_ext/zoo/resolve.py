"""Finding a model's files from what a user gives: a pack, a folder or a hub id.

* a **pack**: the zip of :func:`espnet2_ext.zoo.packing.pack` (ESPnet's model-zoo
  layout: ``meta.yaml`` lists the config and the weights, and records under
  ``plugins`` the version of espnet2_ext that made it), unpacked into the cache
  (:func:`espnet2_ext.zoo.archive.unpack_pack`);
* a **folder**: an unpacked pack (it has ``meta.yaml``), a hub snapshot (the same), or a
  plain folder with ``config.yaml`` and one ``.pth`` (e.g. the converter's output);
* a **hub repository** id (``user/name``, optionally ``user/name@revision`` or
  ``hf://user/name``): the unpacked pack as ``espnet2_ext.bin.hf_upload`` publishes it
  (:func:`espnet2_ext.zoo.hub.hub_snapshot`).

A folder with ``meta.yaml`` is checked against the plugin-version rule
(:func:`espnet2_ext.zoo.compat.check_compatible`). A pack (or hub repository) whose
zip or ``meta.yaml`` cannot be read, or lists files it does not hold, raises
:class:`~espnet2_ext.zoo.archive.DamagedPackError`.

A source that does not exist but looks like a local path (:func:`looks_like_path`: a
file suffix such as ``.zip``, a leading ``.``/``/``/``~``, more than one ``/``, or a
first component that is an existing folder, as in ``exp/typo``) is reported as a
missing file and never sent to the hub; ``hf://user/name`` always means the hub.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path
from typing import Optional

import yaml

from espnet2_ext.zoo.archive import DamagedPackError, UnsafeArchiveError, unpack_pack
from espnet2_ext.zoo.compat import IncompatiblePackError, check_compatible
from espnet2_ext.zoo.files import (
    ModelFiles,
    PathLike,
    read_meta,
    recorded_entry,
    safe_name,
)
from espnet2_ext.zoo.hub import hub_snapshot, parse_hub_id

#: Suffixes of model files and packs: a source ending in one is a path, not a hub id.
PATH_SUFFIXES = (
    ".zip", ".tar", ".tgz", ".gz", ".pth", ".pt", ".ckpt", ".yaml", ".yml", ".bin",
    ".safetensors",
)  # fmt: skip


def looks_like_path(source: str) -> bool:
    """True when ``source`` reads as a local path rather than a hub id ``user/name``.

    ``hf://...`` never does; a model-file suffix, a leading ``.``, ``/`` or ``~``, a
    backslash, more than one ``/``, or a first component that exists as a local
    folder always does.
    """
    text = str(source)
    if text.startswith("hf://"):
        return False
    if text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1:
        return True
    if Path(text.split("@", 1)[0]).suffix.lower() in PATH_SUFFIXES:
        return True
    head = text.split("/", 1)[0]
    return "/" in text and Path(head).expanduser().is_dir()


def _inside(root: Path, recorded: str, what: str) -> Path:
    """A path recorded in ``meta.yaml``, joined onto the pack's folder and checked.

    ESPnet's packer records a path outside the working directory as an absolute path
    while its zip entry has the leading ``/`` removed; such paths are taken relative to
    the pack's folder the same way.
    """
    # a lexical check: files of a hub snapshot are symbolic links into the hub
    # cache's blob store, so resolving links would always leave the folder
    base = os.path.normpath(os.path.abspath(root))
    path = os.path.normpath(os.path.join(base, str(recorded).lstrip("/")))
    if os.path.commonpath([base, path]) != base or path == base:
        raise UnsafeArchiveError(
            f"meta.yaml's {what} {recorded!r} points outside the model folder {root}"
        )
    return Path(path)


def resolve_folder(
    folder: PathLike,
    *,
    model_file: Optional[PathLike] = None,
    kind: str = "folder",
    source: Optional[str] = None,
    name: Optional[str] = None,
) -> ModelFiles:
    """Find the config and weights in a folder.

    With ``meta.yaml``: its ``yaml_files.train_config`` and ``files.model_file``.
    Without: ``config.yaml`` and the only ``.pth`` in the folder (``model_file`` picks
    one when there are several).

    Raises:
        FileNotFoundError: a file is missing (with what was looked for).
        ValueError: several ``.pth`` files and no ``model_file``.
        IncompatiblePackError: see :func:`check_compatible`.
    """
    root = Path(folder)
    if name is None:
        name = Path(os.path.abspath(root)).name
    source = str(folder) if source is None else source
    if not root.is_dir():
        raise FileNotFoundError(f"model folder not found: {root}")
    meta = read_meta(root)
    if meta is not None:
        check_compatible(meta, source=source)
        yaml_files = meta.get("yaml_files") or {}
        files = meta.get("files") or {}
        if "train_config" not in yaml_files or (
            "model_file" not in files and model_file is None
        ):
            raise ValueError(
                f"{root / 'meta.yaml'} lists no train_config/model_file; it is not an "
                "enh model pack (make one with python -m espnet2_ext.bin.pack)"
            )
        config = _inside(root, yaml_files["train_config"], "train_config")
        weights = (
            _inside(root, files["model_file"], "model_file")
            if model_file is None
            else root / model_file
        )
    else:
        config = root / "config.yaml"
        if model_file is not None:
            weights = root / model_file
        else:
            candidates = sorted(root.glob("*.pth"))
            if not candidates:
                raise FileNotFoundError(
                    f"no weights in {root}: expected meta.yaml (an unpacked pack) or "
                    "config.yaml with one .pth file"
                )
            if len(candidates) > 1:
                raise ValueError(
                    f"{root} holds {len(candidates)} .pth files "
                    f"({', '.join(p.name for p in candidates[:6])}); choose one with "
                    "model_file= (--model_file on the command line)"
                )
            weights = candidates[0]
    if not config.is_file():
        raise FileNotFoundError(f"training config not found: {config}")
    if not weights.is_file():
        raise FileNotFoundError(
            f"model weights not found: {weights} (the pack or folder is incomplete)"
        )
    return ModelFiles(
        train_config=config,
        model_file=weights,
        root=root,
        kind=kind,
        source=source,
        meta=meta,
        name=safe_name(recorded_entry(meta, "name") or name),
    )


def resolve_source(
    source: PathLike,
    *,
    model_file: Optional[PathLike] = None,
    cache_dir: Optional[PathLike] = None,
    hub_cache_dir: Optional[PathLike] = None,
    revision: Optional[str] = None,
    local_files_only: bool = False,
) -> ModelFiles:
    """Find a model's files from a pack zip, a folder, or a hub repository id.

    A path that exists is used as a path; anything else that reads as ``user/name``
    (``hf://user/name``, ``user/name@revision``) is fetched from the hub.

    Args:
        source: pack ``.zip``, folder, or hub id.
        model_file: which ``.pth`` to load (relative to the folder) when there are
            several, or to override ``meta.yaml``.
        cache_dir: where packs are unpacked (default
            :func:`espnet2_ext.zoo.archive.default_cache_dir`).
        hub_cache_dir: the hub client's cache (default: its own, ``HF_HOME``).
        revision: hub branch, tag or commit (also ``user/name@revision``).
        local_files_only: read only the hub cache, never the network.
    """
    path = Path(source).expanduser()
    if path.is_file():
        if not zipfile.is_zipfile(path):
            if path.suffix.lower() == ".zip":
                raise DamagedPackError(
                    path, "not a readable zip file (truncated, or not a zip)"
                )
            raise ValueError(
                f"{path} is not a pack (.zip); give a packed model, a folder with "
                "config.yaml and the .pth, or a hub id user/name"
            )
        folder = unpack_pack(path, cache_dir)
        return resolve_pack_folder(
            folder,
            model_file,
            kind="pack",
            source=str(source),
            name=path.stem,
            require_meta=True,
        )
    if path.is_dir():
        return resolve_folder(path, model_file=model_file, source=str(source))
    hub = None if looks_like_path(str(source)) else parse_hub_id(str(source))
    if hub is None:
        raise FileNotFoundError(
            f"model not found: {source} is neither a file nor a folder here"
            + (
                " (it looks like a local path, so it was not looked up on the "
                "Hugging Face hub; write hf://user/name for a hub repository)"
                if looks_like_path(str(source)) and parse_hub_id(str(source))
                else ", nor a hub id (user/name)"
            )
        )
    repo_id, at_revision = hub
    if at_revision is not None and revision is not None and at_revision != revision:
        raise ValueError(
            f"two revisions given: {source} and revision={revision!r}; give one"
        )
    folder = hub_snapshot(
        repo_id,
        revision=at_revision or revision,
        cache_dir=hub_cache_dir,
        local_files_only=local_files_only,
    )
    return resolve_pack_folder(
        folder,
        model_file,
        kind="hub",
        source=str(source),
        name=repo_id.split("/")[-1],
        prefer_given_name=True,
    )


def resolve_pack_folder(
    folder: Path,
    model_file: Optional[PathLike],
    *,
    kind: str,
    source: str,
    name: str,
    prefer_given_name: bool = False,
    require_meta: bool = False,
) -> ModelFiles:
    """:func:`resolve_folder` for an unpacked pack or a hub snapshot: any problem of
    its structure is a :class:`DamagedPackError` (a pack must hold ``meta.yaml``; a
    hub repository may be a plain model folder)."""
    try:
        files = resolve_folder(folder, model_file=model_file, kind=kind, source=source)
    except (IncompatiblePackError, UnsafeArchiveError):
        raise
    except (ValueError, FileNotFoundError, yaml.YAMLError) as e:
        raise DamagedPackError(source, str(e)) from e
    if require_meta and files.meta is None:
        raise DamagedPackError(source, "no meta.yaml: not a model pack")
    if prefer_given_name or recorded_entry(files.meta, "name") is None:
        files = dataclasses.replace(files, name=safe_name(name))
    return files
