"""The side-by-side report of one-step, multi-step oracle and deployable runs.

Every input is made by the real producers: run folders are scored with
``espnet2_ext.bin.music_score``; the ``multistep_summary.json`` files are the summaries
of real :class:`MultiStepSeparator` runs through the chunked overlap-add (written the
way ``enh_inference`` writes them), on a small linear toy separator; the calibration
report is written by ``multistep_calibrate`` from a real calibration of that toy. The
estimates scored are the references plus noise at a level per run, so each run's
scores are known to differ.
"""

import json
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet2_ext.bin import multistep_report as cmd
from espnet2_ext.bin.music_score import main as music_score
from espnet2_ext.enh.inference.chunking import apply_chunked
from espnet2_ext.enh.inference.multistep import (
    MultiStepSeparator,
    RatioSchedule,
    calibrate_schedule,
)
from espnet2_ext.enh.inference.multistep import calibration as calib
from espnet2_ext.enh.inference.multistep.evaluation import (
    EVALUATION_FORMAT,
    EVALUATION_VERSION,
)
from espnet2_ext.reports import multistep as report_lib
from espnet2_ext.reports import multistep_chunks as chunks_lib
from espnet2_ext.reports import multistep_runs as runs_lib
from espnet2_ext.utils.atomic import json_default

FS = 8000  # the report does not care about the rate; museval is faster on few samples
STEMS = ("s1", "s2")
SONGS = ("songA", "songB")
SECONDS = 2.0
NOISE = {"onestep": 0.3, "oracle": 0.1, "schedule": 0.2}  # estimate = ref + noise


def toy_separator(x: torch.Tensor) -> torch.Tensor:
    """[b, C, L] -> [b, 2, C, L]: a fixed, imperfect linear split (60 % / 40 %)."""
    return torch.stack([0.6 * x, 0.4 * x], dim=1)


def toy_song(song: str):
    rng = np.random.default_rng(sum(map(ord, song)))
    refs = rng.standard_normal((len(STEMS), int(SECONDS * FS), 2)).astype(np.float32)
    refs *= np.array([0.5, 0.2], dtype=np.float32)[:, None, None]
    return refs  # [N, T, C]


def write_references(root: Path) -> Path:
    for song in SONGS:
        refs = toy_song(song)
        folder = root / song
        folder.mkdir(parents=True)
        for stem, audio in zip(STEMS, refs):
            sf.write(folder / f"{stem}.wav", audio, FS, subtype="FLOAT")
        sf.write(folder / "mixture.wav", refs.sum(axis=0), FS, subtype="FLOAT")
    return root


def multistep_summaries(runner: MultiStepSeparator, with_refs: bool) -> Dict[str, dict]:
    """{song: summary} of a real multi-step run over the songs, as enh_inference
    writes them (JSON through its converter)."""
    out = {}
    for song in SONGS:
        refs = torch.from_numpy(toy_song(song))  # [N, T, C]
        ref = refs.permute(0, 2, 1)[None]  # [1, N, C, T]
        mix = ref.sum(dim=1)  # [1, C, T]
        runner.reset()
        apply_chunked(
            runner,
            mix,
            chunk_size=FS // 2,
            hop_size=FS // 4,
            aligned=(ref,) if with_refs else (),
        )
        out[song] = json.loads(json.dumps(runner.summary(), default=json_default))
    return out


def make_run(
    root: Path,
    refs: Path,
    variant: str,
    summaries: Optional[Dict[str, dict]] = None,
    jobs: int = 1,
    wall: Optional[float] = None,
) -> Path:
    run = root / f"run_{variant}"
    rng = np.random.default_rng(len(variant))
    for song in SONGS:
        est = toy_song(song) + NOISE[variant] * rng.standard_normal(
            (len(STEMS), int(SECONDS * FS), 2)
        ).astype(np.float32)
        for stem, audio in zip(STEMS, est):
            (run / "stems" / song).mkdir(parents=True, exist_ok=True)
            sf.write(run / "stems" / song / f"{stem}.wav", audio, FS, subtype="FLOAT")
    code = music_score(
        ["--ref_dir", str(refs), "--est_dir", str(run / "stems"),
         "--out_dir", str(run / "scoring"), "--stems", *STEMS, "--tag", variant,
         "--baseline_cache", str(root / "baseline.json")]
    )  # fmt: skip
    assert code == 0
    if summaries is not None:
        songs = sorted(summaries)
        for j in range(jobs):  # parallel jobs each write their own songs
            part = {s: summaries[s] for s in songs[j::jobs]}
            folder = run / "split" / f"out.{j + 1}"
            folder.mkdir(parents=True)
            (folder / runs_lib.SUMMARY_NAME).write_text(json.dumps(part))
    if wall is not None:
        time = json.dumps({"wall_seconds": wall, "nj": jobs})
        (run / runs_lib.TIME_NAME).write_text(time)
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("report")
    refs = write_references(root / "refs")
    oracle = multistep_summaries(
        MultiStepSeparator(toy_separator, steps=2, candidates=3, metric="snr"), True
    )
    # a schedule calibrated on other "validation" songs, then applied without refs
    valid = []
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        ref = torch.randn(1, 2, 2, FS // 2, generator=gen)
        valid.append((ref.sum(dim=1), ref))
    schedule = calibrate_schedule(
        toy_separator, valid, steps=2, candidates=3, sources=list(STEMS)
    )
    deployable = multistep_summaries(
        MultiStepSeparator(toy_separator, schedule=schedule), False
    )
    counting = calib.CountingSeparateFn(toy_separator)
    calibration = calib.Calibration(
        schedule=schedule,
        validation={"songs": 3, "chunks": 3},
        cost={"forward_passes": 99, "seconds": 1.5, "wall_seconds": 2.0,
              "passes_per_chunk": 33.0},
        traces={"data/valid": calib.trace_schedule(
            counting, schedule, valid, ["snr", "si_sdr"])},
    )  # fmt: skip
    calib_file = calib.write_report(root / "multistep_calibration.json", calibration)
    return dict(
        root=root,
        refs=refs,
        oracle_summaries=oracle,
        schedule=schedule,
        calibration=calib_file,
        onestep=make_run(root, refs, "onestep", wall=4.0),
        oracle=make_run(root, refs, "oracle", oracle, jobs=2, wall=40.0),
        deployable=make_run(root, refs, "schedule", deployable, wall=9.0),
    )


@pytest.fixture(scope="module")
def report(runs):
    out = runs["root"] / "multistep_test"
    code = cmd.main(
        ["--one_step", str(runs["onestep"]), "--oracle", str(runs["oracle"]),
         "--schedule", str(runs["deployable"]), "--calibration",
         str(runs["calibration"]), "--out_dir", str(out), "--title", "toy"]
    )  # fmt: skip
    assert code == 0
    return dict(
        out=out,
        text=(out / "RESULTS.md").read_text(),
        summary=json.loads((out / "summary.json").read_text()),
    )


def table_rows(text: str, heading: str):
    """Rows (lists of cells) of the first markdown table after ``heading``."""
    section = text.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # header and rule dropped


def scoring(run: Path) -> dict:
    summary = json.loads((run / "scoring" / "summary.json").read_text())
    return summary["systems"][summary["tag"]]


def test_scores_are_side_by_side_with_oracle_in_bold(runs, report):
    rows = table_rows(report["text"], "## Scores (dB)")
    by_name = {}
    for row in rows:
        by_name.setdefault(row[0], {})[row[1]] = row[2:]
    oracle_name = "multi-step **oracle** snr (T=2, K=3)"
    assert list(by_name) == [
        "one-step",
        oracle_name,
        "multi-step deployable (validation schedule)",
        "mixture (input as every stem)",
    ]
    for name, run in (
        ("one-step", runs["onestep"]),
        (oracle_name, runs["oracle"]),
        ("multi-step deployable (validation schedule)", runs["deployable"]),
    ):
        expected = scoring(run)
        for metric in ("uSDR", "cSDR"):
            cells = [f"{expected[metric][c]:.2f}" for c in (*STEMS, "average")]
            assert by_name[name][metric] == cells
    # the word oracle appears only in bold in the table rows, and only for that run
    for row in rows:
        assert ("oracle" in row[0]) == (row[0] == oracle_name)
    assert report["summary"]["systems"]["multi-step oracle snr (T=2, K=3)"]["oracle"]


def test_differences_to_one_step(runs, report):
    rows = table_rows(report["text"], "## Difference to one-step inference")
    base, oracle = scoring(runs["onestep"]), scoring(runs["oracle"])
    row = next(r for r in rows if "oracle" in r[0] and r[1] == "uSDR")
    diff = oracle["uSDR"]["average"] - base["uSDR"]["average"]
    assert float(row[-1]) == pytest.approx(diff, abs=0.006)
    assert diff > 0  # less noise in the "oracle" estimates


def test_cost_sums_the_songs_and_counts_one_step_passes(runs, report):
    cost = {row["system"]: row for row in report["summary"]["cost"]}
    oracle = cost["multi-step oracle snr (T=2, K=3)"]
    entries = runs["oracle_summaries"].values()
    assert oracle["forward_passes"] == sum(e["forward_passes"] for e in entries)
    chunks = sum(e["calls"] for e in entries)
    assert oracle["chunks"] == chunks == 2 * 7  # 2 s songs, 0.5 s chunks, 0.25 s hop
    assert oracle["wall_seconds"] == 40.0 and oracle["nj"] == 2
    one = cost["one-step"]
    assert one["forward_passes"] == one["chunks"] == chunks
    assert one["wall_seconds"] == 4.0
    deployable = cost["multi-step deployable (validation schedule)"]
    moving = sum(
        r is not None and r != 1.0 for row in runs["schedule"].ratios for r in row
    )
    assert deployable["forward_passes"] == chunks * (1 + moving)
    calibration = cost["schedule calibration (once, validation chunks)"]
    assert calibration["forward_passes"] == 99
    assert "|schedule calibration (once, validation chunks)|" in report["text"]


def test_traces_and_plot(runs, report):
    traces = {(t["label"], t["metric"]): t for t in report["summary"]["traces"]}
    oracle = traces[(f"oracle selection, {runs['oracle'].name}", "snr")]
    assert len(oracle["values"]) == 3
    # mean over chunks: songs weighted by their chunk counts
    entries = list(runs["oracle_summaries"].values())
    weights = np.array([e["calls"] for e in entries], dtype=float)
    per_source = np.array([e["mean_trace_per_source"] for e in entries])
    expected = np.tensordot(weights / weights.sum(), per_source, axes=1).mean(axis=1)
    np.testing.assert_allclose(oracle["values"], expected, rtol=1e-6)
    # the oracle selection never loses along the steps
    assert np.all(np.diff(oracle["values"]) >= -1e-6)
    # the deployable run had no references: no trace of its own, but the calibration's
    assert not any(runs["deployable"].name in label for label, _ in traces)
    assert set(traces) == {
        (f"oracle selection, {runs['oracle'].name}", "snr"),
        ("deployable schedule, valid chunks", "snr"),
        ("deployable schedule, valid chunks", "si_sdr"),
    }
    image = report["out"] / report_lib.IMAGE
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.stat().st_size > 10_000
    assert f"![multistep_trace]({report_lib.IMAGE})" in report["text"]
    assert "## Schedule" in report["text"]
    # the per-step table has one row per step and a column per trace
    rows = table_rows(report["text"], "## Metric after each step")
    assert [r[0] for r in rows] == ["0", "1", "2"]
    assert float(rows[0][1]) == pytest.approx(oracle["values"][0], abs=6e-4)


def test_calibration_snr_trace_equals_the_schedule_scores(runs, report):
    traces = [
        t
        for t in report["summary"]["traces"]
        if t["label"] == "deployable schedule, valid chunks" and t["metric"] == "snr"
    ]
    assert len(traces) == 1
    np.testing.assert_allclose(
        traces[0]["values"],
        [np.mean(r) for r in runs["schedule"].validation_scores],
        atol=1e-4,
    )


def test_per_job_summaries_equal_a_merged_one(runs, tmp_path):
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / runs_lib.SUMMARY_NAME).write_text(json.dumps(runs["oracle_summaries"]))
    a = runs_lib.load_multistep(merged)
    b = runs_lib.load_multistep(runs["oracle"])  # two split/out.* files
    assert a == b and a.songs == 2 and a.kind == runs_lib.ORACLE


def test_runs_given_as_the_wrong_kind_are_refused(runs, tmp_path):
    with pytest.raises(ValueError, match="given as a deployable run"):
        report_lib.build_report(
            runs["onestep"], schedule=[runs["oracle"]], out_dir=tmp_path / "a"
        )
    with pytest.raises(ValueError, match="given as a oracle run"):
        report_lib.build_report(
            runs["onestep"], oracle=[runs["deployable"]], out_dir=tmp_path / "b"
        )
    with pytest.raises(ValueError, match="not the one-step one"):
        report_lib.build_report(
            runs["oracle"], oracle=[runs["oracle"]], out_dir=tmp_path / "c"
        )
    with pytest.raises(FileNotFoundError, match="multistep_summary.json"):
        report_lib.build_report(
            runs["onestep"], oracle=[runs["onestep"]], out_dir=tmp_path / "d"
        )
    with pytest.raises(ValueError, match="at least one"):
        report_lib.build_report(runs["onestep"], out_dir=tmp_path / "e")
    assert not (tmp_path / "a").exists()
    # the command reports it with exit status 1
    assert cmd.main(
        ["--one_step", str(runs["onestep"]), "--schedule", str(runs["oracle"]),
         "--out_dir", str(tmp_path / "f")]
    ) == 1  # fmt: skip


def test_runs_on_different_songs_are_refused(runs, tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "songA").symlink_to(runs["refs"] / "songA")
    other = tmp_path / "one"
    (other / "stems").mkdir(parents=True)
    (other / "stems" / "songA").symlink_to(runs["onestep"] / "stems" / "songA")
    assert music_score(
        ["--ref_dir", str(refs), "--est_dir", str(other / "stems"), "--out_dir",
         str(other / "scoring"), "--stems", *STEMS, "--tag", "one"]
    ) == 0  # fmt: skip
    with pytest.raises(ValueError, match="different songs"):
        report_lib.build_report(other, oracle=[runs["oracle"]], out_dir=tmp_path / "r")


def test_kind_of_labels():
    assert runs_lib.kind_of("multi-step oracle si_sdr (T=20, K=10)") == runs_lib.ORACLE
    deployable = "multi-step deployable (schedule selected with oracle snr on a set)"
    assert runs_lib.kind_of(deployable) == runs_lib.DEPLOYABLE
    assert runs_lib.kind_of("multi-step utmos (T=3, K=2)") == runs_lib.BLIND
    with pytest.raises(ValueError):
        runs_lib.kind_of("one-step")
    runner = MultiStepSeparator(toy_separator, steps=1, candidates=2)
    assert runs_lib.kind_of(runner.label) == runs_lib.ORACLE
    schedule = RatioSchedule(ratios=[[0.5, None]], metric="snr", oracle=True)
    scheduled = MultiStepSeparator(toy_separator, schedule=schedule)
    assert runs_lib.kind_of(scheduled.label) == runs_lib.DEPLOYABLE


# ------------------------------------------------- fixed chunk set (multistep_evaluate)

CHUNK_KEYS = [("songA", 0.0), ("songA", 6.0), ("songB", 0.0), ("songB", 6.0)]
ONE_STEP_USDR = [[4.0, 2.0], [5.0, 1.0], [3.0, 3.0], [6.0, 0.0]]
# the variant's gain per chunk, the same for both stems: mean 1.25, sd 1.7078
GAIN = [1.0, 2.0, 3.0, -1.0]


def evaluation_file(folder: Path, name: str, variant: dict, usdr, trace_len: int):
    records = []
    for (song, start), values in zip(CHUNK_KEYS, usdr):
        trace = [list(values)] * trace_len
        records.append(
            dict(
                song=song, start=start, usdr=list(values), csdr=list(values),
                si_sdr=list(values), traces={"snr": trace, "si_sdr": trace},
                kept=[[1.0, 0.5]] * (trace_len - 1),
                chosen=[[[None, None], [0.9, None]]] * (trace_len - 1), forward_passes=3,
                seconds=1.0, cpu_seconds=2.0, wall_seconds=2.5,
            )
        )  # fmt: skip
    data = dict(
        format=EVALUATION_FORMAT, version=EVALUATION_VERSION, variant=variant,
        data="data/test", chunks=[list(k) for k in CHUNK_KEYS], stems=list(STEMS),
        chunk_seconds=6.0, chunks_per_song=2,
        chunk_set=dict(songs=2, chunks=4, total_chunks=10, inactive_chunks=1,
                       skipped_chunks=5),
        records=records,
        cost=dict(forward_passes=12, separator_seconds=4.0, cpu_seconds=8.0,
                  wall_seconds=10.0),
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(data))


def test_chunk_report_paired_differences_have_their_known_values(tmp_path):
    run = tmp_path / "model"
    evaluation_file(run, "onestep", dict(label="one-step", mode="one-step", steps=0),
                    ONE_STEP_USDR, 1)  # fmt: skip
    oracle = dict(label="multi-step oracle snr (T=2, K=3)", mode="oracle", steps=2,
                  metric="snr", oracle=True, candidates=3)  # fmt: skip
    better = [[u + g for u in row] for row, g in zip(ONE_STEP_USDR, GAIN)]
    evaluation_file(run, "oracle", oracle, better, 3)
    summary = chunks_lib.build_chunk_report({"toy": run}, tmp_path / "out")
    (diff,) = [
        d for d in summary["models"]["toy"]["differences"] if d["metric"] == "uSDR"
    ]
    assert diff["chunks"]["mean"] == pytest.approx(1.25)
    assert diff["chunks"]["sd"] == pytest.approx(np.std(GAIN, ddof=1))
    # 95 % t interval over 4 chunks: t(0.975, 3) = 3.1824
    assert diff["chunks"]["ci95"] == pytest.approx(
        3.1824 * np.std(GAIN, ddof=1) / 2, rel=1e-4
    )
    assert diff["songs"]["mean"] == pytest.approx(1.25)  # song means 1.5 and 1.0
    assert diff["songs"]["sd"] == pytest.approx(np.std([1.5, 1.0], ddof=1))
    assert (diff["better"], diff["worse"], diff["count"]) == (3, 1, 4)
    text = (tmp_path / "out" / "RESULTS.md").read_text()
    assert "**oracle** snr" in text
    assert "1.25 ± 1.71" in text and "3 / 1 / 4" in text
    assert "keep 100 %" in text and "keep 50 %, 0.9: 50 %" in text  # step 1 choices
    # the interval [1.25 - 2.72, 1.25 + 2.72] includes 0: no difference at 95 %
    assert "1.25 [-1.47, 3.97]: no difference" in text
    assert (tmp_path / "out" / chunks_lib.IMAGE).stat().st_size > 10_000
    scores = summary["models"]["toy"]["variants"]["onestep"]["scores"]["uSDR"]
    assert scores["mean"] == pytest.approx(np.mean(ONE_STEP_USDR))


def test_chunk_report_refuses_other_chunks_or_no_one_step(tmp_path):
    run = tmp_path / "model"
    oracle = dict(label="multi-step oracle snr (T=2, K=3)", mode="oracle", steps=2,
                  metric="snr", oracle=True, candidates=3)  # fmt: skip
    evaluation_file(run, "oracle", oracle, ONE_STEP_USDR, 3)
    with pytest.raises(ValueError, match="one-step"):
        chunks_lib.build_chunk_report({"toy": run}, tmp_path / "out")
    evaluation_file(run, "onestep", dict(label="one-step", mode="one-step", steps=0),
                    ONE_STEP_USDR[:3] + [ONE_STEP_USDR[0]], 1)  # fmt: skip
    data = json.loads((run / "onestep.json").read_text())
    data["records"][3]["start"] = 12.0
    (run / "onestep.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="other chunks"):
        chunks_lib.build_chunk_report({"toy": run}, tmp_path / "out")
    assert cmd.main(["--chunk_runs", "bad", "--out_dir", str(tmp_path)]) == 1


def test_probe_rows_compare_a_criterion_with_snr(tmp_path):
    run = tmp_path / "model"
    evaluation_file(run, "onestep", dict(label="one-step", mode="one-step", steps=0),
                    ONE_STEP_USDR, 1)  # fmt: skip
    oracle = dict(label="multi-step oracle snr (T=1, K=2)", mode="oracle", steps=1,
                  metric="snr", oracle=True, candidates=2)  # fmt: skip
    evaluation_file(run, "oracle", oracle, ONE_STEP_USDR, 2)
    data = json.loads((run / "oracle.json").read_text())
    # stem 0, one channel: the r = 0.5 candidate moves snr by +1, -1, +1, -1 dB over
    # the 4 chunks and the consistency by the opposite; stem 1 does not move
    for c, record in enumerate(data["records"]):
        up = 1.0 if c % 2 == 0 else -1.0
        record["probe"] = dict(
            ratios=[1.0, 0.5],
            keep={"snr": [[0.0], [0.0]], "mixture_consistency": [[5.0], [5.0]]},
            candidates={
                "snr": [[[0.0], [0.0]], [[up], [0.0]]],
                "mixture_consistency": [[[5.0], [5.0]], [[5.0 - up], [5.0]]],
            },
        )
    (run / "oracle.json").write_text(json.dumps(data))
    variants = chunks_lib.load_run(run)
    rows = {
        (r["criterion"], r["stem"]): r
        for r in chunks_lib.probe_rows(variants, list(STEMS))
    }
    mc, snr = rows[("mixture_consistency", "s1")], rows[("snr", "s1")]
    assert mc["correlation"] == pytest.approx(-1.0)
    assert mc["share_reference_up"] == 0.5 and mc["share_criterion_up"] == 0.5
    # consistency picks the candidate where it loses 1 dB snr, keeps elsewhere
    assert mc["picked_gain"] == pytest.approx(-0.5) and mc["picked_changed"] == 0.5
    assert snr["picked_gain"] == pytest.approx(0.5)  # the oracle's first step
    assert rows[("snr", "s2")]["picked_changed"] == 0.0  # ties keep
    assert rows[("snr", "s2")]["correlation"] is None  # no variance: undefined
