"""Schedule calibration (the command and its library), on a tiny random BS-Locoformer.

The model is untrained (random weights): calibration does not need a good separator to
be checked. What is checked: the command writes a schedule that the inference options
load, it equals calling :func:`calibrate_schedule` on the same chunks by hand, the
validation metric never decreases with the step, the replayed traces reproduce the
calibration numbers, the forward-pass count has its known value, and chunks with an
inactive stem are left out.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from espnet2_ext.bin.multistep_calibrate import main
from espnet2_ext.bin.multistep_evaluate import main as evaluate_main
from espnet2_ext.bin.multistep_report import main as report_main
from espnet2_ext.enh.head_selection_run import resolve_config
from espnet2_ext.enh.inference.espnet_adapter import espnet_model_separate_fn
from espnet2_ext.enh.inference.metrics_registry import get_metric
from espnet2_ext.enh.inference.multistep import (
    MultiStepSeparator,
    RatioSchedule,
    calibrate_schedule,
)
from espnet2_ext.enh.inference.multistep.evaluation import load_evaluation
from espnet2_ext.enh.inference.multistep.song_calibration import (
    REPORT_NAME,
    SongChunks,
    run_calibration,
    stem_levels_db,
)
from espnet2_ext.metrics.music import usdr
from espnet2_ext.zoo import load_model

from conftest import FS, TINY_SEPARATOR_CONF, write_stereo_set

STEPS, CANDIDATES, CHUNK = 2, 3, 0.1  # 0.3 s songs: 3 chunks each


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_model(root: Path, seed: int = 0):
    """config.yaml (resolved like ESPnet's) and random weights of a 2-stem model."""
    root.mkdir(parents=True, exist_ok=True)
    stft = dict(n_fft=2048, hop_length=512, window="hann", default_fs=FS)
    raw = dict(
        encoder="stft",
        encoder_conf=dict(stft),
        decoder="stft",
        decoder_conf=dict(stft),
        separator="bs_locoformer",
        separator_conf=dict(TINY_SEPARATOR_CONF),
        criterions=[dict(name="snr", conf={}, wrapper="fixed_order", wrapper_conf={})],
        sample_rate=FS,
        num_spk=2,
    )
    (root / "train.yaml").write_text(yaml.safe_dump(raw))
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(resolve_config(root / "train.yaml")))
    torch.manual_seed(seed)
    model, _ = load_model(config)
    model_file = root / "model.pth"
    torch.save(model.state_dict(), model_file)
    return config, model_file


def data_dir(scps) -> Path:
    """write_stereo_set names its scps wav.scp, spk1.scp, …: that is a data folder."""
    return scps["wav"].parent


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    config, model_file = write_model(root / "exp")
    valid = data_dir(write_stereo_set(root / "valid", n_utts=2, seconds=0.3, seed=0))
    test = data_dir(write_stereo_set(root / "test", n_utts=1, seconds=0.2, seed=1))
    output = root / "exp" / "multistep_schedule.yaml"
    code = main(
        [
            "--train_config", str(config),
            "--model_file", str(model_file),
            "--data_dir", str(valid),
            "--output", str(output),
            "--stems", "s1", "s2",
            "--steps", str(STEPS),
            "--candidates", str(CANDIDATES),
            "--chunk_seconds", str(CHUNK),
            "--eval_data", str(test),
        ]
    )  # fmt: skip
    report = yaml.safe_load((output.parent / REPORT_NAME).read_text())
    return dict(
        code=code,
        config=config,
        model_file=model_file,
        valid=valid,
        test=test,
        output=output,
        report=report,
    )


def hand_cut_chunks(folder: Path, seconds: float):
    """The chunks cut by hand from the files: (mixture [1, C, L], refs [1, 2, C, L])."""
    scp = {
        name: dict(
            line.split(maxsplit=1)
            for line in (folder / f"{name}.scp").read_text().splitlines()
        )
        for name in ("wav", "spk1", "spk2")
    }
    size = int(round(seconds * FS))
    items = []
    for uid in sorted(scp["wav"]):
        mix = sf.read(scp["wav"][uid], dtype="float32")[0].T
        refs = np.stack(
            [sf.read(scp[s][uid], dtype="float32")[0].T for s in ("spk1", "spk2")]
        )
        for start in range(0, mix.shape[-1] - size + 1, size):
            items.append(
                (
                    torch.from_numpy(mix[None, :, start : start + size].copy()),
                    torch.from_numpy(refs[None, ..., start : start + size].copy()),
                )
            )
    return items


def test_the_command_writes_a_loadable_schedule(calibrated):
    assert calibrated["code"] == 0
    schedule = RatioSchedule.load(calibrated["output"])
    assert schedule.steps == STEPS and schedule.num_sources == 2
    assert schedule.sources == ["s1", "s2"]
    assert schedule.metric == "snr" and schedule.oracle
    assert schedule.search["chunk_seconds"] == CHUNK
    assert schedule.search["validation_items"] == 6
    # the inference layer takes it as it is (deployable mode)
    runner = MultiStepSeparator(
        lambda x: x[:, None].repeat(1, 2, 1, 1), schedule=schedule
    )
    assert runner.mode == "schedule" and runner.steps == STEPS


def test_validation_metric_never_decreases(calibrated):
    scores = np.array(RatioSchedule.load(calibrated["output"]).validation_scores)
    assert scores.shape == (STEPS + 1, 2)
    assert np.all(np.diff(scores, axis=0) >= -1e-9)


def test_the_command_equals_calibrate_schedule_by_hand(calibrated):
    model, _ = load_model(calibrated["config"], calibrated["model_file"])
    items = hand_cut_chunks(calibrated["valid"], CHUNK)
    assert len(items) == 6
    expected = calibrate_schedule(
        espnet_model_separate_fn(model),
        items,
        steps=STEPS,
        candidates=CANDIDATES,
        metric="snr",
        sources=["s1", "s2"],
    )
    got = RatioSchedule.load(calibrated["output"])
    assert got.ratios == expected.ratios
    np.testing.assert_allclose(
        got.validation_scores, expected.validation_scores, atol=1e-4
    )


def expected_passes(schedule: RatioSchedule, chunks: int, blends: int) -> int:
    """y0 once per chunk; per step, ``blends`` candidate weights (r = 1 is y0, reused)
    per source that did not keep its estimate at the step before (one that kept can
    only keep again: it is not recomputed), then the chosen weight of every source that
    moves is run once more to advance the trajectory (calibrate_schedule keeps no
    candidate outputs)."""
    moved = sum(r is not None and r != 1.0 for row in schedule.ratios for r in row)
    n_src = schedule.num_sources
    searched = [n_src] + [
        sum(r is not None for r in row) for row in schedule.ratios[:-1]
    ]
    return chunks * (1 + blends * sum(searched) + moved)


def test_forward_passes_have_their_known_count(calibrated):
    report = calibrated["report"]
    schedule = RatioSchedule.load(calibrated["output"])
    assert report["validation"]["chunks"] == 6
    assert report["validation"]["inactive_chunks"] == 0
    passes = expected_passes(schedule, chunks=6, blends=CANDIDATES - 1)
    assert report["cost"]["forward_passes"] == passes
    assert report["cost"]["passes_per_chunk"] == pytest.approx(passes / 6)
    assert report["cost"]["seconds"] > 0
    # the replay for the traces: y0 and one pass per moving source and step
    chunks = 6 + 2  # validation and eval chunks
    assert report["trace_cost"]["forward_passes"] == expected_passes(
        schedule, chunks=chunks, blends=0
    )


def test_replayed_traces_reproduce_the_calibration(calibrated):
    report = calibrated["report"]
    schedule = RatioSchedule.load(calibrated["output"])
    valid_trace = report["traces"][str(calibrated["valid"])]
    assert set(valid_trace) == {"snr", "si_sdr"}
    np.testing.assert_allclose(
        valid_trace["snr"], schedule.validation_scores, atol=1e-3
    )
    # on the eval set, step 0 is plain one-step inference, scored directly here
    model, _ = load_model(calibrated["config"], calibrated["model_file"])
    separate = espnet_model_separate_fn(model)
    items = hand_cut_chunks(calibrated["test"], CHUNK)
    assert report["trace_data"][str(calibrated["test"])]["chunks"] == len(items) == 2
    snr = get_metric("snr")
    one_step = torch.stack(
        [snr(separate(mix), ref, mix)[0].mean(dim=-1) for mix, ref in items]
    ).mean(dim=0)
    test_trace = report["traces"][str(calibrated["test"])]
    np.testing.assert_allclose(test_trace["snr"][0], one_step.numpy(), atol=1e-3)
    assert len(test_trace["si_sdr"]) == STEPS + 1


def test_the_table_is_printed(tmp_path, calibrated, capsys):
    out = tmp_path / "s.json"
    code = main(
        [
            "--train_config", str(calibrated["config"]),
            "--model_file", str(calibrated["model_file"]),
            "--data_dir", str(calibrated["valid"]),
            "--output", str(out),
            "--stems", "s1", "s2",
            "--steps", "1", "--ratios", "0.5",
            "--chunk_seconds", "0.3", "--trace_metrics",
        ]
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "validation oracle snr (dB) after each step" in text
    lines = [ln.split() for ln in text.splitlines() if ln.strip()[:1].isdigit()]
    assert [ln[0] for ln in lines] == ["0", "1"]
    assert lines[1][1] in ("0.500", "keep")
    report = yaml.safe_load((tmp_path / REPORT_NAME).read_text())
    assert report["traces"] == {} and report["validation"]["chunks"] == 2
    # one 0.3 s chunk per song; one blend (0.5) per step and source
    schedule = RatioSchedule.load(out)
    assert report["cost"]["forward_passes"] == expected_passes(schedule, 2, blends=1)


def test_traces_on_eval_data_only(tmp_path, calibrated):
    code = main(
        [
            "--train_config", str(calibrated["config"]),
            "--model_file", str(calibrated["model_file"]),
            "--data_dir", str(calibrated["valid"]),
            "--output", str(tmp_path / "s.yaml"),
            "--stems", "s1", "s2",
            "--steps", "1", "--ratios", "0.5", "--chunk_seconds", "0.3",
            "--trace_metrics", "si_sdr", "--trace_validation", "false",
            "--eval_data", str(calibrated["test"]),
        ]
    )  # fmt: skip
    assert code == 0
    report = yaml.safe_load((tmp_path / REPORT_NAME).read_text())
    assert list(report["traces"]) == [str(calibrated["test"])]
    assert list(report["traces"][str(calibrated["test"])]) == ["si_sdr"]
    schedule = RatioSchedule.load(tmp_path / "s.yaml")
    # the 0.2 s test song is one chunk
    assert report["trace_cost"]["forward_passes"] == expected_passes(
        schedule, 1, blends=0
    )


def test_chunks_with_an_inactive_stem_are_left_out(tmp_path):
    scps = write_stereo_set(tmp_path / "d", n_utts=2, seconds=0.3)
    uid, path = scps["spk2"].read_text().splitlines()[0].split()
    audio, _ = sf.read(path, dtype="float32")
    audio[: int(0.1 * FS)] = 0.0  # stem 2 silent in the first chunk of utt0
    sf.write(path, audio, FS, subtype="FLOAT")
    folder = data_dir(scps)
    chunks = SongChunks(folder, num_stems=2, chunk_seconds=0.1, batch_chunks=2)
    assert chunks.total_chunks == 6 and chunks.inactive_chunks == 1
    assert chunks.num_chunks == 5
    assert [mix.shape[0] for mix, _ in chunks] == [2, 2, 1]
    for mix, ref in chunks:
        assert ref.shape == (mix.shape[0], 2, 2, int(0.1 * FS))
        torch.testing.assert_close(ref.sum(dim=1), mix, atol=1e-6, rtol=0)
    every = SongChunks(
        folder, num_stems=2, chunk_seconds=0.1, inactive_threshold_db=None
    )
    assert every.num_chunks == 6
    few = SongChunks(folder, num_stems=2, chunk_seconds=0.1, max_chunks=2)
    assert few.num_chunks == 2 and few.skipped_chunks == 3
    assert sum(mix.shape[0] for mix, _ in few) == 2
    # evenly spaced over the 5 active chunks: the first and the last
    first, last = list(chunks)[0][0][:1], list(chunks)[-1][0][-1:]
    torch.testing.assert_close(torch.cat([m for m, _ in few]), torch.cat([first, last]))
    # the first active chunk(s) of every song: utt0 starts with the inactive chunk
    per_song = SongChunks(folder, num_stems=2, chunk_seconds=0.1, chunks_per_song=1)
    assert per_song.keys() == [("utt0", pytest.approx(0.1)), ("utt1", 0.0)]
    keyed = list(per_song.keyed())
    assert [(song, start) for song, start, _, _ in keyed] == per_song.keys()
    torch.testing.assert_close(keyed[0][2], list(chunks)[0][0][:1])  # 1st active


def test_stem_levels_are_relative_to_the_mixture():
    mix = np.ones((2, 100), dtype=np.float32)
    stems = np.stack([0.1 * mix, 0.0 * mix])
    levels = stem_levels_db(mix, stems)
    assert levels[0] == pytest.approx(-20.0)
    assert levels[1] == -np.inf


def test_invalid_options_are_clear_errors(tmp_path, calibrated):
    common = dict(
        train_config=calibrated["config"],
        model_file=calibrated["model_file"],
        data_dir=calibrated["valid"],
    )
    with pytest.raises(ValueError, match="one name per output"):
        run_calibration(
            **common, output=tmp_path / "s.yaml", stems=["a", "b", "c"], steps=1
        )
    with pytest.raises(ValueError, match=r"\.yaml, \.yml or \.json"):
        run_calibration(**common, output=tmp_path / "s.txt")
    with pytest.raises(ValueError, match="unknown metric"):
        run_calibration(**common, output=tmp_path / "s.yaml", trace_metrics=["nope"])
    with pytest.raises(ValueError, match="chunk_seconds must be > 0"):
        SongChunks(calibrated["valid"], num_stems=2, chunk_seconds=0)
    # the command reports errors with exit status 1
    assert main(
        ["--train_config", str(calibrated["config"]), "--model_file",
         str(calibrated["model_file"]), "--data_dir", str(tmp_path / "missing"),
         "--output", str(tmp_path / "s.yaml"), "--stems", "s1", "s2"]
    ) == 1  # fmt: skip


# ------------------------------------------------------ evaluation on a chunk set
def evaluate(calibrated, output: Path, *extra: str) -> int:
    return evaluate_main(
        [
            "--train_config", str(calibrated["config"]),
            "--model_file", str(calibrated["model_file"]),
            "--data_dir", str(calibrated["valid"]),
            "--stems", "s1", "s2",
            "--chunk_seconds", str(CHUNK), "--chunks_per_song", "2",
            "--output", str(output), *extra,
        ]
    )  # fmt: skip


@pytest.fixture(scope="module")
def evaluated(calibrated, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    variants = {
        "onestep": ["--steps", "0"],
        "oracle": ["--steps", "2", "--candidates", "3", "--probe_metrics", "snr",
                   "mixture_consistency"],
        "blind": ["--steps", "2", "--candidates", "3", "--metric",
                  "mixture_consistency"],
        "schedule": ["--schedule", str(calibrated["output"])],
    }  # fmt: skip
    codes = {name: evaluate(calibrated, root / f"{name}.json", *extra)
             for name, extra in variants.items()}  # fmt: skip
    results = {name: load_evaluation(root / f"{name}.json") for name in variants}
    return dict(root=root, codes=codes, results=results)


def test_every_variant_is_evaluated_on_the_same_chunks(calibrated, evaluated):
    assert set(evaluated["codes"].values()) == {0}
    results = evaluated["results"]
    # 2 songs of 3 chunks: the first 2 of each
    keys = [("utt0", 0.0), ("utt0", CHUNK), ("utt1", 0.0), ("utt1", CHUNK)]
    for result in results.values():
        assert [(r["song"], r["start"]) for r in result["records"]] == keys
        assert not list(evaluated["root"].glob("*.partial"))
    assert results["oracle"]["variant"]["mode"] == "oracle"
    assert results["blind"]["variant"]["mode"] == "blind"
    assert results["schedule"]["variant"]["mode"] == "schedule"
    assert results["onestep"]["cost"]["forward_passes"] == 4  # one pass per chunk
    # one-step: the project's uSDR of the model's output on each chunk, by hand
    model, _ = load_model(calibrated["config"], calibrated["model_file"])
    separate = espnet_model_separate_fn(model)
    items = hand_cut_chunks(calibrated["valid"], CHUNK)
    picked = [items[0], items[1], items[3], items[4]]
    for (mix, ref), record in zip(picked, results["onestep"]["records"]):
        est = separate(mix)[0].permute(0, 2, 1).double().numpy()
        expected = usdr(ref[0].permute(0, 2, 1).double().numpy(), est)
        np.testing.assert_allclose(record["usdr"], expected, atol=1e-4)
        assert len(record["csdr"]) == 2


def test_step_zero_is_one_step_and_the_oracle_never_loses(evaluated):
    results = evaluated["results"]
    base = [r["traces"]["snr"][0] for r in results["onestep"]["records"]]
    for name in ("oracle", "blind", "schedule"):
        records = results[name]["records"]
        np.testing.assert_allclose(
            [r["traces"]["snr"][0] for r in records], base, atol=1e-5
        )
        assert all(len(r["traces"]["si_sdr"]) == len(r["kept"]) + 1 for r in records)
    for r in results["oracle"]["records"]:
        snr = np.array(r["traces"]["snr"])
        assert np.all(np.diff(snr, axis=0) >= -1e-6)  # per stem, channel means
    # the blind variant records its own (reference-free) selection metric too
    assert "mixture_consistency" in results["blind"]["records"][0]["traces"]


def test_a_killed_evaluation_continues_from_its_partial_file(
    calibrated, evaluated, tmp_path
):
    root = tmp_path  # not the evaluated folder: the report reads every file there
    done = evaluated["results"]["onestep"]
    output = root / "resumed.json"
    settings = {k: done[k] for k in ("variant", "data", "chunks", "model_file",
                                     "trace_metrics", "probe_metrics", "csdr")}  # fmt: skip
    planted = dict(done["records"][0], usdr=[123.0, 456.0])
    partial = root / "resumed.json.partial"
    partial.write_text(json.dumps(settings) + "\n" + json.dumps(planted) + "\n")
    assert evaluate(calibrated, output, "--steps", "0") == 0
    result = load_evaluation(output)
    assert result["records"][0]["usdr"] == [123.0, 456.0]  # taken, not recomputed
    for a, b in zip(result["records"][1:], done["records"][1:]):
        np.testing.assert_allclose(a["usdr"], b["usdr"], atol=1e-6)
    assert not partial.exists()
    # a partial file of other settings is refused, not overwritten
    partial.write_text(json.dumps({**settings, "csdr": False}) + "\n")
    assert evaluate(calibrated, output, "--steps", "0") == 1
    assert partial.exists()


def test_the_chunk_report_reads_every_variant(evaluated, tmp_path):
    out = tmp_path / "report"
    code = report_main(
        ["--chunk_runs", f"toy={evaluated['root']}", "--out_dir", str(out)]
    )
    assert code == 0
    text = (out / "RESULTS.md").read_text()
    assert "**oracle** snr" in text and "mixture_consistency search" in text
    assert "deployable schedule (a weight per step and stem, `schedule`)" in text
    assert "step 0 of every variant is the one-step result" in text
    # the oracle run probed its step-1 candidates under both criteria
    assert "Step-1 candidates under each criterion, against snr" in text
    record = evaluated["results"]["oracle"]["records"][0]
    assert set(record["probe"]["candidates"]) == {"snr", "mixture_consistency"}
    assert np.array(record["probe"]["candidates"]["snr"]).shape == (3, 2, 2)
