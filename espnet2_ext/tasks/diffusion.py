"""ESPnet task that trains a diffusion source prior (seeds/001).

A prior is trained on single-source audio, so it is a model kind of its own: ESPnet's
``enh`` task builds only separation and single-output diffusion models. Data: a wav.scp
as ``speech_ref1`` (type ``sound``) and, for a class-conditional prior, an utt2category
as ``category`` (type ``text``)::

    python -m espnet2_ext.bin.diffusion_prior_train --config conf/diffusion/prior_tiny.yaml \
        --train_data_path_and_name_and_type data/train/wav.scp,speech_ref1,sound \
        --train_shape_file data/train/speech_ref1_shape ...

The moving average of the weights is updated by a post-step hook on every optimizer this
task builds, so it follows exactly the optimizer steps that happened (gradient
accumulation and skipped AMP steps included).
"""

from __future__ import annotations

import argparse
from typing import Callable, Collection, Dict, List, Optional, Tuple

import numpy as np
import torch
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.class_choices import ClassChoices
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.train.preprocessor import AbsPreprocessor
from espnet2.train.trainer import Trainer
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet2.utils.nested_dict_action import NestedDictAction

from espnet2_ext.diffusion.abs_prior_network import AbsPriorNetwork
from espnet2_ext.diffusion.preprocessor import PriorPreprocessor
from espnet2_ext.diffusion.prior_model import DiffusionPriorModel
from espnet2_ext.diffusion.tf_unet import TFAttentionUNet

network_choices = ClassChoices(
    name="network",
    classes=dict(tf_unet=TFAttentionUNet),
    type_check=AbsPriorNetwork,
    default="tf_unet",
)

preprocessor_choices = ClassChoices(
    name="preprocessor",
    classes=dict(prior=PriorPreprocessor),
    type_check=AbsPreprocessor,
    default="prior",
    optional=True,
)


class _EmaStepHook:
    """Optimizer post-step hook: average the model's weights after each step."""

    def __init__(self, model: DiffusionPriorModel):
        self.model = model

    def __call__(self, optimizer, args, kwargs) -> None:
        self.model.update_ema()


class DiffusionPriorTask(AbsTask):
    """Trains :class:`DiffusionPriorModel` with ESPnet's Trainer."""

    num_optimizers: int = 1
    class_choices_list = [network_choices, preprocessor_choices]
    trainer = Trainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related")
        group.add_argument(
            "--model_conf",
            action=NestedDictAction,
            default=get_default_kwargs(DiffusionPriorModel),
            help="The keyword arguments of DiffusionPriorModel (schedule, EMA, "
            "class dropout).",
        )
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]],
        Tuple[List[str], Dict[str, torch.Tensor]],
    ]:
        # A label is one integer per example: no "category_lengths".
        return CommonCollateFn(
            float_pad_value=0.0, int_pad_value=-1, not_sequence=["category"]
        )

    @classmethod
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Optional[Callable[[str, Dict[str, np.ndarray]], Dict[str, np.ndarray]]]:
        name = getattr(args, "preprocessor", None)
        if name is None:
            return None
        preprocessor_class = preprocessor_choices.get_class(name)
        return preprocessor_class(train=train, **(args.preprocessor_conf or {}))

    @classmethod
    def required_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        return ("speech_mix",) if inference else ("speech_ref1",)

    @classmethod
    def optional_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        return ("category",)

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> DiffusionPriorModel:
        network_class = network_choices.get_class(args.network)
        network = network_class(**(args.network_conf or {}))
        categories = (getattr(args, "preprocessor_conf", None) or {}).get("categories")
        if categories and len(categories) != network.num_classes:
            raise ValueError(
                f"preprocessor_conf.categories lists {len(categories)} classes but "
                f"network_conf.num_classes={network.num_classes}; make them equal"
            )
        return DiffusionPriorModel(network=network, **(args.model_conf or {}))

    @classmethod
    def build_optimizers(
        cls, args: argparse.Namespace, model: torch.nn.Module
    ) -> List[torch.optim.Optimizer]:
        optimizers = super().build_optimizers(args, model)
        if isinstance(model, DiffusionPriorModel) and model.ema is not None:
            for optimizer in optimizers:
                optimizer.register_step_post_hook(_EmaStepHook(model))
        return optimizers
