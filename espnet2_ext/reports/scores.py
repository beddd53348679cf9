"""The outputs of scoring separated songs (:mod:`espnet2_ext.metrics.scoring`).

Written together as one set of files (all or none, :func:`atomic_write_set`):

* ``<out_dir>/scores.csv``: per track, system and stem: uSDR, museval's cSDR, the cSDR
  on the windows where the stem is active, and the window counts;
* ``<out_dir>/summary.json``: the per-stem and average numbers of both systems, the
  songs each number rests on, the extra active-window numbers, the silent stems;
* ``<out_dir>/RESULTS.md``: the summary table (museval's standard numbers), the
  active-window extra, the silent references, per-track tables, skipped songs, and the
  plot ``<out_dir>/images/sdr_per_stem.png``;
* ``<out_dir>/museval/<system>/test/<track>.json``: museval's per-track JSON layout
  (``TrackStore.json``: per target, per 1 s frame, SDR/SIR/SAR/ISR rounded to 1e-5,
  NaN for undefined), so that museval's own tools read them:
  ``museval.EvalStore().add_eval_dir("<out_dir>/museval/<tag>")`` or
  ``museval.MethodStore().add_eval_dir(...)``.

Undefined scores (a silent reference) are NaN: left out of means and medians, counted
(``4.21 (6/8)``: the value rests on 6 of the 8 songs) and listed, never a number.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Dict, Mapping, Sequence

import numpy as np

from espnet2_ext import __version__
from espnet2_ext.metrics.music import aggregate_csdr, count_defined, summarize
from espnet2_ext.metrics.scoring import MIXTURE_SYSTEM, SongResult, SystemScores
from espnet2_ext.reports.plots import render_sdr_per_stem
from espnet2_ext.reports.tables import (
    PARTIAL,
    csv_text,
    format_number,
    format_results_md,
    markdown_table,
    mean_of_defined,
    per_track_table,
)
from espnet2_ext.utils.atomic import atomic_write_set, json_finite

IMAGE = "images/sdr_per_stem.png"
#: museval's per-track JSON files: ``museval/<system>/test/<track>.json``.
MUSEVAL_DIR = "museval"
#: museval's subset folder, which its ``add_eval_dir`` reads (``test/**/*.json``).
MUSEVAL_SUBSET = "test"

SCORER_TEXT = {
    "fast": "espnet2_ext.metrics.bsseval (museval's BSSEval v4, batched torch)",
    "museval": "museval.evaluate",
}

CSV_FIELDS = [
    "track",
    "system",
    "stem",
    "uSDR",
    "cSDR",
    "cSDR_active",
    "windows",
    "windows_scored",
    "windows_active",
]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _environment(scorer: str) -> Dict[str, str]:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "python version": platform.python_version(),
        "espnet2_ext version": __version__,
        "scorer": SCORER_TEXT[scorer],
        "museval version": _version("museval"),
        "torch version": _version("torch"),
        "numpy version": np.__version__,
    }


def museval_track_json(scores: SystemScores, stems: Sequence[str], rate: int) -> str:
    """One track's window scores in museval's ``TrackStore.json`` layout.

    ``{"targets": [{"name": stem, "frames": [{"time", "duration", "metrics": {SDR, SIR,
    SAR, ISR}}]}], "museval_version"}``, times in seconds (1 s windows and hop), values
    as museval stores them, ``NaN`` for undefined (museval writes it so, with
    ``allow_nan``).
    """
    targets = []
    for j, stem in enumerate(stems):
        frames = [
            {
                "time": t * 1.0,  # hop = rate samples = 1 s
                "duration": 1.0,
                "metrics": {
                    metric: float(scores.bss[metric][j, t])
                    for metric in ("SDR", "SIR", "SAR", "ISR")
                },
            }
            for t in range(scores.bss["SDR"].shape[1])
        ]
        targets.append({"name": stem, "frames": frames})
    data = {"targets": targets, "museval_version": _version("museval")}
    return json.dumps(data, indent=2, allow_nan=True) + "\n"


def _tables(scored: Sequence[SongResult], tag: str) -> Dict[str, Dict[str, np.ndarray]]:
    """``{system: {"uSDR", "cSDR", "cSDR_active": [nsongs, nstems]}}``."""
    tables = {}
    for system in (tag, MIXTURE_SYSTEM):
        per_song = [r.systems(tag)[system] for r in scored]
        tables[system] = {
            "uSDR": np.stack([s.usdr for s in per_song]),
            "cSDR": np.stack([s.csdr for s in per_song]),
            "cSDR_active": np.stack([s.active_csdr for s in per_song]),
        }
    return tables


def _active_summary(
    scored: Sequence[SongResult], system: str, tag: str, stems: Sequence[str]
) -> dict:
    """The extra: per-stem median over songs of the median over active windows."""
    per_song = np.stack([r.systems(tag)[system].active_csdr for r in scored])
    windows = sum(
        np.isfinite(r.systems(tag)[system].active_sdr).sum(axis=1) for r in scored
    )
    values = aggregate_csdr(per_song)
    cSDR = {stem: float(v) for stem, v in zip(stems, values)}
    cSDR["average"] = float(np.mean(values))
    return {
        "cSDR": cSDR,
        "songs": {s: int(n) for s, n in zip(stems, count_defined(per_song))},
        "windows": {s: int(n) for s, n in zip(stems, windows)},
    }


def _active_section(
    active: Mapping[str, dict], tag: str, stems: Sequence[str], total: int
) -> str:
    lines = [
        "Not museval's standard number: museval drops every window in which *any* "
        "reference or estimate is silent, so a song without one stem has no cSDR for "
        "any stem. Here each stem's window SDR (BSSEval v4's SDR formula, which "
        "involves that stem's own reference and estimate only) is taken on every 1 s "
        "window where its reference is active; median over those windows per song, "
        "median over songs. In the windows museval scores it equals museval's SDR. "
        "`songs`: the songs with at least one active window; `windows`: the active "
        "windows in all; both are the model's (its estimates' zero-error windows, "
        "if any, are undefined).",
        "",
        "",
    ]
    model, mixture = active[tag], active[MIXTURE_SYSTEM]
    rows = []
    for stem in stems:
        rows.append(
            [
                stem,
                f"{model['songs'][stem]}/{total}",
                str(model["windows"][stem]),
                format_number(model["cSDR"][stem]),
                format_number(mixture["cSDR"][stem]),
                format_number(model["cSDR"][stem] - mixture["cSDR"][stem]),
            ]
        )
    rows.append(
        [
            "average",
            "",
            "",
            format_number(model["cSDR"]["average"]),
            format_number(mixture["cSDR"]["average"]),
            format_number(model["cSDR"]["average"] - mixture["cSDR"]["average"]),
        ]
    )
    header = ["stem", "songs", "windows", f"{tag} cSDR", "mixture cSDR"]
    header.append(f"{tag} − mixture")
    return "\n".join(lines) + markdown_table(header, rows)


def _silent_section(
    scored: Sequence[SongResult], tag: str, stems: Sequence[str]
) -> str:
    """Songs with silent references or windows museval leaves undefined."""
    rows = []
    for r in scored:
        sdr = r.model.bss["SDR"]
        dropped = int(np.all(np.isnan(sdr), axis=0).sum())
        if not r.silent_stems and not dropped:
            continue
        active = np.isfinite(r.model.active_sdr).sum(axis=1)
        rows.append(
            [
                r.track,
                ", ".join(r.silent_stems) or "-",
                f"{dropped}/{sdr.shape[1]}",
                ", ".join(f"{s} {n}" for s, n in zip(stems, active)),
            ]
        )
    if not rows:
        return ""
    text = (
        "A silent reference stem has no uSDR or cSDR: it is undefined (`n/a`), left "
        "out of the means and medians and counted in the tables, never −90 dB. "
        "`museval windows undefined`: windows with a silent reference or estimate, "
        f"which museval leaves undefined for every stem ({tag}); `active windows`: "
        "the windows of the active-window extra, per stem.\n\n"
    )
    header = ["song", "silent reference stems", "museval windows undefined"]
    header.append("active windows")
    return text + markdown_table(header, rows, numeric=False)


def write_score_report(
    out_dir: Path,
    results: Sequence[SongResult],
    stems: Sequence[str],
    tag: str,
    ref_dir: Path,
    est_dir: Path,
    scorer: str = "fast",
) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Write the report files (see the module docstring) as one set; return the
    museval-standard summaries ``{system: {"uSDR": {...}, "cSDR": {...}}}``.

    Args:
        results: of :func:`espnet2_ext.metrics.scoring.read_song_results`; at least
            one scored; the others are counted as skipped.
        tag: the name of the system scored (the mixture baseline is the other).
        scorer: the scorer that computed the window values.
    """
    scored = [r for r in results if r.error is None]
    skipped = {r.track: r.error for r in results if r.error is not None}
    total = len(results)
    tracks = [r.track for r in scored]
    tables = _tables(scored, tag)
    summaries = {
        system: summarize(table["uSDR"], table["cSDR"], stems)
        for system, table in tables.items()
    }
    counts = {
        system: {
            metric: {
                stem: int(n) for stem, n in zip(stems, count_defined(table[metric]))
            }
            for metric in ("uSDR", "cSDR")
        }
        for system, table in tables.items()
    }
    active = {system: _active_summary(scored, system, tag, stems) for system in tables}
    files: Dict[Path, bytes] = {}

    rows = []
    for i, result in enumerate(scored):
        for system, table in tables.items():
            scores = result.systems(tag)[system]
            for j, stem in enumerate(stems):
                rows.append(
                    {
                        "track": result.track,
                        "system": system,
                        "stem": stem,
                        "uSDR": float(table["uSDR"][i, j]),
                        "cSDR": float(table["cSDR"][i, j]),
                        "cSDR_active": float(table["cSDR_active"][i, j]),
                        "windows": result.num_windows,
                        "windows_scored": int(np.isfinite(scores.bss["SDR"][j]).sum()),
                        "windows_active": int(np.isfinite(scores.active_sdr[j]).sum()),
                    }
                )
    files[out_dir / "scores.csv"] = csv_text(rows, CSV_FIELDS).encode()

    summary_json = {
        "tag": tag,
        "stems": list(stems),
        "scorer": scorer,
        "num_songs": total,
        "num_scored": len(scored),
        "num_skipped": len(skipped),
        "skipped": skipped,
        "systems": summaries,
        "songs_per_value": counts,
        "active_windows": active,
        "silent_stems": {r.track: r.silent_stems for r in scored if r.silent_stems},
        "museval_windows": {
            r.track: {
                "scored": int(np.any(np.isfinite(r.model.bss["SDR"]), axis=0).sum()),
                "total": r.num_windows,
            }
            for r in scored
        },
    }
    # strict JSON: undefined scores (NaN) are written as null
    text = json.dumps(json_finite(summary_json), indent=2, allow_nan=False)
    files[out_dir / "summary.json"] = (text + "\n").encode()

    files[out_dir / IMAGE] = render_sdr_per_stem(
        {system: {m: t[m] for m in ("uSDR", "cSDR")} for system, t in tables.items()},
        stems,
        title=f"{tag}: {len(scored)} songs",
    )
    for result in scored:
        for system, scores in result.systems(tag).items():
            path = out_dir / MUSEVAL_DIR / system / MUSEVAL_SUBSET
            text = museval_track_json(scores, stems, result.rate)
            files[path / f"{result.track}.json"] = text.encode()

    notes = [f"{r.track}: {note}" for r in scored for note in r.notes]
    description = [
        f"references: `{ref_dir}`; estimates: `{est_dir}`",
        f"{len(scored)} of {total} song(s) scored, {len(skipped)} skipped; "
        f"stems: {', '.join(stems)}",
        "uSDR: whole-song SNR per channel, averaged over channels; mean over songs",
        "cSDR: museval's BSSEval v4, 1 s windows and hop, median over windows, "
        "median over songs; museval leaves a window undefined for every stem when any "
        f"reference or estimate is silent in it; window scorer: `{scorer}`",
        "undefined scores (a silent reference) are left out and counted: a value "
        f"written `x (k/{total})` rests on k of the {total} songs; {PARTIAL}: an "
        "average over stems or a difference that involves such a value",
        "average: mean over the stems; "
        f"`{MIXTURE_SYSTEM}`: every stem estimated by the mixture (baseline)",
        f"museval's per-track JSON: `{MUSEVAL_DIR}/<system>/{MUSEVAL_SUBSET}/"
        "<track>.json`",
    ] + notes
    mixture = tables[MIXTURE_SYSTEM]
    per_track_extra = {
        "mixture avg uSDR": [mean_of_defined(row) for row in mixture["uSDR"]],
        "mixture avg cSDR": [mean_of_defined(row) for row in mixture["cSDR"]],
        "museval windows": [
            "{scored}/{total}".format(**summary_json["museval_windows"][t])
            for t in tracks
        ],
    }
    sections = {
        "Per-stem cSDR on the windows where the stem is active (extra)": (
            _active_section(active, tag, stems, total)
        ),
    }
    silent = _silent_section(scored, tag, stems)
    if silent:
        sections["Silent references and undefined windows"] = silent
    results_md = format_results_md(
        title=tag,
        description=description,
        summaries=summaries,
        stems=stems,
        baseline=MIXTURE_SYSTEM,
        sections=sections,
        counts=counts,
        total=total,
        per_track={
            f"Per-track scores: {tag}": per_track_table(
                tracks,
                tables[tag]["uSDR"],
                tables[tag]["cSDR"],
                stems,
                extra=per_track_extra,
            )
        },
        skipped=skipped,
        environment=_environment(scorer),
        images=[IMAGE],
    )
    files[out_dir / "RESULTS.md"] = results_md.encode()
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_set(files)
    return summaries
