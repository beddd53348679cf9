"""What the entry points share: argparse value types and the ``main`` of the
report-style commands."""

from __future__ import annotations

import argparse
import logging
from typing import Callable, Optional, Sequence

from espnet2.utils.types import float_or_none, int_or_none, str2bool, str_or_none

__all__ = [
    "float_or_none",
    "int_or_none",
    "run_command",
    "str2bool",
    "str2bool_or_none",
    "str_or_none",
]


def str2bool_or_none(value: str) -> Optional[bool]:
    """argparse type: ``true``/``false`` (ESPnet's spellings) or ``none``."""
    if value.strip().lower() in ("none", "null", ""):
        return None
    return str2bool(value)


def run_command(
    name: str,
    parser: argparse.ArgumentParser,
    fn: Callable[..., object],
    argv: Optional[Sequence[str]] = None,
) -> int:
    """Parse ``argv``, set up logging from ``--log_level`` and call ``fn`` with every
    other option as a keyword argument.

    A ``ValueError`` or ``FileNotFoundError`` (bad input, a missing file) is logged as
    one line and gives exit code 1 instead of a traceback; other exceptions propagate.
    """
    options = vars(parser.parse_args(argv))
    logging.basicConfig(
        level=options.pop("log_level"),
        format=f"%(asctime)s ({name}) %(levelname)s: %(message)s",
    )
    try:
        fn(**options)
    except (ValueError, FileNotFoundError) as e:
        logging.error(str(e))
        return 1
    return 0
