#!/usr/bin/env python3
"""Publish a packed model on the Hugging Face hub (stage 13 of the recipe).

What is uploaded is the unpacked pack, a model card (:mod:`espnet2_ext.zoo.card`) and,
by default, the plugin's wheel that the card's install line points to
(:mod:`espnet2_ext.zoo.publish`); the model is loaded strictly before anything is
written or sent, so a pack that does not load is never published.

Authentication is the hub client's (``hf auth login`` or ``HF_TOKEN``). When the hub
cannot be reached the command says so and exits with status 1; ``--local_dir`` works
without a network and writes only into a folder it owns (new, empty, or written by it
before).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from espnet2_ext.utils.atomic import terminate_raises

EXAMPLES = """\
examples:
  python -m espnet2_ext.bin.hf_upload --packed exp/enh_x/packed.zip --repo USER/NAME \\
      --dataset musdb18hq
  # write exactly what would be uploaded, no network:
  python -m espnet2_ext.bin.hf_upload --packed exp/enh_x/packed.zip --repo USER/NAME \\
      --local_dir hub_upload/
  # install line from a public git repository instead of the uploaded wheel:
  python -m espnet2_ext.bin.hf_upload --packed exp/enh_x/packed.zip --repo USER/NAME \\
      --install_source git+https://github.com/USER/espnet2_ext@v0.1.0
"""


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet2_ext.bin.hf_upload",
        description="Upload a packed espnet2_ext model to the Hugging Face hub.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--packed", required=True, type=Path, help="the packed zip")
    parser.add_argument("--repo", required=True, help="hub repository id USER/NAME")
    parser.add_argument(
        "--local_dir",
        type=Path,
        default=None,
        help="write the files that would be uploaded into this folder instead (new, "
        "empty, or written by hf_upload before)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="with --local_dir: replace the files an earlier hf_upload wrote there",
    )
    parser.add_argument(
        "--install_source",
        default="wheel",
        help="what the card's 'pip install' line installs: 'wheel' (default: the "
        "plugin's wheel, uploaded beside the model) or a pip argument written as it "
        "is (git+https://…, a requirement)",
    )
    parser.add_argument(
        "--wheel",
        type=Path,
        default=None,
        help="the wheel to upload with --install_source wheel (default: built from "
        "this plugin's sources with python -m build)",
    )
    parser.add_argument(
        "--dataset",
        action="append",
        default=[],
        help="hub dataset id the model was trained and evaluated on (repeatable; the "
        "first names the card's evaluation results)",
    )
    parser.add_argument("--private", action="store_true", help="a private repository")
    parser.add_argument(
        "--license", default="cc-by-4.0", help="license of the weights (cc-by-4.0)"
    )
    parser.add_argument(
        "--commit_message",
        default="Upload espnet2_ext model",
        help="commit message of the upload",
    )
    parser.add_argument(
        "--endpoint", default=None, help="hub URL (default: HF_ENDPOINT or the hub)"
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    from espnet2_ext.zoo import parse_hub_id, publish

    def fail(message: str) -> int:
        print(f"hf_upload: {message}", file=sys.stderr)
        return 1

    hub = parse_hub_id(args.repo)
    if hub is None or hub[1] is not None or args.repo.startswith("hf://"):
        print(
            f"hf_upload: --repo must be USER/NAME, got {args.repo!r}", file=sys.stderr
        )
        return 2
    if not args.packed.is_file():
        return fail(f"pack not found: {args.packed}")
    if args.wheel is not None and args.install_source != publish.WHEEL:
        return fail("--wheel goes with --install_source wheel (the default)")
    if args.local_dir is not None:
        try:
            publish.check_local_dir(
                args.local_dir, overwrite=args.overwrite, protected=[args.packed]
            )
        except ValueError as e:
            return fail(str(e))
    if args.private and args.install_source == publish.WHEEL:
        print(
            "hf_upload: the repository is private: the card's install line (the "
            "wheel's URL) works only with a hub token",
            file=sys.stderr,
        )
    if not args.dataset:
        print(
            "hf_upload: no --dataset given: the card has no datasets: entry and no "
            "model-index results",
            file=sys.stderr,
        )
    try:
        with terminate_raises():
            return _publish(args, fail)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", 2)
        return fail(f"interrupted (signal {signum}); no partial file was kept")


def _publish(args: argparse.Namespace, fail) -> int:
    from espnet2_ext.zoo import publish, read_meta, recorded_version, upload
    from espnet2_ext.zoo.card import CardOptions, stage

    with tempfile.TemporaryDirectory(prefix="hf_upload_") as tmp:
        staging = Path(tmp) / "repo"
        wheel = None
        try:
            install = args.install_source
            if install == publish.WHEEL:
                wheel = args.wheel or publish.build_wheel(Path(tmp) / "dist")
                install = publish.wheel_url(args.repo, wheel, args.endpoint)
            options = CardOptions(
                install=install, license=args.license, datasets=tuple(args.dataset)
            )
            stage(args.packed, args.repo, staging, options)
            if wheel is not None:
                publish.check_wheel_for_pack(
                    wheel, recorded_version(read_meta(staging))
                )
                publish.copy_into(staging, wheel)
        except (OSError, ValueError, RuntimeError) as e:
            return fail(f"the pack cannot be published: {e}")
        if args.local_dir is not None:
            try:
                written = publish.write_local_dir(
                    staging,
                    args.local_dir,
                    overwrite=args.overwrite,
                    protected=[args.packed],
                )
            except (OSError, ValueError) as e:
                return fail(str(e))
            for name in written:
                print(name)
            print(
                f"wrote the files of {args.repo} to {args.local_dir} (nothing uploaded)"
            )
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
            return fail(
                f"could not upload to the Hugging Face hub "
                f"({args.endpoint or 'default endpoint'}): {type(e).__name__}: {e}\n"
                "Check the network connection, HF_HUB_OFFLINE and your login "
                "(hf auth login or HF_TOKEN); --local_dir writes the files without "
                "uploading them."
            )
    print(f"uploaded {args.packed} to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
