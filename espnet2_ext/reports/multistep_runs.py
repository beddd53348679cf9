"""The run folders that the multi-step report compares: scores, cost and traces.

A run folder is a separation run of the same songs (``enh_inference`` outputs), scored
by ``python -m espnet2_ext.bin.music_score`` into ``<run>/scoring``:

* scores: ``<run>/scoring/summary.json`` and ``scores.csv`` (every run must have scored
  the same songs);
* multi-step cost and traces: ``<run>/multistep_summary.json``, or the per-job files
  ``<run>/split/out.*/multistep_summary.json`` of parallel inference, one entry per
  song; the trace is the metric after each step (step 0: one-step), mean over chunks,
  stems and channels, for the metric that run could compute (the oracle run: its
  selection metric; a deployable run only if it was given references);
* wall-clock seconds of a whole inference command: ``<run>/inference_time.json``
  (``{"wall_seconds": s, "nj": n}``, written by the recipe's ``local/multistep.sh``);
* the calibration report of ``python -m espnet2_ext.bin.multistep_calibrate`` (the
  schedule, its calibration cost, and the traces of the fixed schedule on the
  validation chunks and on every ``--eval_data`` set, under several metrics).

Labelling rule: a run selected with a reference metric is an **oracle** result, and a
run is only accepted as one if its own ``multistep_summary.json`` says it is one (see
:func:`load_variant`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

PathLike = Union[str, Path]

SUMMARY_NAME = "multistep_summary.json"
TIME_NAME = "inference_time.json"

ONE_STEP = "one-step"
ORACLE = "oracle"
DEPLOYABLE = "deployable"
BLIND = "blind"


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


# ------------------------------------------------------------------------ variants
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
