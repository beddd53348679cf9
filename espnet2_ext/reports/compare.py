"""One table for a comparison experiment: arms × seeds, scored on the same songs.

The MixIT-MSS comparison (seeds/002, ``egs2/fma/mixit_enh1/local/compare.sh``) trains
several *arms* (fine-tuned from the MixIT model, from scratch, the frozen-separator
variant and its control, ...) with several seeds each; every run is separated and scored
by the MUSDB18-HQ recipe's scoring stage (``python -m espnet2_ext.bin.music_score``:
``<scoring>/summary.json`` and ``<scoring>/scores.csv``). This module reads those
folders and writes:

* per arm, per stem and average: the recipe's numbers (uSDR: mean over songs; cSDR:
  median over songs) as mean ± sd over the seeds;
* paired differences of two arms (e.g. fine-tuned − scratch with the same seed), on the
  same songs: per seed (the difference of the two rows), with a t interval over seeds;
  per (seed, song) (mean over the stems), with their spread and how many are > 0; per
  stem; per song;
* the songs and seeds each number rests on. An undefined score is excluded from every
  mean and difference, and its (song, stem) pair listed per metric: a silent reference
  stem has no uSDR or cSDR, and museval's cSDR leaves *every* stem of a song undefined
  in the windows where any reference is silent (a song without one stem has no cSDR at
  all);
* the head selection of each seed, the time of each run, the settings and the command.

Files (one set, :func:`espnet2_ext.utils.atomic.atomic_write_set`): ``RESULTS.md``,
``summary.json``, ``per_song.csv``.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import stats as scipy_stats

from espnet2_ext.reports.tables import (
    PARTIAL,
    counted,
    csv_text,
    format_number,
    markdown_table,
)
from espnet2_ext.utils.atomic import atomic_write_set, json_finite

METRICS = ("uSDR", "cSDR")
#: What each arm of compare.sh is (others are shown by name).
ARM_LABELS = {
    "finetune": "MixIT pre-trained, heads selected, fine-tuned (all parameters)",
    "scratch": "from scratch (all parameters), same fine-tuning budget",
    "frozen": "MixIT pre-trained, separator blocks frozen, encoder/decoder trained",
    "frozen_scratch": "random separator blocks frozen, encoder/decoder trained",
    "heads": "MixIT pre-trained, heads selected, no fine-tuning",
    "mixture": "the mixture as the estimate (scorer's baseline)",
}
MIXTURE = "mixture"
PER_SONG_FIELDS = ["arm", "seed", "track", "stem", "uSDR", "cSDR"]


@dataclass
class RunScores:
    """The scores of one run (one arm, one seed) from its scoring folder.

    ``per_song[metric]`` is ``[num_tracks, num_stems]`` (NaN: undefined), rows in the
    order of ``tracks``; ``summary[metric]`` maps each stem and ``"average"`` to the
    recipe's number (NaN: undefined); ``mixture_songs[metric][stem]``: the songs the
    mixture baseline's number rests on.
    """

    arm: str
    seed: str
    scoring_dir: Path
    tag: str
    stems: List[str]
    scorer: str
    tracks: List[str]
    summary: Dict[str, Dict[str, float]]
    mixture: Dict[str, Dict[str, float]]
    per_song: Dict[str, np.ndarray]
    mixture_songs: Dict[str, Dict[str, int]] = field(default_factory=dict)
    silent: Dict[str, List[str]] = field(default_factory=dict)


def _number(value) -> float:
    return math.nan if value is None else float(value)


def read_run(arm: str, seed: str, scoring_dir: Path) -> RunScores:
    """Read ``summary.json`` and ``scores.csv`` of ``scoring_dir``.

    Raises:
        FileNotFoundError: a file is missing (the run was not scored).
        ValueError: the files disagree (stems, songs) or a song has no row.
    """
    scoring_dir = Path(scoring_dir)
    summary_path, csv_path = scoring_dir / "summary.json", scoring_dir / "scores.csv"
    for path in (summary_path, csv_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: run {arm} (seed {seed}) was not scored"
            )
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    tag, stems = summary["tag"], [str(s) for s in summary["stems"]]
    systems = summary["systems"]
    if tag not in systems or MIXTURE not in systems:
        raise ValueError(f"{summary_path} has no '{tag}' and '{MIXTURE}' systems")

    def as_numbers(system: str) -> Dict[str, Dict[str, float]]:
        return {
            m: {k: _number(v) for k, v in systems[system][m].items()} for m in METRICS
        }

    values: Dict[Tuple[str, str], Dict[str, float]] = {}
    tracks: List[str] = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["system"] != tag:
                continue
            if row["track"] not in tracks:
                tracks.append(row["track"])
            values[(row["track"], row["stem"])] = {
                m: float(row[m]) if row[m] not in ("", None) else math.nan
                for m in METRICS
            }
    if not tracks:
        raise ValueError(f"{csv_path} has no rows of system '{tag}'")
    per_song = {}
    for metric in METRICS:
        table = np.full((len(tracks), len(stems)), np.nan)
        for i, track in enumerate(tracks):
            for j, stem in enumerate(stems):
                if (track, stem) not in values:
                    raise ValueError(f"{csv_path}: no '{tag}' row for {track}, {stem}")
                table[i, j] = values[(track, stem)][metric]
        per_song[metric] = table
    return RunScores(
        arm=arm,
        seed=str(seed),
        scoring_dir=scoring_dir,
        tag=tag,
        stems=stems,
        scorer=str(summary.get("scorer", "museval")),
        tracks=tracks,
        summary=as_numbers(tag),
        mixture=as_numbers(MIXTURE),
        per_song=per_song,
        mixture_songs=summary.get("songs_per_value", {}).get(MIXTURE, {}),
        silent={k: list(v) for k, v in summary.get("silent_stems", {}).items()},
    )


def _same_numbers(a: Mapping, b: Mapping) -> bool:
    """Two summaries ``{metric: {column: dB}}`` agree (NaN equals NaN)."""
    return all(
        np.allclose(
            [a[m][c] for c in a[m]],
            [b[m].get(c, math.nan) for c in a[m]],
            rtol=0.0,
            atol=1e-6,
            equal_nan=True,
        )
        for m in METRICS
    )


def check_comparable(runs: Sequence[RunScores]) -> None:
    """Every run scored the same stems of the same songs with the same scorer, against
    the same references (the mixture baseline, which depends on the references only,
    has the same numbers)."""
    if not runs:
        raise ValueError("no runs to compare")
    first = runs[0]
    for run in runs[1:]:
        for what in ("stems", "scorer"):
            if getattr(run, what) != getattr(first, what):
                raise ValueError(
                    f"{what} differ: {run.arm} seed {run.seed} ({run.scoring_dir}) has "
                    f"{getattr(run, what)}, {first.arm} seed {first.seed} has "
                    f"{getattr(first, what)}"
                )
        if sorted(run.tracks) != sorted(first.tracks):
            raise ValueError(
                f"songs differ: {run.arm} seed {run.seed} ({run.scoring_dir}) scored "
                f"{sorted(run.tracks)}, {first.arm} seed {first.seed} scored "
                f"{sorted(first.tracks)}"
            )
        if not _same_numbers(run.mixture, first.mixture):
            raise ValueError(
                f"the mixture baselines differ: {run.arm} seed {run.seed} "
                f"({run.scoring_dir}) was scored against other references than "
                f"{first.arm} seed {first.seed} ({first.scoring_dir})"
            )


# ------------------------------------------------------------------- statistics
def spread(values: Sequence[float]) -> Dict[str, float]:
    """n, mean, sd (ddof 1), min, max and a 95 % t interval of the finite values."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    out = {"n": n, "mean": math.nan, "sd": math.nan, "min": math.nan, "max": math.nan}
    out.update({"ci95_low": math.nan, "ci95_high": math.nan, "above_zero": 0})
    if n == 0:
        return out
    out.update(mean=float(x.mean()), min=float(x.min()), max=float(x.max()))
    out["above_zero"] = int((x > 0).sum())
    if n > 1:
        sd = float(x.std(ddof=1))
        half = float(scipy_stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        out.update(sd=sd, ci95_low=out["mean"] - half, ci95_high=out["mean"] + half)
    return out


def _aligned(run: RunScores, tracks: Sequence[str], metric: str) -> np.ndarray:
    order = [run.tracks.index(t) for t in tracks]
    return run.per_song[metric][order]


def arm_summary(runs: Sequence[RunScores], stems: Sequence[str]) -> Dict:
    """Per metric and column (stems, average): the spread over the seeds of the
    recipe's numbers, and the songs each seed's number rests on (``songs``, one count
    per seed; for the average, the fewest of its stems')."""
    out = {}
    for metric in METRICS:
        out[metric] = {}
        defined = [np.isfinite(run.per_song[metric]).sum(axis=0) for run in runs]
        for column in [*stems, "average"]:
            entry = spread([run.summary[metric][column] for run in runs])
            if column == "average":
                entry["songs"] = [int(counts.min()) for counts in defined]
            else:
                j = list(stems).index(column)
                entry["songs"] = [int(counts[j]) for counts in defined]
            out[metric][column] = entry
    return out


def undefined_pairs(runs: Sequence[RunScores], stems: Sequence[str]) -> Dict:
    """Per metric, the (song, stem) pairs without a score in some run:
    ``{metric: [[track, stem, runs undefined], ...]}`` (sorted), runs out of
    ``len(runs)``."""
    out = {}
    for metric in METRICS:
        count: Dict[Tuple[str, str], int] = {}
        for run in runs:
            for i, j in zip(*np.nonzero(~np.isfinite(run.per_song[metric]))):
                key = (run.tracks[i], stems[j])
                count[key] = count.get(key, 0) + 1
        out[metric] = [[t, s, n] for (t, s), n in sorted(count.items())]
    return out


def paired_differences(
    a: Sequence[RunScores], b: Sequence[RunScores], stems: Sequence[str]
) -> Dict:
    """``a − b`` paired by seed and song (both arms' runs of the same seeds).

    Per metric: ``per_seed`` (the difference of the two rows of the arm table, for the
    average and each stem), ``per_seed_song`` (the mean over the stems defined in both
    of the per-song differences), ``cells`` (every defined (seed, song, stem)), and
    ``per_song`` (each song's mean over seeds of ``per_seed_song``).
    """
    by_seed = {run.seed: run for run in b}
    seeds = [run.seed for run in a if run.seed in by_seed]
    if not seeds:
        raise ValueError(
            f"{a[0].arm if a else '?'} and {b[0].arm if b else '?'} share no seed"
        )
    tracks = sorted(a[0].tracks)
    out = {"seeds": seeds, "tracks": tracks}
    for metric in METRICS:
        runs_a = {run.seed: run for run in a}
        per_seed = {column: [] for column in [*stems, "average"]}
        seed_song, cells = [], []
        song_rows = np.full((len(seeds), len(tracks)), np.nan)
        for k, seed in enumerate(seeds):
            ra, rb = runs_a[seed], by_seed[seed]
            for column in per_seed:
                per_seed[column].append(
                    ra.summary[metric][column] - rb.summary[metric][column]
                )
            diff = _aligned(ra, tracks, metric) - _aligned(rb, tracks, metric)
            cells.extend(diff[np.isfinite(diff)].tolist())
            for i in range(len(tracks)):
                row = diff[i][np.isfinite(diff[i])]
                if row.size:
                    song_rows[k, i] = float(row.mean())
                    seed_song.append(song_rows[k, i])
        out[metric] = {
            "per_seed": {column: spread(v) for column, v in per_seed.items()},
            "per_seed_values": {column: v for column, v in per_seed.items()},
            "per_seed_song": spread(seed_song),
            "cells": spread(cells),
            "per_song": {
                track: spread(song_rows[:, i]) for i, track in enumerate(tracks)
            },
        }
    return out


# ------------------------------------------------------------------------ report
def _pm(
    entry: Mapping[str, float], total: Optional[int] = None, average: bool = False
) -> str:
    """``mean ± sd`` (only the mean for one value); when the songs it rests on are
    fewer than ``total``: ``(k/N)`` for a stem, :data:`PARTIAL` for an ``average``
    (a mean over stems of which one rests on fewer songs)."""
    text = format_number(entry["mean"])
    if entry["n"] > 1:
        text += f" ± {format_number(entry['sd'])}"
    songs = entry.get("songs")
    if total is not None and songs and min(songs) < total:
        low, high = min(songs), max(songs)
        if average:
            text += f" {PARTIAL}"
        elif low == high:
            text += f" ({low}/{total})"
        else:
            text += f" ({low}–{high}/{total})"
    return text


def _signed(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.2f}"


def _pm_signed(entry: Mapping[str, float]) -> str:
    text = _signed(entry["mean"])
    if entry["n"] > 1:
        text += f" ± {format_number(entry['sd'])}"
    return text


def _interval(entry: Mapping[str, float]) -> str:
    if entry["n"] < 2:
        return "n/a (one value)"
    return f"[{_signed(entry['ci95_low'])}, {_signed(entry['ci95_high'])}]"


def _read_timings(path: Optional[Path]) -> Dict[str, Dict[str, float]]:
    """``task<TAB>wall_s<TAB>user_s<TAB>sys_s`` lines, summed per task (a resumed task
    has several)."""
    out: Dict[str, Dict[str, float]] = {}
    if path is None or not Path(path).is_file():
        return out
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        task, wall, user, system = line.split("\t")
        entry = out.setdefault(task, {"wall_s": 0.0, "cpu_s": 0.0, "invocations": 0})
        entry["wall_s"] += float(wall)
        entry["cpu_s"] += float(user) + float(system)
        entry["invocations"] += 1
    return out


def build_comparison(
    runs: Sequence[Tuple[str, str, Path]],
    pairs: Sequence[Tuple[str, str]] = (),
    settings: Sequence[Tuple[str, str]] = (),
    heads: Sequence[Tuple[str, Path]] = (),
    timings: Optional[Path] = None,
    command: Optional[str] = None,
    title: str = "Comparison",
) -> Tuple[str, Dict, List[Dict]]:
    """The report of ``runs`` (``(arm, seed, scoring folder)``).

    Returns:
        ``(RESULTS.md text, summary dict, per-song CSV rows)``.
    """
    scores = [read_run(arm, seed, path) for arm, seed, path in runs]
    check_comparable(scores)
    stems = scores[0].stems
    tracks = sorted(scores[0].tracks)
    arms: Dict[str, List[RunScores]] = {}
    for run in scores:
        if any(r.seed == run.seed for r in arms.get(run.arm, [])):
            raise ValueError(f"{run.arm} seed {run.seed} given twice")
        arms.setdefault(run.arm, []).append(run)
    for first, second in pairs:
        for arm in (first, second):
            if arm not in arms:
                raise ValueError(f"pair {first} − {second}: no runs of arm '{arm}'")
    total = len(tracks)
    per_arm = {arm: arm_summary(arm_runs, stems) for arm, arm_runs in arms.items()}
    mixture = scores[0].mixture
    differences = {
        f"{a} − {b}": paired_differences(arms[a], arms[b], stems) for a, b in pairs
    }
    undefined = undefined_pairs(scores, stems)
    silent = sorted({(t, s) for r in scores for t, v in r.silent.items() for s in v})
    head_choices = {}
    for seed, path in heads:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        head_choices[str(seed)] = {
            "heads": data.get("heads", {}),
            "notes": data.get("notes", []),
        }
    timing = _read_timings(timings)

    md: List[str] = [f"# {title}", ""]
    if command:
        md += ["Command:", "", "    " + command, ""]
    if settings:
        md += [markdown_table(["setting", "value"], settings, numeric=False)]
    seeds_of = {arm: ", ".join(r.seed for r in rs) for arm, rs in arms.items()}
    md += [
        f"Scored with the recipe's scoring stage (`{scores[0].scorer}` BSSEval v4 "
        f"scorer) on {total} songs, stems {', '.join(stems)}. uSDR: mean over songs; "
        "cSDR: median over songs of the median over 1 s windows (museval's "
        "standard); average: the mean of the stems. Each cell: mean ± sd over the "
        "seeds (sample sd); `(k/N)`: the number rests on k of the N songs in each "
        f"seed (undefined scores are left out: see the last section); {PARTIAL}: an "
        "average over stems of which one rests on fewer songs.",
        "",
    ]
    for metric in METRICS:
        md += [f"## {metric} (dB), mean ± sd over seeds", ""]
        rows = []
        for arm, summary in per_arm.items():
            label = ARM_LABELS.get(arm, arm)
            rows.append(
                [f"`{arm}`: {label}", str(len(arms[arm]))]
                + [_pm(summary[metric][c], total) for c in stems]
                + [_pm(summary[metric]["average"], total, average=True)]
            )
        mixture_songs = scores[0].mixture_songs.get(metric, {})
        partial = any(mixture_songs.get(s, total) < total for s in stems)
        rows.append(
            [f"`{MIXTURE}`: {ARM_LABELS[MIXTURE]}", "–"]
            + [
                counted(mixture[metric][s], mixture_songs.get(s, total), total)
                for s in stems
            ]
            + [format_number(mixture[metric]["average"]) + (f" {PARTIAL}" * partial)]
        )
        md += [markdown_table(["arm", "seeds", *stems, "average"], rows)]

    if differences:
        md += [
            "## Paired differences (dB)",
            "",
            "Same seed, same songs. *per seed*: the difference of the two arms' "
            "average (the rows above), mean ± sd over seeds, its 95 % t interval and "
            "how many seeds are > 0. *per (seed, song)*: the per-song difference "
            "averaged over the stems defined in both, mean ± sd, range and how many "
            "are > 0. *cells*: every defined (seed, song, stem).",
            "",
        ]
        rows = []
        for name, diff in differences.items():
            for metric in METRICS:
                seed_avg = diff[metric]["per_seed"]["average"]
                song = diff[metric]["per_seed_song"]
                cells = diff[metric]["cells"]
                rows.append(
                    [
                        f"{name}",
                        metric,
                        _pm_signed(seed_avg),
                        _interval(seed_avg),
                        f"{seed_avg['above_zero']}/{seed_avg['n']}",
                        _pm_signed(song),
                        f"{_signed(song['min'])} … {_signed(song['max'])}",
                        f"{song['above_zero']}/{song['n']}",
                        f"{cells['above_zero']}/{cells['n']}",
                    ]
                )
        md += [
            markdown_table(
                [
                    "difference",
                    "metric",
                    "per seed",
                    "95 % t interval",
                    "seeds > 0",
                    "per (seed, song)",
                    "range",
                    "(seed, song) > 0",
                    "cells > 0",
                ],
                rows,
            )
        ]
        md += ["Per stem (per seed: mean ± sd over seeds):", ""]
        rows = []
        for name, diff in differences.items():
            for metric in METRICS:
                rows.append(
                    [name, metric]
                    + [_pm_signed(diff[metric]["per_seed"][s]) for s in stems]
                )
        md += [markdown_table(["difference", "metric", *stems], rows)]
        md += ["Per seed (the difference of the averages):", ""]
        names = list(differences)
        all_seeds = sorted(
            {s for d in differences.values() for s in d["seeds"]}, key=_seed_key
        )
        rows = []
        for seed in all_seeds:
            row = [seed]
            for name in names:
                diff = differences[name]
                for metric in METRICS:
                    if seed in diff["seeds"]:
                        k = diff["seeds"].index(seed)
                        row.append(
                            _signed(diff[metric]["per_seed_values"]["average"][k])
                        )
                    else:
                        row.append("–")
            rows.append(row)
        header = ["seed"] + [f"{n}, {m}" for n in names for m in METRICS]
        md += [markdown_table(header, rows)]
        md += [
            "Per song (the difference averaged over the stems defined in both, "
            "mean ± sd over seeds; n/a: no stem of the song has a score):",
            "",
        ]
        rows = []
        for track in tracks:
            rows.append(
                [track]
                + [
                    _pm_signed(d[metric]["per_song"][track])
                    for d in differences.values()
                    for metric in METRICS
                ]
            )
        md += [markdown_table(["song", *header[1:]], rows)]

    if silent or any(undefined.values()):
        md += [
            "## Undefined (song, stem) pairs",
            "",
            "Left out of every number above (means, medians, differences and their "
            "counts). A silent reference stem has no uSDR or cSDR; museval's cSDR "
            "leaves a 1 s window undefined for every stem when any reference (or "
            "estimate) in it is silent, so a song without one stem has no cSDR for "
            "any stem. Silent reference stems: "
            + (", ".join(f"{t} / {s}" for t, s in silent) or "none")
            + ".",
            "",
        ]
        rows = [
            [metric, f"{track} / {stem}", f"{n}/{len(scores)}"]
            for metric in METRICS
            for track, stem, n in undefined[metric]
        ]
        if rows:
            md += [
                markdown_table(
                    ["metric", "song / stem", "runs without a score"],
                    rows,
                    numeric=False,
                )
            ]
    if head_choices:
        md += ["## Head selection (12 → one output per stem)", ""]
        rows = []
        for seed, choice in sorted(head_choices.items(), key=lambda x: _seed_key(x[0])):
            heads_text = ", ".join(f"{s}: {o}" for s, o in choice["heads"].items())
            rows.append([seed, heads_text, "; ".join(choice["notes"]) or "–"])
        md += [markdown_table(["seed", "outputs kept", "notes"], rows, numeric=False)]
    if timing:
        md += [
            "## Time per run",
            "",
            "Wall and CPU minutes (user + system of every process of the step; a "
            "resumed step: the sum of its invocations). The sum's wall time exceeds "
            "the experiment's when runs went in parallel (compare.sh --jobs).",
            "",
        ]
        rows = [
            [
                task,
                f"{t['wall_s'] / 60:.1f}",
                f"{t['cpu_s'] / 60:.1f}",
                str(t["invocations"]),
            ]
            for task, t in timing.items()
        ]
        rows.append(
            [
                "sum",
                f"{sum(t['wall_s'] for t in timing.values()) / 60:.1f}",
                f"{sum(t['cpu_s'] for t in timing.values()) / 60:.1f}",
                "",
            ]
        )
        md += [markdown_table(["step", "wall min", "CPU min", "invocations"], rows)]

    summary = {
        "title": title,
        "command": command,
        "settings": dict(settings),
        "stems": stems,
        "tracks": tracks,
        "scorer": scores[0].scorer,
        "runs": [
            {"arm": r.arm, "seed": r.seed, "scoring_dir": str(r.scoring_dir)}
            for r in scores
        ],
        "arms": per_arm,
        "mixture": mixture,
        "differences": differences,
        "silent": [list(p) for p in silent],
        "undefined": undefined,
        "heads": head_choices,
        "timings": timing,
    }
    rows = []
    for run in scores:
        for i, track in enumerate(run.tracks):
            for j, stem in enumerate(stems):
                rows.append(
                    {
                        "arm": run.arm,
                        "seed": run.seed,
                        "track": track,
                        "stem": stem,
                        **{m: float(run.per_song[m][i, j]) for m in METRICS},
                    }
                )
    return "\n".join(md), summary, rows


def _seed_key(seed: str):
    return (0, int(seed), "") if seed.isdigit() else (1, 0, seed)


def write_comparison(out_dir: Path, **kwargs) -> Dict:
    """:func:`build_comparison` written to ``out_dir`` as one set of files; returns
    the summary."""
    text, summary, rows = build_comparison(**kwargs)
    out_dir = Path(out_dir)
    data = json.dumps(json_finite(summary), indent=2, allow_nan=False)
    atomic_write_set(
        {
            out_dir / "RESULTS.md": text.encode(),
            out_dir / "summary.json": (data + "\n").encode(),
            out_dir / "per_song.csv": csv_text(rows, PER_SONG_FIELDS).encode(),
        }
    )
    return summary
