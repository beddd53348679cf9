"""Kaldi-style ``scp`` lists (``<key> <value>`` per line), read in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Union


def read_scp(path: Union[str, Path]) -> Dict[str, str]:
    """``{key: value}`` of an scp file, in file order.

    Blank lines are skipped; the value is the rest of the line after the first run of
    whitespace (so paths with spaces survive).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a line without a value, or a key listed twice (line numbers given).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    table: Dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.strip().split(maxsplit=1)
        if not parts:
            continue
        if len(parts) == 1:
            raise ValueError(f"{path}:{number}: expected '<key> <value>', got {line!r}")
        key, value = parts
        if key in table:
            raise ValueError(f"{path}:{number}: key {key!r} is listed twice")
        table[key] = value
    return table
