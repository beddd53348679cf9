"""Finding, unpacking and checking trained models: packs, folders and hub repositories.

A trained model is two files: the training config (``config.yaml``, ESPnet's full
argument namespace) and the weights (a ``.pth`` state dict). They come in three forms:

* a **pack**: the zip of :func:`espnet2_ext.bin.pack.pack` (ESPnet's model-zoo layout:
  ``meta.yaml`` lists the config and the weights, and records under ``plugins`` the
  version of espnet2_ext that made it);
* a **folder**: an unpacked pack (it has ``meta.yaml``), a hub snapshot (the same), or a
  plain folder with ``config.yaml`` and one ``.pth`` (e.g. the converter's output);
* a **hub repository** id (``user/name``, optionally ``user/name@revision`` or
  ``hf://user/name``): the unpacked pack as ``espnet2_ext.bin.hf_upload`` publishes it,
  fetched with ``huggingface_hub.snapshot_download`` into the hub client's cache, so a
  second load reads the cache (and works offline, ``HF_HUB_OFFLINE=1``).

Safety: a pack is unpacked by this module, not by ``zipfile.extractall``: an entry
whose path is absolute, contains ``..``, is a symbolic link or any other non-regular
file is refused before anything is written. Packs are unpacked once into a cache folder
named after the SHA-256 of the zip's bytes, through a temporary folder renamed at the
end, so an interrupted unpack leaves nothing that looks complete. Weights are always
loaded with ``torch.load(weights_only=True)`` (:func:`espnet2_ext.bin.enh_inference.
load_model`): nothing in a pack is executed.

Compatibility rule (:func:`compatibility_problem`): a pack made by espnet2_ext version
``P`` loads with the installed version ``I`` when

1. ``P`` and ``I`` have the same major version (for ``0.x`` releases, the same
   ``0.minor``, since before 1.0 a minor release may change model code), and
2. ``P`` is not newer than ``I`` (a newer release may have added options or layers that
   this one does not know).

A pack without the ``plugins`` entry (made by ESPnet's own packer) is loaded with a
warning; one whose entry breaks the rule is refused with :class:`IncompatiblePackError`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import yaml
from packaging.version import InvalidVersion, Version

from espnet2_ext.bin.pack import PLUGIN_NAME
from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.version import __version__

logger = logging.getLogger(__name__)


#: Environment variable that moves the cache of unpacked packs.
CACHE_ENV = "ESPNET2_EXT_CACHE"

#: ``user/name`` on the Hugging Face hub (the characters the hub allows in each part).
_HUB_ID = re.compile(r"^(?:hf://)?([A-Za-z0-9][\w.-]*/[\w.-]+)(?:@([\w./-]+))?$")

PathLike = Union[str, Path]


class IncompatiblePackError(ValueError):
    """A pack made by an espnet2_ext version that the installed one cannot load."""


class UnsafeArchiveError(ValueError):
    """A pack whose entries would be written outside the folder it is unpacked into."""


@dataclass(frozen=True)
class ModelFiles:
    """Where a model's files are.

    Attributes:
        train_config: the training ``config.yaml``.
        model_file: the ``.pth`` weights.
        root: the folder that holds them (unpacked pack, hub snapshot or plain folder).
        kind: ``"pack"``, ``"folder"`` or ``"hub"``.
        source: the source as given by the user.
        meta: ``meta.yaml`` of the pack, if there is one.
    """

    train_config: Path
    model_file: Path
    root: Path
    kind: str
    source: str
    meta: Optional[Dict[str, Any]] = None

    @property
    def plugin_version(self) -> Optional[str]:
        """Version of espnet2_ext that packed the model (``None`` if not recorded)."""
        plugins = (self.meta or {}).get("plugins") or {}
        version = plugins.get(PLUGIN_NAME) if isinstance(plugins, dict) else None
        return None if version is None else str(version)


# --------------------------------------------------------------------------- versions
def compatibility_problem(
    pack_version: str, installed_version: str = __version__
) -> Optional[str]:
    """Why a pack made by ``pack_version`` cannot load here, or ``None`` if it can.

    See the module docstring for the rule.
    """
    try:
        made, here = Version(str(pack_version)), Version(str(installed_version))
    except InvalidVersion:
        return (
            f"the pack records espnet2_ext version {pack_version!r}, which is not a "
            "valid version number"
        )
    if made.major != here.major or (made.major == 0 and made.minor != here.minor):
        series = f"{made.major}.{made.minor}" if made.major == 0 else f"{made.major}"
        return (
            f"it was made by espnet2_ext {made}, but espnet2_ext {here} is installed: "
            f"a different {'0.x minor' if made.major == 0 else 'major'} version, whose "
            f"model code may differ. Install a {series}.x release, e.g. pip install "
            f"'espnet2_ext=={made}'"
        )
    if made > here:
        return (
            f"it was made by espnet2_ext {made}, newer than the installed {here}; "
            f"upgrade with pip install -U 'espnet2_ext>={made}'"
        )
    return None


def check_compatible(
    meta: Optional[Mapping[str, Any]],
    *,
    source: str,
    installed_version: str = __version__,
) -> None:
    """Refuse a pack whose ``meta.yaml`` names an incompatible plugin version.

    Raises:
        IncompatiblePackError: the rule of :func:`compatibility_problem` is broken.
    """
    if meta is None:
        return
    plugins = meta.get("plugins") or {}
    version = plugins.get(PLUGIN_NAME) if isinstance(plugins, dict) else None
    if version is None:
        logger.warning(
            "%s: meta.yaml does not record an espnet2_ext version (not made by "
            "espnet2_ext.bin.pack); loading it anyway",
            source,
        )
        return
    problem = compatibility_problem(str(version), installed_version)
    if problem is not None:
        raise IncompatiblePackError(f"cannot load {source}: {problem}")


# --------------------------------------------------------------------------- zips
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
    except zipfile.BadZipFile as e:
        raise ValueError(f"{zip_path} is not a valid zip file ({e})") from e
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
            with zf.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return target


def default_cache_dir() -> Path:
    """``$ESPNET2_EXT_CACHE``, else ``$XDG_CACHE_HOME/espnet2_ext``, else
    ``~/.cache/espnet2_ext``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "espnet2_ext"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    final = packs / _sha256(zip_path)[:32]
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


# --------------------------------------------------------------------------- folders
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


def read_meta(folder: PathLike) -> Optional[Dict[str, Any]]:
    """``meta.yaml`` of an unpacked pack or hub snapshot (``None`` if absent)."""
    path = Path(folder) / "meta.yaml"
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as f:
        meta = yaml.safe_load(f)
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not a mapping; the pack is damaged")
    return meta


def resolve_folder(
    folder: PathLike,
    *,
    model_file: Optional[PathLike] = None,
    kind: str = "folder",
    source: Optional[str] = None,
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
    )


# --------------------------------------------------------------------------- hub
def parse_hub_id(source: str) -> Optional[Tuple[str, Optional[str]]]:
    """``(repo_id, revision)`` if ``source`` reads as a hub id, else ``None``."""
    match = _HUB_ID.match(str(source))
    if match is None:
        return None
    return match.group(1), match.group(2)


def hub_snapshot(
    repo_id: str,
    *,
    revision: Optional[str] = None,
    cache_dir: Optional[PathLike] = None,
    local_files_only: bool = False,
) -> Path:
    """Download (or find in the hub client's cache) a model repository; returns it.

    ``huggingface_hub`` falls back to its cache when the hub cannot be reached, and
    reads only the cache with ``local_files_only`` or ``HF_HUB_OFFLINE=1``.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - a dependency of setup.py
        raise ImportError(
            "loading from the hub needs huggingface_hub: pip install huggingface_hub"
        ) from e
    try:
        path = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=None if cache_dir is None else str(cache_dir),
            local_files_only=local_files_only,
            library_name="espnet2_ext",
            library_version=__version__,
        )
    except Exception as e:
        raise OSError(
            f"cannot get {repo_id}{'@' + revision if revision else ''} from the "
            f"Hugging Face hub, and it is not in the cache "
            f"({cache_dir or 'default hub cache'}): {type(e).__name__}: {e}"
        ) from e
    return Path(path)


# --------------------------------------------------------------------------- sources
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
        cache_dir: where packs are unpacked (default :func:`default_cache_dir`).
        hub_cache_dir: the hub client's cache (default: its own, ``HF_HOME``).
        revision: hub branch, tag or commit (also ``user/name@revision``).
        local_files_only: read only the hub cache, never the network.
    """
    path = Path(source).expanduser()
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise ValueError(
                f"{path} is not a pack (.zip); give a packed model, a folder with "
                "config.yaml and the .pth, or a hub id user/name"
            )
        folder = unpack_pack(path, cache_dir)
        return resolve_folder(
            folder, model_file=model_file, kind="pack", source=str(source)
        )
    if path.is_dir():
        return resolve_folder(path, model_file=model_file, source=str(source))
    hub = parse_hub_id(str(source))
    if hub is None:
        raise FileNotFoundError(
            f"model not found: {source} is neither a file, a folder, nor a hub id "
            "(user/name)"
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
    return resolve_folder(folder, model_file=model_file, kind="hub", source=str(source))


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
    with zipfile.ZipFile(zip_path) as zf:
        names = [n for n in zf.namelist() if PurePosixPath(n).name == "meta.yaml"]
        if not names:
            raise ValueError(f"{zip_path} has no meta.yaml: it is not a model pack")
        meta = yaml.safe_load(zf.read(names[0]))
    check_compatible(meta, source=str(zip_path))
    downloader = ModelDownloader(cachedir=None if cachedir is None else str(cachedir))
    return downloader.unpack_local_file(str(zip_path))


# --------------------------------------------------------------------------- configs
def stem_names(train_args: Any, num_spk: int) -> Tuple[str, ...]:
    """Names of the model's outputs, in output order.

    The config's ``stems`` entry if present; else the MUSDB order (vocals, bass,
    drums, other) for a 4-output model; else ``spk1`` … ``spkN``.
    """
    stems = getattr(train_args, "stems", None)
    if stems is not None:
        stems = tuple(str(s) for s in stems)
        if len(stems) != num_spk or len(set(stems)) != len(stems):
            raise ValueError(
                f"the config's stems {list(stems)} must be {num_spk} distinct names "
                f"(the model has {num_spk} outputs)"
            )
        bad = [s for s in stems if not re.match(r"^[\w.-]+$", s) or s in (".", "..")]
        if bad:
            raise ValueError(
                f"stem names must be usable as file names (letters, digits, '_', '-', "
                f"'.'); got {bad}"
            )
        return stems
    if num_spk == len(MUSDB_STEMS):
        return MUSDB_STEMS
    return tuple(f"spk{n + 1}" for n in range(num_spk))


def full_train_config(
    config: Mapping[str, Any], output_dir: PathLike
) -> Dict[str, Any]:
    """ESPnet's complete config.yaml content: the parser's defaults, then ``config``."""
    from espnet2_ext.tasks.enh import EnhancementTask

    args = EnhancementTask.get_parser().parse_args(["--output_dir", str(output_dir)])
    full = vars(args)
    full.update(dict(config))
    full.pop("config", None)
    return full


def write_model_dir(
    config: Mapping[str, Any],
    state_dict: Mapping[str, Any],
    out_dir: PathLike,
    *,
    model_name: str = "model.pth",
    extra_files: Optional[Mapping[str, str]] = None,
) -> Tuple[Path, Path]:
    """Write ``config.yaml`` (complete, as ESPnet's training writes it) and weights.

    The model is built from the config and the weights are loaded into it strictly
    before anything is written, so a folder written here always loads. Files are
    written under temporary names and renamed.

    Args:
        config: training options (merged over the parser's defaults).
        state_dict: the ESPnet enh model's state dict.
        out_dir: output folder (created).
        model_name: name of the weights file.
        extra_files: more text files to write, ``{name: content}``.

    Returns:
        ``(config path, weights path)``.
    """
    import argparse

    import torch

    from espnet2_ext.tasks.enh import EnhancementTask

    out = Path(out_dir)
    full = full_train_config(config, out)
    model = EnhancementTask.build_model(argparse.Namespace(**full))
    missing, unexpected = model.load_state_dict(dict(state_dict), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"the weights do not fit the config: missing {sorted(missing)[:8]}, "
            f"unexpected {sorted(unexpected)[:8]}"
        )
    out.mkdir(parents=True, exist_ok=True)
    config_path, model_path = out / "config.yaml", out / model_name
    writes = [(config_path, yaml.safe_dump(full, sort_keys=False).encode())]
    for name, content in (extra_files or {}).items():
        writes.append((out / name, content.encode()))
    for path, data in writes:
        tmp = path.with_name(f".{path.name}.partial")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    tmp = model_path.with_name(f".{model_path.name}.partial")
    torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, tmp)
    os.replace(tmp, model_path)
    return config_path, model_path


def describe(files: ModelFiles) -> str:
    """One line for logs: where the model came from."""
    version = files.plugin_version
    made = f", packed by espnet2_ext {version}" if version else ""
    return f"{files.kind} {files.source} ({files.model_file.name}{made})"


__all__: Sequence[str] = (
    "IncompatiblePackError",
    "ModelFiles",
    "UnsafeArchiveError",
    "check_compatible",
    "check_zip_entries",
    "compatibility_problem",
    "default_cache_dir",
    "describe",
    "full_train_config",
    "hub_snapshot",
    "parse_hub_id",
    "resolve_folder",
    "resolve_source",
    "safe_unpack",
    "stem_names",
    "unpack_pack",
    "unpack_with_espnet_model_zoo",
    "write_model_dir",
)
