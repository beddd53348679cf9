#!/usr/bin/env python3
"""Train an enhancement/separation model: ESPnet's ``enh_train`` with the plugin's classes.

Every option of ``python -m espnet2.bin.enh_train`` is accepted; ``--separator
bs_locoformer``, the plugin's criteria, wrappers, preprocessors and schedulers are
added. A run that cannot go on (non-finite loss or gradient, no readable checkpoint to
resume from) ends with one ``enh_train: error:`` line and exit status 1.
"""

import sys

from espnet2_ext.tasks.enh import EnhancementTask
from espnet2_ext.train.trainer import fault_message


def get_parser():
    return EnhancementTask.get_parser()


def main(cmd=None):
    r"""Enhancement training.

    Example:
        % python -m espnet2_ext.bin.enh_train --config conf/train.yaml \
            --train_data_path_and_name_and_type data/train/wav.scp,speech_mix,sound ...
    """
    try:
        EnhancementTask.main(cmd=cmd)
    except Exception as e:
        message = fault_message(e)
        if message is None:
            raise
        print(f"enh_train: error: {message}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
