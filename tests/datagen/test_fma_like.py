"""The FMA-like generator: real layout, tracks.csv, and the planted faulty files."""

import ast
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from espnet2_ext.datagen.fma_like import (
    FAULTY_KINDS,
    TRACKS_COLUMNS,
    TrackJob,
    generate_fma_like,
    plan_tracks,
    render_track_job,
    track_path,
)
from espnet2_ext.datagen.musdb_like import MANIFEST, PARTIAL
from espnet2_ext.datagen.render import DEFAULT_TRAIN_SOUNDFONT

pytestmark = pytest.mark.skipif(
    shutil.which("fluidsynth") is None
    or shutil.which("espeak-ng") is None
    or not DEFAULT_TRAIN_SOUNDFONT.exists(),
    reason="needs fluidsynth, espeak-ng and the FluidR3 soundfont",
)

DURATION = 1.5
N_FAULTY = sum(n for n, _ in FAULTY_KINDS.values())


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("fma_like")
    manifest = generate_fma_like(
        root,
        subset="small",
        num_tracks=N_FAULTY + 1,
        duration=DURATION,
        seed=0,
        jobs=2,
        progress=False,
    )
    return root, manifest


def test_layout_follows_fma(tree):
    root, manifest = tree
    assert manifest["complete"] and not (root / PARTIAL).exists()
    files = sorted(p.relative_to(root).as_posix() for p in root.glob("fma_small/*/*"))
    assert files == sorted(r["path"] for r in manifest["items"].values())
    for key, rec in manifest["items"].items():
        assert key == f"{rec['track_id']:06d}"
        assert rec["path"] == f"fma_small/{key[:3]}/{key}.mp3"
    assert track_path("large", 123456) == "fma_large/123/123456.mp3"


def test_tracks_csv_reads_like_the_real_one(tree):
    root, manifest = tree
    tracks = pd.read_csv(
        root / "fma_metadata" / "tracks.csv", index_col=0, header=[0, 1]
    )
    assert tracks.shape == (len(manifest["items"]), len(TRACKS_COLUMNS)) == (9, 52)
    assert sorted(tracks.index) == sorted(
        r["track_id"] for r in manifest["items"].values()
    )
    assert set(tracks.columns.get_level_values(0)) == {
        "album",
        "artist",
        "set",
        "track",
    }
    assert (tracks["track", "duration"] == round(DURATION)).all()
    assert (tracks["set", "subset"] == "small").all()
    genres = tracks["track", "genres"].map(ast.literal_eval)
    assert all(isinstance(g, list) and len(g) == 1 for g in genres)
    pd.to_datetime(tracks["track", "date_created"])  # parses as in FMA's utils.load


def test_manifest_lists_each_planted_kind(tree):
    _, manifest = tree
    counts = {k: len(v) for k, v in manifest["by_kind"].items()}
    assert counts == {"normal": 1, **{k: n for k, (n, _) in FAULTY_KINDS.items()}}
    assert manifest["expected"]["low_rate"] == "drop"
    assert manifest["expected"]["high_rate"] == "resample"


def test_planted_files_are_what_the_manifest_says(tree):
    root, manifest = tree
    by_kind = manifest["by_kind"]
    path = {r["track_id"]: root / r["path"] for r in manifest["items"].values()}

    def info(tid):
        return sf.info(str(path[tid]))

    for tid in by_kind["normal"] + by_kind["mostly_silent"]:
        assert (info(tid).samplerate, info(tid).channels) == (44100, 2)
    for tid in by_kind["low_rate"]:
        assert (info(tid).samplerate, info(tid).channels) == (22050, 2)
    for tid in by_kind["mono"]:
        assert (info(tid).samplerate, info(tid).channels) == (44100, 1)
    (tid,) = by_kind["high_rate"]
    assert (info(tid).samplerate, info(tid).channels) == (48000, 2)
    (tid,) = by_kind["empty"]
    assert path[tid].stat().st_size == 0
    for tid in by_kind["empty"] + by_kind["corrupt"]:
        with pytest.raises(sf.LibsndfileError):
            sf.read(str(path[tid]))
    (tid,) = by_kind["corrupt"]
    assert path[tid].stat().st_size > 1000
    (tid,) = by_kind["mostly_silent"]
    x, rate = sf.read(str(path[tid]))
    head = np.sqrt(np.mean(x[: int(0.1 * len(x))] ** 2))
    rest = np.sqrt(np.mean(x[int(0.25 * len(x)) :] ** 2))
    assert head > 0.01 and rest < 1e-3, (head, rest)
    for tid in by_kind["normal"]:
        x, rate = sf.read(str(path[tid]))
        assert abs(len(x) / rate - DURATION) < 0.05
        assert np.sqrt(np.mean(x**2)) > 0.01


def test_track_rendering_is_deterministic(tree, tmp_path):
    root, manifest = tree
    (tid,) = manifest["by_kind"]["normal"]
    rec = manifest["items"][f"{tid:06d}"]
    index = sorted(manifest["items"]).index(f"{tid:06d}")
    job = TrackJob(
        str(tmp_path),
        "small",
        index,
        tid,
        "normal",
        0,
        DURATION,
        str(DEFAULT_TRAIN_SOUNDFONT),
        rec["instrumental"],
    )
    again = render_track_job(job)
    assert again == rec
    assert (tmp_path / rec["path"]).read_bytes() == (root / rec["path"]).read_bytes()


def test_plan_is_seeded_and_checks_its_size():
    assert plan_tracks(20, 0, True) == plan_tracks(20, 0, True)
    assert plan_tracks(20, 0, True) != plan_tracks(20, 1, True)
    ids = [tid for tid, _, _ in plan_tracks(20, 0, True)]
    assert ids == sorted(set(ids)) and ids[0] == 2
    assert {k for _, k, _ in plan_tracks(5, 0, False)} == {"normal"}
    with pytest.raises(ValueError, match="--no-faulty"):
        plan_tracks(N_FAULTY, 0, True)


def test_rerun_skips_and_other_parameters_are_refused(tree):
    root, manifest = tree
    stamps = {p: p.stat().st_mtime_ns for p in root.glob("fma_small/*/*")}
    again = generate_fma_like(
        root, num_tracks=N_FAULTY + 1, duration=DURATION, seed=0, progress=False
    )
    assert {p: p.stat().st_mtime_ns for p in root.glob("fma_small/*/*")} == stamps
    assert again["items"] == manifest["items"]
    with pytest.raises(ValueError, match="--overwrite"):
        generate_fma_like(root, num_tracks=N_FAULTY + 2, duration=DURATION, seed=0)
    assert (root / MANIFEST).exists()
