"""What a hub repository of a pack holds: the unpacked pack and its model card.

The unpacked pack (``meta.yaml``, the training config, the weights and the pack's
optional files) is the layout of ESPnet's own uploads, so that
``espnet2_ext.api.load_model("USER/NAME")``, ESPnet's
``ModelDownloader().download_and_unpack("USER/NAME")`` and (after ``import
espnet2_ext``) ESPnet's ``SeparateSpeech.from_pretrained("USER/NAME")`` read it.

The model card (``README.md``) follows the sections of ESPnet's Hugging Face template
(front matter with tags, license and ``datasets``; the model; how to use it; the
results; the full training config under "expand"; the citations), with the
``model-index`` evaluation results parsed from the pack's ``RESULTS.md``
(:func:`parse_results`). The card's install line is what the uploader chose
(:class:`CardOptions`): by default the wheel uploaded beside the model.

The front matter names no ``library_name: espnet``: the hub's ESPnet snippet knows only
text-to-speech and speech-recognition models and shows "unknown model type" for any
other; the ``espnet`` tag keeps the model listed under ESPnet.

:func:`stage` unpacks the pack safely and loads the model strictly before writing the
card, so a pack that does not load is never published.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from espnet2_ext.enh.separator import audio_channels
from espnet2_ext.zoo.archive import safe_unpack
from espnet2_ext.zoo.compat import PLUGIN_NAME
from espnet2_ext.zoo.files import PathLike, model_sample_rate, stem_names
from espnet2_ext.zoo.loading import load_model
from espnet2_ext.zoo.resolve import resolve_pack_folder

#: Tags of every model card (the hub's task and library filters).
CARD_TAGS = (
    "espnet",
    "audio",
    "audio-to-audio",
    "music-source-separation",
    "espnet2_ext",
)
#: The name of the system whose rows of RESULTS.md are the mixture baseline.
BASELINE_SYSTEM = "mixture"


@dataclass(frozen=True)
class CardOptions:
    """What the uploader decides about the card.

    Args:
        install: the argument of the card's ``pip install`` line (a wheel URL, a
            ``git+https://…`` URL or a requirement); it must install the plugin as
            written.
        license: license of the weights (a hub license id).
        datasets: hub dataset ids the model was trained and evaluated on (the first
            is the one of the evaluation results).
        split: the evaluation split of RESULTS.md.
    """

    install: str
    license: str = "cc-by-4.0"
    datasets: Tuple[str, ...] = ()
    split: str = "test"


def citations() -> str:
    """The BibTeX of the papers the plugin implements and of ESPnet (package data)."""
    return (
        resources.files("espnet2_ext.zoo")
        .joinpath("citations.bib")
        .read_text(encoding="utf-8")
    )


# --------------------------------------------------------------------------- results
def parse_results(text: str) -> Dict[str, Dict[str, float]]:
    """The model's scores in a RESULTS.md's summary table.

    The table is :func:`espnet2_ext.reports.tables.summary_table`'s: a header
    ``|system|metric|<stem>…|average|`` and a row per (system, metric). The rows of
    the first system that is neither the mixture baseline nor a difference
    (``a − b``) are returned; cells that are not numbers (``n/a``) are left out.

    Returns:
        ``{metric: {column: dB}}``, e.g. ``{"cSDR": {"vocals": 4.21, …}}``; empty if
        there is no such table.
    """
    lines = text.splitlines()
    for start, line in enumerate(lines):
        cells = _cells(line)
        if cells[:2] != ["system", "metric"]:
            continue
        columns = cells[2:]
        scores: Dict[str, Dict[str, float]] = {}
        system = None
        for row in lines[start + 2 :]:
            cells = _cells(row)
            if len(cells) != len(columns) + 2:
                break
            name, metric = cells[0], cells[1]
            if name == BASELINE_SYSTEM or "−" in name or " - " in name:
                continue
            if system is None:
                system = name
            if name != system:
                continue
            values = {}
            for column, cell in zip(columns, cells[2:]):
                number = re.match(r"^[-+]?\d+(?:\.\d+)?", cell.replace("−", "-"))
                if number is not None:
                    values[column] = float(number.group(0))
            scores[metric] = values
        return scores
    return {}


def _cells(line: str) -> List[str]:
    line = line.strip()
    if not line.startswith("|"):
        return []
    return [cell.strip() for cell in line.strip("|").split("|")]


def model_index(
    repo_id: str, scores: Dict[str, Dict[str, float]], options: CardOptions
) -> List[Dict[str, Any]]:
    """The hub's ``model-index`` entry for ``scores`` (empty without a dataset)."""
    if not scores or not options.datasets:
        return []
    metrics = [
        {
            "type": metric.lower(),
            "value": value,
            "name": f"{metric} ({column}, dB)",
        }
        for metric, columns in scores.items()
        for column, value in columns.items()
    ]
    return [
        {
            "name": repo_id,
            "results": [
                {
                    "task": {
                        "type": "audio-to-audio",
                        "name": "Music source separation",
                    },
                    "dataset": {
                        "type": options.datasets[0],
                        "name": options.datasets[0],
                        "split": options.split,
                    },
                    "metrics": metrics,
                }
            ],
        }
    ]


# --------------------------------------------------------------------------- card
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
    options: CardOptions,
    config_text: str,
    results: Optional[str] = None,
) -> str:
    """The README.md of the hub repository (YAML front matter + Markdown)."""
    version = str(meta["plugins"][PLUGIN_NAME])
    front: Dict[str, Any] = {
        "tags": list(CARD_TAGS),
        "license": options.license,
        "pipeline_tag": "audio-to-audio",
    }
    if options.datasets:
        front["datasets"] = list(options.datasets)
    index = model_index(repo_id, parse_results(results or ""), options)
    if index:
        front["model-index"] = index
    channels = {1: "1 (mono)", 2: "2 (stereo)"}.get(num_channels, str(num_channels))
    stem_list = ", ".join(stems)
    made_with = f"espnet2_ext {version}"
    if meta.get("espnet"):
        made_with += f", ESPnet {meta['espnet']}"
    if meta.get("torch"):
        made_with += f", PyTorch {meta['torch']}"
    record = meta.get(PLUGIN_NAME) or {}
    chunking = record.get("chunking") if isinstance(record, dict) else None
    chunked = (
        "whole songs at once"
        if not chunking or chunking.get("segment") is None
        else f"{chunking['segment']:g} s chunks every {chunking['hop']:g} s, "
        f"{chunking['window']} cross-fade (the separation command and the Python API "
        "use this unless told otherwise)"
    )
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        "## ESPnet2 ENH model: music source separation (espnet2_ext)",
        "",
        f"### `{repo_id}`",
        "",
        "A music source separation model trained with espnet2_ext, an ESPnet plugin "
        f"for music source separation. It separates a song into {len(stems)} stems: "
        f"{stem_list}.",
        "",
        "| | |",
        "|---|---|",
        f"| Stems (output order) | {stem_list} |",
        f"| Sampling rate | {sample_rate} Hz |",
        f"| Channels | {channels} |",
        f"| Separator | {_describe_separator(train_args)} |",
        f"| Parameters | {num_parameters / 1e6:.2f} M |",
        f"| Evaluated with | {chunked} |",
        f"| Packed with | {made_with} |",
        "",
        "### Install",
        "",
        "```sh",
        f"pip install '{options.install}'",
        "```",
        "",
        "It installs espnet2_ext with ESPnet and PyTorch as dependencies (on a CPU-only "
        "machine, install PyTorch's CPU build first).",
        "",
        "### Demo: how to use",
        "",
        "Command line (any format ffmpeg decodes; `--format wav|flac|mp3`, "
        "`--two-stems vocals`, `--device auto|cpu|cuda|mps`):",
        "",
        "```sh",
        f"espnet2-ext-separate -m {repo_id} song.mp3",
        "```",
        "",
        f"writes `separated/{repo_id.split('/')[-1]}/song/<stem>.wav` for "
        f"{stem_list}.",
        "",
        "Python:",
        "",
        "```python",
        "from espnet2_ext.api import load_model",
        "",
        f'separator = load_model("{repo_id}")  # downloaded once, then from the cache',
        'stems = separator.separate_file("song.mp3")  # {stem: tensor [channels, T]}',
        "# or: stems = separator.separate(waveform, sample_rate)  # [C, T] in",
        "```",
        "",
        "ESPnet's own inference class, after `import espnet2_ext` (which adds the "
        "plugin's classes to ESPnet):",
        "",
        "```python",
        "import espnet2_ext  # noqa: F401",
        "from espnet2.bin.enh_inference import SeparateSpeech",
        "",
        f'separate = SeparateSpeech.from_pretrained("{repo_id}")',
        f"stems = separate(mixture[None], fs={sample_rate})  # mixture: [T, C] → "
        f"{len(stems)} arrays [1, T, C]",
        "```",
    ]
    if results:
        lines += ["", "## Results", "", results.strip()]
    lines += [
        "",
        "## ENH config",
        "",
        "<details><summary>expand</summary>",
        "",
        "```yaml",
        config_text.rstrip(),
        "```",
        "",
        "</details>",
        "",
        "## Files",
        "",
        "`meta.yaml` lists the training config and the weights (ESPnet's pack layout); "
        f"it records the {PLUGIN_NAME} version that made the pack (loading it with an "
        "incompatible version fails with a message saying which one to install) and "
        "the chunked inference the model was evaluated with.",
        "",
        "## Citing",
        "",
        "```bibtex",
        citations().strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def stage(
    packed: PathLike, repo_id: str, staging: PathLike, options: CardOptions
) -> Path:
    """Unpack ``packed`` into ``staging``, check that it loads, and add the card.

    Raises:
        DamagedPackError: the zip or its structure cannot be read.
        ValueError: the pack was not made by :func:`espnet2_ext.zoo.packing.pack`,
            or its stems are invalid.
        RuntimeError: the weights do not fit the config (strict loading).
        OSError: a file is missing or unreadable.
    """
    staging = Path(staging)
    safe_unpack(packed, staging)
    files = resolve_pack_folder(
        staging,
        None,
        kind="pack",
        source=str(packed),
        name=Path(packed).stem,
        require_meta=True,
    )
    meta = files.meta
    if PLUGIN_NAME not in (meta.get("plugins") or {}):
        raise ValueError(
            f"{packed} was not made by espnet2_ext's packer (meta.yaml records no "
            f"plugins.{PLUGIN_NAME}); pack it with python -m espnet2_ext.bin.pack"
        )
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
        options=options,
        config_text=files.train_config.read_text(encoding="utf-8"),
        results=results,
    )
    (staging / "README.md").write_text(card, encoding="utf-8")
    return staging
