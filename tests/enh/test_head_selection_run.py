"""Head selection as a command, on a planted 12-output BS-Locoformer.

The planted model ignores its input: every output's mask is a fixed band-pass (last
decoder layer: zero weights, biases that pass chosen STFT bins). Each stem is a tone in
its own frequency region, so the output that passes exactly that region reproduces the
stem, and the command must find it.
"""

import argparse
import json
from pathlib import Path
from typing import Dict, Sequence, Union

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from einops import rearrange
from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

from espnet2_ext.bin import select_heads as cmd
from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.datasets.songs import read_songs, song_chunks
from espnet2_ext.enh.head_selection_run import resolve_config, run
from espnet2_ext.separation import ChunkingConfig, Separator
from espnet2_ext.tasks.enh import EnhancementTask
from espnet2_ext.zoo import load_model

from conftest import FS, TINY_SEPARATOR_CONF

N_FFT = 2048
NUM_OUTPUTS = 12
#: STFT bins of each stem's region and the bin of its tone
REGIONS = {
    "vocals": (10, 31),
    "bass": (40, 61),
    "drums": (80, 121),
    "other": (150, 251),
}
TONE_BIN = {"vocals": 20, "bass": 50, "drums": 100, "other": 200}
PLANTED = {"vocals": 7, "bass": 2, "drums": 11, "other": 4}
CHUNK = 0.5  # seconds

#: MusicSeparator's old default: the whole input in one pass
WHOLE = ChunkingConfig(segment=None)


def _config(num_spk: int, mixit: bool) -> Dict:
    stft = dict(n_fft=N_FFT, hop_length=512, window="hann", default_fs=FS)
    config = dict(
        encoder="stft",
        encoder_conf=dict(stft),
        decoder="stft",
        decoder_conf=dict(stft),
        separator="bs_locoformer",
        separator_conf={**TINY_SEPARATOR_CONF, "num_spk": num_spk},
        sample_rate=FS,
        num_spk=num_spk,
        model_conf=dict(loss_over_channels=True),
    )
    if mixit:
        config["model_conf"]["flexible_numspk"] = True
        config["criterions"] = [
            dict(name="thres_snr", conf={}, wrapper="efficient_mixit", wrapper_conf={})
        ]
    else:
        config["criterions"] = [
            dict(
                name="thres_snr_zeroref",
                conf={},
                wrapper="fixed_order_mix",
                wrapper_conf={},
            )
        ]
    return config


def _bins(lo_hi) -> torch.Tensor:
    return torch.arange(*lo_hi)


def plant_masks(model, gains: Dict[int, Dict[str, float]], default: float = 0.3):
    """Make output ``n`` a fixed band-pass: gain ``gains[n][stem]`` on that stem's
    region (0 elsewhere); outputs not in ``gains`` pass every bin at ``default``."""
    decoder = model.separator.model.decoder
    offset = 0
    with torch.no_grad():
        for width, head in zip(decoder.bands, decoder.heads):
            head.out.weight.zero_()
            bias = rearrange(
                head.out.bias,
                "(glu ri n m f) -> glu ri n m f",
                glu=2,
                ri=2,
                n=decoder.num_spk,
                m=decoder.num_channels,
            )
            bias.zero_()
            bias[1] = 20.0  # gates open: sigmoid(20) = 1 - 2e-9
            mask = torch.full((decoder.num_spk, width), default)
            for n, per_stem in gains.items():
                mask[n] = 0.0
                for stem, gain in per_stem.items():
                    lo, hi = REGIONS[stem]
                    bins = torch.arange(offset, offset + width)
                    mask[n, (bins >= lo) & (bins < hi)] = gain
            bias[0, 0] = mask.unsqueeze(1)  # real part, every channel
            offset += width


def write_pretrained(root: Path, gains) -> Dict[str, Path]:
    """A 12-output MixIT config.yaml (resolved like ESPnet's) and planted weights."""
    root.mkdir(parents=True, exist_ok=True)
    raw = root / "train_mixit.yaml"
    raw.write_text(yaml.safe_dump(_config(NUM_OUTPUTS, mixit=True)))
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(resolve_config(raw)))
    model, _ = load_model(config)
    plant_masks(model, gains)
    model_file = root / "model.pth"
    torch.save(model.state_dict(), model_file)
    finetune = root / "finetune.yaml"
    finetune.write_text(yaml.safe_dump(_config(len(MUSDB_STEMS), mixit=False)))
    return dict(config=config, model=model_file, finetune=finetune)


def write_songs(
    root: Path,
    songs: Dict[str, Sequence[str]],
    seconds: Union[float, Dict[str, float]],
) -> Path:
    """MUSDB-style data folder: each song has tones for its active stems, silence
    (all-zero files) for the others."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = {"wav": []}
    lines.update({f"spk{k}": [] for k in range(1, 5)})
    for uid, active in songs.items():
        n = int((seconds[uid] if isinstance(seconds, dict) else seconds) * FS)
        t = np.arange(n) / FS
        mix = np.zeros((n, 2), dtype=np.float32)
        for k, stem in enumerate(MUSDB_STEMS, 1):
            audio = np.zeros((n, 2), dtype=np.float32)
            if stem in active:
                f0 = TONE_BIN[stem] * FS / N_FFT
                tone = 0.2 * np.sin(2 * np.pi * f0 * t + rng.uniform(0, 6))
                pan = rng.uniform(0.3, 0.7)
                audio = np.stack([tone * (1 - pan), tone * pan], 1).astype(np.float32)
            path = root / f"{uid}_{stem}.wav"
            sf.write(path, audio, FS, subtype="FLOAT")
            lines[f"spk{k}"].append(f"{uid} {path}")
            mix += audio
        path = root / f"{uid}_mixture.wav"
        sf.write(path, mix, FS, subtype="FLOAT")
        lines["wav"].append(f"{uid} {path}")
    for name, items in lines.items():
        (root / f"{name}.scp").write_text("\n".join(items) + "\n")
    return root


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # On a loaded 2-core machine, two intra-op threads of the many small band-wise
    # convolutions spend most of their time waiting for each other (10x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("select_heads")
    gains = {n: {stem: 1.0} for stem, n in PLANTED.items()}
    gains[0] = {"vocals": 0.5}  # a worse copy of the vocals: 6 dB
    files = write_pretrained(root / "exp", gains)
    both = {"songA": MUSDB_STEMS, "songB": MUSDB_STEMS}
    valid = write_songs(root / "valid", both, 1.0)
    test = write_songs(root / "test", {"songC": MUSDB_STEMS}, 1.0)
    out = root / "heads"
    code = cmd.main(
        [
            "--train_config", str(files["config"]),
            "--model_file", str(files["model"]),
            "--musdb_data", str(valid),
            "--finetune_config", str(files["finetune"]),
            "--eval_data", str(test),
            "--chunk_seconds", str(CHUNK),
            "--out", str(out),
        ]
    )  # fmt: skip
    return dict(files, out=out, code=code, valid=valid, test=test)


def test_the_command_picks_the_planted_heads(planted):
    assert planted["code"] == 0
    report = json.loads((planted["out"] / "heads.json").read_text())
    assert report["heads"] == PLANTED
    assert report["moved"] == {} and report["notes"] == []
    # 2 songs x 2 chunks of 0.5 s, every stem active in each
    assert report["vote_data"]["num_chunks"] == 4
    for stem, n in PLANTED.items():
        assert report["votes"][stem][n] == 4
    # the planted outputs reproduce the tones: far above the 6 dB decoy
    for data in (report["vote_data"], report["eval_data"][str(planted["test"])]):
        for stem in MUSDB_STEMS:
            assert data["best_assignment_snr_db"][stem] > 20.0
            assert data["selected_head_snr_db"][stem] == pytest.approx(
                data["best_assignment_snr_db"][stem], abs=2e-3
            )
    assert report["check"]["max_relative_difference"] < 1e-5


def test_the_4_output_model_loads_strictly_and_keeps_the_chosen_outputs(planted):
    out = planted["out"]
    full = Separator.from_files(planted["config"], planted["model"], chunking=WHOLE)
    selected = Separator.from_files(
        out / "config.yaml", out / "model.pth", chunking=WHOLE
    )  # strict
    assert selected.num_spk == 4 and full.num_spk == NUM_OUTPUTS
    rng = np.random.default_rng(1)
    mix = torch.from_numpy(rng.standard_normal((1, 2, FS // 2)).astype(np.float32))
    want = full.separate_tensor(mix)[:, [PLANTED[s] for s in MUSDB_STEMS]]
    got = selected.separate_tensor(mix)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_the_model_file_is_what_init_param_loads_into_the_finetune_config(planted):
    # ESPnet's --init_param (run.sh --pretrained) without ignore_init_mismatch:
    # every name and shape must match the fine-tuning model
    config = resolve_config(planted["finetune"])
    model = EnhancementTask.build_model(argparse.Namespace(**config))
    load_pretrained_model(
        str(planted["out"] / "model.pth"), model, ignore_init_mismatch=False
    )
    state = torch.load(planted["out"] / "model.pth", weights_only=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    # ... and the 12-output MixIT weights do not fit it
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_pretrained_model(str(planted["model"]), model, ignore_init_mismatch=False)


def test_colliding_first_choices_are_resolved_and_reported(tmp_path, caplog):
    # output 3 passes the vocals and the bass regions at full gain: it is the best
    # match of the vocals where the bass is silent and of the bass where the vocals
    # are silent (3 chunks each), while the planted outputs (gain 0.9, 20 dB) win
    # where both play (2 chunks). Both stems' most frequent output is 3.
    gains = {n: {stem: 1.0} for stem, n in PLANTED.items()}
    gains[PLANTED["vocals"]] = {"vocals": 0.9}
    gains[PLANTED["bass"]] = {"bass": 0.9}
    gains[3] = {"vocals": 1.0, "bass": 1.0}
    files = write_pretrained(tmp_path / "exp", gains)
    valid = write_songs(
        tmp_path / "valid",
        {
            "all": MUSDB_STEMS,
            "no_bass": ("vocals", "drums", "other"),
            "no_vocals": ("bass", "drums", "other"),
        },
        {"all": 1.0, "no_bass": 1.5, "no_vocals": 1.5},
    )
    with caplog.at_level("WARNING"):
        report = run(
            train_config=str(files["config"]),
            model_file=str(files["model"]),
            musdb_data=str(valid),
            out=str(tmp_path / "heads"),
            finetune_config=str(files["finetune"]),
            chunk_seconds=CHUNK,
        )
    assert report["first_choice"]["vocals"] == report["first_choice"]["bass"] == 3
    heads = report["heads"]
    assert len(set(heads.values())) == 4
    assert {heads["vocals"], heads["bass"]} in (
        {3, PLANTED["bass"]},
        {3, PLANTED["vocals"]},
    )
    (moved,) = report["moved"].items()
    assert moved[0] in ("vocals", "bass") and moved[1][0] == 3
    assert any("output 3" in note for note in report["notes"])
    assert any("output 3" in r.getMessage() for r in caplog.records)
    assert heads["drums"] == PLANTED["drums"] and heads["other"] == PLANTED["other"]


def test_a_finetune_config_of_another_size_is_refused(planted, tmp_path):
    other = _config(4, mixit=False)
    other["separator_conf"]["emb_dim"] = 12
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(other))
    with pytest.raises(ValueError, match="do not fit"):
        run(
            train_config=str(planted["config"]),
            model_file=str(planted["model"]),
            musdb_data=str(planted["valid"]),
            out=str(tmp_path / "heads"),
            finetune_config=str(path),
            chunk_seconds=CHUNK,
        )


def test_without_a_finetune_config_the_mixit_config_is_cut_to_the_stems(
    planted, tmp_path
):
    run(
        train_config=str(planted["config"]),
        model_file=str(planted["model"]),
        musdb_data=str(planted["valid"]),
        out=str(tmp_path / "heads"),
        chunk_seconds=CHUNK,
    )
    config = yaml.safe_load((tmp_path / "heads" / "config.yaml").read_text())
    assert config["num_spk"] == config["separator_conf"]["num_spk"] == 4
    assert config["model_conf"]["flexible_numspk"] is False
    heads = tmp_path / "heads"
    model, _ = load_model(heads / "config.yaml", heads / "model.pth")
    assert model.num_spk == 4


def test_data_folder_errors(tmp_path):
    folder = write_songs(tmp_path / "d", {"a": MUSDB_STEMS}, 0.2)
    (folder / "spk3.scp").write_text(f"b {folder / 'a_drums.wav'}\n")
    with pytest.raises(ValueError, match="spk3.scp and wav.scp list different songs"):
        read_songs(folder, 4)
    with pytest.raises(FileNotFoundError, match="spk5.scp"):
        read_songs(folder, 5)


def test_song_chunks_are_complete_and_short_songs_whole(tmp_path):
    folder = write_songs(tmp_path / "d", {"a": MUSDB_STEMS}, 1.2)
    (song,) = read_songs(folder, 4)
    chunks = list(song_chunks(song, int(0.5 * FS), FS))
    assert len(chunks) == 2  # the last 0.2 s is not a complete chunk
    mix, stems = chunks[1]
    assert mix.shape == (2, FS // 2) and stems.shape == (4, 2, FS // 2)
    np.testing.assert_allclose(stems.sum(0), mix, atol=1e-6)
    (whole,) = song_chunks(song, 2 * FS, FS)
    assert whole[0].shape == (2, int(1.2 * FS))
    with pytest.raises(ValueError, match="sampled at"):
        list(song_chunks(song, FS, 48000))
