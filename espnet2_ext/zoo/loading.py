"""Strict loading of a trained enh model from its ``config.yaml`` and weights."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Union

import torch
import yaml

from espnet2_ext.tasks.enh import EnhancementTask


def load_model(
    train_config: Union[str, Path],
    model_file: Optional[Union[str, Path]] = None,
    device: str = "cpu",
):
    """Build a model from its training config and load its weights strictly.

    ESPnet's ``build_model_from_file`` loads with ``strict=False``, which silently keeps
    random weights for every mismatched name. Here every parameter must be present, the
    file is loaded with ``weights_only=True`` (no code from the file runs), and a mismatch
    is an error that lists the names.

    Returns:
        (model in eval mode, training args as a Namespace)
    """
    train_config = Path(train_config)
    if not train_config.is_file():
        raise FileNotFoundError(f"training config not found: {train_config}")
    with train_config.open(encoding="utf-8") as f:
        args = argparse.Namespace(**yaml.safe_load(f))
    model = EnhancementTask.build_model(args)
    if model_file is not None:
        model_file = Path(model_file)
        if not model_file.is_file():
            raise FileNotFoundError(f"model file not found: {model_file}")
        try:
            state = torch.load(model_file, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file
            raise RuntimeError(
                f"cannot read model weights from {model_file}: {e}. The file is "
                "corrupt or not a PyTorch state dict; re-download or re-train it."
            ) from e
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(
                f"{model_file} does not match {train_config}: missing "
                f"{sorted(missing)[:8]}{'…' if len(missing) > 8 else ''}, unexpected "
                f"{sorted(unexpected)[:8]}{'…' if len(unexpected) > 8 else ''}"
            )
    return model.to(device).eval(), args
