"""Publishing a pack: the install source of the card, and the local folder of an upload.

**Install source.** espnet2_ext is on no package index, so the card's ``pip install``
line must name something that exists. By default (:data:`WHEEL`) the upload carries the
wheel of the plugin (built by :func:`build_wheel` with ``python -m build`` from the
source tree of the running plugin, or given), and the card installs it from the
repository itself: ``pip install https://<hub>/<repo>/resolve/main/<wheel>``. That line
works as written for a public repository, installs the exact version that made the
pack, and needs nothing but the hub. Any other value (``git+https://…@tag``, a
requirement once the plugin is on an index) is written as it is.

**Local folder** (:func:`write_local_dir`, ``hf_upload --local_dir``): the upload's
files are written only into a folder this module owns: a new or empty folder, or one
it wrote before, recognised by its manifest :data:`MARKER` (the files it wrote). It
never deletes or replaces a file it did not write, refuses a folder that holds the
pack being published, and a path naming a file is an error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

from espnet2_ext.utils.atomic import atomic_copy, atomic_write_text, signals_held
from espnet2_ext.zoo.compat import PLUGIN_NAME, compatibility_problem
from espnet2_ext.zoo.files import PathLike

#: ``--install_source`` value: upload the plugin's wheel and install it from the repo.
WHEEL = "wheel"
#: The manifest that marks a folder written by :func:`write_local_dir`.
MARKER = ".espnet2_ext_hf_upload.json"
#: The default hub address of wheel URLs.
HUB_URL = "https://huggingface.co"

_WHEEL_NAME = re.compile(r"^espnet2_ext-([^-]+)-py3-none-any\.whl$")


# --------------------------------------------------------------------------- wheels
def source_tree() -> Optional[Path]:
    """The source tree the running plugin comes from (``setup.py`` beside the
    package), or ``None`` when it was installed from a wheel."""
    root = Path(__file__).resolve().parents[2]
    if (root / "setup.py").is_file() and (root / PLUGIN_NAME).is_dir():
        return root
    return None


def build_wheel(out_dir: PathLike, root: Optional[PathLike] = None) -> Path:
    """Build the plugin's wheel with ``python -m build --wheel``; returns it.

    The sources (``setup.py``, ``pyproject.toml``, ``README.md`` and the package) are
    copied to a temporary folder first, so the build leaves nothing in the source
    tree. ``--no-isolation``: the build uses the running environment's setuptools
    instead of downloading one.

    Raises:
        RuntimeError: no source tree, ``build`` missing, or the build failed.
    """
    root = Path(root) if root is not None else source_tree()
    if root is None:
        raise RuntimeError(
            "this espnet2_ext was installed from a wheel, so there are no sources to "
            "build one from: give --wheel FILE, or --install_source with a pip "
            "argument (e.g. git+https://…)"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="espnet2_ext_build_") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("setup.py", "pyproject.toml", "README.md"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        shutil.copytree(
            root / PLUGIN_NAME,
            src / PLUGIN_NAME,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        proc = subprocess.run(
            [sys.executable, "-m", "build", "--wheel", "--no-isolation",
             "--outdir", str(Path(tmp) / "dist"), str(src)],
            capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(
                "python -m build failed (pip install build?):\n"
                + (proc.stderr or proc.stdout)[-2000:]
            )
        built = sorted((Path(tmp) / "dist").glob("*.whl"))
        if len(built) != 1:
            raise RuntimeError(f"python -m build made {len(built)} wheels, not 1")
        final = out_dir / built[0].name
        shutil.copy2(built[0], final)
    return final


def wheel_version(wheel: PathLike) -> str:
    """The version in an espnet2_ext wheel's file name.

    Raises:
        ValueError: not the file name of a pure-Python espnet2_ext wheel.
    """
    match = _WHEEL_NAME.match(Path(wheel).name)
    if match is None:
        raise ValueError(
            f"{wheel} is not an espnet2_ext wheel (espnet2_ext-<version>-py3-none-any"
            ".whl)"
        )
    return match.group(1)


def check_wheel_for_pack(wheel: PathLike, pack_version: str) -> None:
    """Refuse a wheel whose version cannot load a pack made by ``pack_version``."""
    problem = compatibility_problem(pack_version, wheel_version(wheel))
    if problem is not None:
        raise ValueError(
            f"the wheel {Path(wheel).name} cannot load the pack: {problem}"
        )


def wheel_url(repo_id: str, wheel: PathLike, endpoint: Optional[str] = None) -> str:
    """Where the hub (``endpoint``, else ``$HF_ENDPOINT``, else huggingface.co) serves
    a file of the repository's main branch."""
    base = (endpoint or os.environ.get("HF_ENDPOINT") or HUB_URL).rstrip("/")
    return f"{base}/{repo_id}/resolve/main/{Path(wheel).name}"


# --------------------------------------------------------------------------- local dir
def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _manifest(target: Path) -> Optional[List[str]]:
    marker = target / MARKER
    if not marker.is_file():
        return None
    try:
        files = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"{marker} is damaged ({e}); remove {target} yourself to write there again"
        ) from e
    return [str(f) for f in files]


def check_local_dir(
    target: PathLike, *, overwrite: bool, protected: Iterable[PathLike] = ()
) -> Optional[List[str]]:
    """Check that :func:`write_local_dir` may write into ``target``.

    Returns:
        the files a previous run wrote there (``None``: the folder is new or empty).

    Raises:
        ValueError: ``target`` is a file; holds a protected path (the input pack);
            is not empty and was not written here; or was, but ``overwrite`` is off.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"--local_dir {target} is a file, not a folder")
    for path in protected:
        if _inside(Path(path), target):
            raise ValueError(
                f"--local_dir {target} holds {path}, the pack being published; "
                "choose a folder of its own"
            )
    if not target.exists() or not any(target.iterdir()):
        return None
    owned = _manifest(target)
    if owned is None:
        raise ValueError(
            f"--local_dir {target} is not empty and was not written by hf_upload (no "
            f"{MARKER}); give a new or empty folder (nothing was changed)"
        )
    if not overwrite:
        raise ValueError(
            f"--local_dir {target} holds an earlier hf_upload output; --overwrite "
            "replaces the files it wrote (and only those)"
        )
    return owned


def write_local_dir(
    staging: PathLike,
    target: PathLike,
    *,
    overwrite: bool = False,
    protected: Sequence[PathLike] = (),
) -> List[str]:
    """Copy every file of ``staging`` into ``target`` (:func:`check_local_dir`).

    The manifest is written first (listing the old and the new files), so an
    interrupted run leaves a folder still recognised as written here; each file is
    copied through a temporary file; files of the previous run that the new one does
    not have are removed (only those); then the manifest lists the new files.

    Returns:
        the files written, relative to ``target`` (POSIX paths, sorted).

    Raises:
        ValueError: see :func:`check_local_dir`; or a file of the upload has the name
            of a file in ``target`` that was not written here.
    """
    staging, target = Path(staging), Path(target)
    owned = check_local_dir(target, overwrite=overwrite, protected=protected) or []
    new = sorted(
        p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()
    )
    foreign = [f for f in new if (target / f).exists() and f not in owned]
    if foreign:
        raise ValueError(
            f"--local_dir {target}: {', '.join(foreign[:5])} exist(s) but were not "
            "written by hf_upload; move them away (nothing was changed)"
        )
    target.mkdir(parents=True, exist_ok=True)
    _write_manifest(target, sorted(set(owned) | set(new)))
    for name in new:
        atomic_copy(staging / name, target / name)
    with signals_held():
        for name in sorted(set(owned) - set(new)):
            stale = target / name
            if stale.is_file() or stale.is_symlink():
                stale.unlink()
                _remove_empty_parents(stale.parent, target)
    _write_manifest(target, new)
    return new


def _write_manifest(target: Path, files: Sequence[str]) -> None:
    text = json.dumps({"written_by": "espnet2_ext.bin.hf_upload", "files": files})
    atomic_write_text(target / MARKER, text + "\n")


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def upload_folder_files(folder: PathLike) -> List[str]:
    """The files of a staged repository (for listing), relative POSIX paths."""
    folder = Path(folder)
    return sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
    )


def copy_into(staging: PathLike, path: PathLike) -> Path:
    """Put a file (the wheel) at the top of the staged repository."""
    return Path(shutil.copy2(path, Path(staging) / Path(path).name))
