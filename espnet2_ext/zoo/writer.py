"""Writing a model folder (``config.yaml`` and weights): complete, checked, atomic."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from espnet2_ext.tasks.enh import EnhancementTask
from espnet2_ext.zoo.files import PathLike


def full_train_config(
    config: Mapping[str, Any], output_dir: PathLike
) -> Dict[str, Any]:
    """ESPnet's complete config.yaml content: the parser's defaults, then ``config``."""
    args = EnhancementTask.get_parser().parse_args(["--output_dir", str(output_dir)])
    full = vars(args)
    full.update(dict(config))
    full.pop("config", None)
    return full


def write_model_dir(
    config: Mapping[str, Any],
    state_dict: Mapping[str, Any],
    out_dir: PathLike,
    *,
    model_name: str = "model.pth",
    extra_files: Optional[Mapping[str, str]] = None,
) -> Tuple[Path, Path]:
    """Write ``config.yaml`` (complete, as ESPnet's training writes it) and weights.

    The model is built from the config and the weights are loaded into it strictly
    before anything is written, so a folder written here always loads. Files are
    written under temporary names and renamed.

    Args:
        config: training options (merged over the parser's defaults).
        state_dict: the ESPnet enh model's state dict.
        out_dir: output folder (created).
        model_name: name of the weights file.
        extra_files: more text files to write, ``{name: content}``.

    Returns:
        ``(config path, weights path)``.
    """
    out = Path(out_dir)
    full = full_train_config(config, out)
    model = EnhancementTask.build_model(argparse.Namespace(**full))
    missing, unexpected = model.load_state_dict(dict(state_dict), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"the weights do not fit the config: missing {sorted(missing)[:8]}, "
            f"unexpected {sorted(unexpected)[:8]}"
        )
    out.mkdir(parents=True, exist_ok=True)
    config_path, model_path = out / "config.yaml", out / model_name
    # as ESPnet's trainer writes it: no YAML anchors, indent 4, keys in parser order
    text = yaml_no_alias_safe_dump(full, indent=4, sort_keys=False)
    writes = [(config_path, text.encode())]
    for name, content in (extra_files or {}).items():
        writes.append((out / name, content.encode()))
    for path, data in writes:
        tmp = path.with_name(f".{path.name}.partial")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    tmp = model_path.with_name(f".{model_path.name}.partial")
    torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, tmp)
    os.replace(tmp, model_path)
    return config_path, model_path
