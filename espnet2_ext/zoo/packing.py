"""Packing a trained enh model into the zip layout of ESPnet's model zoo.

The zip is ESPnet's own (``espnet2.main_funcs.pack_funcs.pack``: ``meta.yaml``, the
training config, the weights and optional files such as ``RESULTS.md`` and ``images/``),
so ``espnet_model_zoo`` unpacks it. ``meta.yaml`` additionally records::

    plugins:
      espnet2_ext: <version>

which tells a user which plugin (and version) the model needs, and lets the loader
refuse a pack made by an incompatible version with a clear message
(:mod:`espnet2_ext.zoo.compat`), and::

    espnet2_ext:
      name: enh_bs_locoformer_medium      # the folder separated stems go to
      chunking: {segment: 12.0, hop: 6.0, window: hann}

the model's name and the chunking the recipe evaluated it with, which the separation
command and the Python API use unless told otherwise. ESPnet's loaders read only
``files`` and ``yaml_files`` and ignore both entries.

The zip is written under a temporary name and renamed when complete; it gets the
permission bits of any new file (0644 under the usual umask 022), and only its final
path is printed.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, Union

import yaml
from espnet2.main_funcs.pack_funcs import pack as espnet_pack

from espnet2_ext.version import __version__
from espnet2_ext.zoo.compat import PLUGIN_NAME
from espnet2_ext.zoo.files import safe_name

if TYPE_CHECKING:  # pragma: no cover
    from espnet2_ext.separation.config import ChunkingConfig


def pack(
    train_config: Union[str, Path],
    model_file: Union[str, Path],
    outpath: Union[str, Path],
    option: Iterable[Union[str, Path]] = (),
    *,
    name: Optional[str] = None,
    chunking: Optional["ChunkingConfig"] = None,
) -> Path:
    """Write the pack atomically (a temporary file renamed at the end); returns it.

    Args:
        train_config, model_file: the model (paths as ESPnet's packer records them:
            relative to the working directory when inside it).
        outpath: the zip to write.
        option: more files or folders to include (``RESULTS.md``, ``images``).
        name: the model's name (default: the name of the folder holding
            ``train_config``, e.g. ``enh_bs_locoformer_medium``).
        chunking: the chunked inference the model was evaluated with (recorded; not
            recorded: users get the default, 12 s chunks every 6 s).
    """
    outpath = Path(outpath)
    name = safe_name(name or Path(train_config).resolve().parent.name)
    outpath.parent.mkdir(parents=True, exist_ok=True)
    fd, raw = tempfile.mkstemp(suffix=".zip", dir=outpath.parent, prefix=".pack-")
    os.close(fd)
    fd, final = tempfile.mkstemp(suffix=".zip", dir=outpath.parent, prefix=".pack-")
    os.close(fd)
    try:
        # ESPnet's packer prints the temporary name; only the final one is printed
        with contextlib.redirect_stdout(io.StringIO()):
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
                    record = {"name": name}
                    if chunking is not None:
                        record["chunking"] = chunking.to_dict()
                    meta[PLUGIN_NAME] = record
                    data = yaml.safe_dump(meta).encode()
                zout.writestr(item, data)
                print(f"adding: {item.filename}")
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(final, 0o666 & ~mask)
        os.replace(final, outpath)
    finally:
        for leftover in (raw, final):
            if os.path.exists(leftover):
                os.remove(leftover)
    print(f"Generate: {outpath}")
    return outpath
