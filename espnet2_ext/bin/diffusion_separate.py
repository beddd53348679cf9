#!/usr/bin/env python3
"""Separate the mixtures of a wav.scp with N trained diffusion source priors (seeds/001)

Outputs are written as ESPnet's ``enh_inference`` writes them: ``<output_dir>/wavs/<n>/
<key>.wav`` and ``<output_dir>/spk<n>.scp`` for source n = 1 … N (in the order of the
priors); see :func:`espnet2_ext.separation.diffusion.separate_scp`, which this command
runs. ``python -m espnet2_ext.bin.enh_inference --diffusion_prior_train_config ...
--diffusion_prior_model_file ...`` runs it too.

Example (a speech prior, and a class-conditional sound-event prior given the class
"snare")::

    python -m espnet2_ext.bin.diffusion_separate \
        --data_path_and_name_and_type data/test/wav.scp,speech_mix,sound \
        --prior_train_config exp/prior_speech/config.yaml \
        --prior_model_file exp/prior_speech/valid.loss.ave.pth \
        --prior_train_config exp/prior_sfx/config.yaml \
        --prior_model_file exp/prior_sfx/valid.loss.ave.pth \
        --categories none snare --sampler_conf num_steps=200 --output_dir exp/sep
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from espnet2.utils import config_argparse
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import str2bool, str_or_none

from espnet2_ext.separation.diffusion import separate_scp


def get_parser() -> argparse.ArgumentParser:
    parser = config_argparse.ArgumentParser(
        description="Unsupervised separation with diffusion source priors",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data_path_and_name_and_type",
        type=lambda s: s.split(","),
        action="append",
        required=True,
        help="<wav.scp>,speech_mix,sound",
    )
    parser.add_argument("--key_file", type=str_or_none, default=None)
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument(
        "--prior_train_config",
        action="append",
        required=True,
        help="config.yaml of a trained prior, once per source",
    )
    parser.add_argument(
        "--prior_model_file",
        action="append",
        required=True,
        help="checkpoint of that prior, once per source ('none': initial weights)",
    )
    parser.add_argument(
        "--categories",
        nargs="*",
        default=None,
        help="per source: a class name or index of a conditional prior, or 'none'",
    )
    parser.add_argument(
        "--categories_file",
        type=str_or_none,
        default=None,
        help="per-mixture labels: '<key> <label of source 1> <label of source 2> ...' "
        "(e.g. the known event classes, as the paper conditions its sound prior); "
        "overrides --categories for the keys it lists",
    )
    parser.add_argument(
        "--sampler_conf",
        action=NestedDictAction,
        default={},
        help="keyword arguments of DiffusionPriorSampler (num_steps, step_rule, "
        "step_rule_conf, path_scaling, init, init_conf, loss_conf, clamp_x0, "
        "mixture_rms_db, start_t)",
    )
    parser.add_argument("--use_ema", type=str2bool, default=True)
    parser.add_argument("--cfg_scale", type=float, default=1.0)
    parser.add_argument("--fs", type=int, default=None, help="expected sampling rate")
    parser.add_argument("--device", type=str, default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output_subtype",
        type=str_or_none,
        default="FLOAT",
        help="soundfile subtype of WAV outputs (default 32-bit float: unclipped)",
    )
    parser.add_argument("--output_format", type=str, default="wav")
    parser.add_argument("--log_level", type=str, default="INFO")
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    kwargs = vars(args)
    kwargs.pop("config", None)
    separate_scp(**kwargs)


if __name__ == "__main__":
    main(sys.argv[1:])
