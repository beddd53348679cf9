#!/usr/bin/env python3
"""Publish a packed model on the Hugging Face hub (stage 8 of the recipe).

Usage::

    python -m espnet2_ext.bin.hf_upload --packed exp/enh_x/packed.zip --repo USER/NAME
    python -m espnet2_ext.bin.hf_upload --packed exp/enh_x/packed.zip --repo USER/NAME \
        --local_dir hub_upload/   # write exactly what would be uploaded, no network

What is uploaded is the unpacked pack plus a model card
(:func:`espnet2_ext.zoo.card.stage`); the model is loaded strictly before anything is
written or sent, so a pack that does not load is never published.

Authentication is the hub client's (``hf auth login`` or ``HF_TOKEN``). When the hub
cannot be reached the command says so and exits with status 1; ``--local_dir`` works
without a network.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from espnet2_ext.zoo import parse_hub_id, stage, upload


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Upload a packed espnet2_ext model to the Hugging Face hub."
    )
    parser.add_argument("--packed", required=True, type=Path, help="the packed zip")
    parser.add_argument("--repo", required=True, help="hub repository id USER/NAME")
    parser.add_argument(
        "--local_dir",
        type=Path,
        default=None,
        help="write the files that would be uploaded into this folder instead",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="with --local_dir: replace its content"
    )
    parser.add_argument("--private", action="store_true", help="a private repository")
    parser.add_argument("--license", default="cc-by-4.0", help="license of the weights")
    parser.add_argument("--commit_message", default="Upload espnet2_ext model")
    parser.add_argument(
        "--endpoint", default=None, help="hub URL (default: HF_ENDPOINT or the hub)"
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    hub = parse_hub_id(args.repo)
    if hub is None or hub[1] is not None or args.repo.startswith("hf://"):
        print(
            f"hf_upload: --repo must be USER/NAME, got {args.repo!r}", file=sys.stderr
        )
        return 2
    if not args.packed.is_file():
        print(f"hf_upload: pack not found: {args.packed}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="hf_upload_") as tmp:
        staging = Path(tmp) / "repo"
        try:
            stage(args.packed, args.repo, staging, license=args.license)
        except (OSError, ValueError, RuntimeError) as e:
            print(f"hf_upload: the pack cannot be published: {e}", file=sys.stderr)
            return 1
        if args.local_dir is not None:
            target = args.local_dir
            if target.exists() and any(target.iterdir()):
                if not args.overwrite:
                    print(
                        f"hf_upload: {target} is not empty; use --overwrite",
                        file=sys.stderr,
                    )
                    return 1
                shutil.rmtree(target)
            shutil.copytree(staging, target, dirs_exist_ok=True)
            for path in sorted(p for p in target.rglob("*") if p.is_file()):
                print(path.relative_to(target).as_posix())
            print(f"wrote the files of {args.repo} to {target} (nothing uploaded)")
            return 0
        try:
            url = upload(
                staging,
                args.repo,
                private=args.private,
                commit_message=args.commit_message,
                endpoint=args.endpoint,
            )
        except Exception as e:  # network, authentication, hub errors
            print(
                f"hf_upload: could not upload to the Hugging Face hub "
                f"({args.endpoint or 'default endpoint'}): {type(e).__name__}: {e}\n"
                "Check the network connection, HF_HUB_OFFLINE and your login "
                "(hf auth login or HF_TOKEN); --local_dir writes the files without "
                "uploading them.",
                file=sys.stderr,
            )
            return 1
    print(f"uploaded {args.packed} to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
