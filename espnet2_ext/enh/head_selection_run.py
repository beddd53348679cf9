"""Head selection on data folders: measure an ``N``-output model, write the new model.

The algorithm (votes, the choice, the decoder surgery) is in
:mod:`espnet2_ext.enh.head_selection`; this module runs it on MUSDB18-HQ style data
folders (``wav.scp``, ``spk1.scp`` … written by ``python -m
espnet2_ext.datasets.musdb18hq``) and writes a model that ESPnet can fine-tune
(:func:`run`, the command ``python -m espnet2_ext.bin.select_heads``):

* ``model.pth``: the ``len(stems)``-output state dict (for ``--init_param``, or the
  MUSDB18-HQ recipe's ``run.sh --pretrained``);
* ``config.yaml``: the fine-tuning config resolved with all defaults (as ESPnet writes
  it), so ``config.yaml`` + ``model.pth`` is a complete model for
  ``espnet2_ext.bin.enh_inference`` too. The two are loaded back strictly
  (:func:`espnet2_ext.zoo.load_model`) and the new model is checked to reproduce the
  chosen outputs of the ``N``-output model;
* ``heads.json``: the chosen output per stem, the votes, collisions and how they were
  resolved, and SNRs: the mean best-assignment SNR of the ``N`` outputs (the MixIT
  model's own separation with an oracle match per chunk) and the mean SNR of the kept
  heads, on the voting songs and on every ``eval_data`` set.

Without a fine-tuning config the written config is the MixIT config with the output
count set to the number of stems (its MixIT criterion left as it is).

The models are run on whole chunks through
:func:`espnet2_ext.enh.inference.espnet_adapter.espnet_model_separate_fn`.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import yaml

from espnet2_ext.constants import MUSDB_STEMS, MUSIC_SAMPLE_RATE
from espnet2_ext.datasets.songs import Song, read_songs, song_chunks
from espnet2_ext.enh.head_selection import (
    HeadSelection,
    HeadVoteCounter,
    select_heads,
    select_heads_in_state_dict,
)
from espnet2_ext.enh.inference.espnet_adapter import espnet_model_separate_fn
from espnet2_ext.enh.loss.wrappers.assignment import pairwise_snr
from espnet2_ext.enh.separator import audio_channels
from espnet2_ext.tasks.enh import EnhancementTask
from espnet2_ext.utils.atomic import atomic_write_text
from espnet2_ext.zoo import load_model, model_sample_rate, write_model_dir

#: Names of the files written into the output folder.
MODEL_NAME = "model.pth"
CONFIG_NAME = "config.yaml"
REPORT_NAME = "heads.json"


# ------------------------------------------------------------------- measurement
@dataclass
class OutputMeasurement:
    """Votes and SNRs of an ``N``-output model on chunks of a set of songs.

    Attributes:
        counter: the votes (:class:`HeadVoteCounter`); ``counter.snr_sum`` holds the
            summed SNR of the best-assignment pairs.
        snr_sum: summed SNR (dB) of every (stem, output) pair over the chunks where
            the stem is active, ``[S, N]`` fp64.
        active: chunks where each stem is active, ``[S]``.
        songs: uids of the songs measured.
    """

    counter: HeadVoteCounter
    snr_sum: torch.Tensor
    active: torch.Tensor
    songs: List[str] = field(default_factory=list)

    def best_assignment_snr(self) -> Dict[str, Optional[float]]:
        """Per stem, the mean SNR of its best-assignment output (oracle match)."""
        total = self.counter.snr_sum.sum(dim=1)
        count = self.counter.counts.sum(dim=1)
        return _means(self.counter.stem_names, total, count)

    def head_snr(self, heads: Sequence[int]) -> Dict[str, Optional[float]]:
        """Per stem, the mean SNR of a fixed output ``heads[s]``."""
        rows = torch.arange(len(heads))
        total = self.snr_sum[rows, torch.as_tensor(list(heads))]
        return _means(self.counter.stem_names, total, self.active)

    def summary(self, heads: Sequence[int]) -> Dict[str, object]:
        return {
            "num_songs": len(self.songs),
            "num_chunks": self.counter.num_chunks,
            "active_chunks": dict(
                zip(self.counter.stem_names, (int(a) for a in self.active))
            ),
            "snr_db_channel": self.counter.channel,
            "best_assignment_snr_db": self.best_assignment_snr(),
            "selected_head_snr_db": self.head_snr(heads),
        }


def _means(
    names: Sequence[str], total: torch.Tensor, count: torch.Tensor
) -> Dict[str, Optional[float]]:
    return {
        name: (round(float(t) / int(c), 3) if int(c) > 0 else None)
        for name, t, c in zip(names, total, count)
    }


@torch.no_grad()
def measure_outputs(
    model: torch.nn.Module,
    songs: Sequence[Song],
    stem_names: Sequence[str] = MUSDB_STEMS,
    chunk_seconds: float = 6.0,
    batch_size: int = 4,
    channel: int = 0,
    inactive_threshold_db: float = -60.0,
    sample_rate: int = MUSIC_SAMPLE_RATE,
) -> OutputMeasurement:
    """Separate the songs chunk by chunk and count the votes of every stem.

    Args:
        model: the ``N``-output ESPnet enh model (eval mode).
        songs: from :func:`read_songs`.
        stem_names: the stems, in the order of ``Song.stems``.
        chunk_seconds: chunk length (6 s in the paper).
        batch_size: chunks per forward pass.
        channel: audio channel of the SNRs (0 in the paper).
        inactive_threshold_db: stem level relative to the chunk's mixture below which
            a stem does not vote (the zero-reference loss' rule).
        sample_rate: the model's sampling rate
            (:func:`espnet2_ext.zoo.model_sample_rate`).
    """
    if chunk_seconds <= 0 or batch_size < 1:
        raise ValueError(
            f"chunk_seconds ({chunk_seconds}) must be > 0 and batch_size "
            f"({batch_size}) >= 1"
        )
    separate = espnet_model_separate_fn(model)
    chunk_samples = int(round(chunk_seconds * sample_rate))
    counter = HeadVoteCounter(
        num_outputs=model.num_spk,
        stem_names=stem_names,
        channel=channel,
        inactive_threshold_db=inactive_threshold_db,
    )
    snr_sum = torch.zeros(len(stem_names), model.num_spk, dtype=torch.float64)
    active = torch.zeros(len(stem_names), dtype=torch.long)

    def flush(mixtures: List[np.ndarray], stems: List[np.ndarray]) -> None:
        mix = torch.from_numpy(np.stack(mixtures))  # [B, C, L]
        ref = torch.from_numpy(np.stack(stems))  # [B, S, C, L]
        est = separate(mix).float().cpu()  # [B, N, C, L]
        choice = counter.update(est, ref)  # [B, S], -1 = inactive
        # fp64 as in the counter, so both SNR tables agree to rounding
        snr = pairwise_snr(
            ref[:, :, channel].double(), est[:, :, channel].double()
        )  # [B, S, N]
        # the same activity rule as the counter (it marks inactive stems with -1)
        is_active = choice >= 0
        snr_sum.add_((snr * is_active.unsqueeze(-1)).sum(dim=0))
        active.add_(is_active.sum(dim=0))

    mixtures: List[np.ndarray] = []
    stems: List[np.ndarray] = []
    uids = []
    for song in songs:
        uids.append(song.uid)
        for mix, ref in song_chunks(song, chunk_samples, sample_rate):
            if mixtures and mix.shape != mixtures[0].shape:
                flush(mixtures, stems)  # a short song: its own batch
                mixtures, stems = [], []
            mixtures.append(mix)
            stems.append(ref)
            if len(mixtures) == batch_size:
                flush(mixtures, stems)
                mixtures, stems = [], []
        logging.info(f"{song.uid}: {counter.num_chunks + len(mixtures)} chunks so far")
    if mixtures:
        flush(mixtures, stems)
    return OutputMeasurement(
        counter=counter, snr_sum=snr_sum, active=active, songs=uids
    )


# ----------------------------------------------------------------- the new model
def resolve_config(config_file: Union[str, Path]) -> Dict[str, object]:
    """A training YAML with every default filled in, as ESPnet writes ``config.yaml``.

    Unknown keys are an error (ESPnet's parser refuses them).
    """
    parser = EnhancementTask.get_parser()
    args = parser.parse_args(["--config", str(config_file)])
    config = vars(args)
    config.pop("config", None)
    return config


def derived_config(
    train_config: Union[str, Path], num_outputs: int
) -> Dict[str, object]:
    """The MixIT model's config with ``num_outputs`` outputs (no fine-tuning config)."""
    with open(train_config, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    config["num_spk"] = num_outputs
    config["separator_conf"] = {**config["separator_conf"], "num_spk": num_outputs}
    config["model_conf"] = {
        **(config.get("model_conf") or {}),
        "flexible_numspk": False,
    }
    return config


@torch.no_grad()
def check_selected_model(
    full: torch.nn.Module,
    selected: torch.nn.Module,
    heads: Sequence[int],
    mixture: np.ndarray,
) -> float:
    """Largest difference between the kept outputs of both models on one chunk.

    Args:
        full: the ``N``-output model; selected: the ``len(heads)``-output model.
        mixture: ``[C, L]``.
    Returns:
        ``max |full[heads] - selected|`` relative to the peak of the full outputs.
    Raises:
        RuntimeError: the two differ by more than 1e-4 of the peak.
    """
    mix = torch.from_numpy(mixture).unsqueeze(0)  # [1, C, L]
    want = espnet_model_separate_fn(full)(mix)[:, list(heads)].float()  # [1, S, C, L]
    got = espnet_model_separate_fn(selected)(mix).float()
    peak = float(want.abs().max().clamp_min(1e-8))
    diff = float((want - got).abs().max()) / peak
    if not diff < 1e-4:
        raise RuntimeError(
            f"the head-selected model does not reproduce outputs {list(heads)} of the "
            f"pre-trained model (relative difference {diff:.2e}): the fine-tuning "
            "config builds a different network (check n_fft, bands, input_scaling)"
        )
    return diff


def selected_config(
    train_config: Union[str, Path],
    num_heads: int,
    finetune_config: Optional[Union[str, Path]] = None,
) -> Dict[str, object]:
    """The config of the ``num_heads``-output model (see the module docstring)."""
    if finetune_config is not None:
        config = resolve_config(finetune_config)
    else:
        config = derived_config(train_config, num_heads)
    if int(config["separator_conf"].get("num_spk", -1)) != num_heads:
        raise ValueError(
            f"{finetune_config}: separator_conf.num_spk is "
            f"{config['separator_conf'].get('num_spk')}, head selection keeps "
            f"{num_heads} outputs (one per stem)"
        )
    return config


def selected_state_dict(
    model: torch.nn.Module, heads: Sequence[int]
) -> Dict[str, torch.Tensor]:
    """The ``N``-output model's weights cut to the outputs ``heads`` (CPU)."""
    return select_heads_in_state_dict(
        {k: v.detach().cpu() for k, v in model.state_dict().items()},
        heads,
        num_outputs=model.num_spk,
        num_channels=audio_channels(model.separator),
    )


def check_fits(
    model: torch.nn.Module,
    config: Dict[str, object],
    num_heads: int,
    config_name: Union[str, Path],
) -> None:
    """Fail early when the cut weights cannot load strictly into ``config``'s model.

    Raises:
        ValueError: names or shapes differ (another size, band table, channels).
    """
    new_model = EnhancementTask.build_model(argparse.Namespace(**config))
    try:
        new_model.load_state_dict(
            selected_state_dict(model, range(num_heads)), strict=True
        )
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ValueError(
            f"the selected weights do not fit {config_name}: "
            f"{' '.join(first[:3])[:600]} … Use the fine-tuning config of the "
            "pre-trained model's size."
        ) from e


def write_selected_model(
    model: torch.nn.Module,
    selection: HeadSelection,
    config: Dict[str, object],
    out_dir: Union[str, Path],
    probe: Optional[np.ndarray] = None,
) -> Dict[str, object]:
    """Write ``model.pth`` and ``config.yaml`` of the ``len(heads)``-output model.

    Written by :func:`espnet2_ext.zoo.write_model_dir` (the config completed with
    ESPnet's defaults, atomic); the pair is loaded back strictly
    (:func:`espnet2_ext.zoo.load_model`) and, given a ``probe`` mixture ``[C, L]``,
    checked against the ``N``-output model (:func:`check_selected_model`).

    Returns:
        ``{"max_relative_difference": …}`` when a probe was given, else ``{}``.
    """
    config_path, model_path = write_model_dir(
        config,
        selected_state_dict(model, selection.heads),
        out_dir,
        model_name=MODEL_NAME,
    )
    selected, _ = load_model(config_path, model_path)  # strict
    if probe is None:
        return {}
    return {
        "max_relative_difference": check_selected_model(
            model, selected, selection.heads, probe
        )
    }


def first_chunk(song: Song, chunk_seconds: float, sample_rate: int) -> np.ndarray:
    """The first chunk's mixture ``[C, L]`` (the probe of the output check)."""
    chunk_samples = int(round(chunk_seconds * sample_rate))
    mixture, _ = next(song_chunks(song, chunk_samples, sample_rate))
    return mixture


# ----------------------------------------------------------------------- command
def run(
    train_config: str,
    model_file: str,
    musdb_data: str,
    out: str,
    finetune_config: Optional[str] = None,
    eval_data: Sequence[str] = (),
    stems: Sequence[str] = MUSDB_STEMS,
    chunk_seconds: float = 6.0,
    batch_size: int = 4,
    channel: int = 0,
    inactive_threshold_db: float = -60.0,
    device: str = "cpu",
) -> Dict[str, object]:
    """Select the heads and write the model; returns what is in ``heads.json``."""
    model, train_args = load_model(train_config, model_file, device)
    num_outputs = model.num_spk
    if num_outputs < len(stems):
        raise ValueError(
            f"{model_file} has {num_outputs} outputs, fewer than the {len(stems)} "
            "stems: nothing to select"
        )
    config = selected_config(train_config, len(stems), finetune_config)
    check_fits(model, config, len(stems), finetune_config or train_config)
    logging.info(f"{model_file}: {num_outputs} outputs; voting on {musdb_data}")
    songs = read_songs(musdb_data, len(stems))
    sample_rate = model_sample_rate(train_args)
    options = dict(
        stem_names=stems,
        chunk_seconds=chunk_seconds,
        batch_size=batch_size,
        channel=channel,
        inactive_threshold_db=inactive_threshold_db,
        sample_rate=sample_rate,
    )
    votes = measure_outputs(model, songs, **options)
    selection = select_heads(votes.counter.counts, stems)
    for note in selection.notes:
        logging.warning(f"head selection: {note}")
    logging.info(f"heads: {dict(zip(stems, selection.heads))}")

    check = write_selected_model(
        model,
        selection,
        config,
        out,
        probe=first_chunk(songs[0], chunk_seconds, sample_rate),
    )
    report: Dict[str, object] = {
        "train_config": str(train_config),
        "model_file": str(model_file),
        "finetune_config": None if finetune_config is None else str(finetune_config),
        "num_outputs": num_outputs,
        "stems": list(stems),
        "chunk_seconds": chunk_seconds,
        "inactive_threshold_db": inactive_threshold_db,
        **selection.as_dict(),
        "check": check,
        "vote_data": {"data": str(musdb_data), **votes.summary(selection.heads)},
        "eval_data": {},
    }
    for data in eval_data:
        logging.info(f"measuring the {num_outputs} outputs on {data}")
        measured = measure_outputs(model, read_songs(data, len(stems)), **options)
        report["eval_data"][str(data)] = measured.summary(selection.heads)
    path = Path(out) / REPORT_NAME
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    logging.info(f"wrote {Path(out) / MODEL_NAME}, {Path(out) / CONFIG_NAME}, {path}")
    return report
