#!/usr/bin/env python3
"""Pack a trained enh model into the zip layout of ESPnet's model zoo, with plugin
metadata: the plugin version, the model's name and the chunked inference it was
evaluated with (:func:`espnet2_ext.zoo.packing.pack`).

Usage:
    python -m espnet2_ext.bin.pack --train_config exp/x/config.yaml \
        --model_file exp/x/valid.loss.ave.pth --option exp/x/RESULTS.md \
        --segment_size 12 --hop_size 6 --outpath exp/x/packed.zip
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from espnet2_ext.constants import WINDOWS
from espnet2_ext.utils.cli import float_or_none


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet2_ext.bin.pack",
        description="Pack a trained espnet2_ext model (ESPnet's model-zoo zip).",
    )
    parser.add_argument("--train_config", required=True, help="the config.yaml")
    parser.add_argument("--model_file", required=True, help="the .pth weights")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        help="another file or folder to include (RESULTS.md, images/); repeatable",
    )
    parser.add_argument("--outpath", required=True, help="the zip to write")
    parser.add_argument(
        "--name",
        default=None,
        help="the model's name, the folder its stems go to (default: the name of the "
        "folder holding --train_config)",
    )
    group = parser.add_argument_group(
        "inference the model was evaluated with (recorded; users get it by default)"
    )
    group.add_argument(
        "--segment_size",
        type=float_or_none,
        default=None,
        help="chunk length in seconds (none: record nothing; the default 12 s applies)",
    )
    group.add_argument(
        "--hop_size",
        type=float_or_none,
        default=None,
        help="hop between chunks in seconds (default: half a chunk)",
    )
    group.add_argument(
        "--window", choices=WINDOWS, default=WINDOWS[0], help="cross-fade window"
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    from espnet2_ext.separation.config import ChunkingConfig
    from espnet2_ext.zoo import pack

    chunking = None
    if args.segment_size is not None:
        try:
            chunking = ChunkingConfig(
                segment=args.segment_size, hop=args.hop_size, window=args.window
            )
        except ValueError as e:
            parser.error(str(e))
    elif args.hop_size is not None:
        parser.error("--hop_size needs --segment_size")
    try:
        pack(
            args.train_config,
            args.model_file,
            args.outpath,
            args.option,
            name=args.name,
            chunking=chunking,
        )
    except (OSError, ValueError) as e:
        print(f"pack: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
