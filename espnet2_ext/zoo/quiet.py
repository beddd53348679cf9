"""Importing ESPnet without the noise of its optional dependencies.

ESPnet's attention module prints "Failed to import Flash Attention, using ESPnet
default: …" to stderr when it is imported where ``flash_attn`` is absent (every CPU
machine); users of the separation command took it for an error. The entry points of
models and packs (:mod:`espnet2_ext.zoo`, :mod:`espnet2_ext.separation`) import that
module once through :func:`import_espnet_quietly` before anything else imports ESPnet.
"""

from __future__ import annotations

import contextlib
import io
import sys

#: The ESPnet module that prints the line, and the line's start.
NOISY_MODULE = "espnet2.legacy.nets.pytorch_backend.transformer.attention"
NOISE = "Failed to import Flash Attention"


def import_espnet_quietly() -> None:
    """Import :data:`NOISY_MODULE` with the :data:`NOISE` line dropped; any other output
    of the import is passed on to stderr. Does nothing if it is already imported (or
    does not exist in this ESPnet)."""
    if NOISY_MODULE in sys.modules:
        return
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured):
        try:
            __import__(NOISY_MODULE)
        except ImportError:  # another ESPnet layout: nothing to silence
            pass
    for line in captured.getvalue().splitlines():
        if not line.startswith(NOISE):
            print(line, file=sys.stderr)
