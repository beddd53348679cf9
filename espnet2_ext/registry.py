"""The one place where espnet2_ext adds its classes to ESPnet's ``enh`` task.

ESPnet has no plugin mechanism: its choices (``--separator``, ``--criterions`` names,
``--preprocessor`` …) are module-level :class:`~espnet2.train.class_choices.ClassChoices`
objects in :mod:`espnet2.tasks.enh`, and its learning-rate schedulers a module-level
dict (``scheduler_classes`` of :mod:`espnet2.tasks.abs_task`). A key added to them
before the argument parser is built is accepted by the parser and by ``build_model``.

Rules, checked for every entry:

* keys are lower case (ESPnet lower-cases the value given on the command line);
* an existing key is never overwritten: ESPnet's own names (``mixit``, ``snr`` …) stay
  ESPnet's, and registering the same key twice is an error;
* the class derives from the base class that the choice table checks.

:func:`register_all` is idempotent per process (it records that it ran); :func:`register`
is the strict primitive and raises on any repeat.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Dict, List, Optional, Tuple

# (name of the ClassChoices object in espnet2.tasks.enh, key, "module:Class")
ENTRIES: List[Tuple[str, str, str]] = [
    (
        "separator_choices",
        "bs_locoformer",
        "espnet2_ext.enh.separator.bs_locoformer_separator:BSLocoformerSeparator",
    ),
    (
        "criterion_choices",
        "thres_snr",
        "espnet2_ext.enh.loss.criterions.thresholded_snr:ThresholdedSNRLoss",
    ),
    (
        "criterion_choices",
        "thres_snr_zeroref",
        "espnet2_ext.enh.loss.criterions.thresholded_snr:ThresholdedSNRZeroRefLoss",
    ),
    (
        "loss_wrapper_choices",
        "efficient_mixit",
        "espnet2_ext.enh.loss.wrappers.efficient_mixit_solver:EfficientMixITSolver",
    ),
    (
        "loss_wrapper_choices",
        "fixed_order_mix",
        "espnet2_ext.enh.loss.wrappers.fixed_order_mixture_solver:"
        "FixedOrderMixtureSolver",
    ),
    (
        "preprocessor_choices",
        "music_dynamic_mixing",
        "espnet2_ext.train.preprocessor:MusicDynamicMixing",
    ),
    (
        "preprocessor_choices",
        "mixture_of_mixtures",
        "espnet2_ext.train.preprocessor:MixtureOfMixtures",
    ),
]

#: (key of ``espnet2.tasks.abs_task.scheduler_classes``, "module:Class")
SCHEDULERS: List[Tuple[str, str]] = [
    ("warmupstaircaselr", "espnet2_ext.train.schedulers:WarmupStaircaseLR"),
]

#: Preprocessor keys of the plugin; our task builds them as ``cls(train=…, **conf)``.
PLUGIN_PREPROCESSORS = frozenset(
    key for table, key, _ in ENTRIES if table == "preprocessor_choices"
)

_registered: Dict[Tuple[str, str], type] = {}


def _load(target: str) -> type:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def register(choices, key: str, cls: type) -> None:
    """Add ``cls`` under ``key`` to an ESPnet ``ClassChoices`` table.

    Raises:
        ValueError: the key is not lower case, or the key is already taken.
        TypeError: ``cls`` does not derive from the table's ``type_check`` base class.
    """
    if key != key.lower():
        raise ValueError(
            f"choice keys must be lower case ({key!r}): ESPnet lower-cases the value "
            f"given to --{choices.name}, so {key!r} could never be selected"
        )
    if key in choices.classes:
        owner = choices.classes[key]
        raise ValueError(
            f"--{choices.name} {key!r} is already registered "
            f"(to {owner.__module__}.{owner.__qualname__}); pick another key"
        )
    base = choices.base_type
    if base is not None and not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(
            f"{cls!r} cannot be registered as --{choices.name} {key!r}: it must "
            f"derive from {base.__module__}.{base.__qualname__}"
        )
    choices.classes[key] = cls
    _registered[(choices.name, key)] = cls


def register_scheduler(name: str, cls: type) -> None:
    """Add a learning-rate scheduler to ESPnet's ``scheduler_classes`` (``--scheduler``).

    Raises:
        ValueError: the name is not lower case or is already taken.
        TypeError: ``cls`` is not one of ESPnet's scheduler kinds (the trainer steps
            only :class:`~espnet2.schedulers.abs_scheduler.AbsScheduler` subclasses).
    """
    from espnet2.schedulers.abs_scheduler import AbsScheduler
    from espnet2.tasks import abs_task

    table = abs_task.scheduler_classes
    if name != name.lower():
        raise ValueError(
            f"scheduler names must be lower case ({name!r}): ESPnet lower-cases the "
            "value of --scheduler"
        )
    if name in table:
        owner = table[name]
        raise ValueError(
            f"--scheduler {name!r} is already registered (to {owner.__module__}."
            f"{owner.__qualname__}); pick another name"
        )
    if not (isinstance(cls, type) and issubclass(cls, AbsScheduler)):
        raise TypeError(
            f"{cls!r} cannot be registered as --scheduler {name!r}: ESPnet's trainer "
            "steps only subclasses of espnet2.schedulers.abs_scheduler.AbsScheduler"
        )
    table[name] = cls
    _registered[("scheduler", name)] = cls


def register_data_type(name: str, entry: dict) -> None:
    """Add a loader to ESPnet's ``DATA_TYPES`` (the ``path,name,TYPE`` of data options).

    ESPnet picks a loader by testing each key as a prefix pattern of the requested type,
    in order, so a new name must neither exist nor start with an existing key
    (``sound_segment`` would be read by ``sound``).
    """
    from espnet2.train import dataset as espnet_dataset

    from espnet2_ext.train.dataset import shadowing_data_types

    table = espnet_dataset.DATA_TYPES
    if name != name.lower():
        raise ValueError(f"data type names are lower case, got {name!r}")
    if name in table or shadowing_data_types(name, table):
        raise ValueError(
            f"data type {name!r} is already taken or shadowed by an existing key of "
            "ESPnet's DATA_TYPES; pick another name"
        )
    table[name] = entry
    _registered[("data_type", name)] = entry


def register_all() -> Dict[Tuple[str, object], object]:
    """Register every entry of :data:`ENTRIES`, :data:`SCHEDULERS` and our data types,
    once per process."""
    import espnet2.tasks.enh as enh_task
    from espnet2.tasks import abs_task
    from espnet2.train import dataset as espnet_dataset

    from espnet2_ext.train.dataset import SEGMENT_SOUND, SEGMENT_SOUND_DATA_TYPE

    if espnet_dataset.DATA_TYPES.get(SEGMENT_SOUND) is not SEGMENT_SOUND_DATA_TYPE:
        register_data_type(SEGMENT_SOUND, SEGMENT_SOUND_DATA_TYPE)

    for name, target in SCHEDULERS:
        cls = _load(target)
        if abs_task.scheduler_classes.get(name) is not cls:
            register_scheduler(name, cls)

    for table_name, key, target in ENTRIES:
        choices = getattr(enh_task, table_name)
        cls = _load(target)
        if (
            _registered.get((choices.name, key)) is cls
            and choices.classes.get(key) is cls
        ):
            continue  # this process already did it
        register(choices, key, cls)
    return dict(_registered)


#: The ESPnet module whose import triggers :func:`register_all` (it defines the tables).
TRIGGER_MODULE = "espnet2.tasks.enh"


class _RegisterAfterExec(importlib.abc.Loader):
    """ESPnet's own loader of :data:`TRIGGER_MODULE`, then :func:`register_all`."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        register_all()

    def __getattr__(self, name: str):  # get_source, get_data, is_package …
        return getattr(self._loader, name)


class _RegisterOnImport(importlib.abc.MetaPathFinder):
    """Finds :data:`TRIGGER_MODULE` with the other finders and wraps its loader."""

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname != TRIGGER_MODULE:
            return None
        sys.meta_path.remove(self)  # one shot: the module is imported once
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RegisterAfterExec(spec.loader)
        return spec


def register_on_espnet_import() -> Optional[Dict[Tuple[str, object], object]]:
    """Register now if ESPnet's enh task is loaded, else as soon as it is imported.

    Called by ``import espnet2_ext``, so a process that imports the package can use
    ESPnet's own tools (``espnet2.bin.enh_inference.SeparateSpeech``,
    ``python -m espnet2.bin.enh_train``'s classes) with the plugin's names, while
    modules of the package that do not need ESPnet (data preparation) stay cheap to
    import.
    """
    if TRIGGER_MODULE in sys.modules:
        return register_all()
    if not any(isinstance(f, _RegisterOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterOnImport())
    return None
