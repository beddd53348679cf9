"""One-step, multi-step oracle and multi-step deployable results side by side.

:func:`build_report` reads the run folders (:mod:`espnet2_ext.reports.multistep_runs`)
and writes into ``out_dir`` (each file atomically):

* ``RESULTS.md``: uSDR and cSDR per stem of every run (and of the mixture baseline),
  the difference to one-step inference, the cost (separator forward passes, seconds)
  and the metric after every step;
* ``summary.json``: the same numbers;
* ``images/multistep_trace.png``: the metric against the step number.

Oracle rows say so in bold (a run selected with a reference metric is an upper bound,
not a deployable result).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from espnet2_ext.reports.multistep_runs import (
    DEPLOYABLE,
    ONE_STEP,
    ORACLE,
    PathLike,
    Trace,
    Variant,
    check_same_songs,
    collect_traces,
    load_calibration,
    load_variant,
)
from espnet2_ext.reports.plots import plot_traces
from espnet2_ext.reports.tables import format_number, markdown_table
from espnet2_ext.utils.atomic import atomic_write_json, atomic_write_text

IMAGE = "images/multistep_trace.png"
#: Row order of the metrics in the score tables.
METRICS = ("uSDR", "cSDR")


# --------------------------------------------------------------------------- tables
def scores_table(variants: Sequence[Variant], include_mixture: bool = True) -> str:
    """uSDR and cSDR per stem and average for every run (and the mixture baseline)."""
    stems = variants[0].scores.stems
    columns = list(stems) + ["average"]
    rows = []
    for variant in variants:
        for metric in METRICS:
            values = variant.scores.model[metric]
            rows.append(
                [variant.name, metric] + [format_number(values[c]) for c in columns]
            )
    mixture = variants[0].scores.mixture
    if include_mixture and mixture is not None:
        for metric in METRICS:
            rows.append(
                ["mixture (input as every stem)", metric]
                + [format_number(mixture[metric][c]) for c in columns]
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
                cells.append(format_number(None if a is None or b is None else a - b))
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
        if isinstance(value, int):
            return str(value)
        return format_number(float(value), digits)

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
            row.append(format_number(t.values[step], 3) if step < len(t.values) else "")
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
