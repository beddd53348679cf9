"""Calibrating a trained model's multi-step schedule on song folders (seeds/000).

The library side of ``python -m espnet2_ext.bin.multistep_calibrate``:
:class:`SongChunks` cuts the validation songs into chunks in which every stem is
active, and :func:`run_calibration` loads the model, runs
:func:`~espnet2_ext.enh.inference.multistep.calibration.calibrate_schedule` with its
:func:`~espnet2_ext.enh.inference.espnet_adapter.espnet_model_separate_fn`, writes the
schedule that ``enh_inference --multistep_schedule FILE`` applies to new songs, and
writes the report (cost, per-step traces on the validation and evaluation chunks).

A data folder is one of ``python -m espnet2_ext.datasets.musdb18hq``: ``wav.scp`` and
``spk1.scp`` … ``spkN.scp`` in the model's stem order.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from espnet2_ext.constants import MUSDB_STEMS, MUSIC_SAMPLE_RATE
from espnet2_ext.datasets.songs import read_songs, song_chunks
from espnet2_ext.enh.inference.espnet_adapter import espnet_model_separate_fn
from espnet2_ext.enh.inference.metrics_registry import get_metric
from espnet2_ext.enh.inference.multistep.calibration import (
    Calibration,
    CountingSeparateFn,
    Item,
    calibrate_schedule,
    format_table,
    trace_schedule,
    write_report,
)
from espnet2_ext.zoo.loading import load_model

#: The report's file name beside the schedule, unless another path is given.
REPORT_NAME = "multistep_calibration.json"


# --------------------------------------------------------------------------- chunks
def stem_levels_db(mixture: np.ndarray, stems: np.ndarray) -> np.ndarray:
    """Level of every stem relative to the mixture, over all channels, in dB.

    Args:
        mixture: [C, L]
        stems: [N, C, L]

    Returns:
        [N] ``10 log10(|s_n|² / |x|²)``; ``-inf`` for a silent stem (``+inf`` if only
        the mixture is silent).
    """
    mix_energy = float(np.sum(mixture.astype(np.float64) ** 2))
    stem_energy = np.sum(stems.astype(np.float64) ** 2, axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10(stem_energy / mix_energy)


class SongChunks:
    """The chunks of a data folder's songs in which every stem is active.

    Re-iterable; yields ``(mixture [b, C, L], references [b, N, C, L])`` float32
    batches of up to ``batch_chunks`` chunks of equal length. The songs are read once
    when the object is made (to find the active chunks, and pick ``max_chunks`` of
    them) and again, one at a time, on every iteration: only a batch is held in
    memory, whatever the size of the set.

    Args:
        data_dir: folder with ``wav.scp`` and ``spk1.scp`` … ``spk<num_stems>.scp``.
        num_stems: N, the model's outputs (the scp files in its order).
        chunk_seconds: chunk length; complete non-overlapping chunks from each song's
            start (a song shorter than one chunk is one chunk of its own length).
        sample_rate: the model's rate (files at another rate are an error).
        batch_chunks: chunks per batch.
        max_chunks: keep at most this many active chunks, evenly spaced over the set.
        inactive_threshold_db: leave out chunks where a stem is below this level
            relative to the mixture; ``None`` keeps every chunk.
        chunks_per_song: keep the first this many active chunks of every song (a fixed
            rule that does not look at any result; before ``max_chunks``).

    Raises:
        ValueError: invalid sizes, or no chunk is left.
    """

    def __init__(
        self,
        data_dir: Union[str, Path],
        *,
        num_stems: int,
        chunk_seconds: float,
        sample_rate: int = MUSIC_SAMPLE_RATE,
        batch_chunks: int = 1,
        max_chunks: Optional[int] = None,
        inactive_threshold_db: Optional[float] = -60.0,
        chunks_per_song: Optional[int] = None,
    ):
        if chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be > 0, got {chunk_seconds}")
        if batch_chunks < 1:
            raise ValueError(f"batch_chunks must be >= 1, got {batch_chunks}")
        if max_chunks is not None and max_chunks < 1:
            raise ValueError(f"max_chunks must be >= 1 or None, got {max_chunks}")
        if chunks_per_song is not None and chunks_per_song < 1:
            raise ValueError(
                f"chunks_per_song must be >= 1 or None, got {chunks_per_song}"
            )
        self.data_dir = Path(data_dir)
        self.chunk_seconds = chunk_seconds
        self.chunk_samples = int(round(chunk_seconds * sample_rate))
        self.sample_rate = sample_rate
        self.batch_chunks = batch_chunks
        self.songs = read_songs(data_dir, num_stems)
        active: List[Tuple[int, int]] = []  # (song, chunk) with every stem active
        self.total_chunks = 0
        for i, song in enumerate(self.songs):
            for j, (mix, ref) in enumerate(
                song_chunks(song, self.chunk_samples, sample_rate)
            ):
                self.total_chunks += 1
                levels = stem_levels_db(mix, ref)
                if inactive_threshold_db is None or np.all(
                    levels >= inactive_threshold_db
                ):
                    active.append((i, j))
        self.inactive_chunks = self.total_chunks - len(active)
        self.skipped_chunks = 0
        if chunks_per_song is not None:
            per_song: Dict[int, int] = {}
            kept = []
            for i, j in active:
                per_song[i] = per_song.get(i, 0) + 1
                if per_song[i] <= chunks_per_song:
                    kept.append((i, j))
            self.skipped_chunks += len(active) - len(kept)
            active = kept
        if max_chunks is not None and len(active) > max_chunks:
            pick = np.linspace(0, len(active) - 1, max_chunks).round().astype(int)
            self.skipped_chunks += len(active) - max_chunks
            active = [active[k] for k in pick]
        if not active:
            raise ValueError(
                f"{data_dir}: none of the {self.total_chunks} chunks of "
                f"{chunk_seconds} s has every stem active (threshold "
                f"{inactive_threshold_db} dB re the mixture); lower "
                "--inactive_threshold_db or give more songs"
            )
        self.selected = active

    @property
    def num_chunks(self) -> int:
        """Chunks yielded by an iteration."""
        return len(self.selected)

    def keys(self) -> List[Tuple[str, float]]:
        """``(song uid, start in seconds)`` of every selected chunk, in order."""
        return [
            (self.songs[i].uid, j * self.chunk_samples / self.sample_rate)
            for i, j in self.selected
        ]

    def keyed(self) -> Iterator[Tuple[str, float, torch.Tensor, torch.Tensor]]:
        """The selected chunks one at a time, with their key: ``(song uid, start in
        seconds, mixture [1, C, L], references [1, N, C, L])``."""
        wanted: Dict[int, set] = {}
        for i, j in self.selected:
            wanted.setdefault(i, set()).add(j)
        for i in sorted(wanted):
            chunks = song_chunks(self.songs[i], self.chunk_samples, self.sample_rate)
            for j, (mix, ref) in enumerate(chunks):
                if j in wanted[i]:
                    yield (
                        self.songs[i].uid,
                        j * self.chunk_samples / self.sample_rate,
                        torch.from_numpy(np.ascontiguousarray(mix))[None],
                        torch.from_numpy(np.ascontiguousarray(ref))[None],
                    )

    def describe(self) -> Dict[str, int]:
        return {
            "songs": len(self.songs),
            "chunks": self.num_chunks,
            "total_chunks": self.total_chunks,
            "inactive_chunks": self.inactive_chunks,
            "skipped_chunks": self.skipped_chunks,
        }

    def __iter__(self) -> Iterator[Item]:
        wanted: Dict[int, set] = {}
        for i, j in self.selected:
            wanted.setdefault(i, set()).add(j)
        batch: List[Tuple[np.ndarray, np.ndarray]] = []

        def flush() -> Item:
            mix = torch.from_numpy(np.stack([m for m, _ in batch]))  # [b, C, L]
            ref = torch.from_numpy(np.stack([r for _, r in batch]))  # [b, N, C, L]
            batch.clear()
            return mix, ref

        for i in sorted(wanted):
            chunks = song_chunks(self.songs[i], self.chunk_samples, self.sample_rate)
            for j, (mix, ref) in enumerate(chunks):
                if j not in wanted[i]:
                    continue
                if batch and mix.shape != batch[0][0].shape:
                    yield flush()  # a shorter song: a batch of its own
                batch.append((mix, ref))
                if len(batch) == self.batch_chunks:
                    yield flush()
        if batch:
            yield flush()


# --------------------------------------------------------------------------- run
def run_calibration(
    train_config: Union[str, Path],
    model_file: Optional[Union[str, Path]],
    data_dir: Union[str, Path],
    output: Union[str, Path],
    *,
    report: Optional[Union[str, Path]] = None,
    stems: Optional[Sequence[str]] = None,
    steps: Optional[int] = None,
    candidates: Optional[int] = None,
    grid: str = "uniform",
    ratios: Optional[Sequence[float]] = None,
    metric: str = "snr",
    per_source: bool = True,
    candidate_batch: Optional[int] = None,
    form: str = "greedy",
    chunk_seconds: float = 6.0,
    batch_chunks: int = 1,
    max_chunks: Optional[int] = None,
    chunks_per_song: Optional[int] = None,
    inactive_threshold_db: Optional[float] = -60.0,
    trace_metrics: Sequence[str] = ("snr", "si_sdr"),
    eval_data: Sequence[Union[str, Path]] = (),
    trace_validation: bool = True,
    device: str = "cpu",
) -> Calibration:
    """Calibrate the schedule of a trained model on a song folder, and report it.

    Loads the model strictly, cuts ``data_dir`` into :class:`SongChunks`, runs
    :func:`~espnet2_ext.enh.inference.multistep.calibration.calibrate_schedule`, saves
    the schedule (with the chunking and the model in its ``search``) to ``output``,
    prints the per-step table and the cost, traces the fixed schedule under
    ``trace_metrics`` on the validation chunks (unless ``trace_validation`` is False)
    and on every ``eval_data`` folder, and writes the report JSON.

    Args:
        train_config, model_file: the model (``config.yaml`` and its ``.pth``).
        data_dir: validation folder (``wav.scp``, ``spk<n>.scp``).
        output: schedule file (``.yaml``, ``.yml`` or ``.json``).
        report: report JSON (default: :data:`REPORT_NAME` beside ``output``).
        stems: output names (default: the MUSDB stems for a 4-output model).
        steps, candidates, grid, ratios, metric, per_source, candidate_batch, form:
            the search, as for ``calibrate_schedule``.
        chunk_seconds, batch_chunks, max_chunks, chunks_per_song,
            inactive_threshold_db: the chunks, as for :class:`SongChunks`.
        trace_metrics: metrics traced along the steps (empty: no traces).
        eval_data: more folders on which the fixed schedule is traced.
        trace_validation: trace on the validation chunks too.
        device: where the model runs.

    Returns:
        the :class:`~espnet2_ext.enh.inference.multistep.calibration.Calibration`.

    Raises:
        ValueError: invalid options (output suffix, stem count, unknown metric, no
            active chunk).
        FileNotFoundError: a missing config, model or data file.
    """
    output = Path(output)
    if output.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise ValueError(f"--output must end in .yaml, .yml or .json, got {output}")
    report = Path(report) if report is not None else output.parent / REPORT_NAME
    metric_obj = get_metric(metric)
    for name in trace_metrics:
        get_metric(name)  # an unknown name fails before the model is loaded
    model, args = load_model(train_config, model_file, device)
    num_spk = int(model.num_spk)
    if stems is None:
        stems = list(MUSDB_STEMS) if num_spk == len(MUSDB_STEMS) else None
    if stems is not None and len(stems) != num_spk:
        raise ValueError(
            f"{len(stems)} stem names ({list(stems)}) for a model with {num_spk} "
            "outputs; give --stems with one name per output, in its order"
        )
    sample_rate = int(getattr(args, "sample_rate", None) or MUSIC_SAMPLE_RATE)
    chunk_options = dict(
        num_stems=num_spk,
        chunk_seconds=chunk_seconds,
        sample_rate=sample_rate,
        batch_chunks=batch_chunks,
        max_chunks=max_chunks,
        inactive_threshold_db=inactive_threshold_db,
        chunks_per_song=chunks_per_song,
    )
    valid = SongChunks(data_dir, **chunk_options)
    logging.info(
        f"{data_dir}: {valid.num_chunks} chunks of {chunk_seconds} s from "
        f"{len(valid.songs)} songs ({valid.inactive_chunks} with an inactive stem and "
        f"{valid.skipped_chunks} beyond --chunks_per_song/--max_chunks left out)"
    )
    separate_fn = CountingSeparateFn(espnet_model_separate_fn(model))
    start = time.perf_counter()
    schedule = calibrate_schedule(
        separate_fn,
        list(valid),  # calibration holds every chunk and its estimates anyway
        steps=steps,
        candidates=candidates,
        grid=grid,
        ratios=ratios,
        metric=metric_obj.name,
        per_source=per_source,
        candidate_batch=candidate_batch,
        sources=stems,
        form=form,
    )
    wall = time.perf_counter() - start
    cost = {**separate_fn.cost(), "wall_seconds": round(wall, 3)}
    cost["passes_per_chunk"] = cost["forward_passes"] / valid.num_chunks
    search = {
        **schedule.search,
        "chunk_seconds": chunk_seconds,
        "inactive_threshold_db": inactive_threshold_db,
        "data": str(data_dir),
        "train_config": str(train_config),
        "model_file": None if model_file is None else str(model_file),
    }
    schedule = dataclasses.replace(schedule, search=search)
    schedule.save(output)
    logging.info(f"wrote {output}")
    print(format_table(schedule))
    print(
        f"calibration cost: {cost['forward_passes']} forward passes "
        f"({cost['passes_per_chunk']:.1f} per chunk), {cost['seconds']:.1f} s in the "
        f"separator, {cost['wall_seconds']:.1f} s in all"
    )

    result = Calibration(schedule=schedule, validation=valid.describe(), cost=cost)
    if trace_metrics:
        tracer = CountingSeparateFn(espnet_model_separate_fn(model))
        sets = [(str(data_dir), valid)] if trace_validation else []
        sets += [
            (
                str(d),
                SongChunks(
                    d, **{**chunk_options, "max_chunks": None, "chunks_per_song": None}
                ),
            )
            for d in eval_data
        ]
        for name, chunks in sets:
            result.traces[name] = trace_schedule(
                tracer, schedule, chunks, trace_metrics
            )
            result.trace_data[name] = chunks.describe()
            for metric_name, trace in result.traces[name].items():
                means = ", ".join(f"{np.mean(row):.3f}" for row in trace)
                print(f"{name}: {metric_name} (mean over stems) by step: {means}")
        result.trace_cost = tracer.cost()
    write_report(report, result)
    logging.info(f"wrote {report}")
    return result
