#!/usr/bin/env python3
"""One-step, multi-step oracle and multi-step deployable results side by side.

Reads the folders of separation runs of the same songs (``enh_inference`` outputs,
scored by ``python -m espnet2_ext.bin.music_score`` into ``<run>/scoring``) and writes
one report::

    python -m espnet2_ext.bin.multistep_report \\
        --one_step exp/enh_demo/separate_test \\
        --oracle exp/enh_demo/separate_test_multistep_oracle \\
        --schedule exp/enh_demo/separate_test_multistep_schedule \\
        --calibration exp/enh_demo/multistep_calibration.json \\
        --out_dir exp/enh_demo/multistep_test

Writes into ``--out_dir`` (each file atomically):

* ``RESULTS.md``: uSDR and cSDR per stem of every run (and of the mixture baseline),
  the difference to one-step inference, the cost (separator forward passes, seconds)
  and the metric after every step;
* ``summary.json``: the same numbers;
* ``images/multistep_trace.png``: the metric against the step number.

Labelling rule: a run selected with a reference metric is an **oracle** result; its
rows say so in bold, and a run is only accepted as ``--oracle`` or ``--schedule`` if
its own ``multistep_summary.json`` says it is one (a deployable run passed as
``--oracle``, or the reverse, is an error).

Where numbers come from:

* scores: ``<run>/scoring/summary.json`` and ``scores.csv`` (every run must have scored
  the same songs);
* multi-step cost and traces: ``<run>/multistep_summary.json``, or the per-job files
  ``<run>/split/out.*/multistep_summary.json`` of parallel inference, one entry per
  song; the trace is the metric after each step (step 0: one-step), mean over chunks,
  stems and channels, for the metric that run could compute (the oracle run: its
  selection metric; a deployable run only if it was given references);
* wall-clock seconds of a whole inference command: ``<run>/inference_time.json``
  (``{"wall_seconds": s, "nj": n}``, written by the recipe's ``local/multistep.sh``);
* ``--calibration``: the report of ``python -m espnet2_ext.bin.multistep_calibrate``
  (the schedule, its calibration cost, and the traces of the fixed schedule on the
  validation chunks and on every ``--eval_data`` set, under several metrics).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from espnet2_ext.utils.cli import run_command
from espnet2_ext.utils.results import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    markdown_table,
)

PathLike = Union[str, Path]

SUMMARY_NAME = "multistep_summary.json"
TIME_NAME = "inference_time.json"
IMAGE = "images/multistep_trace.png"
METRICS = ("uSDR", "cSDR")

ONE_STEP = "one-step"
ORACLE = "oracle"
DEPLOYABLE = "deployable"
BLIND = "blind"


# --------------------------------------------------------------------------- reading
@dataclass
class Scores:
    """The scoring outputs of one run.

    Attributes:
        scoring_dir: the folder with ``summary.json`` and ``scores.csv``.
        tag: the system name used when scoring.
        stems: stem names, in the column order.
        model: ``{"uSDR": {stem: dB, "average": dB}, "cSDR": {...}}`` of the run.
        mixture: the same for the mixture baseline (None if absent).
        tracks: the songs scored.
    """

    scoring_dir: Path
    tag: str
    stems: List[str]
    model: Dict[str, Dict[str, Optional[float]]]
    mixture: Optional[Dict[str, Dict[str, Optional[float]]]]
    tracks: List[str]


def scoring_dir_of(run_dir: PathLike) -> Path:
    """``<run>/scoring`` if it holds a ``summary.json``, else ``<run>`` itself."""
    run_dir = Path(run_dir)
    for candidate in (run_dir / "scoring", run_dir):
        if (candidate / "summary.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"no scoring/summary.json in {run_dir}: score the run first (python -m "
        "espnet2_ext.bin.music_score --out_dir <run>/scoring ...)"
    )


def load_scores(run_dir: PathLike) -> Scores:
    """Read ``summary.json`` and the scored tracks of ``scores.csv`` of a run."""
    folder = scoring_dir_of(run_dir)
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    try:
        tag = summary["tag"]
        systems = summary["systems"]
        model = systems[tag]
        stems = list(summary["stems"])
    except (KeyError, TypeError) as error:
        raise ValueError(
            f"{folder / 'summary.json'} is not a music_score summary (missing {error})"
        ) from None
    tracks: List[str] = []
    csv_path = folder / "scores.csv"
    if csv_path.is_file():
        with csv_path.open(encoding="utf-8", newline="") as f:
            tracks = sorted(
                {row["track"] for row in csv.DictReader(f) if row["system"] == tag}
            )
    return Scores(
        scoring_dir=folder,
        tag=tag,
        stems=stems,
        model=model,
        mixture=systems.get("mixture"),
        tracks=tracks,
    )


@dataclass
class MultiStepCost:
    """Totals of the ``multistep_summary.json`` entries of one run (all songs).

    Attributes:
        label: the run's own label (``multi-step oracle snr (T=20, K=10)``, …).
        kind: ``oracle``, ``deployable`` or ``blind``.
        metric_label: the traced metric (``oracle snr``), None if not traced.
        songs: entries read.
        chunks: separator calls of the multi-step wrapper (one per chunk batch).
        forward_passes: separator input signals in total.
        separator_calls: separator invocations in total.
        seconds: time spent inside multi-step inference (separation only).
        trace: [T + 1] mean metric after each step (None: not traced).
        trace_per_source: [T + 1][N] the same per stem.
    """

    label: str
    kind: str
    metric_label: Optional[str]
    songs: int
    chunks: int
    forward_passes: int
    separator_calls: int
    seconds: float
    trace: Optional[List[float]] = None
    trace_per_source: Optional[List[List[float]]] = None

    @property
    def metric(self) -> Optional[str]:
        """The traced metric's registry name (``oracle snr`` → ``snr``)."""
        if self.metric_label is None:
            return None
        return self.metric_label.split()[-1]


def kind_of(label: str) -> str:
    """``oracle``, ``deployable`` or ``blind`` from a MultiStepSeparator label."""
    if label.startswith("multi-step deployable"):
        return DEPLOYABLE
    if label.startswith("multi-step oracle"):
        return ORACLE
    if label.startswith("multi-step "):
        return BLIND
    raise ValueError(f"not a multi-step label: {label!r}")


def summary_files(run_dir: PathLike) -> List[Path]:
    """The run's ``multistep_summary.json``, or those of its parallel jobs."""
    run_dir = Path(run_dir)
    merged = run_dir / SUMMARY_NAME
    if merged.is_file():
        return [merged]
    return sorted(run_dir.glob(f"split/out.*/{SUMMARY_NAME}"))


def load_multistep(run_dir: PathLike) -> MultiStepCost:
    """Sum the per-song multi-step summaries of a run.

    The trace is averaged over songs weighted by their chunk count (= a mean over all
    chunks).

    Raises:
        FileNotFoundError: the run has no multi-step summary.
        ValueError: the songs carry different labels (runs mixed up).
    """
    files = summary_files(run_dir)
    if not files:
        raise FileNotFoundError(
            f"{run_dir} has no {SUMMARY_NAME} (nor split/out.*/{SUMMARY_NAME}): was it "
            "separated with --multistep_enable true?"
        )
    entries: Dict[str, dict] = {}
    for path in files:
        for song, entry in json.loads(path.read_text(encoding="utf-8")).items():
            if song in entries:
                raise ValueError(f"{song} appears in two summaries of {run_dir}")
            entries[song] = entry
    if not entries:
        raise ValueError(f"the multi-step summaries of {run_dir} are empty")
    labels = {entry["label"] for entry in entries.values()}
    if len(labels) > 1:
        raise ValueError(
            f"{run_dir} mixes runs with different labels: {sorted(labels)}"
        )
    label = labels.pop()
    chunks = sum(int(entry["calls"]) for entry in entries.values())
    traced = [e for e in entries.values() if e.get("mean_trace_per_source") is not None]
    trace = per_source = None
    if traced and len(traced) == len(entries):
        weights = np.array([float(e["calls"]) for e in traced])
        stacked = np.array(
            [e["mean_trace_per_source"] for e in traced], dtype=np.float64
        )  # [songs, T + 1, N]
        per_source_arr = np.tensordot(weights / weights.sum(), stacked, axes=1)
        per_source = per_source_arr.tolist()
        trace = per_source_arr.mean(axis=1).tolist()
    return MultiStepCost(
        label=label,
        kind=kind_of(label),
        metric_label=(
            next(iter(entries.values())).get("metric_label") if trace else None
        ),
        songs=len(entries),
        chunks=chunks,
        forward_passes=sum(int(e["forward_passes"]) for e in entries.values()),
        separator_calls=sum(int(e["separator_calls"]) for e in entries.values()),
        seconds=float(sum(float(e["seconds"]) for e in entries.values())),
        trace=trace,
        trace_per_source=per_source,
    )


def load_wall_seconds(run_dir: PathLike) -> Optional[Dict[str, float]]:
    """``inference_time.json`` of a run (``wall_seconds``, ``nj``), if written."""
    path = Path(run_dir) / TIME_NAME
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if "wall_seconds" not in data:
        raise ValueError(f"{path} has no wall_seconds")
    return data


# --------------------------------------------------------------------------- model
@dataclass
class Variant:
    """One row group of the report: a run with its scores, label and cost."""

    kind: str  # one-step, oracle, deployable, blind
    name: str  # markdown label (oracle in bold)
    plain_name: str  # the same without markdown
    run_dir: Path
    scores: Scores
    multistep: Optional[MultiStepCost] = None
    wall: Optional[Dict[str, float]] = None


def _short_label(cost: MultiStepCost) -> Tuple[str, str]:
    """(markdown, plain) row labels of a multi-step run."""
    if cost.kind == ORACLE:
        # "multi-step oracle snr (T=5, K=5)": the word oracle in bold
        plain = cost.label
        return plain.replace("oracle", "**oracle**", 1), plain
    if cost.kind == DEPLOYABLE:
        plain = "multi-step deployable (validation schedule)"
        return plain, plain
    return cost.label, cost.label


def load_variant(run_dir: PathLike, expected: str) -> Variant:
    """Read a run and check that it is what the caller says it is.

    Args:
        run_dir: the run folder.
        expected: ``one-step``, ``oracle`` or ``deployable`` (``blind`` runs with a
            registered non-intrusive metric are accepted as ``deployable`` too).

    Raises:
        ValueError: the run's own summary says another kind (e.g. an oracle run given
            as ``--schedule``), or a one-step run carries a multi-step summary.
    """
    run_dir = Path(run_dir)
    scores = load_scores(run_dir)
    wall = load_wall_seconds(run_dir)
    if expected == ONE_STEP:
        if summary_files(run_dir):
            raise ValueError(
                f"{run_dir} holds a {SUMMARY_NAME}: it is a multi-step run, not the "
                "one-step one"
            )
        return Variant(ONE_STEP, ONE_STEP, ONE_STEP, run_dir, scores, None, wall)
    cost = load_multistep(run_dir)
    allowed = {ORACLE: {ORACLE}, DEPLOYABLE: {DEPLOYABLE, BLIND}}[expected]
    if cost.kind not in allowed:
        raise ValueError(
            f"{run_dir} was given as a {expected} run but its summary says "
            f"{cost.label!r} ({cost.kind}); pass oracle runs with --oracle and "
            "schedule (or non-intrusive metric) runs with --schedule"
        )
    name, plain = _short_label(cost)
    return Variant(cost.kind, name, plain, run_dir, scores, cost, wall)


def check_same_songs(variants: Sequence[Variant]) -> None:
    """Every run must have scored the same songs with the same stems."""
    first = variants[0]
    for other in variants[1:]:
        if other.scores.stems != first.scores.stems:
            raise ValueError(
                f"{other.run_dir} scored stems {other.scores.stems}, {first.run_dir} "
                f"{first.scores.stems}: the table needs the same stems"
            )
        if other.scores.tracks != first.scores.tracks:
            only = sorted(set(other.scores.tracks) ^ set(first.scores.tracks))
            raise ValueError(
                f"{other.run_dir} and {first.run_dir} scored different songs "
                f"(differing: {only[:5]}); a side-by-side table needs the same songs"
            )


def load_calibration(path: Optional[PathLike]) -> Optional[dict]:
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration report {path} not found")
    data = json.loads(path.read_text(encoding="utf-8"))
    if "schedule" not in data or "cost" not in data:
        raise ValueError(
            f"{path} is not a report of espnet2_ext.bin.multistep_calibrate"
        )
    return data


# --------------------------------------------------------------------------- traces
@dataclass
class Trace:
    """One line of the metric-vs-step plot: a mean over chunks, stems and channels."""

    label: str
    metric: str
    values: List[Optional[float]]
    per_source: Optional[List[List[Optional[float]]]] = None


def collect_traces(
    variants: Sequence[Variant], calibration: Optional[dict]
) -> List[Trace]:
    """The traces of the multi-step runs and of the calibration report."""
    traces: List[Trace] = []
    for variant in variants:
        cost = variant.multistep
        if cost is None or cost.trace is None:
            continue
        what = "oracle selection" if cost.kind == ORACLE else cost.kind
        traces.append(
            Trace(
                label=f"{what}, {variant.run_dir.name}",
                metric=cost.metric,
                values=cost.trace,
                per_source=cost.trace_per_source,
            )
        )
    if calibration is not None:
        for data, per_metric in calibration.get("traces", {}).items():
            for metric, rows in per_metric.items():
                values = [
                    None if any(v is None for v in row) else float(np.mean(row))
                    for row in rows
                ]
                traces.append(
                    Trace(
                        label=f"deployable schedule, {Path(data).name} chunks",
                        metric=metric,
                        values=values,
                        per_source=rows,
                    )
                )
    return traces


def plot_traces(
    path: PathLike, traces: Sequence[Trace], stems: Sequence[str], title: str
) -> Path:
    """Metric (dB) against the step: a panel per metric; dashed lines per stem below.

    Drawn on matplotlib's Agg canvas, written atomically as PNG.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    metrics = list(dict.fromkeys(t.metric for t in traces))
    n_cols = max(len(metrics), 1)
    figure = Figure(figsize=(5.5 * n_cols, 8.0))
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, n_cols, squeeze=False)
    labels = list(dict.fromkeys(t.label for t in traces))
    colors = {label: f"C{i}" for i, label in enumerate(labels)}
    styles = ["-", "--", ":", "-."]
    for col, metric in enumerate(metrics):
        top, bottom = axes[0, col], axes[1, col]
        for trace in (t for t in traces if t.metric == metric):
            steps = np.arange(len(trace.values))
            values = np.array(
                [np.nan if v is None else v for v in trace.values], dtype=float
            )
            top.plot(steps, values, marker="o", ms=3, color=colors[trace.label],
                     label=trace.label)  # fmt: skip
            if trace.per_source is not None:
                rows = np.array(
                    [[np.nan if v is None else v for v in r] for r in trace.per_source],
                    dtype=float,
                )  # [T + 1, N]
                for n, stem in enumerate(stems[: rows.shape[1]]):
                    bottom.plot(
                        steps,
                        rows[:, n] - rows[0, n],
                        linestyle=styles[n % len(styles)],
                        color=colors[trace.label],
                        label=f"{stem}: {trace.label}",
                    )
        for axis in (top, bottom):
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        top.set_title(f"{metric}: mean over stems")
        top.set_xlabel("step (0 = one-step)")
        top.set_ylabel(f"{metric} [dB]")
        top.grid(alpha=0.3)
        top.legend(fontsize="x-small", loc="best")
        bottom.set_title(f"{metric}: gain over step 0 per stem (line style = stem)")
        bottom.set_xlabel("step (0 = one-step)")
        bottom.set_ylabel(f"Δ{metric} [dB]")
        bottom.grid(alpha=0.3)
        handles = [
            bottom.plot([], [], color="black", linestyle=styles[n % len(styles)])[0]
            for n in range(len(stems))
        ]
        bottom.legend(handles, list(stems), fontsize="x-small", loc="best")
    if not metrics:
        axes[0, 0].text(0.5, 0.5, "no traces", ha="center")
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return atomic_write_bytes(path, buffer.getvalue())


# --------------------------------------------------------------------------- tables
def _fmt(value: Optional[float], digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def scores_table(variants: Sequence[Variant], include_mixture: bool = True) -> str:
    """uSDR and cSDR per stem and average for every run (and the mixture baseline)."""
    stems = variants[0].scores.stems
    columns = list(stems) + ["average"]
    rows = []
    for variant in variants:
        for metric in METRICS:
            values = variant.scores.model[metric]
            rows.append([variant.name, metric] + [_fmt(values[c]) for c in columns])
    mixture = variants[0].scores.mixture
    if include_mixture and mixture is not None:
        for metric in METRICS:
            rows.append(
                ["mixture (input as every stem)", metric]
                + [_fmt(mixture[metric][c]) for c in columns]
            )
    return markdown_table(["system", "metric"] + columns, rows)


def difference_table(variants: Sequence[Variant]) -> str:
    """Every multi-step run minus one-step inference, per stem and metric."""
    base = variants[0]
    stems = base.scores.stems
    columns = list(stems) + ["average"]
    rows = []
    for variant in variants[1:]:
        for metric in METRICS:
            cells = []
            for c in columns:
                a, b = variant.scores.model[metric][c], base.scores.model[metric][c]
                cells.append(_fmt(None if a is None or b is None else a - b))
            rows.append([f"{variant.name} − one-step", metric] + cells)
    return markdown_table(["system", "metric"] + columns, rows)


def one_step_chunks(variants: Sequence[Variant]) -> Optional[int]:
    """Chunks separated per run (the one-step passes), from the multi-step runs."""
    counts = {v.multistep.chunks for v in variants if v.multistep is not None}
    return counts.pop() if len(counts) == 1 else None


def cost_rows(
    variants: Sequence[Variant], calibration: Optional[dict]
) -> List[Dict[str, object]]:
    """Cost per run: chunks, forward passes, seconds (None where not recorded)."""
    chunks = one_step_chunks(variants)
    rows = []
    for variant in variants:
        cost = variant.multistep
        row: Dict[str, object] = {"system": variant.plain_name, "name": variant.name}
        if cost is None:
            row.update(chunks=chunks, forward_passes=chunks, separator_seconds=None)
        else:
            row.update(
                chunks=cost.chunks,
                forward_passes=cost.forward_passes,
                separator_seconds=round(cost.seconds, 2),
            )
        row["passes_per_chunk"] = (
            None
            if not row["chunks"]
            else row["forward_passes"] / row["chunks"]  # type: ignore[operator]
        )
        row["wall_seconds"] = (
            None if variant.wall is None else variant.wall["wall_seconds"]
        )
        row["nj"] = None if variant.wall is None else variant.wall.get("nj")
        rows.append(row)
    if calibration is not None:
        cost = calibration["cost"]
        chunks_valid = calibration.get("validation", {}).get("chunks")
        rows.append(
            {
                "system": "schedule calibration (once, validation chunks)",
                "name": "schedule calibration (once, validation chunks)",
                "chunks": chunks_valid,
                "forward_passes": cost.get("forward_passes"),
                "passes_per_chunk": cost.get("passes_per_chunk"),
                "separator_seconds": cost.get("seconds"),
                "wall_seconds": cost.get("wall_seconds"),
                "nj": 1,
            }
        )
    return rows


def cost_table(rows: Sequence[Mapping[str, object]]) -> str:
    def cell(value, digits=1):
        if value is None:
            return "n/a"
        return str(value) if isinstance(value, int) else _fmt(float(value), digits)

    return markdown_table(
        ["system", "chunks", "forward passes", "passes / chunk",
         "separator s", "command wall s (jobs)"],
        [
            [
                row["name"],
                cell(row["chunks"]),
                cell(row["forward_passes"]),
                cell(row["passes_per_chunk"]),
                cell(row["separator_seconds"]),
                "n/a"
                if row["wall_seconds"] is None
                else f"{float(row['wall_seconds']):.1f} ({row['nj']})",
            ]
            for row in rows
        ],
    )  # fmt: skip


def trace_table(traces: Sequence[Trace]) -> str:
    """Mean metric after each step, one column per trace."""
    if not traces:
        return ""
    length = max(len(t.values) for t in traces)
    header = ["step"] + [f"{t.metric}: {t.label}" for t in traces]
    rows = []
    for step in range(length):
        row = [str(step)]
        for t in traces:
            row.append(_fmt(t.values[step], 3) if step < len(t.values) else "")
        rows.append(row)
    return markdown_table(header, rows)


def schedule_table(calibration: dict, stems: Sequence[str]) -> str:
    """The calibrated mixture weights per step and stem."""
    schedule = calibration["schedule"]
    names = schedule.get("sources") or list(stems)
    rows = [
        [str(t + 1)] + ["keep" if r is None else f"{r:.3f}" for r in row]
        for t, row in enumerate(schedule["ratios"])
    ]
    return markdown_table(["step"] + list(names), rows)


def describe_schedule(calibration: dict) -> str:
    """One sentence: how the schedule was chosen (metric, search, validation data)."""
    schedule = calibration["schedule"]
    search = schedule.get("search", {})
    metric = ("oracle " if schedule.get("oracle") else "") + str(schedule.get("metric"))
    parts = [f"{len(schedule['ratios'])} steps"]
    if "candidates" in search:
        parts.append(f"K = {search['candidates']} ({search.get('grid', '?')} grid)")
    parts.append(
        "a weight per stem" if search.get("per_source", True) else "one shared weight"
    )
    if "chunk_seconds" in search:
        parts.append(f"{search['chunk_seconds']} s chunks")
    validation = calibration.get("validation", {})
    where = search.get("data", "the validation set")
    return (
        f"Selected with {metric} on {validation.get('chunks', '?')} chunks of `{where}` "
        f"({validation.get('inactive_chunks', 0)} with an inactive stem left out): "
        + ", ".join(parts)
        + "."
    )


# --------------------------------------------------------------------------- report
def build_report(
    one_step: PathLike,
    oracle: Sequence[PathLike] = (),
    schedule: Sequence[PathLike] = (),
    calibration: Optional[PathLike] = None,
    out_dir: PathLike = "multistep_report",
    title: str = "multi-step inference",
) -> Dict[str, object]:
    """Write RESULTS.md, summary.json and the trace plot; return the summary."""
    variants = [load_variant(one_step, ONE_STEP)]
    variants += [load_variant(d, ORACLE) for d in oracle]
    variants += [load_variant(d, DEPLOYABLE) for d in schedule]
    if len(variants) < 2:
        raise ValueError("give at least one --oracle or --schedule run to compare")
    check_same_songs(variants)
    calib = load_calibration(calibration)
    stems = variants[0].scores.stems
    traces = collect_traces(variants, calib)
    out_dir = Path(out_dir)
    plot_traces(out_dir / IMAGE, traces, stems, title)
    costs = cost_rows(variants, calib)

    description = [
        f"songs: {len(variants[0].scores.tracks)} "
        f"({', '.join(variants[0].scores.tracks[:6])}"
        f"{' …' if len(variants[0].scores.tracks) > 6 else ''}); stems: "
        + ", ".join(stems),
        "uSDR: whole-song SNR per channel, averaged over channels, mean over songs; "
        "cSDR: museval BSSEval v4, 1 s windows, median over windows, median over songs",
        "**oracle**: blends selected per chunk, stem and channel with the reference "
        "stems of the very songs scored (an upper bound, not a deployable result)",
        "deployable: one fixed mixture weight per step and stem, chosen on the "
        "validation chunks (schedule below); no reference is used on these songs",
    ]
    for variant in variants:
        detail = ""
        if variant.multistep and variant.multistep.label != variant.plain_name:
            detail = f" ({variant.multistep.label})"
        description.append(f"{variant.name}: `{variant.run_dir}`{detail}")
    blocks = [
        "<!-- Generated by espnet2_ext.bin.multistep_report -->",
        f"# RESULTS: {title}",
        "\n".join(f"- {line}" for line in description),
        "## Scores (dB)",
        scores_table(variants),
        "## Difference to one-step inference (dB)",
        difference_table(variants),
        "## Cost",
        "Forward passes: separator input signals (a chunk of one song, one blend). "
        "Separator s: time inside the (multi-step) separation of all chunks; command "
        "wall s: the whole inference command (model loading and file I/O included), "
        "with the number of parallel jobs.",
        cost_table(costs),
    ]
    if calib is not None:
        blocks += [
            "## Schedule (mixture weight per step and stem; keep = previous estimate)",
            describe_schedule(calib),
            schedule_table(calib, stems),
        ]
    if traces:
        blocks += [
            "## Metric after each step (mean over chunks, stems, channels; dB)",
            "Step 0 is one-step inference. Traces are chunk-level means, not the "
            "song-level scores above.",
            trace_table(traces),
        ]
    blocks += ["## Plots", f"![multistep_trace]({IMAGE})"]
    text = "\n".join(b.rstrip("\n") + "\n" for b in blocks if b)
    atomic_write_text(out_dir / "RESULTS.md", text)

    summary = {
        "title": title,
        "stems": stems,
        "tracks": variants[0].scores.tracks,
        "systems": {
            v.plain_name: {
                "kind": v.kind,
                "oracle": v.kind == ORACLE,
                "run_dir": str(v.run_dir),
                "label": v.multistep.label if v.multistep else ONE_STEP,
                "uSDR": v.scores.model["uSDR"],
                "cSDR": v.scores.model["cSDR"],
            }
            for v in variants
        },
        "mixture": variants[0].scores.mixture,
        "cost": [{k: v for k, v in row.items() if k != "name"} for row in costs],
        "traces": [t.__dict__ for t in traces],
    }
    atomic_write_json(out_dir / "summary.json", summary)
    return summary


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet2_ext.bin.multistep_report",
        description="Side-by-side results of one-step, multi-step oracle and "
        "multi-step deployable separation runs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--one_step", required=True, help="run folder of one-step inference (scored)"
    )
    parser.add_argument(
        "--oracle",
        action="append",
        default=[],
        help="run folder of multi-step inference with an oracle metric (repeatable)",
    )
    parser.add_argument(
        "--schedule",
        action="append",
        default=[],
        help="run folder of multi-step inference with a schedule (repeatable)",
    )
    parser.add_argument(
        "--calibration",
        default=None,
        help="multistep_calibration.json of multistep_calibrate (schedule, traces)",
    )
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--title", default="multi-step inference")
    parser.add_argument("--log_level", default="INFO")
    return parser


def _report(out_dir: str, **options) -> None:
    build_report(out_dir=out_dir, **options)
    logging.info(f"wrote {Path(out_dir) / 'RESULTS.md'}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command("multistep_report", get_parser(), _report, argv)


if __name__ == "__main__":
    sys.exit(main())
