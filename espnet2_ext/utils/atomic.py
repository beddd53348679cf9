"""Atomic file writers and strict JSON.

Every writer goes through a temporary file in the destination folder followed by
``os.replace``, so a reader (or a packing stage) never sees a half-written file and an
interrupted run leaves the previous version in place.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Union

import numpy as np

PathLike = Union[str, os.PathLike]


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
        raise
    return path


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
