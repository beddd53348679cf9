"""Packing a trained enh model into the zip layout of ESPnet's model zoo.

The zip is ESPnet's own (``espnet2.main_funcs.pack_funcs.pack``: ``meta.yaml``, the
training config, the weights and optional files such as ``RESULTS.md`` and ``images/``),
so ``espnet_model_zoo`` unpacks it. ``meta.yaml`` additionally records::

    plugins:
      espnet2_ext: <version>

which tells a user which plugin (and version) the model needs, and lets the loader
refuse a pack made by an incompatible version with a clear message
(:mod:`espnet2_ext.zoo.compat`).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Iterable, Union

import yaml
from espnet2.main_funcs.pack_funcs import pack as espnet_pack

from espnet2_ext.version import __version__
from espnet2_ext.zoo.compat import PLUGIN_NAME


def pack(
    train_config: Union[str, Path],
    model_file: Union[str, Path],
    outpath: Union[str, Path],
    option: Iterable[Union[str, Path]] = (),
) -> Path:
    """Write the pack atomically (a temporary file renamed at the end); returns it."""
    outpath = Path(outpath)
    outpath.parent.mkdir(parents=True, exist_ok=True)
    fd, raw = tempfile.mkstemp(suffix=".zip", dir=outpath.parent, prefix=".pack-")
    os.close(fd)
    fd, final = tempfile.mkstemp(suffix=".zip", dir=outpath.parent, prefix=".pack-")
    os.close(fd)
    try:
        espnet_pack(
            files={"model_file": model_file},
            yaml_files={"train_config": train_config},
            outpath=raw,
            option=list(option),
        )
        with (
            zipfile.ZipFile(raw) as zin,
            zipfile.ZipFile(final, "w", zipfile.ZIP_DEFLATED) as zout,
        ):
            for item in zin.infolist():
                data = zin.read(item.filename)
                if item.filename == "meta.yaml":
                    meta = yaml.safe_load(data)
                    meta.setdefault("plugins", {})[PLUGIN_NAME] = __version__
                    data = yaml.safe_dump(meta).encode()
                zout.writestr(item, data)
        os.replace(final, outpath)
    finally:
        for leftover in (raw, final):
            if os.path.exists(leftover):
                os.remove(leftover)
    print(f"Generate: {outpath}")
    return outpath
