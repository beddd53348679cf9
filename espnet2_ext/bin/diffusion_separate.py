#!/usr/bin/env python3
"""Separate the mixtures of a wav.scp with N trained diffusion source priors (seeds/001)

Outputs are written as ESPnet's ``enh_inference`` writes them: ``<output_dir>/wavs/<n>/
<key>.wav`` and ``<output_dir>/spk<n>.scp`` for source n = 1 … N (in the order of the
priors), each file under a temporary name renamed when complete. Only the mixture is
read; the sampler is given nothing else. ``python -m espnet2_ext.bin.enh_inference
--diffusion_prior_train_config ... --diffusion_prior_model_file ...`` runs this too.

Example (a speech prior, and a class-conditional sound-event prior given the class
"snare")::

    python -m espnet2_ext.bin.diffusion_separate \
        --data_path_and_name_and_type data/test/wav.scp,speech_mix,sound \
        --prior_train_config exp/prior_speech/config.yaml \
        --prior_model_file exp/prior_speech/valid.loss.ave.pth \
        --prior_train_config exp/prior_sfx/config.yaml \
        --prior_model_file exp/prior_sfx/valid.loss.ave.pth \
        --categories none snare --sampler_conf num_steps=200 --output_dir exp/sep
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from espnet2.fileio.sound_scp import SoundScpReader
from espnet2.utils import config_argparse
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import str2bool, str_or_none

from espnet2_ext.diffusion.task import build_sampler_from_files
from espnet2_ext.utils.audio_io import (
    check_sound_scps,
    write_audio_atomic,
    write_scp_atomic,
)
from espnet2_ext.utils.results import atomic_write_text


def _read_keys(key_file: Optional[str]) -> Optional[List[str]]:
    if key_file is None:
        return None
    with open(key_file, encoding="utf-8") as f:
        return [line.split(maxsplit=1)[0] for line in f if line.strip()]


def separate(
    data_path_and_name_and_type: Sequence[Sequence[str]],
    output_dir: str,
    prior_train_config: Sequence[str],
    prior_model_file: Sequence[str],
    categories: Optional[Sequence[str]] = None,
    categories_file: Optional[str] = None,
    sampler_conf: Optional[dict] = None,
    use_ema: bool = True,
    cfg_scale: float = 1.0,
    key_file: Optional[str] = None,
    fs: Optional[int] = None,
    device: str = "cpu",
    seed: int = 0,
    output_subtype: Optional[str] = "FLOAT",
    output_format: str = "wav",
    log_level: str = "INFO",
) -> None:
    """Separate every mixture of the ``speech_mix`` scp; see the module docstring."""
    logging.basicConfig(
        level=log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    scps = [p for p, name, _ in data_path_and_name_and_type if name == "speech_mix"]
    if len(scps) != 1:
        raise ValueError(
            "give exactly one --data_path_and_name_and_type <wav.scp>,speech_mix,sound"
        )
    model_files = [None if str_or_none(m) is None else m for m in prior_model_file]
    sampler = build_sampler_from_files(
        prior_train_config,
        model_files,
        categories=categories or None,
        device=device,
        use_ema=use_ema,
        cfg_scale=cfg_scale,
        sampler_conf=sampler_conf,
    )
    per_key = {}
    if categories_file is not None:
        with open(categories_file, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    key, *labels = line.split()
                    per_key[key] = labels
    reader = SoundScpReader(scps[0], dtype="float32")
    keys = _read_keys(key_file) or list(reader.keys())
    check_sound_scps([scps[0]], fs, max_channels=1, keys=keys)
    out = Path(output_dir).expanduser().resolve()
    scp_entries: List[List[Tuple[str, Path]]] = [[] for _ in range(sampler.num_sources)]
    info_log = {}
    for index, key in enumerate(keys):
        rate, wave = reader[key]
        if fs is not None and rate != fs:
            raise ValueError(
                f"{key}: sampled at {rate} Hz but --fs {fs}; resample the data to the "
                "rate the priors were trained on"
            )
        if wave.ndim == 2:
            if wave.shape[1] > 1:
                raise ValueError(
                    f"{key}: {wave.shape[1]} channels; the priors are mono"
                )
            wave = wave[:, 0]
        # One generator per mixture, seeded by its position: results do not depend on
        # which other mixtures are processed in the same run.
        generator = torch.Generator(device=device).manual_seed(seed + index)
        mixture = torch.from_numpy(np.asarray(wave, dtype=np.float32)).to(device)
        estimates, info = sampler.separate(
            mixture, generator=generator, categories=per_key.get(key)
        )
        for n in range(sampler.num_sources):
            path = out / "wavs" / str(n + 1) / f"{key}.{output_format}"
            wave_n = estimates[n].cpu().numpy()
            write_audio_atomic(path, wave_n, rate, output_format, output_subtype)
            scp_entries[n].append((key, path))
        info_log[key] = {"nfe": info["nfe"], "final_loss": float(info["loss"][-1])}
        logging.info(f"[{index + 1}/{len(keys)}] {key}: nfe={info['nfe']}")
    for n, entries in enumerate(scp_entries):
        write_scp_atomic(out / f"spk{n + 1}.scp", entries)
    atomic_write_text(out / "sampler_info.json", json.dumps(info_log, indent=1))


def get_parser() -> argparse.ArgumentParser:
    parser = config_argparse.ArgumentParser(
        description="Unsupervised separation with diffusion source priors",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data_path_and_name_and_type",
        type=lambda s: s.split(","),
        action="append",
        required=True,
        help="<wav.scp>,speech_mix,sound",
    )
    parser.add_argument("--key_file", type=str_or_none, default=None)
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument(
        "--prior_train_config",
        action="append",
        required=True,
        help="config.yaml of a trained prior, once per source",
    )
    parser.add_argument(
        "--prior_model_file",
        action="append",
        required=True,
        help="checkpoint of that prior, once per source ('none': initial weights)",
    )
    parser.add_argument(
        "--categories",
        nargs="*",
        default=None,
        help="per source: a class name or index of a conditional prior, or 'none'",
    )
    parser.add_argument(
        "--categories_file",
        type=str_or_none,
        default=None,
        help="per-mixture labels: '<key> <label of source 1> <label of source 2> ...' "
        "(e.g. the known event classes, as the paper conditions its sound prior); "
        "overrides --categories for the keys it lists",
    )
    parser.add_argument(
        "--sampler_conf",
        action=NestedDictAction,
        default={},
        help="keyword arguments of DiffusionPriorSampler (num_steps, step_rule, "
        "step_rule_conf, init, init_conf, loss_conf, clamp_x0, mixture_rms_db, "
        "start_t)",
    )
    parser.add_argument("--use_ema", type=str2bool, default=True)
    parser.add_argument("--cfg_scale", type=float, default=1.0)
    parser.add_argument("--fs", type=int, default=None, help="expected sampling rate")
    parser.add_argument("--device", type=str, default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output_subtype",
        type=str_or_none,
        default="FLOAT",
        help="soundfile subtype of WAV outputs (default 32-bit float: unclipped)",
    )
    parser.add_argument("--output_format", type=str, default="wav")
    parser.add_argument("--log_level", type=str, default="INFO")
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    kwargs = vars(args)
    kwargs.pop("config", None)
    separate(**kwargs)


if __name__ == "__main__":
    main(sys.argv[1:])
