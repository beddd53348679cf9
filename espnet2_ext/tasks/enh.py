"""ESPnet's ``enh`` task with espnet2_ext's classes.

Importing this module registers the plugin's classes into ESPnet's choice tables (once per
process, :func:`espnet2_ext.registry.register_all`). That is what makes training workers
see them: ESPnet's multi-process training starts workers with the ``spawn`` method and
hands them ``EnhancementTask.main_worker``, which a child unpickles by importing this
module.
"""

from __future__ import annotations

import argparse
import logging
from typing import Callable, Dict, Optional

import numpy as np
from espnet2.tasks import enh as espnet_enh

from espnet2_ext.enh.espnet_model import (
    DEFAULT_MULTICHANNEL_LOSS,
    MULTICHANNEL_LOSSES,
    MultiChannelLossEnhancementModel,
)
from espnet2_ext.registry import PLUGIN_PREPROCESSORS, register_all
from espnet2_ext.train.trainer import GuardedTrainer

register_all()


class EnhancementTask(espnet_enh.EnhancementTask):
    """ESPnet's :class:`~espnet2.tasks.enh.EnhancementTask`, plus:

    * the plugin's separators, criteria, wrappers, preprocessors, data types and
      learning-rate schedulers (shared choice tables, so every stock option keeps
      working);
    * preprocessors of the plugin built from ``preprocessor_conf`` alone (ESPnet's
      ``build_preprocess_fn`` knows only its own two names);
    * :class:`MultiChannelLossEnhancementModel` as the model, so that time-domain losses
      of stereo models cover both channels (``--multichannel_loss``);
    * :class:`~espnet2_ext.train.trainer.GuardedTrainer` as the trainer: a non-finite
      loss or gradient stops training with an error, checkpoints are written
      atomically, and ``--resume`` falls back to the newest loadable checkpoint.
    """

    trainer = GuardedTrainer

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        """ESPnet's worker, then the process group is taken down before the process
        exits: left to the interpreter's exit, gloo's threads could be destroyed
        unjoined ("terminate called without an active exception", SIGABRT) in a rank
        that had finished its training."""
        try:
            super().main_worker(args)
        finally:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()

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
        parser.add_argument(
            "--multichannel_loss",
            type=str,
            choices=MULTICHANNEL_LOSSES,
            default=DEFAULT_MULTICHANNEL_LOSS,
            help="How time-domain losses see multi-channel (stereo) signals: "
            "per_channel (each channel's loss, averaged; the MixIT-MSS authors' "
            "stereo loss; needs criteria that take channels, e.g. thres_snr), "
            "folded (channels laid end to end: one loss of the whole signal) or "
            "ref_channel (ESPnet's: channel ref_channel only). Kept outside "
            "model_conf so that ESPnet's own task loads configs written here",
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
        multichannel_loss = _multichannel_loss(args, model_conf)
        if "loss_over_channels" in (getattr(args, "model_conf", None) or {}):
            # ESPnet writes config.yaml from args after building the model: write the
            # option where ESPnet's own task can load the config
            args.model_conf, args.multichannel_loss = model_conf, multichannel_loss
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
            multichannel_loss=multichannel_loss,
            **model_conf,
        )


def _multichannel_loss(args: argparse.Namespace, model_conf: dict) -> str:
    """``--multichannel_loss``, or the deprecated ``model_conf.loss_over_channels``.

    Configs written before the option moved out of ``model_conf`` (where ESPnet's own
    model class refused it) still load: ``true`` meant ``folded``, ``false``
    ``ref_channel``. The old key is removed from ``model_conf`` in place.
    """
    value = getattr(args, "multichannel_loss", None) or DEFAULT_MULTICHANNEL_LOSS
    if "loss_over_channels" not in model_conf:
        return value
    old = "folded" if model_conf.pop("loss_over_channels") else "ref_channel"
    if value not in (old, DEFAULT_MULTICHANNEL_LOSS):
        raise ValueError(
            f"model_conf.loss_over_channels gives multichannel_loss: {old}, but "
            f"multichannel_loss is {value}; remove model_conf.loss_over_channels"
        )
    logging.warning(
        "model_conf.loss_over_channels is deprecated (ESPnet's own model class "
        "refuses it); use the top-level option multichannel_loss: %s",
        old,
    )
    return old
