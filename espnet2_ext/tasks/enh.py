"""ESPnet's ``enh`` task with espnet2_ext's classes.

Importing this module registers the plugin's classes into ESPnet's choice tables (once per
process, :func:`espnet2_ext.registry.register_all`). That is what makes training workers
see them: ESPnet's multi-process training starts workers with the ``spawn`` method and
hands them ``EnhancementTask.main_worker``, which a child unpickles by importing this
module.
"""

from __future__ import annotations

import argparse
from typing import Callable, Dict, Optional

import numpy as np
from espnet2.tasks import enh as espnet_enh
from espnet2.utils.get_default_kwargs import get_default_kwargs

from espnet2_ext.enh.espnet_model import MultiChannelLossEnhancementModel
from espnet2_ext.registry import PLUGIN_PREPROCESSORS, register_all

register_all()


class EnhancementTask(espnet_enh.EnhancementTask):
    """ESPnet's :class:`~espnet2.tasks.enh.EnhancementTask`, plus:

    * the plugin's separators, criteria, wrappers, preprocessors and data types (shared
      choice tables, so every stock option keeps working);
    * preprocessors of the plugin built from ``preprocessor_conf`` alone (ESPnet's
      ``build_preprocess_fn`` knows only its own two names);
    * :class:`MultiChannelLossEnhancementModel` as the model, so that time-domain losses
      of stereo models cover both channels.
    """

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        parser.add_argument(
            "--stems",
            type=str,
            nargs="+",
            default=None,
            help="Names of the separated sources in output order (spk1, spk2, …), "
            "e.g. vocals bass drums other; carried into config.yaml and packs",
        )
        # ESPnet's defaults plus our own option, so --print_config shows it
        parser.set_defaults(
            model_conf={
                **get_default_kwargs(espnet_enh.ESPnetEnhancementModel),
                **get_default_kwargs(MultiChannelLossEnhancementModel),
            }
        )

    @classmethod
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Optional[Callable[[str, Dict[str, np.ndarray]], Dict[str, np.ndarray]]]:
        name = getattr(args, "preprocessor", None)
        if name in PLUGIN_PREPROCESSORS:
            preprocessor_class = espnet_enh.preprocessor_choices.get_class(name)
            return preprocessor_class(train=train, **(args.preprocessor_conf or {}))
        return super().build_preprocess_fn(args, train)

    @classmethod
    def build_model(cls, args: argparse.Namespace):
        model_conf = dict(getattr(args, "model_conf", None) or {})
        loss_over_channels = model_conf.pop("loss_over_channels", True)
        # ESPnet builds (and initialises) the components from its own options ...
        model = super().build_model(
            argparse.Namespace(**{**vars(args), "model_conf": model_conf})
        )
        if type(model) is not espnet_enh.ESPnetEnhancementModel:
            return model  # e.g. ESPnet's diffusion model: left as ESPnet builds it
        # ... and our model class holds them.
        return MultiChannelLossEnhancementModel(
            encoder=model.encoder,
            separator=model.separator,
            decoder=model.decoder,
            mask_module=model.mask_module,
            loss_wrappers=list(model.loss_wrappers),
            loss_over_channels=loss_over_channels,
            **model_conf,
        )
