#!/usr/bin/env python3
"""Separate with a trained model: ESPnet's ``enh_inference`` with the plugin's classes.

Accepts every option of ``python -m espnet2.bin.enh_inference``, plus ``--window`` for
the fixed-order overlap-add, the ``--multistep_*`` options (training-free multi-step
refinement, seeds/000) and the ``--diffusion_*`` options (diffusion-prior separation
instead of a trained separator, seeds/001). The work is done by
:func:`espnet2_ext.separation.scp.inference`.
"""

from __future__ import annotations

import sys

from espnet2.bin import enh_inference as espnet_enh_inference
from espnet2.legacy.utils.cli_utils import get_commandline_args

from espnet2_ext.constants import WINDOWS
from espnet2_ext.separation.config import MultiStepConfig
from espnet2_ext.separation.diffusion import DiffusionPriorOptions


def get_parser():
    parser = espnet_enh_inference.get_parser()
    parser.description = "Separation inference (espnet2_ext)"
    # ESPnet defaults --fs to 8000; here the rate defaults to the model's sample_rate.
    parser.set_defaults(fs=None)
    group = parser.add_argument_group("espnet2_ext overlap-add")
    group.add_argument(
        "--window",
        type=str,
        default=WINDOWS[0],
        choices=WINDOWS,
        help="Cross-fade window of the fixed-order overlap-add (with --segment_size)",
    )
    MultiStepConfig.add_arguments(parser)
    DiffusionPriorOptions.add_arguments(parser)
    return parser


def main(cmd=None):
    print(get_commandline_args(), file=sys.stderr)
    options = vars(get_parser().parse_args(cmd))
    options.pop("config", None)
    multistep = MultiStepConfig.pop_arguments(options)
    diffusion = DiffusionPriorOptions.pop_arguments(options)

    from espnet2_ext.separation.scp import inference

    inference(multistep=multistep, diffusion=diffusion, **options)


if __name__ == "__main__":
    main()
