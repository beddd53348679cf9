"""Atomic file writers, sets of files written together, and strict JSON.

Every writer goes through a temporary file in the destination folder followed by
``os.replace``, so a reader (or a packing stage) never sees a half-written file and an
interrupted run leaves the previous version in place. Running out of space raises
:class:`DiskFullError` (which names the path) instead of a bare ``OSError``, and the
temporary file is removed.

:func:`atomic_write_set` writes several files as one: all temporary files first, then
every rename with SIGINT/SIGTERM held back, rolled back on a failure, so either the new
set or the old one is in place. :func:`terminate_raises` turns SIGTERM into an
exception, so that the clean-up of the writers runs for it as it does for Ctrl-C.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Iterator, List, Mapping, Tuple, Union

import numpy as np

PathLike = Union[str, os.PathLike]

#: Signals held back while a set of files is renamed or temporary files are removed.
_GUARDED_SIGNALS = {signal.SIGINT, signal.SIGTERM}

#: Files whose permission bits follow the umask like any new file (``mkstemp`` makes
#: them 0600, which other users of a shared model or output folder cannot read).
_FILE_MODE = 0o666


class DiskFullError(OSError):
    """No space left on the device (or quota exceeded) while writing ``path``."""

    def __init__(self, path: PathLike, code: int = errno.ENOSPC):
        super().__init__(code, "disk full", str(path))
        self.path = Path(path)

    def __str__(self) -> str:
        return f"disk full: no space left to write {self.path}"


class Terminated(KeyboardInterrupt):
    """SIGTERM received inside :func:`terminate_raises` (a ``KeyboardInterrupt``, so
    every clean-up written for Ctrl-C runs for it too)."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


@contextlib.contextmanager
def terminate_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only; a no-op
    elsewhere). The previous handler is restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done (then they are delivered)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _GUARDED_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _temporaries() -> Iterator[List[Path]]:
    """A list that :func:`_write_temp` registers its files in; whatever is still there
    when the block ends (an error, Ctrl-C, SIGTERM under :func:`terminate_raises`, or a
    file that was not renamed) is removed, with the signals held."""
    created: List[Path] = []
    try:
        yield created
    finally:
        with signals_held():
            for temp in created:
                if temp.exists():
                    temp.unlink()


def _write_temp(path: Path, data: Union[bytes, PathLike], created: List[Path]) -> Path:
    """``data`` (bytes, or the content of the file it names) in a new hidden temporary
    file next to ``path``, registered in ``created`` before anything is written (so
    that :func:`_temporaries` removes it whatever interrupts the write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with signals_held():
            handle, temp_name = tempfile.mkstemp(
                prefix=f".{path.name}.", suffix=".partial", dir=path.parent
            )
            created.append(Path(temp_name))
        with os.fdopen(handle, "wb") as temp:
            if isinstance(data, bytes):
                temp.write(data)
            else:
                with open(data, "rb") as source:
                    shutil.copyfileobj(source, temp, 1 << 20)
            temp.flush()
            os.fsync(temp.fileno())
        os.chmod(temp_name, _FILE_MODE & ~_umask())
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(path, e.errno) from e
        raise
    return Path(temp_name)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    Raises:
        DiskFullError: no space left; ``path`` is unchanged.
    """
    path = Path(path)
    with _temporaries() as created:
        temp = _write_temp(path, data, created)
        with signals_held():
            os.replace(temp, path)
    return path


def atomic_copy(source: PathLike, path: PathLike) -> Path:
    """Copy the file ``source`` to ``path`` through a temporary file and a rename.

    Raises:
        DiskFullError: no space left; ``path`` is unchanged.
    """
    path = Path(path)
    with _temporaries() as created:
        temp = _write_temp(path, source, created)
        with signals_held():
            os.replace(temp, path)
    return path


def atomic_write_set(files: Mapping[PathLike, bytes]) -> List[Path]:
    """Write several files as one set: either all new files or none is in place.

    All contents go to temporary files first; then, with SIGINT and SIGTERM held back,
    each existing file is moved aside, the new ones are renamed into place, and the old
    ones are removed. A failure at any point removes the temporary files and puts the
    old files back.

    Raises:
        IsADirectoryError: a destination is a folder (checked before writing).
        DiskFullError: no space left; no file of the set changed.
    """
    targets = [Path(p) for p in files]
    for target in targets:
        if target.is_dir() or (target.exists() and not target.is_file()):
            raise IsADirectoryError(
                f"{target} exists and is not a file; nothing of this set was written"
            )
    with _temporaries() as created:
        temps = {
            target: _write_temp(target, data, created)
            for target, data in zip(targets, files.values())
        }
        with signals_held():
            _commit(temps)
    return targets


def _commit(temps: Mapping[Path, Path]) -> None:
    """Rename ``{target: temp}`` into place; on failure restore the old targets."""
    moved: List[Tuple[Path, Path]] = []  # (target, its old content's backup)
    placed: List[Path] = []
    try:
        for target in temps:
            if target.exists():
                backup = target.with_name(f".{target.name}.{os.getpid()}.old")
                os.replace(target, backup)
                moved.append((target, backup))
        for target, temp in temps.items():
            os.replace(temp, target)
            placed.append(target)
    except BaseException:
        for target in placed:
            if target.exists():
                target.unlink()
        for target, backup in moved:
            os.replace(backup, target)
        raise
    for _, backup in moved:
        backup.unlink()


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_finite(value):
    """``value`` with every non-finite float (NaN, ±inf) replaced by None, recursively
    through dicts, lists and tuples: strict JSON has no NaN."""
    if isinstance(value, dict):
        return {k: json_finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_default(value):
    """``json.dumps(..., default=json_default)``: tensors and numpy arrays as lists,
    numpy scalars as Python numbers (e.g. in multi-step summaries)."""
    import torch

    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def atomic_write_json(path: PathLike, data) -> Path:
    """Write ``data`` as strict JSON (non-finite floats as null), atomically."""
    text = json.dumps(json_finite(data), indent=1, allow_nan=False) + "\n"
    return atomic_write_text(path, text)
