"""The whole data path through ESPnet's own dataset classes.

MUSDB-like tree → data folders → activity index and crops → ``ESPnetDataset`` with the
``segment_sound`` type and the preprocessors → ESPnet's collate function; and FMA-like
segments through ESPnet's streaming dataset (what ``--collect_stats`` uses).
"""

import numpy as np
import pytest
import soundfile as sf
from espnet2.train import dataset as espnet_dataset
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.train.iterable_dataset import IterableESPnetDataset

from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.datasets.activity import ActivityConfig, run_activity
from espnet2_ext.datasets.musdb18hq import prepare_musdb18hq
from espnet2_ext.train.dataset import (
    SEGMENT_SOUND,
    SEGMENT_SOUND_DATA_TYPE,
    SoundSegment,
    write_segment_scp,
)
from espnet2_ext.train.preprocessor import MixtureOfMixtures, MusicDynamicMixing

RATE = 8000


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(
        espnet_dataset.DATA_TYPES, SEGMENT_SOUND, SEGMENT_SOUND_DATA_TYPE
    )


def _tree(root, rng):
    for split, names in (("train", ["A - x", "B & C", "D, d", "E"]), ("test", ["T"])):
        for name in names:
            folder = root / split / name
            folder.mkdir(parents=True)
            stems = {s: 0.1 * rng.standard_normal((3 * RATE, 2)) for s in MUSDB_STEMS}
            stems["mixture"] = sum(stems.values())
            for stem, audio in stems.items():
                sf.write(folder / f"{stem}.wav", audio, RATE, subtype="FLOAT")
    (root / "valid_songs.txt").write_text("E\n")


def test_musdb_pipeline_through_espnet_dataset(tmp_path, registered):
    root = tmp_path / "musdb"
    _tree(root, np.random.default_rng(0))
    prepare_musdb18hq(str(root), str(tmp_path / "data"), sample_rate=RATE)
    config = ActivityConfig(segment_seconds=1.0)
    train_dir, valid_dir = tmp_path / "dump" / "train", tmp_path / "dump" / "valid"
    # 1 s crops: 6 s ones would not fit in these 3 s songs
    run_activity(
        str(tmp_path / "data" / "train"),
        str(train_dir),
        config=config,
        crop_seconds=1.0,
    )
    run_activity(
        str(tmp_path / "data" / "valid"), str(valid_dir), config=None, crop_seconds=1.0
    )

    def data_list(folder):
        pairs = [("mix_segments.scp", "speech_mix")]
        pairs += [(f"spk{i}_segments.scp", f"speech_ref{i}") for i in range(1, 5)]
        return [(str(folder / f), name, SEGMENT_SOUND) for f, name in pairs]

    # validation: the fixed crops pass through unchanged
    valid = espnet_dataset.ESPnetDataset(
        data_list(valid_dir),
        preprocess=MusicDynamicMixing(train=False, index_dir=str(train_dir)),
    )
    uid, data = valid[0]
    assert uid.startswith("E-")
    song = root / "train" / "E"
    start = int(uid.rsplit("-", 1)[1])
    expected, _ = sf.read(
        song / "vocals.wav", start=start, stop=start + RATE, dtype="float32"
    )
    np.testing.assert_array_equal(data["speech_ref1"], expected)

    # training: the crops are the item list, their audio replaced by dynamic mixing
    dm = MusicDynamicMixing(
        train=True, index_dir=str(train_dir), segment_seconds=0.5, sample_rate=RATE
    )
    train = espnet_dataset.ESPnetDataset(data_list(train_dir), preprocess=dm)
    np.random.seed(0)
    batch_items = [train[i] for i in range(3)]
    uids, batch = CommonCollateFn(float_pad_value=0.0, int_pad_value=0)(batch_items)
    assert batch["speech_mix"].shape == (3, RATE // 2, 2)
    for i in range(1, 5):
        assert batch[f"speech_ref{i}"].shape == (3, RATE // 2, 2)
    total = sum(batch[f"speech_ref{i}"] for i in range(1, 5))
    assert float((batch["speech_mix"] - total).abs().max()) < 1e-6


def test_mixture_of_mixtures_in_espnet_streaming_dataset(tmp_path, registered):
    rng = np.random.default_rng(0)
    entries = []
    for j in range(3):
        path = str(tmp_path / f"{j}.wav")
        sf.write(path, 0.1 * rng.standard_normal((2 * RATE, 2)), RATE, subtype="FLOAT")
        entries += [
            (f"t{j}-0", SoundSegment(path, 0, RATE)),
            (f"t{j}-1", SoundSegment(path, RATE, 2 * RATE)),
        ]
    scp = str(tmp_path / "mix_segments.scp")
    write_segment_scp(scp, entries)
    mom = MixtureOfMixtures(
        train=False, segment_scp=scp, segment_seconds=0.5, sample_rate=RATE
    )
    data_list = [(scp, "speech_ref1", SEGMENT_SOUND)]
    # ESPnet's streaming dataset hands types it cannot stream to ESPnetDataset, and
    # then applies the preprocessor a second time: the result must be the same.
    streamed = dict(IterableESPnetDataset(data_list, preprocess=mom))
    mapped = espnet_dataset.ESPnetDataset(data_list, preprocess=mom)
    assert sorted(streamed) == sorted(uid for uid, _ in entries)
    for uid in streamed:
        _, direct = mapped[uid]
        for key in ("speech_mix", "speech_ref1", "speech_ref2"):
            assert streamed[uid][key].shape == (RATE // 2, 2)
            np.testing.assert_array_equal(streamed[uid][key], direct[key])
