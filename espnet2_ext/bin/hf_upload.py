#!/usr/bin/env python3
"""Publish a packed model on the Hugging Face hub (stage 8 of the recipe).

Usage::

    python -m espnet2_ext.bin.hf_upload --packed exp/enh_x/packed.zip --repo USER/NAME
    python -m espnet2_ext.bin.hf_upload --packed exp/enh_x/packed.zip --repo USER/NAME \
        --local_dir hub_upload/   # write exactly what would be uploaded, no network

What is uploaded is the unpacked pack (``meta.yaml``, the training config, the
weights and the pack's optional files), the layout that ESPnet's own uploads use, so
that both ``espnet2_ext.api.load_model("USER/NAME")`` and ESPnet's
``ModelDownloader().download_and_unpack("USER/NAME")`` read it, plus a model card
(``README.md``) with the hub tags ``espnet``, ``audio-to-audio`` and
``music-source-separation``, the install line, the separation command and the Python
API. Before anything is written or sent, the pack is unpacked safely
(:func:`espnet2_ext.model_zoo.safe_unpack`) and the model is built and its weights
loaded strictly, so a pack that does not load is never published.

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
from typing import Any, Dict, Optional, Sequence

import yaml
from packaging.version import Version

from espnet2_ext.model_zoo import (
    PLUGIN_NAME,
    parse_hub_id,
    read_meta,
    resolve_folder,
    safe_unpack,
)

#: Tags of every model card (the hub's task and library filters).
CARD_TAGS = ("espnet", "audio-to-audio", "music-source-separation", "espnet2_ext")


def requirement(version: str) -> str:
    """The pip requirement that loads a pack made by ``version`` (the zoo's rule)."""
    made = Version(version)
    upper = f"0.{made.minor + 1}" if made.major == 0 else f"{made.major + 1}"
    return f"{PLUGIN_NAME}>={made},<{upper}"


def _describe_separator(train_args) -> str:
    conf = getattr(train_args, "separator_conf", None) or {}
    shown = ", ".join(f"{k}: {v}" for k, v in conf.items() if k != "bands")
    return f"`{getattr(train_args, 'separator', '?')}` ({shown})"


def model_card(
    repo_id: str,
    *,
    meta: Dict[str, Any],
    stems: Sequence[str],
    sample_rate: int,
    num_channels: int,
    train_args,
    num_parameters: int,
    license: str,
    results: Optional[str] = None,
) -> str:
    """The README.md of the hub repository (YAML front matter + Markdown)."""
    version = str(meta["plugins"][PLUGIN_NAME])
    front = yaml.safe_dump(
        {
            "tags": list(CARD_TAGS),
            "library_name": "espnet",
            "license": license,
            "pipeline_tag": "audio-to-audio",
        },
        sort_keys=False,
    )
    channels = {1: "1 (mono)", 2: "2 (stereo)"}.get(num_channels, str(num_channels))
    stem_list = ", ".join(stems)
    made_with = f"espnet2_ext {version}"
    if meta.get("espnet"):
        made_with += f", ESPnet {meta['espnet']}"
    if meta.get("torch"):
        made_with += f", PyTorch {meta['torch']}"
    lines = [
        "---",
        front.rstrip(),
        "---",
        "",
        f"# {repo_id}",
        "",
        "A music source separation model trained with espnet2_ext, an ESPnet plugin "
        "for music source separation. It separates a song into "
        f"{len(stems)} stems: {stem_list}.",
        "",
        "| | |",
        "|---|---|",
        f"| Stems (output order) | {stem_list} |",
        f"| Sampling rate | {sample_rate} Hz |",
        f"| Channels | {channels} |",
        f"| Separator | {_describe_separator(train_args)} |",
        f"| Parameters | {num_parameters / 1e6:.2f} M |",
        f"| Packed with | {made_with} |",
        "",
        "## Install",
        "",
        "```sh",
        f"pip install '{requirement(version)}'",
        "```",
        "",
        "## Separate a song (command line)",
        "",
        "```sh",
        f"espnet2-ext-separate -m {repo_id} song.mp3 -o separated",
        "```",
        "",
        f"writes `separated/song/<stem>.wav` for {stem_list}. Any sampling rate and "
        "mono or stereo input are accepted (converted as the log says); "
        "`--format flac`, `--bits 16|24|float`, `--segment`/`--overlap` (chunked "
        "inference), `--device cuda --bf16` are options.",
        "",
        "## Python",
        "",
        "```python",
        "from espnet2_ext.api import load_model",
        "",
        f'separator = load_model("{repo_id}")  # downloaded once, then from the cache',
        'stems = separator.separate_file("song.mp3")  # {stem: tensor [channels, T]}',
        "# or: stems = separator.separate(waveform, sample_rate)  # [C, T] in",
        "```",
        "",
        "## ESPnet model zoo",
        "",
        "```python",
        "from espnet_model_zoo.downloader import ModelDownloader",
        "",
        f'files = ModelDownloader().download_and_unpack("{repo_id}")',
        "# files['train_config'], files['model_file']: load them with",
        "# espnet2_ext.bin.enh_inference.MusicSeparator (the plugin registers its",
        "# classes in ESPnet)",
        "```",
    ]
    if results:
        lines += ["", "## Results", "", results.strip()]
    lines += [
        "",
        "## Files",
        "",
        "`meta.yaml` lists the training config and the weights (ESPnet's pack layout); "
        f"it records the {PLUGIN_NAME} version that made the pack, and loading it "
        "with an incompatible version fails with a message saying which one to "
        "install.",
        "",
    ]
    return "\n".join(lines)


def stage(
    packed: Path, repo_id: str, staging: Path, *, license: str = "cc-by-4.0"
) -> Path:
    """Unpack ``packed`` into ``staging``, check that it loads, and add the card."""
    from espnet2_ext.api import Separator

    safe_unpack(packed, staging)
    meta = read_meta(staging)
    if meta is None or PLUGIN_NAME not in (meta.get("plugins") or {}):
        raise ValueError(
            f"{packed} was not made by espnet2_ext's packer (meta.yaml records no "
            f"plugins.{PLUGIN_NAME}); pack it with python -m espnet2_ext.bin.pack"
        )
    files = resolve_folder(staging, kind="pack", source=str(packed))
    separator = Separator(files, segment=None)
    results = None
    for candidate in sorted(staging.rglob("RESULTS.md")):
        results = candidate.read_text(encoding="utf-8")
        break
    card = model_card(
        repo_id,
        meta=meta,
        stems=separator.stems,
        sample_rate=separator.sample_rate,
        num_channels=separator.num_channels,
        train_args=separator.train_args,
        num_parameters=sum(p.numel() for p in separator.model.parameters()),
        license=license,
        results=results,
    )
    (staging / "README.md").write_text(card, encoding="utf-8")
    return staging


def upload(
    folder: Path,
    repo_id: str,
    *,
    private: bool = False,
    commit_message: str = "Upload espnet2_ext model",
    endpoint: Optional[str] = None,
) -> str:
    """Create the repository (if needed) and upload ``folder``; returns its URL."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, library_name=PLUGIN_NAME)
    url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="model",
        commit_message=commit_message,
    )
    return str(url)


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
