#!/usr/bin/env python3
"""Train an enhancement/separation model: ESPnet's ``enh_train`` with the plugin's classes.

Every option of ``python -m espnet2.bin.enh_train`` is accepted; ``--separator
bs_locoformer``, the plugin's criteria, wrappers and preprocessors are added.
"""

from espnet2_ext.tasks.enh import EnhancementTask


def get_parser():
    return EnhancementTask.get_parser()


def main(cmd=None):
    r"""Enhancement training.

    Example:
        % python -m espnet2_ext.bin.enh_train --config conf/train.yaml \
            --train_data_path_and_name_and_type data/train/wav.scp,speech_mix,sound ...
    """
    EnhancementTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
