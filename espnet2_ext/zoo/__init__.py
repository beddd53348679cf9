"""Model folders and packs in one place: load, write, pack, resolve (zip, folder, hub).

A trained model is two files, the training ``config.yaml`` and the ``.pth`` weights.

* :mod:`~espnet2_ext.zoo.files`: where a model's files are (:class:`ModelFiles`),
  ``meta.yaml``, stem names, the sampling rate, file hashes;
* :mod:`~espnet2_ext.zoo.loading`: strict, weights-only loading (:func:`load_model`);
* :mod:`~espnet2_ext.zoo.writer`: writing a model folder, checked and atomic
  (:func:`write_model_dir`);
* :mod:`~espnet2_ext.zoo.packing`: packing a model folder into ESPnet's zip layout
  (:func:`pack`);
* :mod:`~espnet2_ext.zoo.compat`: which plugin versions may load a pack;
* :mod:`~espnet2_ext.zoo.archive`: safe unpacking into a cache;
* :mod:`~espnet2_ext.zoo.hub`: hub ids, snapshots, upload;
* :mod:`~espnet2_ext.zoo.resolve`: a pack, a folder or a hub id to :class:`ModelFiles`
  (:func:`resolve_source`);
* :mod:`~espnet2_ext.zoo.card`: the folder a hub repository gets, with its model card;
* :mod:`~espnet2_ext.zoo.publish`: the card's install source, the local folder of an
  upload;
* :mod:`~espnet2_ext.zoo.quiet`: importing ESPnet without its optional-dependency
  noise (done first, here).
"""

from espnet2_ext.zoo.quiet import import_espnet_quietly

import_espnet_quietly()

# isort: split

from espnet2_ext.zoo.archive import (
    CACHE_ENV,
    DamagedPackError,
    UnsafeArchiveError,
    check_zip_entries,
    default_cache_dir,
    safe_unpack,
    unpack_pack,
    unpack_with_espnet_model_zoo,
)
from espnet2_ext.zoo.card import CARD_TAGS, model_card, stage
from espnet2_ext.zoo.compat import (
    PLUGIN_NAME,
    IncompatiblePackError,
    check_compatible,
    compatibility_problem,
    recorded_version,
    requirement,
)
from espnet2_ext.zoo.files import (
    ModelFiles,
    describe,
    model_sample_rate,
    read_meta,
    recorded_entry,
    safe_name,
    sha256,
    stem_names,
)
from espnet2_ext.zoo.hub import hub_snapshot, parse_hub_id, upload
from espnet2_ext.zoo.loading import load_model
from espnet2_ext.zoo.packing import pack
from espnet2_ext.zoo.resolve import looks_like_path, resolve_folder, resolve_source
from espnet2_ext.zoo.writer import full_train_config, write_model_dir

__all__ = [
    "CACHE_ENV",
    "CARD_TAGS",
    "DamagedPackError",
    "IncompatiblePackError",
    "ModelFiles",
    "PLUGIN_NAME",
    "UnsafeArchiveError",
    "check_compatible",
    "check_zip_entries",
    "compatibility_problem",
    "default_cache_dir",
    "describe",
    "full_train_config",
    "hub_snapshot",
    "load_model",
    "looks_like_path",
    "model_card",
    "model_sample_rate",
    "pack",
    "parse_hub_id",
    "read_meta",
    "recorded_entry",
    "recorded_version",
    "requirement",
    "resolve_folder",
    "resolve_source",
    "safe_name",
    "safe_unpack",
    "sha256",
    "stage",
    "stem_names",
    "unpack_pack",
    "unpack_with_espnet_model_zoo",
    "upload",
    "write_model_dir",
]
