#!/usr/bin/env python3
"""Pack a trained enh model into the zip layout of ESPnet's model zoo, with plugin metadata.

The zip is ESPnet's own, with ``plugins: {espnet2_ext: <version>}`` added to
``meta.yaml`` (:func:`espnet2_ext.zoo.packing.pack`).

Usage:
    python -m espnet2_ext.bin.pack --train_config exp/x/config.yaml \
        --model_file exp/x/valid.loss.ave.pth --option exp/x/RESULTS.md --outpath x.zip
"""

from __future__ import annotations

import argparse

from espnet2_ext.zoo import pack


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train_config", required=True)
    parser.add_argument("--model_file", required=True)
    parser.add_argument("--option", action="append", default=[])
    parser.add_argument("--outpath", required=True)
    return parser


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    pack(args.train_config, args.model_file, args.outpath, args.option)


if __name__ == "__main__":
    main()
