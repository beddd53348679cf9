#!/usr/bin/env python3
"""Head selection 12 → 4: turn a MixIT pre-trained model into a 4-stem model.

seeds/002 §3 (DESIGN.md §3): the MixIT model has ``N`` (12) unlabelled outputs; the
MUSDB18-HQ validation songs are cut into 6 s chunks and separated; per chunk every
active stem is matched to a distinct output (best summed SNR on channel 0); each stem
keeps the output it was matched to most often; only those outputs' rows of the mask
decoder's last layer are kept. The algorithm lives in
:mod:`espnet2_ext.enh.head_selection`; this command runs it on data folders and writes
a model that ESPnet can fine-tune::

    python -m espnet2_ext.bin.select_heads \\
        --train_config exp/enh_mixit/config.yaml \\
        --model_file exp/enh_mixit/valid.loss.ave.pth \\
        --musdb_data data/musdb/valid \\
        --finetune_config conf/tuning/finetune_enh_bs_locoformer_small.yaml \\
        --out exp/enh_mixit/heads

``--musdb_data`` is a folder written by ``python -m espnet2_ext.datasets.musdb18hq``:
``wav.scp`` (mixtures) and ``spk1.scp`` … ``spk4.scp`` (stems in the order of
``--stems``, MUSDB order by default).

Writes into ``--out``:

* ``model.pth``: the 4-output state dict (for ``--init_param``, or the MUSDB18-HQ
  recipe's ``run.sh --pretrained``);
* ``config.yaml``: the fine-tuning config resolved with all defaults (as ESPnet writes
  it), so ``config.yaml`` + ``model.pth`` is a complete model for
  ``espnet2_ext.bin.enh_inference`` too. The command loads the two strictly
  (:func:`espnet2_ext.bin.enh_inference.load_model`) and checks that the 4-output model
  reproduces the chosen outputs of the ``N``-output model;
* ``heads.json``: the chosen output per stem, the votes, collisions and how they were
  resolved, and SNRs: the mean best-assignment SNR of the ``N`` outputs (the MixIT
  model's own separation with an oracle match per chunk) and the mean SNR of the kept
  heads, on the voting songs and on every ``--eval_data`` set.

When two stems pick the same output, the stems get the distinct outputs with the most
votes in total (:func:`espnet2_ext.enh.head_selection.select_heads`); each move is
logged as a warning and listed under ``notes`` and ``moved``.

Without ``--finetune_config`` the written config is the MixIT config with the output
count set to the number of stems (its MixIT criterion left as it is).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf
import torch
import yaml
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from espnet2_ext.bin.enh_inference import MusicSeparator
from espnet2_ext.constants import MUSDB_STEMS, MUSIC_SAMPLE_RATE
from espnet2_ext.datasets.songs import Song, read_songs, song_chunks
from espnet2_ext.enh.head_selection import (
    HeadSelection,
    HeadVoteCounter,
    select_heads,
    select_heads_in_state_dict,
)
from espnet2_ext.enh.loss.wrappers.assignment import pairwise_snr
from espnet2_ext.tasks.enh import EnhancementTask
from espnet2_ext.utils.cli import run_command

#: Names of the files written into ``--out``.
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
    separator: MusicSeparator,
    songs: Sequence[Song],
    stem_names: Sequence[str] = MUSDB_STEMS,
    chunk_seconds: float = 6.0,
    batch_size: int = 4,
    channel: int = 0,
    inactive_threshold_db: float = -60.0,
) -> OutputMeasurement:
    """Separate the songs chunk by chunk and count the votes of every stem.

    Args:
        separator: the ``N``-output model.
        songs: from :func:`read_songs`.
        stem_names: the stems, in the order of ``Song.stems``.
        chunk_seconds: chunk length (6 s in the paper).
        batch_size: chunks per forward pass.
        channel: audio channel of the SNRs (0 in the paper).
        inactive_threshold_db: stem level relative to the chunk's mixture below which
            a stem does not vote (the zero-reference loss' rule).
    """
    if chunk_seconds <= 0 or batch_size < 1:
        raise ValueError(
            f"chunk_seconds ({chunk_seconds}) must be > 0 and batch_size "
            f"({batch_size}) >= 1"
        )
    sample_rate = separator.fs or MUSIC_SAMPLE_RATE
    chunk_samples = int(round(chunk_seconds * sample_rate))
    counter = HeadVoteCounter(
        num_outputs=separator.num_spk,
        stem_names=stem_names,
        channel=channel,
        inactive_threshold_db=inactive_threshold_db,
    )
    snr_sum = torch.zeros(len(stem_names), separator.num_spk, dtype=torch.float64)
    active = torch.zeros(len(stem_names), dtype=torch.long)

    def flush(mixtures: List[np.ndarray], stems: List[np.ndarray]) -> None:
        mix = torch.from_numpy(np.stack(mixtures))  # [B, C, L]
        ref = torch.from_numpy(np.stack(stems))  # [B, S, C, L]
        est = separator.separate_tensor(mix).float().cpu()  # [B, N, C, L]
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
    full: MusicSeparator,
    selected: MusicSeparator,
    heads: Sequence[int],
    mixture: np.ndarray,
) -> float:
    """Largest difference between the kept outputs of both models on one chunk.

    Returns:
        ``max |full[heads] - selected|`` relative to the peak of the full outputs.
    Raises:
        RuntimeError: the two differ by more than 1e-4 of the peak.
    """
    mix = torch.from_numpy(mixture).unsqueeze(0)  # [1, C, L]
    want = full.separate_tensor(mix)[:, list(heads)].float()  # [1, S, C, L]
    got = selected.separate_tensor(mix).float()
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
    separator: MusicSeparator, heads: Sequence[int]
) -> Dict[str, torch.Tensor]:
    """The ``N``-output model's weights cut to the outputs ``heads`` (CPU)."""
    return select_heads_in_state_dict(
        {k: v.detach().cpu() for k, v in separator.model.state_dict().items()},
        heads,
        num_outputs=separator.num_spk,
        num_channels=separator.num_channels or 1,
    )


def check_fits(
    separator: MusicSeparator,
    config: Dict[str, object],
    num_heads: int,
    config_name: Union[str, Path],
) -> None:
    """Fail early when the cut weights cannot load strictly into ``config``'s model.

    Raises:
        ValueError: names or shapes differ (another size, band table, channels).
    """
    model = EnhancementTask.build_model(argparse.Namespace(**config))
    try:
        model.load_state_dict(
            selected_state_dict(separator, range(num_heads)), strict=True
        )
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ValueError(
            f"the selected weights do not fit {config_name}: "
            f"{' '.join(first[:3])[:600]} … Use the fine-tuning config of the "
            "pre-trained model's size."
        ) from e


def write_selected_model(
    separator: MusicSeparator,
    selection: HeadSelection,
    config: Dict[str, object],
    out_dir: Union[str, Path],
    probe: Optional[np.ndarray] = None,
) -> Dict[str, object]:
    """Write ``model.pth`` and ``config.yaml`` of the ``len(heads)``-output model.

    The pair is loaded back strictly (:func:`espnet2_ext.bin.enh_inference.load_model`)
    and, given a ``probe`` mixture ``[C, L]``, checked against the ``N``-output model
    (:func:`check_selected_model`).

    Returns:
        ``{"max_relative_difference": …}`` when a probe was given, else ``{}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path, config_path = out_dir / MODEL_NAME, out_dir / CONFIG_NAME
    torch.save(selected_state_dict(separator, selection.heads), model_path)
    with config_path.open("w", encoding="utf-8") as f:
        yaml_no_alias_safe_dump(config, f, indent=4, sort_keys=False)
    selected = MusicSeparator(config_path, model_path)  # strict
    if probe is None:
        return {}
    return {
        "max_relative_difference": check_selected_model(
            separator, selected, selection.heads, probe
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
    """The command as a function; returns what it writes to ``heads.json``."""
    separator = MusicSeparator(train_config, model_file, device=device)
    num_outputs = separator.num_spk
    if num_outputs < len(stems):
        raise ValueError(
            f"{model_file} has {num_outputs} outputs, fewer than the {len(stems)} "
            "stems: nothing to select"
        )
    config = selected_config(train_config, len(stems), finetune_config)
    check_fits(separator, config, len(stems), finetune_config or train_config)
    logging.info(f"{model_file}: {num_outputs} outputs; voting on {musdb_data}")
    songs = read_songs(musdb_data, len(stems))
    options = dict(
        stem_names=stems,
        chunk_seconds=chunk_seconds,
        batch_size=batch_size,
        channel=channel,
        inactive_threshold_db=inactive_threshold_db,
    )
    votes = measure_outputs(separator, songs, **options)
    selection = select_heads(votes.counter.counts, stems)
    for note in selection.notes:
        logging.warning(f"head selection: {note}")
    logging.info(f"heads: {dict(zip(stems, selection.heads))}")

    sample_rate = separator.fs or MUSIC_SAMPLE_RATE
    check = write_selected_model(
        separator,
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
        measured = measure_outputs(separator, read_songs(data, len(stems)), **options)
        report["eval_data"][str(data)] = measured.summary(selection.heads)
    path = Path(out) / REPORT_NAME
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    logging.info(f"wrote {Path(out) / MODEL_NAME}, {Path(out) / CONFIG_NAME}, {path}")
    return report


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet2_ext.bin.select_heads",
        description="Keep one output per stem of a MixIT pre-trained model (votes on "
        "MUSDB18-HQ validation chunks) and write a model to fine-tune.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--train_config", required=True, help="config.yaml of MixIT")
    parser.add_argument("--model_file", required=True, help="its .pth")
    parser.add_argument(
        "--musdb_data",
        required=True,
        help="folder with wav.scp and spk1..spkS.scp (the validation songs)",
    )
    parser.add_argument("--out", required=True, help="folder for the new model")
    parser.add_argument(
        "--finetune_config",
        default=None,
        help="training YAML the new model must load into (default: the MixIT "
        "config with one output per stem)",
    )
    parser.add_argument(
        "--eval_data",
        nargs="*",
        default=[],
        help="more data folders on which to report the SNRs (e.g. data/musdb/test)",
    )
    parser.add_argument("--stems", nargs="+", default=list(MUSDB_STEMS))
    parser.add_argument("--chunk_seconds", type=float, default=6.0)
    parser.add_argument("--batch_size", type=int, default=4, help="chunks per pass")
    parser.add_argument("--channel", type=int, default=0, help="channel of the SNRs")
    parser.add_argument("--inactive_threshold_db", type=float, default=-60.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command("select_heads", get_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
