"""MUSDB18-HQ preparation on a generated tree, and its errors on broken ones."""

import importlib.util
import os

import numpy as np
import pytest
import soundfile as sf
import yaml

from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.datasets.musdb18hq import (
    STANDARD_VALID_SONGS,
    MusdbLayoutError,
    main,
    prepare_musdb18hq,
    safe_uid,
)

RATE = 44100
N = 2205  # 50 ms


def make_song(
    folder,
    rng,
    n=N,
    rate=RATE,
    channels=2,
    silent=(),
    skip=(),
    override=None,
    stems=MUSDB_STEMS,
    ext="wav",
):
    """Write a song; ``override`` maps a file to (samples, rate, channels) or "text"."""
    os.makedirs(folder, exist_ok=True)
    audio = {}
    for name in stems:
        audio[name] = (
            np.zeros((n, channels))
            if name in silent
            else 0.2 * rng.standard_normal((n, channels))
        )
    audio["mixture"] = sum(audio[name] for name in stems)
    for name in ("mixture",) + tuple(stems):
        if name in skip:
            continue
        path = os.path.join(folder, f"{name}.{ext}")
        if override and name in override:
            spec = override[name]
            if spec == "text":
                with open(path, "w") as f:
                    f.write("this is not audio\n")
                continue
            length, file_rate, file_channels = spec
            sf.write(
                path, 0.1 * rng.standard_normal((length, file_channels)), file_rate
            )
        else:
            sf.write(path, audio[name], rate)


GOOD_TRAIN = [
    "Artist A - Song, With Comma",
    "B & C - Rock & Roll",
    "D  E - Double  Space",
    "Fine - Song",
    "Gee - Another One",
    "Hotel - California?",
]


@pytest.fixture
def tree(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "musdb18hq"
    for name in GOOD_TRAIN:
        make_song(root / "train" / name, rng)
    make_song(root / "train" / "Quiet - Silent Bass", rng, silent=("bass",))
    make_song(root / "train" / "Bad - Missing Mixture", rng, skip=("mixture",))
    make_song(
        root / "train" / "Bad - Short Drums", rng, override={"drums": (N - 10, RATE, 2)}
    )
    make_song(
        root / "train" / "Bad - Mono Vocals", rng, override={"vocals": (N, RATE, 1)}
    )
    make_song(
        root / "train" / "Bad - Low Rate", rng, override={"other": (N // 2, 22050, 2)}
    )
    make_song(root / "train" / "Bad - Not Audio", rng, override={"vocals": "text"})
    make_song(root / "test" / "Test One - X", rng)
    make_song(root / "test" / "Test Two - Y", rng)
    (root / "valid_songs.txt").write_text(
        "# generated\nFine - Song\nB & C - Rock & Roll\n"
    )
    return root


def read_table(path):
    with open(path) as f:
        return [line.rstrip("\n").split(" ", 1) for line in f]


def test_prepares_good_songs_and_skips_bad_ones_with_a_message(tree, tmp_path, caplog):
    out = tmp_path / "data"
    report = prepare_musdb18hq(str(tree), str(out))

    skipped = dict(report.skipped)
    assert set(skipped) == {
        "train/Bad - Missing Mixture",
        "train/Bad - Short Drums",
        "train/Bad - Mono Vocals",
        "train/Bad - Low Rate",
        "train/Bad - Not Audio",
    }
    assert "missing mixture.wav" in skipped["train/Bad - Missing Mixture"]
    assert "different lengths" in skipped["train/Bad - Short Drums"]
    assert "mono stem in a stereo set" in skipped["train/Bad - Mono Vocals"]
    assert "22050 Hz" in skipped["train/Bad - Low Rate"]
    assert "not readable audio" in skipped["train/Bad - Not Audio"]
    for song in skipped:  # each problem is logged with the song's name
        assert any(song in record.getMessage() for record in caplog.records)
    assert any("bass.wav is silent" in m for s, m in report.warnings if "Quiet" in s)

    song_of = report.uid2song
    assert sorted(song_of[u] for u in report.splits["valid"]) == sorted(
        ["Fine - Song", "B & C - Rock & Roll"]
    )
    assert len(report.splits["train"]) == 5  # 4 good + the silent-bass song
    assert len(report.splits["test"]) == 2
    assert "valid_songs.txt" in report.valid_source

    assert report.stems == MUSDB_STEMS and report.stems_source == "read from the data"
    for split in ("train", "valid", "test"):
        folder = out / split
        assert (folder / "stems").read_text() == "vocals\nbass\ndrums\nother\n"
        wav = read_table(folder / "wav.scp")
        uids = [uid for uid, _ in wav]
        assert uids == sorted(uids) == sorted(report.splits[split])
        assert all(" " not in uid and "&" not in uid and "," not in uid for uid in uids)
        for i, stem in enumerate(MUSDB_STEMS, 1):
            spk = read_table(folder / f"spk{i}.scp")
            assert [u for u, _ in spk] == uids
            for uid, path in spk:
                assert path.endswith(f"/{stem}.wav") and os.path.isabs(path)
                assert os.path.basename(os.path.dirname(path)) == song_of[uid]
        assert dict(read_table(folder / "utt2num_samples")) == {u: str(N) for u in uids}
        assert dict(read_table(folder / "utt2spk")) == {u: u for u in uids}
        assert float(dict(read_table(folder / "utt2dur"))[uids[0]]) == pytest.approx(
            N / RATE, abs=1e-4
        )
        assert dict(read_table(folder / "uid2song")) == {u: song_of[u] for u in uids}
    assert not [p for p in os.listdir(out) if p.startswith(".")]  # no temp folder left


def test_uids_are_unique_and_safe():
    assert safe_uid("Johnny Lokke - Promises & Lies") == "Johnny_Lokke_-_Promises_Lies"
    assert safe_uid("???") == "song"


@pytest.mark.parametrize("layout", ["missing", "no_test", "file"])
def test_broken_root_stops_before_writing(tmp_path, layout):
    root = tmp_path / "root"
    if layout == "no_test":
        make_song(root / "train" / "A - B", np.random.default_rng(0))
    elif layout == "file":
        root.write_text("not a folder")
    out = tmp_path / "data"
    with pytest.raises(MusdbLayoutError):
        prepare_musdb18hq(str(root), str(out))
    assert not out.exists()
    assert main(["--root", str(root), "--out", str(out)]) == 1
    assert not out.exists()


def test_unknown_song_in_valid_list_stops_before_writing(tree, tmp_path):
    listing = tmp_path / "valid.txt"
    listing.write_text("Fine - Song\nNo Such - Song\n")
    out = tmp_path / "data"
    with pytest.raises(ValueError, match="No Such - Song"):
        prepare_musdb18hq(str(tree), str(out), valid_list=str(listing))
    assert not out.exists()


def test_standard_valid_songs_are_used_for_real_musdb_names(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "real"
    for name in STANDARD_VALID_SONGS + ("Other - One", "Other - Two"):
        make_song(root / "train" / name, rng, n=441)
    make_song(root / "test" / "T - T", rng, n=441)
    report = prepare_musdb18hq(str(root), str(tmp_path / "data"), check_silence=False)
    valid_names = sorted(report.uid2song[u] for u in report.splits["valid"])
    assert valid_names == sorted(STANDARD_VALID_SONGS)
    assert sorted(report.uid2song[u] for u in report.splits["train"]) == [
        "Other - One",
        "Other - Two",
    ]


def test_deterministic_subset_without_a_list(tree, tmp_path):
    os.remove(tree / "valid_songs.txt")
    first = prepare_musdb18hq(str(tree), str(tmp_path / "a"), check_silence=False)
    second = prepare_musdb18hq(str(tree), str(tmp_path / "b"), check_silence=False)
    assert first.splits == second.splits
    # 7 usable training songs (6 good + the silent-bass one): round(0.14 * 7) = 1
    assert len(first.splits["valid"]) == 1
    message = next(m for _, m in first.warnings if "SHA-1" in m)
    assert first.uid2song[first.splits["valid"][0]] in message


def test_rerun_replaces_the_output(tree, tmp_path):
    out = tmp_path / "data"
    prepare_musdb18hq(str(tree), str(out), check_silence=False)
    (out / "train" / "stale_file").write_text("old")
    prepare_musdb18hq(str(tree), str(out), check_silence=False)
    assert not (out / "train" / "stale_file").exists()
    assert (out / "train" / "wav.scp").exists()


def test_standard_list_matches_the_musdb_package():
    spec = importlib.util.find_spec("musdb")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("musdb is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "configs", "mus.yaml")
    with open(path) as f:
        assert sorted(yaml.safe_load(f)["validation_tracks"]) == sorted(
            STANDARD_VALID_SONGS
        )


def _own_tree(root, stems=("lead", "keys", "beat"), **song_kwargs):
    """A tree with other stem names: 4 train songs (one without lead), 1 test song."""
    rng = np.random.default_rng(3)
    for name in ("A - One", "B - Two", "C - Three"):
        make_song(root / "train" / name, rng, stems=stems)
    make_song(root / "train" / "D - Instrumental", rng, stems=stems, silent=("lead",))
    make_song(root / "test" / "E - Test", rng, stems=stems, ext="flac")
    return root


def test_any_stem_names_are_read_from_the_data(tmp_path):
    root = _own_tree(tmp_path / "mine")
    listing = tmp_path / "my_valid.txt"
    listing.write_text("B - Two\n")
    out = tmp_path / "data"
    assert 0 == main(
        ["--root", str(root), "--out", str(out), "--valid-list", str(listing)]
    )
    # the MUSDB names first (none here), then alphabetical
    for split in ("train", "valid", "test"):
        assert (out / split / "stems").read_text().split() == ["beat", "keys", "lead"]
        assert sorted(os.listdir(out / split)) == sorted(
            [
                "stems",
                "wav.scp",
                "spk1.scp",
                "spk2.scp",
                "spk3.scp",
                "utt2spk",
                "spk2utt",
                "utt2num_samples",
                "utt2dur",
                "uid2song",
            ]
        )
    train = dict(read_table(out / "train" / "spk3.scp"))
    assert sorted(train) == ["A_-_One", "C_-_Three", "D_-_Instrumental"]
    assert train["D_-_Instrumental"].endswith("D - Instrumental/lead.wav")
    assert dict(read_table(out / "valid" / "wav.scp")) == {
        "B_-_Two": str(root / "train" / "B - Two" / "mixture.wav")
    }
    assert read_table(out / "test" / "spk1.scp")[0][1].endswith("E - Test/beat.flac")
    report = (out / "musdb18hq_prep_report.txt").read_text()
    assert "lead.wav is silent" in report  # valid data, reported
    assert "stems (read from the data): beat keys lead" in report


def test_stems_option_selects_and_orders(tmp_path):
    root = _own_tree(tmp_path / "mine")
    out = tmp_path / "data"
    report = prepare_musdb18hq(str(root), str(out), stems=["lead beat"])
    assert report.stems == ("lead", "beat") and report.stems_source == "--stems"
    assert (out / "train" / "stems").read_text() == "lead\nbeat\n"
    assert not (out / "train" / "spk3.scp").exists()
    assert read_table(out / "train" / "spk2.scp")[0][1].endswith("/beat.wav")
    with pytest.raises(ValueError, match="more than once"):
        prepare_musdb18hq(str(root), str(tmp_path / "x"), stems=["lead", "lead"])
    with pytest.raises(ValueError, match="cannot be 'mixture'"):
        prepare_musdb18hq(str(root), str(tmp_path / "x"), stems=["mixture"])
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("stems", [None, ["lead", "beat"]])
def test_songs_that_disagree_on_stems_stop_before_writing(tmp_path, stems):
    root = _own_tree(tmp_path / "mine")
    os.remove(root / "train" / "C - Three" / "beat.wav")  # C lacks beat
    out = tmp_path / "data"
    with pytest.raises(ValueError) as err:
        prepare_musdb18hq(str(root), str(out), stems=stems)
    message = str(err.value)
    assert "train/C - Three" in message
    assert "['keys', 'lead']" in message  # the song's list
    if stems is None:  # ... and the list of the other songs
        assert "['beat', 'keys', 'lead']" in message and "--stems" in message
    else:
        assert "['lead', 'beat']" in message
    assert not out.exists()
    assert main(["--root", str(root), "--out", str(out)]) == 1
    assert not out.exists()
    # selecting the stems every song has works
    report = prepare_musdb18hq(str(root), str(out), stems=["keys", "lead"])
    assert report.stems == ("keys", "lead")


def test_a_stem_in_two_formats_is_an_error(tmp_path):
    root = _own_tree(tmp_path / "mine")
    song = root / "train" / "A - One"
    sf.write(song / "keys.flac", np.zeros((N, 2)), RATE)
    with pytest.raises(ValueError, match="two files"):
        prepare_musdb18hq(str(root), str(tmp_path / "data"))
    assert not (tmp_path / "data").exists()
