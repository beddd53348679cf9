"""Trained diffusion priors → denoisers and a separation sampler (seeds/001).

A prior's files are the ``config.yaml`` and checkpoint written by its training
(:class:`~espnet2_ext.tasks.diffusion.DiffusionPriorTask`); the class names of a
conditional prior come from the config's ``preprocessor_conf.categories``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

from espnet2_ext.diffusion.prior_model import PriorDenoiser
from espnet2_ext.diffusion.sampling import DiffusionPriorSampler
from espnet2_ext.tasks.diffusion import DiffusionPriorTask


def load_prior_denoiser(
    train_config: Union[str, Path],
    model_file: Optional[Union[str, Path]],
    device: str = "cpu",
    use_ema: bool = True,
    cfg_scale: float = 1.0,
) -> PriorDenoiser:
    """A trained prior ready for sampling (its class names from the training config).

    Args:
        train_config: the ``config.yaml`` written by the prior's training.
        model_file: its checkpoint (``*.pth``); None keeps the initial weights.
        device: where to put it.
        use_ema: sample with the moving-average weights (the default, as the authors);
            a prior trained without EMA uses its weights.
        cfg_scale: classifier-free guidance weight (1: plain conditional prediction).
    """
    model, args = DiffusionPriorTask.build_model_from_file(
        train_config, model_file, device
    )
    preprocessor_conf = getattr(args, "preprocessor_conf", None) or {}
    names = list(preprocessor_conf.get("categories") or [])
    denoiser = model.as_denoiser(
        use_ema=use_ema and model.ema is not None,
        cfg_scale=cfg_scale,
        class_names=names,
    )
    return denoiser.to(device)


def build_sampler_from_files(
    prior_train_configs: Sequence[Union[str, Path]],
    prior_model_files: Sequence[Optional[Union[str, Path]]],
    categories: Optional[Sequence[Optional[Union[int, str]]]] = None,
    device: str = "cpu",
    use_ema: bool = True,
    cfg_scale: float = 1.0,
    sampler_conf: Optional[dict] = None,
) -> DiffusionPriorSampler:
    """One prior per source from training outputs → a :class:`DiffusionPriorSampler`.

    The same (config, model) pair given for several sources is loaded once (and its
    sources are denoised in one batch). A category may be a class name of that prior's
    ``preprocessor_conf.categories``, an index, or None / "none".
    """
    if len(prior_train_configs) != len(prior_model_files):
        raise ValueError(
            f"{len(prior_train_configs)} prior configs but {len(prior_model_files)} "
            "model files: give one pair per source"
        )
    loaded: Dict[Tuple[str, str], PriorDenoiser] = {}
    priors = []
    for config, model_file in zip(prior_train_configs, prior_model_files):
        key = (str(config), str(model_file))
        if key not in loaded:
            loaded[key] = load_prior_denoiser(
                config, model_file, device, use_ema, cfg_scale
            )
        priors.append(loaded[key])
    return DiffusionPriorSampler(priors, categories=categories, **(sampler_conf or {}))
