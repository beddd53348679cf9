"""One multi-step variant on a fixed set of chunks, measured against the references.

The evidence for multi-step inference compares one-step inference, the oracle search,
blind (reference-free) searches and calibrated schedules **on the same chunks** of
held-out songs, with paired differences. :func:`evaluate_chunks` runs one variant (a
:class:`~espnet2_ext.enh.inference.multistep.search.MultiStepSeparator` in any mode;
``steps=0`` is one-step inference) on every chunk and records, per chunk:

* the final estimate's uSDR and cSDR per stem (:mod:`espnet2_ext.metrics.music`, the
  project's scorer: uSDR per channel averaged over channels, cSDR the median of BSSEval
  v4's 1 s windows) and SI-SDR (the registry's ``si_sdr``, averaged over channels);
* the traces after every step (step 0: one-step) of the ``trace_metrics`` and of the
  selection metric, each averaged over channels, [T + 1][N];
* the share of channels that kept their previous estimate at every step, [T][N], and
  the weight chosen per step, stem and channel, [T][N][C'] (``None``: kept);
* the forward passes and seconds of the separation;
* with ``probe_metrics`` (search variants), every candidate of step 1 and the one-step
  estimate scored under those metrics ([K][N][C'] and [N][C']): how the candidates
  rank under criteria other than the one that selects.

The references reach the runner for the traces only: a schedule and a non-intrusive
metric never see them (:class:`~espnet2_ext.enh.inference.metrics_registry.Metric` does
not pass them on), and an oracle runner's results are labelled *oracle*.

:func:`run_evaluation` does it for a trained model on a song folder (the library side of
``python -m espnet2_ext.bin.multistep_evaluate``), chunk by chunk, with a resumable
partial file, and writes the JSON that
:mod:`espnet2_ext.reports.multistep_chunks` reports.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from espnet2_ext.constants import MUSDB_STEMS, MUSIC_SAMPLE_RATE
from espnet2_ext.enh.inference.espnet_adapter import espnet_model_separate_fn
from espnet2_ext.enh.inference.metrics_registry import get_metric
from espnet2_ext.enh.inference.multistep.schedule import RatioSchedule
from espnet2_ext.enh.inference.multistep.search import MultiStepSeparator
from espnet2_ext.enh.inference.multistep.song_calibration import SongChunks
from espnet2_ext.metrics.music import csdr, usdr
from espnet2_ext.utils.atomic import atomic_write_json, json_finite
from espnet2_ext.zoo.loading import load_model

EVALUATION_FORMAT = "espnet2_ext.multistep_evaluation"
EVALUATION_VERSION = 1
#: ``(song, start in seconds, mixture [1, C, L], references [1, N, C, L])``.
KeyedChunk = Tuple[str, float, torch.Tensor, torch.Tensor]


def _finite_list(values: Iterable[float]) -> List[Optional[float]]:
    """Floats, with NaN and ±inf as ``None`` (undefined, never a number)."""
    return [float(v) if math.isfinite(float(v)) else None for v in values]


def _channel_mean(trace: torch.Tensor) -> List[List[Optional[float]]]:
    """[T + 1, 1, N, C] → [T + 1][N] (mean over channels; one item)."""
    return [_finite_list(row) for row in trace[:, 0].double().mean(dim=-1).tolist()]


def _nested(values: torch.Tensor) -> list:
    """A tensor as nested lists, non-finite values as ``None``."""
    if values.dim() == 1:
        return _finite_list(values.double().tolist())
    return [_nested(v) for v in values]


@torch.no_grad()
def evaluate_chunk(
    runner: MultiStepSeparator,
    mixture: torch.Tensor,
    reference: torch.Tensor,
    *,
    compute_csdr: bool = True,
) -> Dict[str, Any]:
    """Run ``runner`` on one chunk and measure the result (see the module docstring).

    Args:
        runner: the variant; its ``trace_metrics`` are recorded.
        mixture: [1, C, L].
        reference: [1, N, C, L] (measurement; an oracle runner also selects with it).
        compute_csdr: also score BSSEval v4 cSDR (the slowest measurement).

    Returns:
        ``usdr``, ``csdr`` (or ``None``), ``si_sdr``: [N]; ``traces``:
        ``{metric: [T + 1][N]}``; ``kept``: [T][N]; ``chosen``: [T][N][C'];
        ``forward_passes``, ``seconds`` and ``separator_cpu_seconds`` (this process's
        CPU time) of the separation; ``probe`` (``ratios``, ``keep`` {metric:
        [N][C']}, ``candidates`` {metric: [K][N][C']}) if the runner probes.
    """
    if mixture.dim() != 3 or mixture.shape[0] != 1:
        raise ValueError(f"one chunk [1, C, L] at a time, got {tuple(mixture.shape)}")
    cpu = time.process_time()
    estimate, info = runner.separate(mixture, reference)
    cpu = time.process_time() - cpu
    refs = reference[0].double().permute(0, 2, 1).cpu().numpy()  # [N, L, C]
    ests = estimate[0].double().permute(0, 2, 1).cpu().numpy()
    traces = {name: _channel_mean(t) for name, t in info["traces"].items()}
    if info["trace"] is not None and info["metric"] not in traces:
        traces[info["metric"]] = _channel_mean(info["trace"])
    final_si_sdr = get_metric("si_sdr")(estimate, reference.to(estimate), mixture)
    chosen = info["chosen_ratio"][:, 0]  # [T, N, C'], NaN: kept
    kept = torch.isnan(chosen).double().mean(dim=-1)  # [T, N]
    probe = None
    if info.get("probe"):
        p = info["probe"]
        probe = {
            "ratios": p["ratios"],
            "keep": {m: _nested(v[0]) for m, v in p["keep"].items()},
            "candidates": {m: _nested(v[:, 0]) for m, v in p["candidates"].items()},
        }
    return {
        "probe": probe,
        "usdr": _finite_list(usdr(refs, ests)),
        "csdr": _finite_list(csdr(refs, ests)) if compute_csdr else None,
        "si_sdr": _finite_list(final_si_sdr[0].double().mean(dim=-1).tolist()),
        "traces": traces,
        "kept": kept.tolist(),
        "chosen": [[_finite_list(c) for c in row] for row in chosen.tolist()],
        "forward_passes": int(info["forward_passes"]),
        "seconds": float(info["seconds"]),
        "separator_cpu_seconds": cpu,
    }


def describe_runner(runner: MultiStepSeparator) -> Dict[str, Any]:
    """What a variant is, for the result file and the report."""
    data: Dict[str, Any] = {
        "label": "one-step" if runner.steps == 0 else runner.label,
        "mode": "one-step" if runner.steps == 0 else runner.mode,
        "steps": runner.steps,
        "skip_converged": runner.skip_converged,
    }
    if runner.schedule is not None:
        data["schedule"] = runner.schedule.to_dict()
    elif runner.steps > 0:
        data.update(
            candidates=runner.candidates,
            grid=runner.grid if runner.ratios is None else "explicit",
            metric=runner.metric.name,
            oracle=runner.metric.requires_reference,
            joint=runner.metric.joint,
            per_channel=runner.per_channel,
            candidate_ratios=[runner.step_ratios(t) for t in (1, runner.steps)],
        )
    return data


# --------------------------------------------------------------------------- run
def _partial_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def _read_partial(
    path: Path, settings: Dict[str, Any]
) -> Dict[Tuple[str, float], dict]:
    """Chunks finished by an interrupted run with the same settings."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or json.loads(lines[0]) != json.loads(json.dumps(settings)):
        raise ValueError(
            f"{path} holds chunks of a run with other settings; remove it to start "
            "again (it is this command's partial output)"
        )
    done = {}
    for line in lines[1:]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the last line of a killed run may be cut
            break
        done[(record["song"], float(record["start"]))] = record
    return done


def run_evaluation(
    train_config: Union[str, Path],
    model_file: Optional[Union[str, Path]],
    data_dir: Union[str, Path],
    output: Union[str, Path],
    *,
    stems: Optional[Sequence[str]] = None,
    steps: Optional[int] = None,
    candidates: Optional[int] = None,
    grid: str = "uniform",
    metric: str = "snr",
    schedule: Optional[Union[str, Path]] = None,
    candidate_batch: Optional[int] = None,
    skip_converged: bool = True,
    trace_metrics: Sequence[str] = ("snr", "si_sdr"),
    probe_metrics: Sequence[str] = (),
    chunk_seconds: float = 6.0,
    chunks_per_song: Optional[int] = None,
    max_chunks: Optional[int] = None,
    inactive_threshold_db: Optional[float] = -60.0,
    compute_csdr: bool = True,
    device: str = "cpu",
) -> Dict[str, Any]:
    """Evaluate one variant of a trained model on a fixed chunk set; write the JSON.

    The chunks are :class:`SongChunks` of ``data_dir`` (``chunks_per_song``: the first
    that many chunks of every song in which every stem is active). Every finished chunk
    is appended to ``<output>.partial`` (JSON lines, first line: the settings), so a
    killed run continues where it stopped; the result is written atomically and the
    partial file removed.

    Args:
        train_config, model_file: the model.
        data_dir: a song folder (``wav.scp``, ``spk<n>.scp``), e.g. ``data/test``.
        output: the result JSON.
        stems: output names (default: the MUSDB stems for a 4-output model).
        steps: T (``0``: one-step inference; default 20). Not with ``schedule``.
        candidates, grid, metric, candidate_batch, skip_converged: the search, as for
            :class:`MultiStepSeparator` (``metric`` selects: an oracle one, or a
            non-intrusive one such as ``mixture_consistency``).
        schedule: a schedule file: the deployable schedule mode.
        trace_metrics: metrics traced after every step (with the references).
        probe_metrics: metrics scored on every step-1 candidate (search variants).
        chunk_seconds, chunks_per_song, max_chunks, inactive_threshold_db: the chunks.
        compute_csdr: score cSDR too.
        device: where the model runs.

    Returns:
        the written result.
    """
    output = Path(output)
    if output.suffix.lower() != ".json":
        raise ValueError(f"--output must end in .json, got {output}")
    model, args = load_model(train_config, model_file, device)
    num_spk = int(model.num_spk)
    if stems is None:
        stems = list(MUSDB_STEMS) if num_spk == len(MUSDB_STEMS) else None
    if stems is None or len(stems) != num_spk:
        raise ValueError(
            f"give --stems with one name per output of the model ({num_spk} outputs)"
        )
    options: Dict[str, Any] = dict(
        candidate_batch=candidate_batch,
        skip_converged=skip_converged,
        trace_metrics=trace_metrics,
        probe_metrics=probe_metrics,
    )
    if schedule is not None:
        if steps is not None or candidates is not None:
            raise ValueError("a schedule fixes the steps and weights: drop --steps")
        options["schedule"] = RatioSchedule.load(schedule)
    else:
        options.update(steps=steps, candidates=candidates, grid=grid, metric=metric)
    runner = MultiStepSeparator(espnet_model_separate_fn(model), **options)
    sample_rate = int(getattr(args, "sample_rate", None) or MUSIC_SAMPLE_RATE)
    chunks = SongChunks(
        data_dir,
        num_stems=num_spk,
        chunk_seconds=chunk_seconds,
        sample_rate=sample_rate,
        max_chunks=max_chunks,
        inactive_threshold_db=inactive_threshold_db,
        chunks_per_song=chunks_per_song,
    )
    variant = describe_runner(runner)
    settings = {
        "variant": variant,
        "data": str(data_dir),
        "chunks": [list(k) for k in chunks.keys()],
        "model_file": None if model_file is None else str(model_file),
        "trace_metrics": list(trace_metrics),
        "probe_metrics": list(probe_metrics),
        "csdr": bool(compute_csdr),
    }
    partial = _partial_path(output)
    done = _read_partial(partial, settings)
    output.parent.mkdir(parents=True, exist_ok=True)
    if not partial.is_file():
        partial.write_text(json.dumps(settings) + "\n", encoding="utf-8")
    logging.info(
        f"{variant['label']} on {chunks.num_chunks} chunks of {chunk_seconds} s from "
        f"{len(chunks.songs)} songs of {data_dir} ({len(done)} done before)"
    )
    records: List[dict] = []
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for i, (song, start, mix, ref) in enumerate(chunks.keyed(), 1):
        if (song, float(start)) in done:
            records.append(done[(song, float(start))])
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        record = {
            "song": song,
            "start": float(start),
            **evaluate_chunk(
                runner, mix.to(device), ref.to(device), compute_csdr=compute_csdr
            ),
            "cpu_seconds": time.process_time() - c0,
            "wall_seconds": time.perf_counter() - t0,
        }
        with partial.open("a", encoding="utf-8") as f:
            f.write(json.dumps(json_finite(record)) + "\n")
        records.append(record)
        gain = np.nanmean(
            [np.nanmean(np.array(r["usdr"], dtype=float)) for r in records]
        )
        logging.info(
            f"chunk {i}/{chunks.num_chunks} ({song} at {start:g} s): "
            f"{record['forward_passes']} passes, {record['wall_seconds']:.0f} s; "
            f"mean uSDR so far {gain:.2f} dB"
        )
    result = {
        "format": EVALUATION_FORMAT,
        "version": EVALUATION_VERSION,
        **settings,
        "stems": list(stems),
        "chunk_seconds": chunk_seconds,
        "chunks_per_song": chunks_per_song,
        "inactive_threshold_db": inactive_threshold_db,
        "chunk_set": chunks.describe(),
        "train_config": str(train_config),
        "records": records,
        "cost": {
            "forward_passes": sum(r["forward_passes"] for r in records),
            "separator_seconds": sum(r["seconds"] for r in records),
            "separator_cpu_seconds": sum(
                r.get("separator_cpu_seconds", 0.0) for r in records
            ),
            "cpu_seconds": sum(r["cpu_seconds"] for r in records),
            "wall_seconds": sum(r["wall_seconds"] for r in records),
            "this_run_wall_seconds": time.perf_counter() - start_wall,
            "this_run_cpu_seconds": time.process_time() - start_cpu,
        },
    }
    atomic_write_json(output, result)
    partial.unlink()
    logging.info(f"wrote {output}")
    return result


def load_evaluation(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a result of :func:`run_evaluation` (checks its format tag)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"evaluation result {path} not found")
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != EVALUATION_FORMAT:
        raise ValueError(f"{path} is not a multi-step evaluation ({EVALUATION_FORMAT})")
    if data.get("version") != EVALUATION_VERSION:
        raise ValueError(f"{path}: evaluation version {data.get('version')!r}")
    return data
