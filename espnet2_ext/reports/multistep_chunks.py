"""Multi-step variants on the same chunks: scores with their spread, paired differences.

Reads the result files of ``python -m espnet2_ext.bin.multistep_evaluate``
(:func:`espnet2_ext.enh.inference.multistep.evaluation.run_evaluation`): one folder per
model, one JSON per variant, all on the same chunks, one of them one-step inference
(``steps`` 0). :func:`build_chunk_report` writes into ``out_dir`` (each file atomically):

* ``RESULTS.md``: per model, the final uSDR, cSDR and SI-SDR (mean ± sd over chunks)
  of every variant, per stem, the paired difference to one-step inference (mean ± sd
  over chunks with a 95 % t interval, mean ± sd over songs, chunks better), the metric
  after each step, the calibrated schedules, the cost;
* ``summary.json``: the same numbers;
* ``images/multistep_trace.png``: the metric against the step, mean and per stem.

Oracle variants say so in bold: their selection used the references of the very chunks
scored (an upper bound, not a deployable result).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from espnet2_ext.enh.inference.multistep.evaluation import load_evaluation
from espnet2_ext.reports.tables import format_number, markdown_table
from espnet2_ext.utils.atomic import (
    PathLike,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)

IMAGE = "images/multistep_trace.png"
#: Final scores of every chunk record, in table order: (record key, table name).
SCORES = (("usdr", "uSDR"), ("csdr", "cSDR"), ("si_sdr", "SI-SDR"))
#: Steps shown in the trace table (those ≤ T).
TRACE_STEPS = (0, 1, 2, 3, 5, 10, 15, 20)


# --------------------------------------------------------------------------- data
@dataclass
class Variant:
    """One result file: a variant of one model on the chunk set."""

    name: str  # the file's stem, e.g. "oracle"
    data: Dict[str, Any]

    @property
    def info(self) -> Dict[str, Any]:
        return self.data["variant"]

    @property
    def oracle(self) -> bool:
        return bool(self.info.get("oracle")) or self.info.get("mode") == "oracle"

    @property
    def label(self) -> str:
        """Row label: ``oracle`` in bold for oracle variants."""
        label = self.info["label"]
        if self.info.get("mode") == "schedule":
            form = self.info["schedule"].get("search", {}).get("form", "greedy")
            per = self.info["schedule"].get("search", {}).get("per_source", True)
            label = f"deployable schedule ({describe_form(form, per)}, `{self.name}`)"
        elif self.info.get("mode") == "blind":
            info = self.info
            label = (
                f"deployable {info['metric']} search "
                f"(T={info['steps']}, K={info['candidates']})"
            )
        return label.replace("oracle", "**oracle**", 1) if self.oracle else label

    def keys(self) -> List[Tuple[str, float]]:
        return [(r["song"], float(r["start"])) for r in self.data["records"]]

    def scores(self, key: str) -> np.ndarray:
        """[chunks, N] final ``key`` (usdr, csdr, si_sdr); NaN where undefined."""
        return np.array(
            [
                [np.nan if v is None else v for v in (r[key] or [])]
                for r in self.data["records"]
            ],
            dtype=np.float64,
        )

    def trace(self, metric: str) -> Optional[np.ndarray]:
        """[chunks, T + 1, N] ``metric`` after each step, or None if not traced."""
        records = self.data["records"]
        if not all(metric in r["traces"] for r in records):
            return None
        return np.array(
            [
                [
                    [np.nan if v is None else v for v in row]
                    for row in r["traces"][metric]
                ]
                for r in records
            ],
            dtype=np.float64,
        )


def describe_form(form: str, per_source: bool) -> str:
    """How a schedule's weights were chosen, in words."""
    if form == "constant":
        held = "held for a chosen number of steps"
        return f"one weight per stem {held}" if per_source else f"one weight {held}"
    if per_source:
        return "a weight per step and stem"
    return "a weight per step, shared by the stems"


def load_run(folder: PathLike) -> List[Variant]:
    """Every result file of a folder, one-step first, then in name order.

    Raises:
        ValueError: no one-step result, or the variants scored different chunks.
    """
    folder = Path(folder)
    variants = [
        Variant(p.stem, load_evaluation(p)) for p in sorted(folder.glob("*.json"))
    ]
    one_step = [v for v in variants if v.info["steps"] == 0]
    if len(one_step) != 1:
        raise ValueError(
            f"{folder} needs exactly one one-step result (steps 0), found "
            f"{[v.name for v in one_step]}"
        )
    rest = [v for v in variants if v.info["steps"] != 0]
    keys = one_step[0].keys()
    for v in rest:
        if v.keys() != keys:
            raise ValueError(
                f"{folder}/{v.name}.json scored other chunks than the one-step result"
            )
    return one_step + rest


# --------------------------------------------------------------------------- stats
def t_quantile(dof: int) -> float:
    """The 97.5 % quantile of Student's t with ``dof`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, dof))


def spread(values: np.ndarray) -> Dict[str, Optional[float]]:
    """Mean, sd (n − 1) and the 95 % t interval's half width of the finite values."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    n = values.size
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "ci95": None}
    sd = float(np.std(values, ddof=1)) if n > 1 else None
    half = None if sd is None else t_quantile(n - 1) * sd / math.sqrt(n)
    return {"n": int(n), "mean": float(np.mean(values)), "sd": sd, "ci95": half}


def mean_sd(stats: Mapping[str, Optional[float]]) -> str:
    if stats["mean"] is None:
        return "n/a"
    if stats["sd"] is None:
        return format_number(stats["mean"])
    return f"{format_number(stats['mean'])} ± {format_number(stats['sd'])}"


def stem_average(values: np.ndarray) -> np.ndarray:
    """[chunks, N] → [chunks]: the mean over stems (NaN if a stem is undefined)."""
    return values.mean(axis=1)


def song_means(values: np.ndarray, songs: Sequence[str]) -> np.ndarray:
    """[chunks] → [songs]: the mean over each song's chunks."""
    order = list(dict.fromkeys(songs))
    songs = np.asarray(songs)
    return np.array([np.nanmean(values[songs == s]) for s in order])


# --------------------------------------------------------------------------- tables
def scores_table(variants: Sequence[Variant]) -> str:
    rows = []
    for v in variants:
        cells = [v.label]
        for key, _ in SCORES:
            cells.append(mean_sd(spread(stem_average(v.scores(key)))))
        cost = v.data["cost"]
        n = len(v.data["records"])
        cells += [
            format_number(cost["forward_passes"] / n, 1),
            format_number(cost["cpu_seconds"] / n, 1),
        ]
        rows.append(cells)
    header = ["variant"] + [f"{name} (avg)" for _, name in SCORES]
    return markdown_table(header + ["passes / chunk", "CPU s / chunk"], rows)


def stem_table(variants: Sequence[Variant], stems: Sequence[str]) -> str:
    rows = []
    for v in variants:
        for key, name in SCORES:
            values = v.scores(key)
            rows.append(
                [v.label, name]
                + [
                    format_number(spread(values[:, n])["mean"])
                    for n in range(len(stems))
                ]
            )
    return markdown_table(["variant", "metric"] + list(stems), rows)


def differences(
    variants: Sequence[Variant], stems: Sequence[str]
) -> List[Dict[str, Any]]:
    """Paired differences of every variant to one-step (the first), per score."""
    base = variants[0]
    songs = [k[0] for k in base.keys()]
    out = []
    for v in variants[1:]:
        for key, name in SCORES:
            diff = v.scores(key) - base.scores(key)  # [chunks, N]
            avg = stem_average(diff)
            finite = avg[np.isfinite(avg)]
            out.append(
                {
                    "variant": v.name,
                    "label": v.label,
                    "metric": name,
                    "chunks": spread(avg),
                    "songs": spread(song_means(avg, songs)),
                    "better": int(np.sum(finite > 0)),
                    "worse": int(np.sum(finite < 0)),
                    "count": int(finite.size),
                    "per_stem": [spread(diff[:, n])["mean"] for n in range(len(stems))],
                }
            )
    return out


def ci(stats: Mapping[str, Optional[float]]) -> str:
    """``[low, high]``: the 95 % t interval of a :func:`spread`."""
    if stats["ci95"] is None:
        return "n/a"
    lo, hi = stats["mean"] - stats["ci95"], stats["mean"] + stats["ci95"]
    return f"[{format_number(lo)}, {format_number(hi)}]"


def verdict(stats: Mapping[str, Optional[float]]) -> str:
    """Whether the 95 % interval over chunks excludes 0."""
    if stats["ci95"] is None:
        return "n/a"
    if stats["mean"] - stats["ci95"] > 0:
        return "higher"
    if stats["mean"] + stats["ci95"] < 0:
        return "lower"
    return "no difference"


def summary_table(per_model: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """One row per model and variant: the paired uSDR, cSDR and SI-SDR differences."""
    rows = []
    for model, diffs in per_model.items():
        by_variant: Dict[str, Dict[str, Any]] = {}
        for d in diffs:
            by_variant.setdefault(d["label"], {})[d["metric"]] = d
        for label, metrics in by_variant.items():
            cells = [model, label]
            for _, name in SCORES:
                d = metrics[name]["chunks"]
                cells.append(
                    f"{format_number(d['mean'])} {ci(d)}: {verdict(d)}"
                    if d["mean"] is not None
                    else "n/a"
                )
            usdr = metrics["uSDR"]
            cells.append(mean_sd(usdr["songs"]))
            rows.append(cells)
    header = ["model", "variant − one-step"]
    header += [f"{name}: mean [95 % interval] over chunks" for _, name in SCORES]
    return markdown_table(header + ["uSDR: mean ± sd over songs"], rows)


def difference_table(rows: Sequence[Mapping[str, Any]], stems: Sequence[str]) -> str:
    table = []
    for row in rows:
        table.append(
            [
                f"{row['label']} − one-step",
                row["metric"],
                mean_sd(row["chunks"]),
                ci(row["chunks"]),
                mean_sd(row["songs"]),
                f"{row['better']} / {row['worse']} / {row['count']}",
            ]
            + [format_number(x) for x in row["per_stem"]]
        )
    header = [
        "difference",
        "metric",
        "chunks: mean ± sd",
        "95 % interval (t)",
        "songs: mean ± sd",
        "chunks better / worse / all",
    ] + list(stems)
    return markdown_table(header, table)


def trace_table(variants: Sequence[Variant], metric: str) -> str:
    traced = [(v, v.trace(metric)) for v in variants[1:]]
    traced = [(v, t) for v, t in traced if t is not None]
    if not traced:
        return ""
    length = max(t.shape[1] for _, t in traced)
    steps = [s for s in TRACE_STEPS if s < length]
    rows = []
    for v, t in traced:
        means = np.nanmean(t, axis=(0, 2))  # [T + 1]
        rows.append(
            [v.label]
            + [format_number(means[s], 3) if s < len(means) else "" for s in steps]
        )
    return markdown_table(["variant"] + [f"step {s}" for s in steps], rows)


def changed_table(variants: Sequence[Variant]) -> str:
    """Share of (chunk, stem, channel) estimates that changed at each shown step."""
    rows = []
    shown = None
    for v in variants[1:]:
        kept = np.array([r["kept"] for r in v.data["records"]], dtype=np.float64)
        if kept.size == 0:
            continue
        changed = 1.0 - kept.mean(axis=(0, 2))  # [T]
        steps = [s for s in TRACE_STEPS if 1 <= s <= len(changed)]
        shown = steps if shown is None or len(steps) > len(shown) else shown
        rows.append([v.label] + [f"{100 * changed[s - 1]:.0f} %" for s in steps])
    if not rows:
        return ""
    width = len(shown) + 1
    rows = [r + [""] * (width - len(r)) for r in rows]
    return markdown_table(["variant"] + [f"step {s}" for s in shown], rows)


def chosen_table(variants: Sequence[Variant], stems: Sequence[str], step: int) -> str:
    """What the searches chose at ``step``: per stem, the share of chunk × channel
    estimates kept and the two most frequent weights."""
    rows = []
    for v in variants[1:]:
        if v.info.get("mode") not in ("oracle", "blind"):
            continue
        records = v.data["records"]
        if not records or len(records[0]["chosen"]) < step:
            continue
        cells = [v.label]
        for n in range(len(stems)):
            values = [c for r in records for c in r["chosen"][step - 1][n]]
            kept = sum(c is None for c in values)
            counts: Dict[float, int] = {}
            for c in values:
                if c is not None:
                    counts[c] = counts.get(c, 0) + 1
            top = sorted(counts.items(), key=lambda kv: (-kv[1], -kv[0]))[:2]
            parts = [f"keep {100 * kept / len(values):.0f} %"]
            parts += [f"{w:.1f}: {100 * k / len(values):.0f} %" for w, k in top]
            cells.append(", ".join(parts))
        rows.append(cells)
    if not rows:
        return ""
    return markdown_table(["variant"] + list(stems), rows)


def probe_rows(
    variants: Sequence[Variant], stems: Sequence[str], reference: str = "snr"
) -> List[Dict[str, Any]]:
    """Step-1 candidates of the probing variants: each probed criterion against
    ``reference`` (the oracle's snr), per stem.

    Over every chunk, channel and candidate weight below 1, with Δ = candidate minus
    the one-step estimate: the share with Δsnr > 0 and with Δcriterion > 0, their
    correlation, and the mean Δsnr of the estimate each criterion would pick at step 1
    (the best of "keep" and the candidates) — what selecting with it is worth in snr.
    """
    rows = []
    for v in variants[1:]:
        records = v.data["records"]
        if not records or not records[0].get("probe"):
            continue
        probe0 = records[0]["probe"]
        if reference not in probe0["candidates"]:
            continue
        ratios = np.array(probe0["ratios"])
        moved = ratios < 1.0  # r = 1 is the one-step estimate itself

        def arrays(metric):
            keep = np.array(
                [r["probe"]["keep"][metric] for r in records], dtype=np.float64
            )  # [chunks, N, C']
            cand = np.array(
                [r["probe"]["candidates"][metric] for r in records], dtype=np.float64
            )  # [chunks, K, N, C']
            return keep, cand

        ref_keep, ref_cand = arrays(reference)
        ref_delta = ref_cand - ref_keep[:, None]  # [chunks, K, N, C']
        for metric in probe0["candidates"]:
            keep, cand = arrays(metric)
            delta = cand - keep[:, None]
            for n, stem in enumerate(stems):
                d_ref = ref_delta[:, moved, n].ravel()
                d_m = delta[:, moved, n].ravel()
                ok = np.isfinite(d_ref) & np.isfinite(d_m)
                corr = None
                if ok.sum() > 2 and np.std(d_m[ok]) > 0 and np.std(d_ref[ok]) > 0:
                    corr = float(np.corrcoef(d_m[ok], d_ref[ok])[0, 1])
                # the pick at step 1: "keep" (Δ = 0) or the best candidate
                scores = np.concatenate(
                    [np.zeros_like(delta[:, :1, n]), delta[:, :, n]], axis=1
                )  # [chunks, 1 + K, C']
                gains = np.concatenate(
                    [np.zeros_like(ref_delta[:, :1, n]), ref_delta[:, :, n]], axis=1
                )
                pick = np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=1)
                picked = np.take_along_axis(gains, pick[:, None], axis=1)[:, 0]
                rows.append(
                    {
                        "variant": v.name,
                        "criterion": metric,
                        "stem": stem,
                        "candidates": int(ok.sum()),
                        "share_reference_up": float(np.mean(d_ref[ok] > 0)),
                        "share_criterion_up": float(np.mean(d_m[ok] > 0)),
                        "correlation": corr,
                        "picked_gain": float(np.nanmean(picked)),
                        "picked_changed": float(np.mean(pick > 0)),
                    }
                )
    return rows


def probe_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    table = [
        [
            f"`{r['variant']}`",
            r["criterion"],
            r["stem"],
            str(r["candidates"]),
            f"{100 * r['share_reference_up']:.0f} %",
            f"{100 * r['share_criterion_up']:.0f} %",
            format_number(r["correlation"]),
            f"{100 * r['picked_changed']:.0f} %",
            format_number(r["picked_gain"], 3),
        ]
        for r in rows
    ]
    header = [
        "run",
        "criterion",
        "stem",
        "candidates",
        "Δsnr > 0",
        "Δcriterion > 0",
        "corr(Δcriterion, Δsnr)",
        "its step-1 pick changes",
        "Δsnr of its pick (dB)",
    ]
    return markdown_table(header, table)


def schedule_table(variant: Variant, stems: Sequence[str]) -> str:
    """The weights of a schedule variant, consecutive equal steps merged."""
    ratios = variant.info["schedule"]["ratios"]
    rows, start = [], 0
    for t in range(1, len(ratios) + 1):
        if t == len(ratios) or ratios[t] != ratios[start]:
            steps = f"{start + 1}" if t - 1 == start else f"{start + 1}–{t}"
            rows.append(
                [steps] + ["keep" if r is None else f"{r:.1f}" for r in ratios[start]]
            )
            start = t
    return markdown_table(["steps"] + list(stems), rows)


def consistency(variants: Sequence[Variant]) -> Optional[float]:
    """Largest |step-0 snr of a variant − the one-step run's| (dB): one-step inside
    every variant is the one-step result."""
    base = variants[0].trace("snr")
    if base is None:
        return None
    worst = 0.0
    for v in variants[1:]:
        t = v.trace("snr")
        if t is not None:
            worst = max(worst, float(np.nanmax(np.abs(t[:, 0] - base[:, 0]))))
    return worst


# --------------------------------------------------------------------------- plot
def plot_runs(
    path: Path, runs: Mapping[str, Sequence[Variant]], stems: Sequence[str], title: str
) -> Path:
    """Rows: models; columns: mean SNR, mean SI-SDR, per-stem ΔSNR of the oracle and
    of the deployable variants (all against the step; step 0 = one-step)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(20, 4.2 * len(runs)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(runs), 4, squeeze=False)
    styles = ["-", "--", ":", "-."]
    for row, (model, variants) in enumerate(runs.items()):
        searched = [v for v in variants[1:] if v.trace("snr") is not None]
        for col, metric in enumerate(("snr", "si_sdr")):
            ax = axes[row, col]
            for i, v in enumerate(searched):
                t = v.trace(metric)
                if t is None:
                    continue
                mean = np.nanmean(t, axis=(0, 2))
                name = f"{v.name} (oracle)" if v.oracle else v.name
                ax.plot(np.arange(len(mean)), mean, marker="o", ms=2.5,
                        color=f"C{i}", label=name)  # fmt: skip
            ax.set_title(
                f"{model}: {metric}, mean of chunks and stems", fontsize="medium"
            )
            ax.set_ylabel(f"{metric} [dB]")
        for col, oracle in ((2, True), (3, False)):
            ax = axes[row, col]
            for i, v in enumerate(searched):
                if v.oracle != oracle:
                    continue
                t = v.trace("snr")
                per_stem = np.nanmean(t, axis=0)  # [T + 1, N]
                steps = np.arange(per_stem.shape[0])
                for n in range(len(stems)):
                    ax.plot(steps, per_stem[:, n] - per_stem[0, n], color=f"C{i}",
                            linestyle=styles[n % 4])  # fmt: skip
            what = "oracle" if oracle else "deployable (colours as left)"
            ax.set_title(f"{model}: Δsnr per stem, {what}", fontsize="medium")
            ax.set_ylabel("Δsnr over step 0 [dB]")
            handles = [ax.plot([], [], color="black", linestyle=styles[n % 4])[0]
                       for n in range(len(stems))]  # fmt: skip
            ax.legend(handles, list(stems), fontsize="x-small", loc="best")
        for ax in axes[row]:
            ax.set_xlabel("step (0 = one-step)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        axes[row, 0].legend(fontsize="x-small", loc="best")
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return atomic_write_bytes(path, buffer.getvalue())


# --------------------------------------------------------------------------- report
def describe_chunks(variant: Variant) -> str:
    data = variant.data
    chunk_set = data["chunk_set"]
    songs = list(dict.fromkeys(k[0] for k in variant.keys()))
    step = data["chunk_seconds"]
    return (
        f"{chunk_set['chunks']} chunks of {step:g} s from "
        f"{len(songs)} songs of `{data['data']}` (the first {data['chunks_per_song']} "
        f"chunk(s) of each song, cut at 0, {step:g}, {2 * step:g}, … s, in which every "
        f"stem is at least {data.get('inactive_threshold_db', -60.0):g} dB re the "
        f"mixture; {chunk_set['inactive_chunks']} chunks with a quieter stem left "
        "out): " + ", ".join(songs)
    )


def build_chunk_report(
    runs: Mapping[str, PathLike],
    out_dir: PathLike,
    *,
    title: str = "multi-step inference on a fixed chunk set",
    preamble: Optional[str] = None,
) -> Dict[str, Any]:
    """Write RESULTS.md, summary.json and the plot for ``{model name: folder}``."""
    loaded = {name: load_run(folder) for name, folder in runs.items()}
    if not loaded:
        raise ValueError("give at least one run folder")
    stems = next(iter(loaded.values()))[0].data["stems"]
    out_dir = Path(out_dir)
    plot_runs(out_dir / IMAGE, loaded, stems, title)
    blocks = ["<!-- Generated by espnet2_ext.bin.multistep_report --chunk_runs -->"]
    if preamble:
        blocks.append(preamble)
    summary: Dict[str, Any] = {"title": title, "stems": stems, "models": {}}
    all_diffs = {model: differences(v, stems) for model, v in loaded.items()}
    blocks += [
        "## Summary: paired differences to one-step inference (dB, stem average)",
        "higher / lower: the 95 % t interval over chunks excludes 0; **oracle** rows "
        "selected with the references of the chunks scored (an upper bound).",
        summary_table(all_diffs),
    ]
    for model, variants in loaded.items():
        diffs = all_diffs[model]
        worst = consistency(variants)
        blocks += [
            f"## {model}",
            describe_chunks(variants[0]) + ".",
            "### Final scores (dB; mean ± sd over chunks of the stem average)",
            scores_table(variants),
            "### Paired difference to one-step inference (dB, stem average)",
            "Per chunk the variant's score minus one-step's on the same chunk; the 95 % "
            "interval is Student's t over chunks (chunks of one song are not "
            "independent: the song column is the stricter view).",
            difference_table(diffs, stems),
            "### Per stem (dB, mean over chunks)",
            stem_table(variants, stems),
            "### snr after each step (mean over chunks, stems and channels; dB)",
            trace_table(variants, "snr"),
            "### si_sdr after each step (dB)",
            trace_table(variants, "si_sdr"),
        ]
        selection = [
            v.info["metric"]
            for v in variants[1:]
            if v.info.get("metric") not in (None, "snr", "si_sdr")
        ]
        for metric in dict.fromkeys(selection):
            blocks += [
                f"### {metric} after each step (the blind selection metric; dB)",
                trace_table(variants, metric),
            ]
        blocks += [
            "### Estimates changed at each step (share of chunk × stem × channel)",
            changed_table(variants),
            "### Weights the searches chose at step 1 (share of chunk × channel)",
            chosen_table(variants, stems, 1),
        ]
        probes = probe_rows(variants, stems)
        if probes:
            blocks += [
                "### Step-1 candidates under each criterion, against snr",
                "Every candidate of step 1 (weights below 1, per chunk, stem and "
                "channel) scored under each probed criterion and under snr, as "
                "differences Δ to the one-step estimate (a joint criterion with the "
                "other stems at one-step); the last two columns: how often the "
                "criterion's own pick at step 1 (the best of keep and the candidates) "
                "is a candidate, and the mean Δsnr of that pick. snr's own row is the "
                "oracle's first step.",
                probe_table(probes),
            ]
        for v in variants[1:]:
            if v.info.get("mode") == "schedule":
                schedule = v.info["schedule"]
                search = schedule.get("search", {})
                form = describe_form(
                    search.get("form", "greedy"), search.get("per_source", True)
                )
                oracle = "oracle " if schedule["oracle"] else ""
                blocks += [
                    f"### Schedule `{v.name}`: mixture weight per step and stem "
                    "(keep = previous estimate)",
                    f"Calibrated with {oracle}{schedule['metric']} on "
                    f"{search.get('validation_items', '?')} chunks of "
                    f"`{search.get('data', '?')}` ({form}, "
                    f"{search.get('grid', '?')} grid, "
                    f"K = {search.get('candidates', '?')}).",
                    schedule_table(v, stems),
                ]
        if worst is not None:
            blocks.append(
                f"Check: step 0 of every variant is the one-step result (largest "
                f"difference of its snr on a chunk: {worst:.2g} dB)."
            )
        summary["models"][model] = {
            "chunks": variants[0].keys(),
            "variants": {
                v.name: {
                    "label": v.label,
                    "info": v.info,
                    "scores": {
                        name: spread(stem_average(v.scores(key)))
                        for key, name in SCORES
                    },
                    "cost": v.data["cost"],
                }
                for v in variants
            },
            "differences": diffs,
            "probes": probe_rows(variants, stems),
            "step0_max_difference_db": worst,
        }
    blocks += ["## Plot", f"![multistep_trace]({IMAGE})"]
    text = "\n".join(b.rstrip("\n") + "\n" for b in blocks if b)
    atomic_write_text(out_dir / "RESULTS.md", text)
    atomic_write_json(out_dir / "summary.json", summary)
    return summary
