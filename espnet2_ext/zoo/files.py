"""A model's files: where they are (:class:`ModelFiles`), ``meta.yaml``, stem names.

A trained model is two files: the training config (``config.yaml``, ESPnet's full
argument namespace) and the weights (a ``.pth`` state dict).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import yaml

from espnet2_ext.constants import MUSDB_STEMS, MUSIC_SAMPLE_RATE
from espnet2_ext.zoo.compat import PLUGIN_NAME, recorded_version

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


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
        name: the model's name (separated stems go to ``<out>/<name>/<track>/``):
            the hub repository's name, else the name the pack records, else the
            pack's file name or the folder's name.
    """

    train_config: Path
    model_file: Path
    root: Path
    kind: str
    source: str
    meta: Optional[Dict[str, Any]] = None
    name: str = "model"

    @property
    def plugin_version(self) -> Optional[str]:
        """Version of espnet2_ext that packed the model (``None`` if not recorded)."""
        return recorded_version(self.meta)

    @property
    def chunking(self) -> Optional[Dict[str, Any]]:
        """The chunked inference the pack records (``segment``, ``hop``, ``window``;
        ``None``: it records none)."""
        return recorded_entry(self.meta, "chunking")


def describe(files: ModelFiles) -> str:
    """One line for logs: where the model came from."""
    version = files.plugin_version
    made = f", packed by espnet2_ext {version}" if version else ""
    return f"{files.kind} {files.source} ({files.model_file.name}{made})"


def recorded_entry(meta: Optional[Dict[str, Any]], key: str) -> Any:
    """``meta.yaml``'s ``espnet2_ext.<key>`` (``None`` if absent).

    Raises:
        ValueError: the ``espnet2_ext`` entry is not a mapping.
    """
    record = (meta or {}).get(PLUGIN_NAME)
    if record is None:
        return None
    if not isinstance(record, dict):
        raise ValueError(f"meta.yaml's {PLUGIN_NAME} entry is not a mapping")
    return record.get(key)


def safe_name(text: str) -> str:
    """``text`` as one safe folder name (letters, digits, ``_ . -``; others → ``_``)."""
    name = re.sub(r"[^\w.-]+", "_", str(text)).strip("._") or "model"
    return name


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


def model_sample_rate(train_args: Any) -> int:
    """The sampling rate a model separates at: the config's ``sample_rate``.

    A config that records none is taken to be at the music rate (44.1 kHz), with a
    warning. A rate that disagrees with the STFT's ``encoder_conf.default_fs`` is kept,
    with a warning (ESPnet's parser defaults ``sample_rate`` to 8000 when a config
    omits it).
    """
    rate = getattr(train_args, "sample_rate", None)
    if rate is None:
        logger.warning(
            "the config records no sample_rate; assuming %d Hz", MUSIC_SAMPLE_RATE
        )
    rate = int(rate or MUSIC_SAMPLE_RATE)
    stft_rate = (getattr(train_args, "encoder_conf", None) or {}).get("default_fs")
    if stft_rate is not None and int(stft_rate) != rate:
        logger.warning(
            "the config says sample_rate %d but its STFT was set up for %s Hz "
            "(encoder_conf.default_fs); separating at %d Hz",
            rate,
            stft_rate,
            rate,
        )
    return rate


def sha256(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
