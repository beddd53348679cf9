"""What a hub repository of a pack holds: the unpacked pack and its model card.

The unpacked pack (``meta.yaml``, the training config, the weights and the pack's
optional files) is the layout of ESPnet's own uploads, so that both
``espnet2_ext.api.load_model("USER/NAME")`` and ESPnet's
``ModelDownloader().download_and_unpack("USER/NAME")`` read it. The model card
(``README.md``) carries the hub tags ``espnet``, ``audio-to-audio`` and
``music-source-separation``, the install line, the separation command and the Python
API. :func:`stage` unpacks the pack safely and loads the model strictly before writing
the card, so a pack that does not load is never published.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import yaml

from espnet2_ext.enh.separator import audio_channels
from espnet2_ext.zoo.archive import safe_unpack
from espnet2_ext.zoo.compat import PLUGIN_NAME, requirement
from espnet2_ext.zoo.files import PathLike, model_sample_rate, read_meta, stem_names
from espnet2_ext.zoo.loading import load_model
from espnet2_ext.zoo.resolve import resolve_folder

#: Tags of every model card (the hub's task and library filters).
CARD_TAGS = ("espnet", "audio-to-audio", "music-source-separation", "espnet2_ext")


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
        "# espnet2_ext.separation.Separator.from_files (the plugin registers its",
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
    packed: PathLike, repo_id: str, staging: PathLike, *, license: str = "cc-by-4.0"
) -> Path:
    """Unpack ``packed`` into ``staging``, check that it loads, and add the card.

    Raises:
        ValueError: the pack was not made by :func:`espnet2_ext.zoo.packing.pack`,
            or its stems are invalid.
        RuntimeError: the weights do not fit the config (strict loading).
        OSError: a file is missing or unreadable.
    """
    staging = Path(staging)
    safe_unpack(packed, staging)
    meta = read_meta(staging)
    if meta is None or PLUGIN_NAME not in (meta.get("plugins") or {}):
        raise ValueError(
            f"{packed} was not made by espnet2_ext's packer (meta.yaml records no "
            f"plugins.{PLUGIN_NAME}); pack it with python -m espnet2_ext.bin.pack"
        )
    files = resolve_folder(staging, kind="pack", source=str(packed))
    model, train_args = load_model(files.train_config, files.model_file)
    results = None
    for candidate in sorted(staging.rglob("RESULTS.md")):
        results = candidate.read_text(encoding="utf-8")
        break
    card = model_card(
        repo_id,
        meta=meta,
        stems=stem_names(train_args, int(model.num_spk)),
        sample_rate=model_sample_rate(train_args),
        num_channels=audio_channels(model.separator),
        train_args=train_args,
        num_parameters=sum(p.numel() for p in model.parameters()),
        license=license,
        results=results,
    )
    (staging / "README.md").write_text(card, encoding="utf-8")
    return staging
