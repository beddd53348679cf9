#!/usr/bin/env python3
"""Train a diffusion source prior with ESPnet's training loop (DiffusionPriorTask)."""

from espnet2_ext.tasks.diffusion import DiffusionPriorTask


def get_parser():
    return DiffusionPriorTask.get_parser()


def main(cmd=None):
    r"""Diffusion-prior training.

    Example:
        % python -m espnet2_ext.bin.diffusion_prior_train --print_config
        % python -m espnet2_ext.bin.diffusion_prior_train \
            --config conf/diffusion/prior_tiny.yaml \
            --train_data_path_and_name_and_type data/train/wav.scp,speech_ref1,sound \
            --train_shape_file data/train/speech_ref1_shape \
            --valid_data_path_and_name_and_type data/valid/wav.scp,speech_ref1,sound \
            --valid_shape_file data/valid/speech_ref1_shape --output_dir exp/prior
    """
    DiffusionPriorTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
