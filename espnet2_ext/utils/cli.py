"""The ``main`` shared by the plugin's report-style commands."""

from __future__ import annotations

import argparse
import logging
from typing import Callable, Optional, Sequence


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
